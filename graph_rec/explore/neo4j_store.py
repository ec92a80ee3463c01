"""The Neo4j knowledge store: the :class:`~graph_rec.explore.store.KnowledgeStore` questions answered with Cypher.

:class:`Neo4jStore` reads a database written by :func:`kg_builders.export.neo4j_db.write_neo4j`
(layout in that module's docstring) over Bolt with the official driver, and returns the same
objects in the same order as the embedded store (:mod:`graph_rec.explore.embedded`) given the same
graph and frames. Every id travels as a query parameter; labels and relationship types are built
from the graph's names by the exporter's checked, backtick-quoted mapping. Only knowledge-graph
content is explored: graph-rec's own records (``RECOMMENDED``, ``Explanation`` nodes and their
links, the metadata node) never appear as neighbours, on paths or in subgraphs, and neither does
another writer's data in the same database (nodes without a label of the stored graph, and, when
the metadata node lists the graph's relationship types, relationships of other types). Ids are
strings: a ``NodeRef`` whose id is not one is unknown, as in the embedded store (some servers
would match ``7`` to ``"7"``).

The queries are common-core Neo4j 5 Cypher; orderings are applied in Python (label and
relationship-type spellings do not sort like the snake_case names the contract orders by).
Paths are searched one hop count at a time, meeting in the middle (:func:`path_query`), and the
search stops at the first hop count that completes ``limit`` paths.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from graph_rec.errors import ConfigError, SchemaError, UnknownIdError
from graph_rec.explore.types import Edge, Neighbour, NodeRef, Path, Recommendation, Subgraph, sort_paths
from kg_builders.export.neo4j_db import (
    EXPLANATION_LABEL,
    FEATURE_PREFIX,
    HAS_EXPLANATION,
    META_ID,
    META_LABEL,
    RECOMMENDED,
    RESERVED_TYPES,
    Neo4jSettings,
    decode_meta,
    driver_errors,
    node_type_of,
    open_driver,
    quote,
    relationship_type,
)

logger = logging.getLogger(__name__)

DIRECTIONS = ("out", "in", "both")
#: node properties that are not attributes (written by write_neo4j for its own use)
NOT_ATTRIBUTES = ("id", "idx", "embedding")
#: the largest hop count a path query may ask for: 4-hop walks between popular items of
#: ml-latest-small already number in the millions (seconds per query); the embedded store prunes better
MAX_HOPS = 4


class Neo4jStore:
    """A :class:`~graph_rec.explore.store.KnowledgeStore` over a Neo4j database (Bolt).

    Args:
        settings: connection settings (the database that :func:`write_neo4j` wrote).
        user_type, item_type: node types of users and items (for recommendations and ``why``).

    Raises:
        ExportError: the server is not reachable or refuses the credentials (names the URI, never
            the password); every method raises it when the server fails later.

    Example:
        >>> store = Neo4jStore(Neo4jSettings(uri="bolt://127.0.0.1:17687", user="root",
        ...                                  password=pw, database="graph"))  # doctest: +SKIP
        >>> store.why("1", "296")  # doctest: +SKIP
    """

    def __init__(self, settings: Neo4jSettings, *, user_type: str = "user", item_type: str = "item") -> None:
        self.settings = settings
        self.user_type = user_type
        self.item_type = item_type
        self._driver = open_driver(settings, "connecting the knowledge store")
        try:
            self._load_schema()
        except BaseException:
            self._driver.close()
            raise

    def __repr__(self) -> str:
        return f"Neo4jStore({self.settings.uri}, database={self.settings.database!r})"

    def __enter__(self) -> Neo4jStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- schema
    def _load_schema(self) -> None:
        """Node types, attribute encodings and relationship types: from the metadata node, else the database."""
        rows = self._query(f"MATCH (m:{quote(META_LABEL)} {{id: $id}}) RETURN properties(m) AS p", id=META_ID)
        self._encodings: dict[str, dict[str, str]] = {}
        self._labels: dict[str, str] = {}  # label -> node type
        self._rel_types: frozenset[str] | None = None  # the graph's relationship types (None: not recorded)
        if rows:
            meta = decode_meta(rows[0]["p"])
            if meta.get("status") != "complete":
                logger.warning("the last write to %s did not complete: answers may be partial", self.settings.uri)
            for spec in meta["schema"]["nodes"]:
                self._labels[spec["label"]] = spec["type"]
                self._encodings[spec["type"]] = dict(spec["attrs"])
            self._rel_types = frozenset(spec["type"] for spec in meta["schema"]["edges"])
        else:
            for r in self._query("CALL db.labels() YIELD label RETURN label"):
                label = r["label"]
                try:
                    self._labels[label] = node_type_of(label)
                except SchemaError:
                    continue
            for label in (META_LABEL, EXPLANATION_LABEL):
                self._labels.pop(label, None)
            if not self._labels:
                raise SchemaError(
                    f"{self.settings.uri} (database {self.settings.database!r}) holds no graph written by "
                    "graph-rec (no metadata node and no node labels of a graph): write one with "
                    "`graph-rec neo4j write` first"
                )
        self._types = {t: lb for lb, t in self._labels.items()}

    def _label(self, ref: NodeRef) -> str | None:
        """The label of ``ref``'s node type; None when no node of the graph can be ``ref`` (an id not a string)."""
        return self._types.get(ref.type) if isinstance(ref.id, str) else None

    def _ref(self, labels: Iterable[str], node_id: str) -> NodeRef | None:
        """The graph node with these labels and id; None for another writer's node (no label of the graph)."""
        for label in labels:
            if label in self._labels:
                return NodeRef(self._labels[label], str(node_id))
        return None

    def _ours(self, rel_type: str) -> bool:
        """Whether a relationship type is one of the stored graph's (any but graph-rec's own when not recorded)."""
        return rel_type not in RESERVED_TYPES if self._rel_types is None else rel_type in self._rel_types

    # ----------------------------------------------------------------- queries
    def _query(self, query: str, **params: Any) -> list[Any]:
        with driver_errors(self.settings, "querying"), self._driver.session(database=self.settings.database) as s:
            return s.execute_read(lambda tx: list(tx.run(query, params)))

    def _match(self, ref: NodeRef) -> str:
        """``(n:Label {id: $id})`` for a node that exists (UnknownIdError otherwise)."""
        if not isinstance(ref, NodeRef):
            raise ConfigError(f"expected a NodeRef, got {type(ref).__name__} {ref!r}")
        label = self._label(ref)
        if label is None or not self._query(f"MATCH (n:{quote(label)} {{id: $id}}) RETURN 1 AS ok", id=ref.id):
            raise UnknownIdError(ref.type, [ref.id])
        return quote(label)

    def _known(self, refs: Sequence[NodeRef]) -> None:
        """Every ref exists (else UnknownIdError listing the unknown ids of the first type that has some)."""
        for ref in refs:
            if not isinstance(ref, NodeRef):
                raise ConfigError(f"expected NodeRefs, got {type(ref).__name__} {ref!r}")
        missing: dict[str, list[str]] = {}
        by_type: dict[str, list[str]] = {}
        for ref in refs:
            by_type.setdefault(ref.type, []).append(ref.id)
        for t, ids in by_type.items():
            label = self._types.get(t)
            if label is None:
                missing[t] = list(dict.fromkeys(ids))
                continue
            strings = list({i for i in ids if isinstance(i, str)})  # an id that is no string is unknown
            found = {
                r["id"]
                for r in self._query(
                    f"UNWIND $ids AS i MATCH (n:{quote(label)}) WHERE n.id = i RETURN n.id AS id", ids=strings
                )
            }
            gone = [i for i in dict.fromkeys(ids) if i not in found]
            if gone:
                missing[t] = gone
        if missing:
            kind = next(r.type for r in refs if r.type in missing)
            raise UnknownIdError(kind, missing[kind])

    # ----------------------------------------------------------------- the protocol
    def node(self, ref: NodeRef) -> dict[str, Any]:
        """The node's stored attributes with ``type`` and ``id`` (no feature vectors, no embedding, no ``None``).

        Raises:
            UnknownIdError: ``ref`` is not a node of the stored graph.
        """
        if not isinstance(ref, NodeRef):
            raise ConfigError(f"expected a NodeRef, got {type(ref).__name__} {ref!r}")
        label = self._label(ref)
        rows = (
            self._query(f"MATCH (n:{quote(label)} {{id: $id}}) RETURN properties(n) AS p", id=ref.id) if label else []
        )
        if not rows:
            raise UnknownIdError(ref.type, [ref.id])
        encodings = self._encodings.get(ref.type, {})
        out: dict[str, Any] = {"type": ref.type, "id": ref.id}
        for k, v in rows[0]["p"].items():
            if k in NOT_ATTRIBUTES or k.startswith(FEATURE_PREFIX) or v is None:
                continue
            out[k] = json.loads(v) if encodings.get(k) == "json" else v
        return out

    def neighbours(
        self,
        ref: NodeRef,
        *,
        relation: str | None = None,
        direction: Literal["out", "in", "both"] = "both",
        limit: int | None = None,
    ) -> list[Neighbour]:
        """Edges at ``ref``, by ``(relation, direction, node.type, node.id)`` (then weight), at most ``limit``.

        A self-loop is both an ``"out"`` and an ``"in"`` edge, so ``"both"`` lists it twice.

        Raises:
            UnknownIdError: ``ref`` is not a node of the stored graph.
            ConfigError: ``direction`` is not ``out``, ``in`` or ``both``; ``limit`` is not a
                positive integer (or ``None``).
        """
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if limit is not None:
            _check_positive("limit", limit)
        label = self._match(ref)
        if relation is None:
            rel = "[r]"
        else:
            try:
                rel = f"[r:{quote(relationship_type(relation))}]"
            except SchemaError:
                return []  # no such relation can be stored
        out: list[Neighbour] = []
        for side, pattern in (("out", f"-{rel}->"), ("in", f"<-{rel}-")):
            if direction not in (side, "both"):
                continue
            rows = self._query(
                f"MATCH (n:{label} {{id: $id}}){pattern}(m) WHERE NOT type(r) IN $reserved "
                "RETURN type(r) AS rel, labels(m) AS labels, m.id AS id, r.weight AS w",
                id=ref.id,
                reserved=sorted(RESERVED_TYPES),
            )
            for r in rows:
                node = self._ref(r["labels"], r["id"])
                if node is None or not self._ours(r["rel"]):
                    continue  # graph-rec's own records, another writer's data
                out.append(Neighbour(node, r["rel"].lower(), side, float(r["w"])))  # type: ignore[arg-type]
        out.sort(key=lambda n: (n.relation, n.direction, n.node.type, n.node.id, n.weight))
        return out if limit is None else out[:limit]

    def subgraph(self, refs: Sequence[NodeRef], *, hops: int = 1, limit: int = 10_000) -> Subgraph:
        """Nodes within ``hops`` of any of ``refs`` (edges followed either way) and every edge among them.

        Nodes are sorted by ``(type, id)``, edges by ``(source, relation, target, weight)``; one
        Cypher query per hop and node type.

        Raises:
            UnknownIdError: a ref is not a node of the stored graph.
            ConfigError: more than ``limit`` nodes (ask for fewer hops); ``hops`` or ``limit`` is
                not a positive integer.
        """
        _check_positive("hops", hops)
        _check_positive("limit", limit)
        refs = list(refs)
        self._known(refs)
        start = list(dict.fromkeys(refs))
        found = set(start)
        too_many = ConfigError(
            f"the subgraph within {hops} hop(s) of {len(start)} node(s) has more than {limit} nodes; "
            "ask for fewer hops or raise limit"
        )
        if len(found) > limit:
            raise too_many
        frontier = start
        reserved = sorted(RESERVED_TYPES)
        for _ in range(hops):
            nxt: list[NodeRef] = []
            for t, ids in _by_type(frontier).items():
                rows = self._query(
                    f"UNWIND $ids AS i MATCH (n:{quote(self._types[t])}) WHERE n.id = i "
                    "MATCH (n)-[r]-(m) WHERE NOT type(r) IN $reserved "
                    "RETURN DISTINCT type(r) AS rel, labels(m) AS labels, m.id AS id",
                    ids=ids,
                    reserved=reserved,
                )
                for r in rows:
                    node = self._ref(r["labels"], r["id"])
                    if node is not None and self._ours(r["rel"]) and node not in found:
                        found.add(node)
                        nxt.append(node)
                        if len(found) > limit:
                            raise too_many
            if not nxt:
                break
            frontier = nxt
        edges: list[Edge] = []
        for t, ids in _by_type(found).items():
            rows = self._query(
                f"UNWIND $ids AS i MATCH (n:{quote(self._types[t])}) WHERE n.id = i "
                "MATCH (n)-[r]->(m) WHERE NOT type(r) IN $reserved "
                "RETURN n.id AS src, type(r) AS rel, labels(m) AS labels, "
                "m.id AS dst, r.weight AS w",
                ids=ids,
                reserved=reserved,
            )
            for r in rows:
                target = self._ref(r["labels"], r["dst"])
                if target in found and self._ours(r["rel"]):
                    edges.append(Edge(NodeRef(t, str(r["src"])), r["rel"].lower(), target, float(r["w"])))
        edges.sort(key=lambda e: (e.source, e.relation, e.target, e.weight))
        return Subgraph(nodes=tuple(sorted(found)), edges=tuple(edges))

    def paths(self, source: NodeRef, target: NodeRef, *, max_hops: int = 3, limit: int = 10) -> list[Path]:
        """Simple paths ``source`` to ``target`` of at most ``max_hops`` edges (either way), the first ``limit``.

        The order is :meth:`Path.sort_key` (hops, node sequence, relations, directions). Parallel
        edges of different relations or directions give distinct paths (parallel edges of the same
        relation and direction give one); ``source == target`` gives ``[]``.

        Raises:
            UnknownIdError: ``source`` or ``target`` is not a node of the stored graph.
            ConfigError: ``max_hops`` or ``limit`` is not a positive integer, or ``max_hops`` is
                above :data:`MAX_HOPS`.
        """
        _check_positive("max_hops", max_hops)
        _check_positive("limit", limit)
        if max_hops > MAX_HOPS:
            raise ConfigError(f"max_hops must be at most {MAX_HOPS} on Neo4j, got {max_hops}")
        s_label = self._match(source)
        t_label = self._match(target)
        if source == target:
            return []
        found: list[Path] = []
        for hops in range(1, max_hops + 1):
            found += self._paths_of_length(s_label, source.id, t_label, target.id, hops)
            if len(found) >= limit:
                break
        return found[:limit]

    def _paths_of_length(self, s_label: str, s_id: str, t_label: str, t_id: str, hops: int) -> list[Path]:
        rows = self._query(path_query(s_label, t_label, hops), s=s_id, t=t_id, reserved=sorted(RESERVED_TYPES))
        out = set()
        for r in rows:
            nodes = tuple(self._ref(labels, node_id) for labels, node_id in r["nodes"])
            if None in nodes or not all(self._ours(t) for t in r["rels"]):
                continue  # through another writer's data
            if len(set(nodes)) != len(nodes):
                continue  # not simple
            out.add(Path(nodes=nodes, relations=tuple(x.lower() for x in r["rels"]), forward=tuple(r["fwd"])))
        return sort_paths(list(out))

    def recommendations(self, user_id: str, *, k: int = 10) -> list[Recommendation]:
        """The stored top-``k`` recommendations of a user, by rank (empty if none were stored).

        Raises:
            UnknownIdError: ``user_id`` is not a user of the stored graph.
            ConfigError: ``k`` is not a positive integer.
        """
        _check_positive("k", k)
        u = self._match(NodeRef(self.user_type, user_id))
        item = self._types.get(self.item_type)
        if item is None:
            return []
        rows = self._query(
            f"MATCH (u:{u} {{id: $u}})-[r:{RECOMMENDED}]->(i:{quote(item)}) "
            "RETURN i.id AS item, r.score AS score, r.rank AS rank, r.model AS model",
            u=user_id,
        )
        recs = [
            Recommendation(user_id, str(r["item"]), float(r["score"]), int(r["rank"]), str(r["model"] or ""))
            for r in rows
        ]
        recs.sort(key=lambda r: (r.rank, r.item_id, r.model))
        return recs[:k]

    def why(self, user_id: str, item_id: str, *, limit: int = 5) -> list[Path]:
        """The stored explanation paths of the pair by contribution; else graph paths (3 hops at most).

        Raises:
            UnknownIdError: the user or the item is not a node of the stored graph.
            ConfigError: ``limit`` is not a positive integer.
        """
        _check_positive("limit", limit)
        user, item = NodeRef(self.user_type, user_id), NodeRef(self.item_type, item_id)
        u = self._match(user)
        self._match(item)
        rows = self._query(
            f"MATCH (u:{u} {{id: $u}})-[:{HAS_EXPLANATION}]->(e:{quote(EXPLANATION_LABEL)}) "
            "WHERE e.item_id = $i RETURN e.path AS path, e.contribution AS contribution",
            u=user_id,
            i=item_id,
        )
        if rows:
            stored = []
            for r in rows:
                p = Path.from_dict(json.loads(r["path"]))
                c = r["contribution"]
                stored.append(Path(p.nodes, p.relations, p.forward, None if c is None else float(c)))
            return sort_paths(stored, by_contribution=True)[:limit]
        return self.paths(user, item, max_hops=3, limit=limit)

    def close(self) -> None:
        """Close the driver (its connections); the store answers no more questions."""
        self._driver.close()


