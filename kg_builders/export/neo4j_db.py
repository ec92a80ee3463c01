"""Write a :class:`~kg_builders.graph.KnowledgeGraph` to Neo4j over Bolt, and read it back.

:func:`write_neo4j` stores the graph, optionally with node embeddings, a model's top-K
recommendations and its explanation paths; :func:`read_neo4j` rebuilds the identical graph from
the database (``read_neo4j(s).equals(kg, check_report=True)``), so a graph kept in Neo4j can be
trained on. Both speak only common-core Neo4j 5 Cypher over the official ``neo4j`` driver, with
parameters for every value; labels and relationship types come from the graph's names, are
checked against a strict pattern and backtick-quoted.

Layout in the database
----------------------
Nodes
    One label per node type, in CamelCase (``user`` -> ``User``, ``item_genre`` -> ``ItemGenre``).
    Properties: ``id`` (the raw id; a uniqueness constraint per label, created first), ``idx`` (the
    node's position within its type), every node attribute under its own name, ``feature_<slot>``
    (the feature row as a list of numbers), ``feature_mask_<slot>`` (boolean) and ``embedding`` (a
    list of floats, when embeddings are given). ``None`` attributes are not stored. An attribute
    column holding anything a Neo4j property cannot hold (maps, nested or mixed lists, lists with
    nulls, integers beyond 64 bits) is stored as JSON text in every row; the metadata node says so.
Relationships
    One type per relation, in upper case (``tagged_with`` -> ``TAGGED_WITH``), stored from source to
    target, with ``weight``, ``idx`` (the edge's position within its edge type: its key, so
    parallel edges of one relation between the same pair stay distinct; indexed) and the edge
    attributes (same encoding as node attributes; 2-D attributes as lists).
Recommendations
    ``(:User)-[:RECOMMENDED {model, score, rank}]->(:Item)``, one per ``(user, item, model)``;
    writing a user's recommendations of a model again replaces that user's old ones.
Explanations
    One ``(:Explanation {id, user_id, item_id, rank, contribution, hops, path, node_types,
    node_ids, relations, forward})`` node per explanation path, linked
    ``(:User)-[:HAS_EXPLANATION]->(e)-[:EXPLAINS]->(:Item)`` and ``(e)-[:PATH_NODE {pos}]->(n)`` to
    each node on the path (``pos`` 0 is the user). ``path`` is the JSON text exactly as given
    (:meth:`graph_rec.explore.types.Path.to_dict`); the list properties spell the same path out for
    Cypher. ``id`` is the JSON text of ``[user_id, item_id, rank]``. Writing explanations for a user
    again replaces all of that user's old ones.
Metadata
    One ``(:GraphRecMeta {id: "graph"})`` node: ``status`` (``"writing"`` until a write completes,
    then ``"complete"``), and JSON text of the schema (node types and counts, attribute names and
    encodings, edge types and counts, dtypes, feature slots), the build report and the recipe.

Node types ``explanation`` and ``graph_rec_meta`` and the relations ``recommended``,
``has_explanation``, ``explains`` and ``path_node`` are reserved (a :class:`SchemaError`).

Writing: uniqueness constraints (and an index on each relationship type's ``idx``) first, then
``UNWIND $rows AS row ...`` in batches (``batch_size`` rows, and at most ``max_batch_bytes`` of
parameters), each batch one managed transaction (``execute_write``), so transient failures are
retried by the driver. Every record is keyed: nodes are merged (``MERGE``) on ``id``; relationships are
upserted on their key (``idx`` per edge type, ``(user, model)`` for recommendations, the user for
explanations) by deleting the batch's keys and creating them again in the same transaction, which
a first write skips (nothing to delete). A relationship ``MERGE`` would scan every relationship of
its start node, which is quadratic in the degree of popular users and items (see
benchmarks/results/neo4j_write.md). So running the write twice leaves identical counts, and a
write that was interrupted (the server stopped, the process killed) is completed by running it
again; :func:`read_neo4j` refuses a database whose last write did not complete.

A write replaces the graph an earlier write stored: node properties are set, not merged (an
attribute, feature slot or embedding the new graph lacks does not survive); nodes whose label or
id the new graph lacks are deleted with their relationships and the explanations through them;
relationships of types it lacks are deleted. The labels and types to look at come from the
metadata node (``labels_written``, ``types_written``: also those of a write that did not
complete), so nothing is deleted under a label or type graph-rec did not write before (a node of
another writer that has a graph label and one of the graph's ids is the graph's node: its
properties are replaced). ``clear=True`` deletes all of it first instead, which is faster when
little of the old graph is kept.

Cypher recipes (labels and types as written by :func:`write_neo4j`; their output on
ml-latest-small is in the README)::

    // who else liked this item
    MATCH (i:Item {id: $item})<-[r:INTERACTED]-(other:User)
    WHERE other.id <> $user AND r.weight >= 4.5
    RETURN i.title AS item, other.id AS user, r.weight AS rating ORDER BY rating DESC, user LIMIT 5

    // entities two items share (genres, tags, KG entities, ...)
    MATCH (a:Item {id: $a})-[r1]-(x)-[r2]-(b:Item {id: $b})
    WHERE NOT x:User AND NOT x:Explanation
    RETURN labels(x)[0] AS label, x.id AS id, type(r1) AS via_a, type(r2) AS via_b ORDER BY label, id

    // a recommendation's explanation paths, strongest first
    MATCH (:User {id: $user})-[:HAS_EXPLANATION]->(e:Explanation)-[:EXPLAINS]->(:Item {id: $item})
    RETURN e.rank AS rank, e.contribution AS contribution, e.node_types AS types, e.node_ids AS ids,
           e.relations AS relations, e.forward AS forward ORDER BY rank

    // the same paths spelled with titles, through the PATH_NODE links
    MATCH (:User {id: $user})-[:HAS_EXPLANATION]->(e:Explanation)-[:EXPLAINS]->(:Item {id: $item})
    MATCH (e)-[s:PATH_NODE]->(n)
    WITH e, s.pos AS pos, coalesce(n.title, n.name, n.text, n.id) AS name ORDER BY e.rank, pos
    RETURN e.rank AS rank, e.contribution AS contribution, collect(name) AS path ORDER BY rank

Beyond the common core: where the server rejects Neo4j 5's constraint syntax,
:func:`write_neo4j` falls back to the 4.x form (``ON ... ASSERT``); where it has no relationship
property indexes, it writes without them (the keyed delete then scans). Both are logged and the
statements run are listed in the report. Ids are matched with ``WHERE n.id = row.x`` rather than
a ``{id: row.x}`` pattern map inside ``UNWIND``: ArcadeDB's Bolt server (26.10) reads a string
value that starts with ``$`` in such a map as a parameter name and silently matches nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from kg_builders._batches import bounded_batches
from kg_builders._optional import require
from kg_builders.errors import ConfigError, ExportError, SchemaError
from kg_builders.export.frames import (
    read_explanations,
    read_recommendations,
)
from kg_builders.fragment import EdgeType, plain
from kg_builders.graph import (
    BuildReport,
    EdgeStore,
    KnowledgeGraph,
    array_from_spec,
    dtype_name,
    edge_key,
    first_unjsonable,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

FORMAT = "graph-rec.neo4j"
FORMAT_VERSION = 1

META_LABEL = "GraphRecMeta"
META_ID = "graph"
EXPLANATION_LABEL = "Explanation"
RECOMMENDED = "RECOMMENDED"
HAS_EXPLANATION = "HAS_EXPLANATION"
EXPLAINS = "EXPLAINS"
PATH_NODE = "PATH_NODE"
#: labels and relationship types graph-rec uses for its own records (not knowledge-graph content)
RESERVED_LABELS = frozenset({META_LABEL, EXPLANATION_LABEL})
RESERVED_TYPES = frozenset({RECOMMENDED, HAS_EXPLANATION, EXPLAINS, PATH_NODE})

NODE_KEYS = ("id", "idx", "embedding", "type")
EDGE_KEYS = ("idx", "weight")
FEATURE_PREFIX = "feature_"
MASK_PREFIX = "feature_mask_"


_LABEL = re.compile(r"^[A-Z][A-Za-z0-9]*\Z")
_REL_TYPE = re.compile(r"^[A-Z][A-Z0-9_]*\Z")
_SNAKE = re.compile(r"^[a-z][a-z0-9_]*\Z")
_PROPERTY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\Z")
_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
_INT64 = (-(2**63), 2**63 - 1)


# ----------------------------------------------------------------------------- names
def node_label(node_type: str) -> str:
    """The Neo4j label of a node type: ``user`` -> ``User``, ``item_genre`` -> ``ItemGenre``.

    Raises:
        SchemaError: ``node_type`` is not snake_case, maps to a label that does not map back to it
            (``a_1``, ``a__b``), or maps to a label graph-rec reserves.
    """
    if not isinstance(node_type, str) or not _SNAKE.match(node_type):
        raise SchemaError(f"node type {node_type!r} cannot be a Neo4j label: it must match ^[a-z][a-z0-9_]*$")
    label = "".join(part[:1].upper() + part[1:] for part in node_type.split("_"))
    if not _LABEL.match(label) or node_type_of(label) != node_type:
        raise SchemaError(
            f"node type {node_type!r} has no reversible Neo4j label (every '_' must be followed by a letter)"
        )
    if label in RESERVED_LABELS:
        raise SchemaError(f"node type {node_type!r} maps to the label {label!r}, which graph-rec reserves")
    return label


def node_type_of(label: str) -> str:
    """The node type of a label written by :func:`node_label` (``ItemGenre`` -> ``item_genre``).

    Raises:
        SchemaError: ``label`` does not match ``^[A-Z][A-Za-z0-9]*$``.
    """
    if not isinstance(label, str) or not _LABEL.match(label):
        raise SchemaError(f"label {label!r} is not a graph-rec label: it must match ^[A-Z][A-Za-z0-9]*$")
    return re.sub(r"(?<!^)([A-Z])", r"_\1", label).lower()


def relationship_type(relation: str) -> str:
    """The Neo4j relationship type of a relation: ``tagged_with`` -> ``TAGGED_WITH``.

    Raises:
        SchemaError: ``relation`` is not snake_case, or maps to a type graph-rec reserves.
    """
    if not isinstance(relation, str) or not _SNAKE.match(relation):
        raise SchemaError(f"relation {relation!r} cannot be a Neo4j relationship type: it must match ^[a-z][a-z0-9_]*$")
    rel_type = relation.upper()
    if rel_type in RESERVED_TYPES:
        raise SchemaError(f"relation {relation!r} maps to the relationship type {rel_type!r}, which graph-rec reserves")
    return rel_type


def relation_of(rel_type: str) -> str:
    """The relation of a relationship type (``TAGGED_WITH`` -> ``tagged_with``).

    Raises:
        SchemaError: ``rel_type`` does not match ``^[A-Z][A-Z0-9_]*$``.
    """
    if not isinstance(rel_type, str) or not _REL_TYPE.match(rel_type):
        raise SchemaError(f"relationship type {rel_type!r} is not a graph-rec type: it must match ^[A-Z][A-Z0-9_]*$")
    return rel_type.lower()


def quote(name: str) -> str:
    """``name`` as a backtick-quoted Cypher identifier, after checking it is a label or type of ours.

    Raises:
        SchemaError: ``name`` matches neither the label nor the relationship-type pattern.
    """
    if not isinstance(name, str) or not (_LABEL.match(name) or _REL_TYPE.match(name)):
        raise SchemaError(f"{name!r} is not a valid label or relationship type")
    return "`" + name.replace("`", "``") + "`"


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True, kw_only=True)
class Neo4jSettings:
    """Where and how to connect. The password is never shown by ``repr``/``str`` nor in any error.

    The library reads no environment: the CLI, benchmarks and tests fill these from
    ``NEO4J_URI``, ``NEO4J_USER``, ``NEO4J_PASSWORD`` and ``NEO4J_DATABASE``.

    Attributes:
        uri: ``bolt://host:port`` (or ``neo4j://``, ``+s``/``+ssc`` variants); no credentials in it.
        user: the user name.
        password: the password.
        database: the database: ``"neo4j"`` is a real Neo4j's default; the project's local ArcadeDB
            server (``scripts/arcadedb.sh``) serves ``"graph"``.
        batch_size: rows per ``UNWIND`` batch (one transaction each).
        max_batch_bytes: a batch is cut earlier when its parameters would exceed this size
            (embeddings and feature vectors make rows large; servers limit message sizes).
        connection_timeout: seconds to wait for a connection.
        max_retry_time: seconds a managed transaction keeps retrying transient failures.
    """

    uri: str = "bolt://localhost:7687"
    user: str = "neo4j"
    password: str = field(default="", repr=False)
    database: str = "neo4j"
    batch_size: int = 10_000
    max_batch_bytes: int = 4_000_000
    connection_timeout: float = 10.0
    max_retry_time: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str):
            raise ConfigError("uri must be a string such as bolt://localhost:7687")
        if "@" in self.uri:
            # never echo such a URI: it may hold a password, however malformed it is
            raise ConfigError("the uri must not contain credentials (an '@'); set user and password separately")
        try:
            parts = urlsplit(self.uri)
            parts.port  # noqa: B018 - urlsplit checks the port only when it is read
        except ValueError as exc:
            raise ConfigError(f"uri {self.uri!r} is not a valid URL ({exc}); e.g. bolt://localhost:7687") from exc
        if parts.scheme not in _SCHEMES:
            raise ConfigError(f"uri scheme {parts.scheme!r} is not supported; valid: {', '.join(_SCHEMES)}")
        if not parts.hostname:
            raise ConfigError(f"uri {self.uri!r} has no host")
        for name in ("user", "password", "database"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string")
        if not self.database:
            raise ConfigError("database must not be empty (a real Neo4j's default is 'neo4j')")
        for name in ("batch_size", "max_batch_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("connection_timeout", "max_retry_time"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Neo4jSettings:
        """Settings from a mapping, rejecting unknown keys with the list of valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ConfigError(f"unknown Neo4j setting(s) {unknown}; valid: {valid}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> Neo4jSettings:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- driver and errors
def _detail(exc: BaseException, secret: str) -> str:
    """The driver's own message, or a note that it is withheld when it holds ``secret``.

    Never a search-and-replace inside it: masking each occurrence would show where the password
    matched (a password equal to the user name, or a digit of the port).
    """
    text = str(exc).strip() or type(exc).__name__
    return "the driver's message is withheld: it contains the password" if secret and secret in text else text


def driver_error(exc: BaseException, settings: Neo4jSettings, action: str) -> ExportError:
    """An :class:`ExportError` for a driver error: names the URI and database, never the password.

    The message is built from settings that hold no secret (the URI cannot carry credentials) and
    the driver's own message unless it contains the password.
    """
    exceptions = require("neo4j.exceptions")
    detail = _detail(exc, settings.password)
    where = f"{settings.uri} (database {settings.database!r})"
    if isinstance(exc, exceptions.AuthError):
        text = f"{action}: the Neo4j server at {settings.uri} refused user {settings.user!r} (wrong user or password?)"
    elif isinstance(exc, (exceptions.ServiceUnavailable, exceptions.SessionExpired, OSError)):
        text = (
            f"{action}: no Neo4j server reachable at {settings.uri} ({type(exc).__name__}: {detail}); "
            "is it running? Start it and run again: a rerun completes an interrupted write"
        )
    else:
        text = f"{action}: Neo4j at {where} failed: {type(exc).__name__}: {detail}"
    return ExportError(text)


@contextlib.contextmanager
def driver_errors(settings: Neo4jSettings, action: str) -> Iterator[None]:
    """Turn the driver's errors raised inside the block into :class:`ExportError` (cause kept)."""
    exceptions = require("neo4j.exceptions")
    try:
        yield
    except (exceptions.Neo4jError, exceptions.DriverError, OSError) as exc:
        err = driver_error(exc, settings, action)
        if settings.password and settings.password in str(exc):
            # a traceback or logger.exception would print the cause, password and all
            raise err from None
        raise err from exc


def open_driver(settings: Neo4jSettings, action: str = "connecting") -> Any:
    """A connected ``neo4j.Driver`` (connectivity verified); the caller closes it.

    Raises:
        ExportError: the server is not reachable or refuses the credentials (names the URI).
        MissingDependencyError: the ``neo4j`` driver is not installed.
    """
    neo4j = require("neo4j")
    from kg_builders import __version__

    with driver_errors(settings, action):
        driver = neo4j.GraphDatabase.driver(
            settings.uri,
            auth=(settings.user, settings.password),
            connection_timeout=float(settings.connection_timeout),
            max_transaction_retry_time=float(settings.max_retry_time),
            user_agent=f"graph-rec/{__version__}",
        )
        try:
            driver.verify_connectivity()
        except BaseException:
            driver.close()
            raise
    return driver


def _execute(session: Any, work: Callable[..., Any], *args: Any) -> Any:
    """One managed write transaction (retried by the driver on transient failures)."""
    return session.execute_write(work, *args)


def _unwind(tx: Any, query: str, rows: list[dict[str, Any]]) -> None:
    tx.run(query, rows=rows).consume()


def _run_all(tx: Any, statements: list[tuple[str, dict[str, Any]]]) -> None:
    for query, params in statements:
        tx.run(query, params).consume()


def _read(session: Any, query: str, **params: Any) -> list[Any]:
    def work(tx: Any) -> list[Any]:
        return list(tx.run(query, params))

    return session.execute_read(work)


# ----------------------------------------------------------------------------- values
def _scalar_kind(v: Any) -> str | None:
    """The property kind of a plain scalar (``None`` when Neo4j cannot store it as is)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int" if _INT64[0] <= v <= _INT64[1] else None
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    return None


def _native(v: Any) -> bool:
    """Whether a plain value is a Neo4j property value: a scalar or a homogeneous list of scalars."""
    if v is None or _scalar_kind(v) is not None:
        return True
    if isinstance(v, list):
        kinds = {_scalar_kind(x) for x in v}
        return None not in kinds and len(kinds) <= 1
    return False


def _encoding(values: list[Any]) -> str:
    """``"native"`` when every value can be a property as is, else ``"json"`` (for the whole column)."""
    return "native" if all(_native(v) for v in values) else "json"


def _check_json(values: list[Any], what: str, ids: Sequence[Any]) -> None:
    """A SchemaError naming ``what`` and the id when a value of a JSON-encoded column cannot be
    encoded (a date, a set, an object): found before anything is sent, not half-way through a write."""
    bad = first_unjsonable(values)
    if bad is not None:
        k, exc = bad
        raise SchemaError(
            f"{what} {ids[k]!r} is a {type(values[k]).__name__}, which neither Neo4j nor JSON can store ({exc}); "
            "convert it (a date to an ISO string, a set to a list) before writing"
        ) from exc


def _encode(values: list[Any], encoding: str) -> list[Any]:
    if encoding == "native":
        return values
    return [None if v is None else json.dumps(v, allow_nan=True, ensure_ascii=False) for v in values]


def _decode(value: Any, encoding: str) -> Any:
    if value is None or encoding == "native":
        return value
    return json.loads(value)


def _check_keys(names: Iterable[str], reserved: tuple[str, ...], what: str) -> None:
    for name in names:
        if not isinstance(name, str) or not name:
            raise SchemaError(f"{what} name {name!r} must be a non-empty string")
        if name in reserved or name.startswith(FEATURE_PREFIX):
            raise SchemaError(
                f"{what} {name!r} clashes with a property graph-rec writes "
                f"({', '.join(reserved)}, {FEATURE_PREFIX}*); rename it before writing to Neo4j"
            )


def _row_bytes(row: Any) -> int:
    return len(json.dumps(row, separators=(",", ":"), allow_nan=True, ensure_ascii=False))


# ----------------------------------------------------------------------------- the plan
@dataclass
class Neo4jWriteReport:
    """What :func:`write_neo4j` wrote (rows sent; the database then holds exactly these).

    Attributes:
        nodes: label -> nodes written (the metadata and explanation nodes not included).
        relationships: relationship type -> relationships written (knowledge-graph edges only).
        embeddings: node type -> nodes given an ``embedding``.
        recommendations: ``RECOMMENDED`` relationships written.
        explanations: ``Explanation`` nodes written.
        path_nodes: ``PATH_NODE`` relationships written.
        removed_nodes, removed_relationships: what an earlier write stored that this graph no
            longer has (nodes, with their relationships and the explanations through them;
            relationships of types it no longer has), deleted by this write.
        constraints: the constraint and index statements run.
        batches: write transactions run.
        seconds: wall time of the whole write.
        phase_seconds: wall time per phase: ``schema`` (clearing, constraints, indexes, metadata),
            ``nodes`` (with their embeddings), ``relationships``, ``recommendations``, ``explanations``.
    """

    uri: str
    database: str
    nodes: dict[str, int] = field(default_factory=dict)
    relationships: dict[str, int] = field(default_factory=dict)
    embeddings: dict[str, int] = field(default_factory=dict)
    recommendations: int = 0
    explanations: int = 0
    path_nodes: int = 0
    removed_nodes: int = 0
    removed_relationships: int = 0
    constraints: list[str] = field(default_factory=list)
    batches: int = 0
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_nodes(self) -> int:
        """Every node written: graph nodes and explanation nodes."""
        return sum(self.nodes.values()) + self.explanations

    @property
    def total_relationships(self) -> int:
        """Every relationship written: graph edges, recommendations and explanation links."""
        return sum(self.relationships.values()) + self.recommendations + 2 * self.explanations + self.path_nodes

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["total_nodes"] = self.total_nodes
        d["total_relationships"] = self.total_relationships
        return d


def _checked_encoding(values: Iterable[Any], what: str, ids: Sequence[Any]) -> str:
    """:func:`_encoding` of a column, its values checked to be encodable when it is JSON."""
    values = [plain(v) for v in values]
    encoding = _encoding(values)
    if encoding == "json":
        _check_json(values, what, ids)
    return encoding


def _graph_schema(kg: KnowledgeGraph, *, features: bool) -> dict[str, Any]:
    """The metadata :func:`read_neo4j` needs to rebuild ``kg`` exactly (names, counts, encodings, dtypes)."""
    nodes = []
    for t in kg.node_types:
        attrs = kg.node_attrs.get(t, {})
        _check_keys(attrs, NODE_KEYS, f"node attribute of {t!r}")
        feats = kg.features.get(t, {}) if features else {}
        masks = kg.feature_masks.get(t, {}) if features else {}
        nodes.append(
            {
                "type": t,
                "label": node_label(t),
                "count": kg.num_nodes(t),
                "has_attrs": t in kg.node_attrs,
                "attrs": {
                    name: _checked_encoding(values, f"node attribute {name!r} of {t}", kg.node_ids[t])
                    for name, values in attrs.items()
                },
                "features": {
                    n: {"dtype": dtype_name(a.dtype), "dim": int(a.shape[1]), "property": FEATURE_PREFIX + n}
                    for n, a in feats.items()
                },
                "masks": {n: MASK_PREFIX + n for n in masks},
            }
        )
    edges = []
    for et, e in kg.edges.items():
        s, r, d = et
        _check_keys(e.attrs, EDGE_KEYS, f"edge attribute of {et}")
        spec = e.dtype_spec()
        encodings = {}
        for name, arr in e.attrs.items():
            arr = np.asarray(arr)
            if arr.dtype.kind not in "biufUO":
                raise SchemaError(f"edge attribute {name!r} of {et} has dtype {arr.dtype}, which Neo4j cannot store")
            if arr.dtype.kind == "O" or (arr.dtype.kind == "u" and arr.dtype.itemsize == 8):
                encodings[name] = _checked_encoding(arr.tolist(), f"attribute {name!r} of {et} edge", range(len(arr)))
            else:
                encodings[name] = "native"
        edges.append(
            {
                "edge_type": [s, r, d],
                "key": edge_key(et),
                "source": node_label(s),
                "type": relationship_type(r),
                "target": node_label(d),
                "count": e.num_edges,
                "dtypes": spec,
                "attrs": encodings,
            }
        )
    return {"nodes": nodes, "edges": edges, "features_written": bool(features)}


def _node_rows(kg: KnowledgeGraph, spec: dict[str, Any], embedding: np.ndarray | None = None) -> list[dict[str, Any]]:
    """``{id, p: every property, id and idx included}`` per node (the embedding too, when given: one
    write per node)."""
    t = spec["type"]
    n = spec["count"]
    columns: dict[str, list[Any]] = {}
    for name, values in kg.node_attrs.get(t, {}).items():
        columns[name] = _encode([plain(v) for v in values], spec["attrs"][name])
    for slot, f in spec["features"].items():
        columns[f["property"]] = np.asarray(kg.features[t][slot]).tolist()
    for slot, prop in spec["masks"].items():
        columns[prop] = np.asarray(kg.feature_masks[t][slot], dtype=bool).tolist()
    if embedding is not None:
        columns["embedding"] = embedding.tolist()
    ids = kg.node_ids[t]
    names = list(columns)
    cols = [columns[k] for k in names]
    return [
        {"id": ids[i], "p": {"id": ids[i], "idx": i} | dict(zip(names, (c[i] for c in cols), strict=True))}
        for i in range(n)
    ]


def _inline_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Attribute names safe to spell in Cypher (``^[A-Za-z][A-Za-z0-9_]*$``, quoted), and the others."""
    names = list(names)
    safe = [n for n in names if _PROPERTY.match(n)]
    return safe, [n for n in names if n not in safe]


def _edge_rows(kg: KnowledgeGraph, et: EdgeType, spec: dict[str, Any]) -> list[list[Any]]:
    """``[source id, target id, idx, weight, *safe attributes(, {other attributes})]`` per edge, in idx order.

    Lists, not maps: the driver packs them about twice as fast, and edges are most of a graph.
    """
    s, _, d = et
    e: EdgeStore = kg.edges[et]
    src_ids, dst_ids = kg.node_ids[s], kg.node_ids[d]
    src, dst = np.asarray(e.edge_index).tolist()
    weights = np.asarray(e.edge_weight).tolist()
    if not e.attrs:
        return [[src_ids[a], dst_ids[b], i, w] for i, (a, b, w) in enumerate(zip(src, dst, weights, strict=True))]
    safe, other = _inline_names(e.attrs)
    cols = {k: _encode([plain(v) for v in np.asarray(e.attrs[k]).tolist()], spec["attrs"][k]) for k in e.attrs}
    inline = [cols[k] for k in safe]
    rows = [
        [src_ids[a], dst_ids[b], i, w, *(c[i] for c in inline)]
        for i, (a, b, w) in enumerate(zip(src, dst, weights, strict=True))
    ]
    if other:
        for i, row in enumerate(rows):
            row.append({k: cols[k][i] for k in other})
    return rows


def _check_ids(kg: KnowledgeGraph, node_type: str, ids: Iterable[str]) -> None:
    if node_type not in kg.node_ids:
        raise SchemaError(f"the graph has no {node_type!r} nodes; node types: {kg.node_types}")
    kg.index(node_type, list(dict.fromkeys(ids)))  # UnknownIdError listing the unknown ones


def _recommendation_groups(kg: KnowledgeGraph, recs: Any, user_type: str, item_type: str) -> list[dict[str, Any]]:
    """One group per (user, model) with its rows, checked as every store checks them."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in read_recommendations(recs, _id_checker(kg, user_type, item_type)):
        g = groups.setdefault((r.user_id, r.model), {"u": r.user_id, "m": r.model, "rows": []})
        g["rows"].append({"u": r.user_id, "i": r.item_id, "m": r.model, "s": r.score, "k": r.rank})
    return list(groups.values())


def _explanation_groups(kg: KnowledgeGraph, expl: Any, user_type: str, item_type: str) -> list[dict[str, Any]]:
    """One group per user with its explanation rows and their path steps."""
    groups: dict[str, dict[str, Any]] = {}
    for r in read_explanations(expl, _id_checker(kg, user_type, item_type)):
        g = groups.setdefault(r.user_id, {"u": r.user_id, "rows": [], "steps": []})
        key = json.dumps([r.user_id, r.item_id, r.rank], ensure_ascii=False)
        props: dict[str, Any] = {
            "user_id": r.user_id,
            "item_id": r.item_id,
            "rank": r.rank,
            "contribution": r.contribution,
            "hops": len(r.relations),
            "path": r.text,
            "node_types": r.node_types,
            "node_ids": r.node_ids,
            "relations": r.relations,
            "forward": r.forward,
        }
        g["rows"].append({"key": key, "u": r.user_id, "i": r.item_id, "p": props})
        g["steps"] += [
            {"key": key, "type": t, "id": node_id, "pos": pos}
            for pos, (t, node_id) in enumerate(zip(r.node_types, r.node_ids, strict=True))
        ]
    return list(groups.values())


def _id_checker(kg: KnowledgeGraph, user_type: str, item_type: str) -> Any:
    """``check(node_type, ids)`` for the frame readers, whose "user" and "item" are these node types."""
    names = {"user": user_type, "item": item_type}

    def check(node_type: str, ids: list[str]) -> None:
        _check_ids(kg, names.get(node_type, node_type), ids)

    return check


def _check_embeddings(kg: KnowledgeGraph, embeddings: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for t, arr in embeddings.items():
        if t not in kg.node_ids:
            raise SchemaError(f"embeddings for node type {t!r}, which the graph does not have ({kg.node_types})")
        a = np.asarray(arr)
        if a.ndim != 2 or a.shape[0] != kg.num_nodes(t) or a.dtype.kind not in "fiu":
            raise SchemaError(
                f"embeddings of {t!r} must be a numeric array [{kg.num_nodes(t)}, dim], got {a.dtype} {list(a.shape)}"
            )
        out[t] = a
    return out


def _group_batches(groups: list[dict[str, Any]], batch_size: int, max_bytes: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    rows = size = 0
    for g in groups:
        n = len(g["rows"])
        b = sum(_row_bytes(r) for r in g["rows"])
        if chunk and (rows + n > batch_size or size + b > max_bytes):
            yield chunk
            chunk, rows, size = [], 0, 0
        chunk.append(g)
        rows += n
        size += b
    if chunk:
        yield chunk


# ----------------------------------------------------------------------------- writing
def _read_meta(session: Any) -> dict[str, Any] | None:
    rows = _read(session, f"MATCH (m:{quote(META_LABEL)} {{id: $id}}) RETURN properties(m) AS p", id=META_ID)
    return dict(rows[0]["p"]) if rows else None


def _among(ids: list[Any] | None) -> tuple[str, dict[str, Any]]:
    """The ``WHERE`` clause (on ``n``) and parameters that keep the nodes with ``ids`` (all when None)."""
    return ("", {}) if ids is None else (" WHERE n.id IN $ids", {"ids": ids})


def _delete_label(session: Any, label: str, ids: list[Any] | None = None) -> int:
    """Delete the nodes of ``label`` (those with ``ids``, when given) with their relationships."""
    where, params = _among(ids)
    return _delete_in_chunks(
        session, f"MATCH (n:{quote(label)}){where} WITH n LIMIT $lim DETACH DELETE n RETURN count(*) AS c", **params
    )


def _delete_with_explanations(session: Any, label: str, ids: list[Any] | None = None) -> int:
    """:func:`_delete_label`, after the explanation nodes whose paths run through those nodes."""
    where, params = _among(ids)
    _delete_in_chunks(
        session,
        f"MATCH (x:{quote(EXPLANATION_LABEL)})-[:{PATH_NODE}]->(n:{quote(label)}){where} "
        "WITH DISTINCT x LIMIT $lim DETACH DELETE x RETURN count(*) AS c",
        **params,
    )
    return _delete_label(session, label, ids)


def _labels_of(meta: Mapping[str, Any] | None) -> list[str]:
    if not meta:
        return []
    return [str(x) for x in meta.get("labels_written") or []]


EdgeKey = tuple[str, str, str]  # (source label, relationship type, target label)


def _edge_keys(schema: Mapping[str, Any]) -> set[EdgeKey]:
    return {(str(e["source"]), str(e["type"]), str(e["target"])) for e in schema.get("edges", [])}


def _types_of(meta: Mapping[str, Any] | None) -> set[EdgeKey]:
    """The relationship types earlier writes stored: ``types_written`` and the last schema's edges.

    A metadata node of an older graph-rec (no ``types_written``) gives its schema's edges; one that
    cannot be parsed gives none (logged: its types cannot be removed).
    """
    if not meta:
        return set()
    found: set[EdgeKey] = set()
    try:
        if isinstance(meta.get("schema"), str):
            found |= _edge_keys(json.loads(meta["schema"]))
        if isinstance(meta.get("types_written"), str):
            found |= {(str(a), str(b), str(c)) for a, b, c in json.loads(meta["types_written"])}
    except (ValueError, TypeError, KeyError, AttributeError):
        logger.warning("the graph-rec metadata node is damaged; relationship types it recorded are not removed")
    ok = {k for k in found if _LABEL.match(k[0]) and _REL_TYPE.match(k[1]) and _LABEL.match(k[2])}
    if ok != found:
        logger.warning(
            "ignoring %d relationship types of the metadata node that are not graph-rec names", len(found - ok)
        )
    return ok


def _delete_in_chunks(session: Any, query: str, chunk: int = 2_000, **params: Any) -> int:
    """Run ``query`` (``... LIMIT $lim ... RETURN count(*) AS c``) until it deletes fewer than ``chunk``."""
    total = 0
    while True:
        n = session.execute_write(lambda tx: tx.run(query, lim=chunk, **params).single()["c"])
        total += int(n)
        if n < chunk:
            return total


def _remove_stale(
    session: Any,
    settings: Neo4jSettings,
    kg: KnowledgeGraph,
    schema: Mapping[str, Any],
    old: Mapping[str, Any],
    stale_types: set[EdgeKey],
) -> tuple[int, int]:
    """Delete what an earlier write stored that ``kg`` no longer has; returns ``(nodes, relationships)``.

    Relationships of types the new graph does not have; nodes of labels it does not have; nodes of
    its labels whose ids it does not have. Explanations running through a deleted node go with it.
    Nothing is read or deleted beyond graph-rec's labels and types.
    """
    rels = 0
    for s, t, d in sorted(stale_types):
        rels += _delete_in_chunks(
            session,
            f"MATCH (:{quote(s)})-[r:{quote(t)}]->(:{quote(d)}) WITH r LIMIT $lim DELETE r RETURN count(*) AS c",
        )
    labels = {n["label"] for n in schema["nodes"]}
    written = dict.fromkeys(_labels_of(old))
    nodes = 0
    for lb in written:
        if lb not in labels and lb not in RESERVED_LABELS and _LABEL.match(lb):
            nodes += _delete_with_explanations(session, lb)
    for spec in schema["nodes"]:
        if spec["label"] not in written:
            continue  # a label new to graph-rec here: its nodes are merged, never another writer's deleted
        keep = set(kg.node_ids[spec["type"]])
        stored = [r["id"] for r in _read(session, f"MATCH (n:{quote(spec['label'])}) RETURN n.id AS id")]
        stale = [i for i in stored if i not in keep]
        for k in range(0, len(stale), settings.batch_size):
            nodes += _delete_with_explanations(session, spec["label"], stale[k : k + settings.batch_size])
    if nodes or rels:
        logger.info(
            "removed %d nodes and %d relationships an earlier write left and this graph does not have", nodes, rels
        )
    return nodes, rels


def clear_neo4j(settings: Neo4jSettings) -> int:
    """Delete everything :func:`write_neo4j` wrote to the database (nodes of its labels, with their relationships).

    Only labels recorded in the metadata node (and graph-rec's own ``Explanation`` and
    ``GraphRecMeta``) are touched; other data in the database is left alone.

    Returns:
        The number of nodes deleted.

    Raises:
        ExportError: the server is not reachable or fails (names the URI).
    """
    driver = open_driver(settings, "clearing")
    try:
        with driver_errors(settings, "clearing"), driver.session(database=settings.database) as session:
            meta = _read_meta(session)
            labels = [lb for lb in _labels_of(meta) if _LABEL.match(lb)] + [EXPLANATION_LABEL, META_LABEL]
            total = sum(_delete_label(session, lb) for lb in dict.fromkeys(labels))
    finally:
        driver.close()
    logger.info("cleared %d nodes from %s", total, settings.uri)
    return total


def write_neo4j(
    kg: KnowledgeGraph,
    settings: Neo4jSettings,
    *,
    embeddings: Mapping[str, np.ndarray] | None = None,
    recommendations: pd.DataFrame | None = None,
    explanations: pd.DataFrame | None = None,
    features: bool = True,
    clear: bool = False,
    user_type: str = "user",
    item_type: str = "item",
    progress: bool = False,
) -> Neo4jWriteReport:
    """Write ``kg`` (and optionally embeddings, recommendations, explanations) to Neo4j; layout in the module docstring.

    Idempotent: a second run leaves the same counts; an interrupted run is completed by running it
    again. Every value travels as a query parameter.

    Args:
        kg: the graph.
        settings: connection and batching.
        embeddings: node type -> ``[num_nodes(type), dim]`` array, stored as ``embedding`` lists.
        recommendations: columns ``user_id, item_id, score, rank, model``.
        explanations: columns ``user_id, item_id, rank, contribution, path`` (``path``: JSON text of
            ``{"nodes": [[type, id], ...], "relations": [...], "forward": [...], "contribution": x}``).
        features: also store feature slots and masks (needed for an identical :func:`read_neo4j`).
        clear: first delete everything an earlier write stored (labels recorded in its
            metadata). Without it the write still leaves exactly ``kg``: it removes only what
            ``kg`` no longer has (module docstring), which is faster when most of it is unchanged.
        user_type, item_type: node types of the recommendations' and explanations' users and items.
        progress: show a tqdm progress bar over the rows.

    Raises:
        SchemaError: a node type or relation has no valid label or type, a name clashes with a
            reserved property, a frame lacks columns, embeddings have the wrong shape.
        UnknownIdError: recommendations or explanations name nodes that are not in ``kg``.
        DataError: a malformed explanation path, a duplicate recommendation or explanation rank.
        ExportError: the server is not reachable, refuses the credentials, or fails mid-write
            (names the URI, never the password; the driver's error is the ``__cause__`` unless its message holds the password).
    """
    t0 = time.perf_counter()
    # everything is checked before the first byte is sent
    schema = _graph_schema(kg, features=features)
    embeddings = _check_embeddings(kg, embeddings or {})
    rec_groups = (
        _recommendation_groups(kg, recommendations, user_type, item_type) if recommendations is not None else []
    )
    expl_groups = _explanation_groups(kg, explanations, user_type, item_type) if explanations is not None else []
    n_rec = sum(len(g["rows"]) for g in rec_groups)
    n_expl = sum(len(g["rows"]) for g in expl_groups)
    total_rows = sum(kg.num_nodes(t) for t in kg.node_types) + kg.num_edges() + n_rec + n_expl
    report = Neo4jWriteReport(uri=settings.uri, database=settings.database)
    labels = [n["label"] for n in schema["nodes"]]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_rows, desc="writing to Neo4j", unit="row")
    driver = open_driver(settings, "writing")
    try:
        with driver_errors(settings, "writing"), driver.session(database=settings.database) as session:
            w = _Writer(session, settings, report, bar)
            clock = _Clock(report.phase_seconds)
            old = _read_meta(session)
            new_types = _edge_keys(schema)
            old_types = set() if clear else _types_of(old)
            for lb in [*labels, EXPLANATION_LABEL, META_LABEL]:
                w.constraint(lb)
            for rel_type in dict.fromkeys([e["type"] for e in schema["edges"]]):
                w.relationship_index(rel_type)
            w.meta(
                {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "status": "writing",
                    "schema": json.dumps(schema, ensure_ascii=False),
                    "report": json.dumps(kg.report.to_dict(), ensure_ascii=False, default=_json_default),
                    "recipe": json.dumps(kg.recipe, ensure_ascii=False, default=_json_default),
                    # what a later write or clear must remove, should this one not complete
                    # (with clear too: a clear that dies half-way must be finished by a rerun)
                    "labels_written": sorted(set(_labels_of(old)) | set(labels)),
                    "types_written": json.dumps(sorted(_types_of(old) | new_types)),
                }
            )
            # cleared only once the metadata says "writing": a write that fails from here on is
            # marked incomplete, never an emptied database that still says "complete"
            if clear:
                for lb in dict.fromkeys([*_labels_of(old), *labels, EXPLANATION_LABEL]):
                    _delete_label(session, lb)
            elif old is not None:
                report.removed_nodes, report.removed_relationships = _remove_stale(
                    session, settings, kg, schema, old, old_types - new_types
                )
            clock.lap("schema")
            for spec in schema["nodes"]:
                w.nodes(spec, _node_rows(kg, spec, embeddings.get(spec["type"])))
                if spec["type"] in embeddings:
                    report.embeddings[spec["type"]] = spec["count"]
            clock.lap("nodes")
            for spec in schema["edges"]:
                w.edges(spec, _edge_rows(kg, tuple(spec["edge_type"]), spec))
            clock.lap("relationships")
            if rec_groups:
                w.recommendations(node_label(user_type), node_label(item_type), rec_groups)
            clock.lap("recommendations")
            if expl_groups:
                w.explanations(node_label(user_type), node_label(item_type), expl_groups)
            clock.lap("explanations")
            w.meta(
                {
                    "status": "complete",
                    "labels_written": sorted(labels),
                    "types_written": json.dumps(sorted(new_types)),
                    "embeddings": json.dumps({t: int(a.shape[1]) for t, a in embeddings.items()}),
                    "recommendations": n_rec,
                    "explanations": n_expl,
                    "models": sorted({g["m"] for g in rec_groups}),
                }
            )
    finally:
        driver.close()
        if bar is not None:
            bar.close()
    report.seconds = round(time.perf_counter() - t0, 3)
    logger.info(
        "wrote %d nodes and %d relationships to %s (database %r) in %.2f s, %d batches",
        report.total_nodes,
        report.total_relationships,
        settings.uri,
        settings.database,
        report.seconds,
        report.batches,
    )
    return report


class _Clock:
    """Wall time per phase, into ``out``."""

    def __init__(self, out: dict[str, float]) -> None:
        self.out = out
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.out[name] = round(self.out.get(name, 0.0) + now - self.t, 3)
        self.t = now


class _Writer:
    """The statements of one write, each batch one managed transaction.

    Nodes are merged on their unique ``id``. Relationships are keyed too, but written by deleting
    the batch's keys and creating them again in the same transaction: a ``MERGE`` on a
    relationship property scans every relationship of the start node, which is quadratic in the
    degree of popular users and items, while the delete finds its keys through an index.
    """

    def __init__(self, session: Any, settings: Neo4jSettings, report: Neo4jWriteReport, bar: Any) -> None:
        self.session = session
        self.settings = settings
        self.report = report
        self.bar = bar

    def _done(self, rows: int) -> None:
        self.report.batches += 1
        if self.bar is not None:
            self.bar.update(rows)

    def _batches(self, rows: Iterable[dict[str, Any]], size: Callable[[Any], int] = _row_bytes) -> Iterator[Any]:
        return bounded_batches(rows, self.settings.batch_size, self.settings.max_batch_bytes, size)

    def constraint(self, label: str) -> None:
        exceptions = require("neo4j.exceptions")
        q = quote(label)
        modern = f"CREATE CONSTRAINT IF NOT EXISTS FOR (n:{q}) REQUIRE n.id IS UNIQUE"
        try:
            self.session.run(modern).consume()
            self.report.constraints.append(modern)
        except exceptions.CypherSyntaxError:
            legacy = f"CREATE CONSTRAINT IF NOT EXISTS ON (n:{q}) ASSERT n.id IS UNIQUE"
            logger.info("the server rejects Neo4j 5 constraint syntax; using the 4.x form for %s", label)
            self.session.run(legacy).consume()
            self.report.constraints.append(legacy)

    def relationship_index(self, rel_type: str) -> None:
        exceptions = require("neo4j.exceptions")
        statement = f"CREATE INDEX IF NOT EXISTS FOR ()-[r:{quote(rel_type)}]-() ON (r.idx)"
        try:
            self.session.run(statement).consume()
            self.report.constraints.append(statement)
        except exceptions.CypherSyntaxError:
            # only a speed-up: without it the keyed delete scans the relationships of the type
            logger.info("the server has no relationship property indexes; writing %s without one", rel_type)

    def meta(self, props: dict[str, Any]) -> None:
        q = f"UNWIND $rows AS row MERGE (m:{quote(META_LABEL)} {{id: row.id}}) SET m += row.p"
        _execute(self.session, _unwind, q, [{"id": META_ID, "p": props}])

    def nodes(self, spec: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        # SET n = map replaces every property: one an earlier write stored and this graph no longer
        # has (an attribute, a feature slot, an old model's embedding) does not survive
        q = f"UNWIND $rows AS row MERGE (n:{quote(spec['label'])} {{id: row.id}}) SET n = row.p"
        for chunk in self._batches(rows):
            _execute(self.session, _unwind, q, chunk)
            self._done(len(chunk))
        self.report.nodes[spec["label"]] = spec["count"]

    def edges(self, spec: dict[str, Any], rows: list[list[Any]]) -> None:
        src, rel, dst = quote(spec["source"]), quote(spec["type"]), quote(spec["target"])
        # the highest key already stored: batches above it have nothing to delete (a first write never does)
        found = _read(self.session, f"MATCH (:{src})-[r:{rel}]->(:{dst}) RETURN max(r.idx) AS hi")
        stored = found[0]["hi"] if found and isinstance(found[0]["hi"], int) else -1
        drop = (
            f"MATCH (:{src})-[r:{rel}]->(:{dst}) WHERE r.idx >= $lo AND r.idx < $hi "
            "WITH collect(r) AS found UNWIND found AS r DELETE r"
        )
        # row: [source id, target id, idx, weight, *attributes with plain names(, {the others})], see
        # _edge_rows. Ids are matched in WHERE, not in a pattern map (ArcadeDB reads a "$..." string
        # in a MATCH map as a parameter name). Properties go into the CREATE map where their names
        # are plain identifiers (one record write instead of a create and an update); values are
        # always parameters.
        safe, other = _inline_names(spec["attrs"])
        props = ["idx: row[2]", "weight: row[3]"] + [f"`{n}`: row[{4 + k}]" for k, n in enumerate(safe)]
        create = (
            f"UNWIND $rows AS row MATCH (a:{src}) WHERE a.id = row[0] MATCH (b:{dst}) WHERE b.id = row[1] "
            f"CREATE (a)-[r:{rel} {{{', '.join(props)}}}]->(b)" + (f" SET r += row[{4 + len(safe)}]" if other else "")
        )
        size = _row_bytes if spec["attrs"] else _edge_row_bytes
        for chunk in self._batches(rows, size):
            # rows come in idx order: a batch is the key range [lo, hi); the last batch also drops
            # stale keys beyond the graph's edges (left by an earlier, larger graph)
            lo, hi = chunk[0][2], chunk[-1][2] + 1
            statements = [(create, {"rows": chunk})]
            if lo <= stored:
                last = hi >= len(rows)
                statements.insert(0, (drop, {"lo": lo, "hi": stored + 1 if last else hi}))
            _execute(self.session, _run_all, statements)
            self._done(len(chunk))
        if not rows and stored >= 0:
            _execute(self.session, _run_all, [(drop, {"lo": 0, "hi": stored + 1})])
        self.report.relationships[spec["type"]] = self.report.relationships.get(spec["type"], 0) + spec["count"]

    def recommendations(self, user_label: str, item_label: str, groups: list[dict[str, Any]]) -> None:
        u, i = quote(user_label), quote(item_label)
        # matched in full before anything is deleted (collect): a later row must not read a deleted record
        drop = (
            f"UNWIND $groups AS g MATCH (u:{u}) WHERE u.id = g.u MATCH (u)-[r:{RECOMMENDED}]->(:{i}) "
            "WHERE r.model = g.m WITH collect(r) AS found UNWIND found AS r DELETE r"
        )
        create = (
            f"UNWIND $rows AS row MATCH (u:{u}) WHERE u.id = row.u MATCH (i:{i}) WHERE i.id = row.i "
            f"CREATE (u)-[r:{RECOMMENDED} {{score: row.s, rank: row.k}}]->(i) SET r.model = row.m"
        )
        for batch in _group_batches(groups, self.settings.batch_size, self.settings.max_batch_bytes):
            keys = [{"u": g["u"], "m": g["m"]} for g in batch]
            rows = [r for g in batch for r in g["rows"]]
            _execute(self.session, _run_all, [(drop, {"groups": keys}), (create, {"rows": rows})])
            self._done(len(rows))
        self.report.recommendations = sum(len(g["rows"]) for g in groups)

    def explanations(self, user_label: str, item_label: str, groups: list[dict[str, Any]]) -> None:
        u, i, e = quote(user_label), quote(item_label), quote(EXPLANATION_LABEL)
        drop_user = (
            f"UNWIND $users AS uid MATCH (u:{u}) WHERE u.id = uid MATCH (u)-[:{HAS_EXPLANATION}]->(e:{e}) "
            "WITH collect(e) AS found UNWIND found AS e DETACH DELETE e"
        )
        drop_keys = (
            f"UNWIND $rows AS row MATCH (e:{e}) WHERE e.id = row.key "
            "WITH collect(e) AS found UNWIND found AS e DETACH DELETE e"
        )
        create = (
            f"UNWIND $rows AS row MATCH (u:{u}) WHERE u.id = row.u MATCH (i:{i}) WHERE i.id = row.i "
            f"CREATE (u)-[:{HAS_EXPLANATION}]->(e:{e})-[:{EXPLAINS}]->(i) SET e.id = row.key, e += row.p"
        )
        n_steps = 0
        for batch in _group_batches(groups, self.settings.batch_size, self.settings.max_batch_bytes):
            rows = [r for g in batch for r in g["rows"]]
            statements = [
                (drop_user, {"users": [g["u"] for g in batch]}),
                (drop_keys, {"rows": [{"key": r["key"]} for r in rows]}),
                (create, {"rows": rows}),
            ]
            by_label: dict[str, list[dict[str, Any]]] = {}
            for g in batch:
                for st in g["steps"]:
                    by_label.setdefault(node_label(st["type"]), []).append(
                        {"key": st["key"], "id": st["id"], "pos": st["pos"]}
                    )
                    n_steps += 1
            for lb, steps in by_label.items():
                step = (
                    f"UNWIND $rows AS row MATCH (e:{e}) WHERE e.id = row.key MATCH (n:{quote(lb)}) WHERE n.id = row.id "
                    f"CREATE (e)-[s:{PATH_NODE}]->(n) SET s.pos = row.pos"
                )
                statements.append((step, {"rows": steps}))
            _execute(self.session, _run_all, statements)
            self._done(len(rows))
        self.report.explanations = sum(len(g["rows"]) for g in groups)
        self.report.path_nodes = n_steps


def _edge_row_bytes(row: list[Any]) -> int:
    return 32 + len(row[0]) + len(row[1])


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (np.ndarray, tuple, set)):
        return list(o)
    return str(o)


# ----------------------------------------------------------------------------- reading
def read_meta(settings: Neo4jSettings) -> dict[str, Any] | None:
    """The metadata node's properties (JSON fields decoded), or None when nothing was written."""
    driver = open_driver(settings, "reading")
    try:
        with driver_errors(settings, "reading"), driver.session(database=settings.database) as session:
            meta = _read_meta(session)
    finally:
        driver.close()
    return decode_meta(meta) if meta is not None else None


def decode_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata node's properties with the JSON text fields parsed."""
    out = dict(meta)
    for k in ("schema", "report", "recipe", "embeddings"):
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    return out


def read_neo4j(settings: Neo4jSettings, *, progress: bool = False) -> KnowledgeGraph:
    """Rebuild the :class:`KnowledgeGraph` that :func:`write_neo4j` stored: identical to the one written.

    Node order, attributes (with their JSON encodings undone), edge order (by ``idx``), weights and
    attributes with their dtypes, feature slots and masks, report and recipe all come back.

    Raises:
        SchemaError: the database holds no graph-rec graph, an interrupted write (run it again),
            or nodes and relationships that do not match its metadata (data the last write did
            not make: write again, or with ``clear=True``).
        ExportError: the server is not reachable or fails (names the URI).
    """
    driver = open_driver(settings, "reading")
    try:
        with driver_errors(settings, "reading"), driver.session(database=settings.database) as session:
            raw = _read_meta(session)
            if raw is None:
                raise SchemaError(
                    f"{settings.uri} (database {settings.database!r}) holds no graph written by graph-rec"
                )
            meta = decode_meta(raw)
            if meta.get("format") != FORMAT or int(meta.get("format_version", 0)) > FORMAT_VERSION:
                raise SchemaError(
                    f"{settings.uri}: the graph-rec metadata has format {meta.get('format')!r} version "
                    f"{meta.get('format_version')!r}; this graph-rec reads {FORMAT!r} up to version {FORMAT_VERSION}"
                )
            if meta.get("status") != "complete":
                raise SchemaError(
                    f"{settings.uri}: the last write to database {settings.database!r} did not complete; run it again"
                )
            return _read_graph(session, settings, meta, progress=progress)
    finally:
        driver.close()


def _read_graph(session: Any, settings: Neo4jSettings, meta: dict[str, Any], *, progress: bool) -> KnowledgeGraph:
    schema = meta["schema"]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = sum(n["count"] for n in schema["nodes"]) + sum(e["count"] for e in schema["edges"])
        bar = tqdm(total=total, desc="reading from Neo4j", unit="row")
    stale = "data not from the last write (an older graph-rec's, or another writer's): write the graph again, or with clear=True"
    node_ids: dict[str, list[str]] = {}
    node_attrs: dict[str, dict[str, list[Any]]] = {}
    features: dict[str, dict[str, np.ndarray]] = {}
    masks: dict[str, dict[str, np.ndarray]] = {}
    try:
        for spec in schema["nodes"]:
            t, n = spec["type"], int(spec["count"])
            attr_names = list(spec["attrs"])
            feat = spec["features"]
            keys = attr_names + [f["property"] for f in feat.values()] + list(spec["masks"].values())
            rows = _read(
                session,
                f"MATCH (n:{quote(spec['label'])}) RETURN n.idx AS i, n.id AS id, [k IN $keys | n[k]] AS v",
                keys=keys,
            )
            if len(rows) != n:
                raise SchemaError(f"{settings.uri}: {len(rows)} {spec['label']} nodes stored, {n} written; {stale}")
            order = sorted(range(n), key=lambda j: rows[j]["i"] if isinstance(rows[j]["i"], int) else -1)
            if [rows[j]["i"] for j in order] != list(range(n)):
                raise SchemaError(f"{settings.uri}: idx of {spec['label']} nodes is not 0 .. {n - 1}; {stale}")
            rows = [rows[j] for j in order]
            node_ids[t] = [str(r["id"]) for r in rows]
            values = [r["v"] for r in rows]
            if attr_names:
                node_attrs[t] = {
                    name: [_decode(v[k], spec["attrs"][name]) for v in values] for k, name in enumerate(attr_names)
                }
            elif spec["has_attrs"]:
                node_attrs[t] = {}
            offset = len(attr_names)
            ids = node_ids[t]
            for k, (slot, f) in enumerate(feat.items()):
                col = [v[offset + k] for v in values]
                features.setdefault(t, {})[slot] = array_from_spec(
                    col,
                    f["dtype"],
                    [f["dim"]],
                    where=lambda i, s=slot, t=t, ids=ids: f"feature {s!r} of {t} {ids[i]!r}",
                )
            offset += len(feat)
            for k, slot in enumerate(spec["masks"]):
                masks.setdefault(t, {})[slot] = array_from_spec(
                    [v[offset + k] for v in values],
                    "bool",
                    [],
                    where=lambda i, s=slot, t=t, ids=ids: f"mask {s!r} of {t} {ids[i]!r}",
                )
            if bar is not None:
                bar.update(n)
        edges: dict[EdgeType, EdgeStore] = {}
        for spec in schema["edges"]:
            et = (spec["edge_type"][0], spec["edge_type"][1], spec["edge_type"][2])
            n = int(spec["count"])
            attr_names = list(spec["attrs"])
            rows = _read(
                session,
                f"MATCH (a:{quote(spec['source'])})-[r:{quote(spec['type'])}]->(b:{quote(spec['target'])}) "
                "RETURN a.idx AS s, b.idx AS d, r.idx AS i, r.weight AS w, [k IN $keys | r[k]] AS v",
                keys=attr_names,
            )
            if len(rows) != n:
                raise SchemaError(
                    f"{settings.uri}: {len(rows)} {spec['type']} relationships stored, {n} written; {stale}"
                )
            rows.sort(key=lambda r: r["i"] if isinstance(r["i"], int) else -1)
            if [r["i"] for r in rows] != list(range(n)):
                raise SchemaError(f"{settings.uri}: idx of {spec['type']} relationships is not 0 .. {n - 1}; {stale}")
            dt = spec["dtypes"]
            edge_index = np.asarray([[r["s"] for r in rows], [r["d"] for r in rows]], dtype=np.int64).reshape(2, n)
            rel = spec["type"]
            weight = array_from_spec(
                [r["w"] for r in rows], dt["weight"], [], where=lambda i, rel=rel: f"weight of {rel} relationship {i}"
            )
            attrs = {}
            for k, name in enumerate(attr_names):
                a = dt["attrs"][name]
                vals = [_decode(r["v"][k], spec["attrs"][name]) for r in rows]
                attrs[name] = array_from_spec(
                    vals, a["dtype"], a["shape"], where=lambda i, m=name, rel=rel: f"{m!r} of {rel} relationship {i}"
                )
            edges[et] = EdgeStore(edge_index, weight, attrs)
            if bar is not None:
                bar.update(n)
    finally:
        if bar is not None:
            bar.close()
    return KnowledgeGraph(
        node_ids,
        edges,
        node_attrs=node_attrs,
        features=features,
        feature_masks=masks,
        report=BuildReport.from_dict(meta["report"]),
        recipe=meta["recipe"],
    )


def count_neo4j(settings: Neo4jSettings) -> dict[str, dict[str, int]]:
    """What the database holds: ``{"nodes": {label: count}, "relationships": {type: count}}`` (sorted)."""
    driver = open_driver(settings, "counting")
    try:
        with driver_errors(settings, "counting"), driver.session(database=settings.database) as session:
            nodes = _read(session, "MATCH (n) UNWIND labels(n) AS label RETURN label, count(*) AS c")
            rels = _read(session, "MATCH ()-[r]->() RETURN type(r) AS t, count(*) AS c")
    finally:
        driver.close()
    return {
        "nodes": {str(r["label"]): int(r["c"]) for r in sorted(nodes, key=lambda r: r["label"])},
        "relationships": {str(r["t"]): int(r["c"]) for r in sorted(rels, key=lambda r: r["t"])},
    }


__all__ = [
    "EXPLANATION_LABEL",
    "META_LABEL",
    "RESERVED_LABELS",
    "RESERVED_TYPES",
    "Neo4jSettings",
    "Neo4jWriteReport",
    "clear_neo4j",
    "count_neo4j",
    "driver_error",
    "driver_errors",
    "node_label",
    "node_type_of",
    "open_driver",
    "quote",
    "read_meta",
    "read_neo4j",
    "relation_of",
    "relationship_type",
    "write_neo4j",
]