def path_query(s_label: str, t_label: str, hops: int) -> str:
    """Cypher for the walks of exactly ``hops`` edges between ``(s {id: $s})`` and ``(t {id: $t})``.

    Meet in the middle: ``hops // 2`` edges out of ``s``, ``(hops - 1) // 2`` out of ``t``, then one
    edge between the two bound ends, so the server expands both small neighbourhoods instead of
    every walk from ``s`` (a variable-length ``(s)-[*3]-(t)`` took 18 times longer on
    ml-latest-small with ArcadeDB). Returns ``nodes`` (``[labels, id]`` along the walk), ``rels``
    (relationship types) and ``fwd`` (whether each edge is stored in walk order); walks that repeat
    a node are left to the caller. Relationship types in ``$reserved`` are never followed.

    Args:
        s_label, t_label: backtick-quoted labels (from :func:`~kg_builders.export.neo4j_db.quote`).
        hops: the number of edges, at least 1.
    """
    hops = int(hops)
    if hops < 1:
        raise ConfigError(f"hops must be at least 1, got {hops}")
    left, right = hops // 2, (hops - 1) // 2
    xs = ["s"] + [f"x{k}" for k in range(1, left + 1)]  # s, x1 .. x_left
    ys = ["t"] + [f"y{k}" for k in range(1, right + 1)]  # t, y1 .. y_right
    rs = [f"r{k}" for k in range(1, left + 1)]  # r_k joins x_{k-1} and x_k
    qs = [f"q{k}" for k in range(1, right + 1)]  # q_k joins y_{k-1} and y_k
    bound = ["s", "t"]
    parts = [f"MATCH (s:{s_label} {{id: $s}}), (t:{t_label} {{id: $t}})"]
    for names, rels in ((xs, rs), (ys, qs)):
        if rels:
            walk = f"({names[0]})" + "".join(f"-[{r}]-({n})" for r, n in zip(rels, names[1:], strict=True))
            parts.append(f"MATCH {walk} WHERE none(e IN [{', '.join(rels)}] WHERE type(e) IN $reserved)")
            bound += rels + names[1:]
            parts.append("WITH " + ", ".join(bound))
    parts.append(f"MATCH ({xs[-1]})-[m]-({ys[-1]}) WHERE NOT type(m) IN $reserved")
    nodes = xs + list(reversed(ys))
    edges = rs + ["m"] + list(reversed(qs))
    # an edge is forward when it is stored from the node before it in walk order
    fwd = [f"startNode({e}) = {a}" for e, a in zip(edges, nodes, strict=False)]
    parts.append(
        f"RETURN [n IN [{', '.join(nodes)}] | [labels(n), n.id]] AS nodes, "
        f"[e IN [{', '.join(edges)}] | type(e)] AS rels, [{', '.join(fwd)}] AS fwd"
    )
    return " ".join(parts)


def _by_type(refs: Iterable[NodeRef]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in refs:
        out.setdefault(r.type, []).append(r.id)
    return out


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


__all__ = ["Neo4jStore"]
