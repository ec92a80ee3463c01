"""The KnowledgeGraph: typed nodes with id maps, typed weighted edges, features, report, recipe.

Nodes of each type have contiguous indices ``0 .. num_nodes(type) - 1`` in a fixed order; raw
string ids map to them through :meth:`KnowledgeGraph.index`. Edges are stored once, in their
forward direction ``(src_type, relation, dst_type)``; exporters add ``rev_<relation>`` reverses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import reprlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kg_builders._files import atomic_dir
from kg_builders.errors import CheckpointError, SchemaError, UnknownIdError
from kg_builders.fragment import Builder, Dropped, EdgeType, GraphFragment, check_name, plain_value, settings_of
from kg_builders.tables import Tables

logger = logging.getLogger(__name__)

#: the newest graph format this code reads; it writes 1 unless a graph has object edge attributes
#: (version 2: their values in nodes.json under "edge_values"), so older readers refuse those by version
FORMAT_VERSION = 2
GRAPH_FILE = "graph.json"
NODES_FILE = "nodes.json"
ARRAYS_FILE = "arrays.safetensors"


def edge_key(etype: EdgeType) -> str:
    """``("user", "interacted", "item")`` -> ``"user__interacted__item"`` (names are snake_case).

    Names may contain ``__``, so two edge types can share a key (``("a", "b__c", "d")`` and
    ``("a__b", "c", "d")``); a graph refuses that (:class:`SchemaError`), since files and exports
    are keyed by it.
    """
    return "__".join(etype)


@dataclass
class EdgeStore:
    """Edges of one type in indices: ``edge_index`` ``[2, E]`` int64, ``edge_weight`` ``[E]`` float32."""

    edge_index: np.ndarray
    edge_weight: np.ndarray
    attrs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def dtype_spec(self) -> dict[str, Any]:
        """The dtypes (and trailing shapes) of weight and attributes, so exporters can restore them exactly."""
        return {
            "weight": dtype_name(np.asarray(self.edge_weight).dtype),
            "attrs": {
                name: {"dtype": dtype_name(np.asarray(v).dtype), "shape": list(np.asarray(v).shape[1:])}
                for name, v in self.attrs.items()
            },
        }


def array_from_spec(
    values: Sequence[Any],
    dtype: str,
    shape: Sequence[int],
    *,
    where: Callable[[int], str] | None = None,
) -> np.ndarray:
    """Rebuild an array ``[len(values), *shape]`` of ``dtype`` from per-row values (inverse of ``dtype_spec``).

    Each value is checked against ``dtype``, never cast to fit it: a bool dtype takes bools only;
    an integer dtype takes integers (not bools) within its range; a float dtype takes integers and
    floats (not bools), and a finite value must stay finite in it (``1e300`` does not fit
    ``float32``). Numpy scalars count as the Python values they hold. An object dtype takes any
    values (one per row). :func:`~kg_builders.export.from_rdf` and
    :func:`~kg_builders.export.from_networkx` read weights, edge attributes and features through it.

    Args:
        values: one value per row; for a ``shape`` ``[d, ...]`` each row a nested list of that shape.
        dtype: a numpy dtype name, as :func:`dtype_name` writes it.
        shape: the trailing shape of each row.
        where: row number -> what that row is, for the error message (``"gr:weight of <iri>"``);
            ``"row <i>"`` by default.

    Raises:
        SchemaError: the first row that holds a value not fitting ``dtype``, or that is not a nested
            list of ``shape``, named by ``where``; a dtype other than bool, integer, float or object.
    """
    dt = np.dtype(dtype)
    name = where if where is not None else (lambda i: f"row {i}")
    n, shape = len(values), [int(d) for d in shape]
    if dt.kind == "O" and not shape:
        out = np.empty(n, dtype=object)
        out[:] = values
        return out
    if dt.kind not in "biuf":
        raise SchemaError(
            f"dtype {dtype} with rows of shape {shape} is not one a graph holds "
            "(bool, integer or float arrays, or one Python value per row)"
        )
    per_row = math.prod(shape)
    if shape:
        flat: list[Any] = []
        width = shape[0] if len(shape) == 1 else -1
        for i, row in enumerate(values):
            if type(row) is list and len(row) == width:  # the common case: a row of a feature or 2-D attribute
                flat.extend(row)
                continue
            leaves = _leaves(row, shape)
            if leaves is None:
                raise SchemaError(f"{name(i)} is {reprlib.repr(row)}, not a nested list of shape {shape}")
            flat.extend(leaves)
    else:
        flat = list(values)
    found = _misfit_in(flat, dt)
    if found is not None:
        _raise_at(found[0], flat, found[1], dt, values, per_row, name)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            arr = np.asarray(flat, dtype=dt)
    except (OverflowError, TypeError, ValueError) as e:  # not expected after _misfit_in
        raise SchemaError(f"{name(0)} .. {name(n - 1)} cannot be read as {dtype_name(dt)}: {e}") from e
    if dt.kind == "f" and dt.itemsize < 8 and arr.size:  # a finite value must stay finite
        with np.errstate(over="ignore", invalid="ignore"):
            grew = np.isfinite(np.asarray(flat, dtype=np.float64)) & ~np.isfinite(arr)
        if grew.any():
            j = int(np.argmax(grew))
            _raise_at(j, flat, f"a finite number {dtype_name(dt)} holds only as {arr[j]}", dt, values, per_row, name)
    return arr.reshape((n, *shape))


#: the Python types whose values fit a dtype of each kind without a closer look (ints: their range)
_PLAIN_TYPES = {"b": {bool}, "i": {int}, "u": {int}, "f": {int, float}}


def _leaves(row: Any, shape: list[int]) -> list[Any] | None:
    """The values of a nested list of ``shape``, flattened; ``None`` when ``row`` is not one."""
    if not shape:
        return [row]
    if isinstance(row, np.ndarray):
        row = row.tolist()
    if not isinstance(row, (list, tuple)) or len(row) != shape[0]:
        return None
    out: list[Any] = []
    for x in row:
        sub = _leaves(x, shape[1:])
        if sub is None:
            return None
        out.extend(sub)
    return out


def _misfit_in(flat: list[Any], dt: np.dtype) -> tuple[int, str] | None:
    """The position of the first value of ``flat`` that does not fit ``dt`` and why, or ``None``."""
    types = set(map(type, flat))
    quick = types <= _PLAIN_TYPES[dt.kind]
    if quick and dt.kind in "iu" and flat:
        info = np.iinfo(dt)
        quick = info.min <= min(flat) and max(flat) <= info.max
    if quick and dt.kind == "f" and int in types:  # an int beyond float64's range needs a closer look
        quick = all(abs(x) < 2**1000 for x in flat if type(x) is int)
    if quick:
        return None
    for j, x in enumerate(flat):
        reason = _misfit(x, dt)
        if reason is not None:
            return j, reason
    return None


def _misfit(x: Any, dt: np.dtype) -> str | None:
    """Why ``x`` does not fit ``dt`` (a bool, integer or float dtype), or ``None`` when it does."""
    if dt.kind == "b":
        return None if isinstance(x, (bool, np.bool_)) else "not a boolean"
    if isinstance(x, (bool, np.bool_)):
        return "a boolean, not a number"
    if dt.kind in "iu":
        if not isinstance(x, (int, np.integer)):
            return "not an integer"
        info = np.iinfo(dt)
        return None if info.min <= int(x) <= info.max else f"out of its range {info.min} .. {info.max}"
    if not isinstance(x, (int, float, np.integer, np.floating)):
        return "not a number"
    try:
        float(x)
    except OverflowError:
        return "an integer too large for a float"
    return None


def _raise_at(
    j: int, flat: list[Any], reason: str, dt: np.dtype, values: Sequence[Any], per_row: int, name: Callable[[int], str]
) -> None:
    """Raise the SchemaError for value ``flat[j]`` (of row ``j // per_row``)."""
    i, x = j // per_row, flat[j]
    verb = "is" if values[i] is x else "holds"
    shown = reprlib.repr(x.item() if isinstance(x, np.generic) else x)
    raise SchemaError(f"{name(i)} {verb} {shown}, which does not fit {dtype_name(dt)}: {reason}")


def dtype_name(dt: np.dtype) -> str:
    """``float32``, ``int64``, ``bool``, ``object``; numpy's type string where the name is ambiguous."""
    return dt.name if np.dtype(dt.name) == dt else dt.str


def dtype_from_name(name: Any, what: str) -> np.dtype:
    """The dtype a :func:`dtype_name` names; a SchemaError ``"{what} is ..., not a numpy dtype name"``."""
    dt = None
    if isinstance(name, str):
        with contextlib.suppress(TypeError, ValueError):
            dt = np.dtype(name)
    if dt is None:
        raise SchemaError(f"{what} is {name!r}, not a numpy dtype name")
    return dt


@dataclass
class BuildReport:
    """Counts per node and edge type, what was dropped and why, skipped input rows, timings."""

    source: str = "unknown"
    nodes: dict[str, int] = field(default_factory=dict)
    edges: dict[str, int] = field(default_factory=dict)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    input_rows: dict[str, int] = field(default_factory=dict)
    skipped_rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildReport:
        return cls(**d)

    def to_text(self) -> str:
        """A human summary, the way the CLI prints it."""
        lines = [f"graph from {self.source}  ({self.seconds:.2f} s)"]
        lines.append("  nodes:")
        lines += [f"    {t:<24} {n:>10,}" for t, n in self.nodes.items()]
        lines.append("  edges:")
        lines += [f"    {t:<48} {n:>10,}" for t, n in self.edges.items()]
        if self.input_rows:
            lines.append("  input rows: " + ", ".join(f"{k} {v:,}" for k, v in self.input_rows.items()))
        if self.dropped:
            lines.append("  dropped:")
            lines += [f"    {d['stage']}: {d['count']:,} {d['reason']}" for d in self.dropped]
        if self.skipped_rows:
            lines.append(f"  skipped bad input rows: {len(self.skipped_rows):,}")
            lines += [f"    {r['file']}:{r['line']} {r['field'] or ''} {r['reason']}" for r in self.skipped_rows[:5]]
        return "\n".join(lines)


class KnowledgeGraph:
    """A typed, weighted, heterogeneous graph with id maps, node text/attributes and feature slots.

    Attributes:
        node_ids: node type -> list of raw ids (position = index).
        node_attrs: node type -> attribute -> list of values (JSON-serialisable), one per node.
        edges: ``(src, rel, dst)`` -> :class:`EdgeStore`.
        features: node type -> slot name -> array ``[num_nodes, dim]`` (filled by feature builders).
        feature_masks: node type -> slot name -> bool array ``[num_nodes]`` (which rows are real).
        report: the :class:`BuildReport`.
        recipe: one dict per builder: its class name and settings, in build order.
    """

    def __init__(
        self,
        node_ids: dict[str, list[str]],
        edges: dict[EdgeType, EdgeStore],
        *,
        node_attrs: dict[str, dict[str, list[Any]]] | None = None,
        features: dict[str, dict[str, np.ndarray]] | None = None,
        feature_masks: dict[str, dict[str, np.ndarray]] | None = None,
        report: BuildReport | None = None,
        recipe: list[dict[str, Any]] | None = None,
    ) -> None:
        self.node_ids = {t: list(ids) for t, ids in node_ids.items()}
        self.node_attrs = {t: dict(a) for t, a in (node_attrs or {}).items()}
        self.edges = {k: _text_as_objects(e) for k, e in edges.items()}
        self.features = {t: dict(f) for t, f in (features or {}).items()}
        self.feature_masks = {t: dict(f) for t, f in (feature_masks or {}).items()}
        self.report = report or BuildReport()
        self.recipe = list(recipe or [])
        self._index: dict[str, pd.Index] = {}
        self._check()

    # ----------------------------------------------------------------- checks and lookups
    def _check(self) -> None:
        for t, ids in self.node_ids.items():
            check_name(t, "node type")
            not_str = [i for i in ids if not isinstance(i, str)]
            if not_str:
                raise SchemaError(f"node type {t!r} has ids that are not strings: {not_str[:5]}")
            idx = pd.Index(ids)
            if not idx.is_unique:
                raise SchemaError(f"node type {t!r} has duplicate ids: {idx[idx.duplicated()][:5].tolist()}")
            for k, v in self.node_attrs.get(t, {}).items():
                if len(v) != len(ids):
                    raise SchemaError(f"{t}.{k} has {len(v)} values for {len(ids)} nodes")
        for t in self.node_attrs:
            if t not in self.node_ids:
                raise SchemaError(f"attributes for unknown node type {t!r}")
        keys: dict[str, EdgeType] = {}
        for et in self.edges:
            other = keys.setdefault(edge_key(et), et)
            if other != et:
                raise SchemaError(
                    f"edge types {other} and {et} share the key {edge_key(et)!r} that files and exports use; "
                    "rename one (a '__' inside a node type or relation name makes this possible)"
                )
        for (s, r, d), e in self.edges.items():
            for t in (s, d):
                if t not in self.node_ids:
                    raise SchemaError(f"edge type {(s, r, d)} uses unknown node type {t!r}")
            check_name(r, "relation")
            ei = e.edge_index
            if ei.ndim != 2 or ei.shape[0] != 2 or ei.dtype != np.int64:
                raise SchemaError(f"{(s, r, d)}: edge_index must be int64 [2, E], got {ei.dtype} {ei.shape}")
            if e.edge_weight.shape != (ei.shape[1],) or e.edge_weight.dtype.kind != "f":
                raise SchemaError(
                    f"{(s, r, d)}: edge_weight must be float [E], got {e.edge_weight.dtype} {e.edge_weight.shape}"
                )
            if not _storable(e.edge_weight.dtype):
                raise SchemaError(f"{(s, r, d)}: edge_weight has dtype {e.edge_weight.dtype}, {_NOT_STORABLE}")
            for a, v in e.attrs.items():
                if np.shape(v)[:1] != (ei.shape[1],):
                    raise SchemaError(f"{(s, r, d)}: edge attribute {a!r} must have E rows, got shape {np.shape(v)}")
                kind = np.asarray(v).dtype.kind
                if kind not in "biufO" or (kind == "O" and np.ndim(v) != 1):
                    raise SchemaError(
                        f"{(s, r, d)}: edge attribute {a!r} has dtype {np.asarray(v).dtype} and shape {np.shape(v)}; "
                        "a graph holds bool, integer or float arrays, or one Python value per edge (object dtype, [E])"
                    )
                if kind != "O" and not _storable(np.asarray(v).dtype):
                    raise SchemaError(
                        f"{(s, r, d)}: edge attribute {a!r} has dtype {np.asarray(v).dtype}, {_NOT_STORABLE}"
                    )
            if ei.shape[1] and (ei.min() < 0 or ei[0].max() >= self.num_nodes(s) or ei[1].max() >= self.num_nodes(d)):
                raise SchemaError(f"{(s, r, d)}: edge_index out of range")
        for t, slots in self.features.items():
            for name, arr in slots.items():
                self._check_feature(t, name, arr, self.feature_masks.get(t, {}).get(name))
        for t, slots in self.feature_masks.items():
            if t not in self.node_ids:
                raise SchemaError(f"feature masks for unknown node type {t!r}")
            for name, mask in slots.items():
                if mask.dtype != np.bool_ or mask.shape != (self.num_nodes(t),):
                    raise SchemaError(
                        f"feature mask {t}.{name} must be bool [{self.num_nodes(t)}], got {mask.dtype} {list(mask.shape)}"
                    )

    def _check_feature(self, node_type: str, name: str, arr: np.ndarray, mask: np.ndarray | None) -> None:
        if node_type not in self.node_ids:
            raise SchemaError(f"features for unknown node type {node_type!r}")
        if arr.ndim != 2 or arr.shape[0] != self.num_nodes(node_type):
            raise SchemaError(
                f"features {node_type}.{name} must be [{self.num_nodes(node_type)}, dim], got {list(arr.shape)}"
            )
        if mask is not None and mask.shape != (arr.shape[0],):
            raise SchemaError(f"feature mask {node_type}.{name} must be [{arr.shape[0]}]")
        if not _storable(arr.dtype):
            raise SchemaError(f"features {node_type}.{name} have dtype {arr.dtype}, {_NOT_STORABLE}")

    @property
    def node_types(self) -> list[str]:
        return list(self.node_ids)

    @property
    def edge_types(self) -> list[EdgeType]:
        return list(self.edges)

    def num_nodes(self, node_type: str) -> int:
        return len(self.node_ids[node_type])

    def num_edges(self, etype: EdgeType | None = None) -> int:
        if etype is None:
            return sum(e.num_edges for e in self.edges.values())
        return self.edges[etype].num_edges

    def index(self, node_type: str, ids: str | Sequence[str]) -> int | np.ndarray:
        """Indices of raw ids of ``node_type``.

        Raises:
            UnknownIdError: listing every id that is not in the graph.
        """
        if node_type not in self.node_ids:
            raise SchemaError(f"unknown node type {node_type!r}; graph has {self.node_types}")
        if node_type not in self._index:
            self._index[node_type] = pd.Index(self.node_ids[node_type])
        single = isinstance(ids, str)
        pos = self._index[node_type].get_indexer([ids] if single else list(ids))
        if (pos < 0).any():
            arr = np.asarray([ids] if single else list(ids), dtype=object)
            raise UnknownIdError(node_type, [str(x) for x in arr[pos < 0]])
        return int(pos[0]) if single else pos.astype(np.int64)

    def schema(self) -> dict[str, Any]:
        """Node types with counts and attribute names, edge types with counts, feature slots with dims."""
        return {
            "nodes": {t: self.num_nodes(t) for t in self.node_types},
            "edges": {edge_key(k): v.num_edges for k, v in self.edges.items()},
            "node_attrs": {t: sorted(a) for t, a in self.node_attrs.items()},
            "features": {t: {n: int(a.shape[1]) for n, a in s.items()} for t, s in self.features.items()},
        }

    def set_features(self, node_type: str, name: str, values: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Fill the feature slot ``node_type.name`` with ``values`` ``[num_nodes, dim]`` (and a row mask)."""
        values = np.ascontiguousarray(values)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
        self._check_feature(node_type, name, values, mask)
        self.features.setdefault(node_type, {})[name] = values
        if mask is not None:
            self.feature_masks.setdefault(node_type, {})[name] = mask

    def equals(self, other: KnowledgeGraph, *, check_report: bool = False) -> bool:
        """Same node ids in the same order, same attributes, same edges (as multisets) and features."""
        return not self.diff(other, check_report=check_report)

    def diff(self, other: KnowledgeGraph, *, check_report: bool = False) -> list[str]:
        """What differs between two graphs (empty when identical); edges compared as sorted multisets."""
        out: list[str] = []
        if self.node_ids != other.node_ids:
            out.append("node ids differ")
        if _attrs_key(self.node_attrs) != _attrs_key(other.node_attrs):
            out.append("node attributes differ")
        if set(self.edges) != set(other.edges):
            out.append(f"edge types differ: {sorted(set(self.edges) ^ set(other.edges))}")
        for k in set(self.edges) & set(other.edges):
            a, b = _canonical(self.edges[k]), _canonical(other.edges[k])
            if set(a) != set(b) or any(not _same_array(a[n], b[n]) for n in a):
                out.append(f"edges {k} differ")
        for what, mine, theirs in (
            ("features", self.features, other.features),
            ("feature masks", self.feature_masks, other.feature_masks),
        ):
            for t in set(mine) | set(theirs):
                fa, fb = mine.get(t, {}), theirs.get(t, {})
                if set(fa) != set(fb) or any(not _same_array(fa[n], fb[n]) for n in fa):
                    out.append(f"{what} of {t} differ")
        if check_report and (self.report.to_dict() != other.report.to_dict() or self.recipe != other.recipe):
            out.append("report or recipe differ")
        return out

    def __repr__(self) -> str:
        nodes = ", ".join(f"{t}={self.num_nodes(t)}" for t in self.node_types)
        return f"KnowledgeGraph({nodes}; {len(self.edges)} edge types, {self.num_edges()} edges)"

    # ----------------------------------------------------------------- saving
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the graph to a directory (JSON + safetensors; no pickle), atomically.

        Arrays keep their dtype, a non-native byte order (``>i8``) included: safetensors stores
        little-endian, so ``graph.json`` records such dtypes under ``array_dtypes`` and :meth:`load`
        restores them.

        Raises:
            SchemaError: a node attribute or object edge attribute value JSON cannot hold, naming
                the node type, attribute and node id (or the attribute, index and type of the
                edge); nothing is written.
            ConfigError: ``path`` exists and ``overwrite`` is false.
        """
        from kg_builders import __version__
        from kg_builders._files import save_safetensors

        arrays: dict[str, np.ndarray] = {}
        values: dict[str, list[Any]] = {}  # object edge attributes, by "edge key/name"
        edge_meta = {}
        for k, e in self.edges.items():
            key = edge_key(k)
            arrays[f"edges/{key}/edge_index"] = np.ascontiguousarray(e.edge_index)
            arrays[f"edges/{key}/edge_weight"] = np.ascontiguousarray(e.edge_weight)
            for a, v in e.attrs.items():
                if np.asarray(v).dtype.kind == "O":  # one Python value per edge: JSON, like node attributes
                    values[f"{key}/{a}"] = _json_values(
                        v, lambda i, a=a, k=k: f"edge attribute {a!r} of edge {i} of {k}"
                    )
                else:
                    arrays[f"edges/{key}/attr/{a}"] = np.ascontiguousarray(v)
            edge_meta[key] = list(e.attrs)  # in order: load gives them back in this order
        for t, slots in self.features.items():
            for n, arr in slots.items():
                arrays[f"features/{t}/{n}"] = np.ascontiguousarray(arr)
        for t, slots in self.feature_masks.items():
            for n, arr in slots.items():
                arrays[f"masks/{t}/{n}"] = np.ascontiguousarray(arr)
        # safetensors stores little-endian: an array of another byte order ('>i8') gets its dtype back on load
        byte_orders = {name: dtype_name(arr.dtype) for name, arr in arrays.items() if not arr.dtype.isnative}
        meta = {
            "format": "graph-rec.knowledge-graph",
            "format_version": 2 if values else 1,
            "library_version": __version__,
            "node_types": self.node_types,
            "edge_types": [list(k) for k in self.edges],
            "edge_attrs": edge_meta,
            "recipe": self.recipe,
            "report": self.report.to_dict(),
            # what arrays.safetensors must hold, in order (safetensors gives its arrays back sorted
            # by name; the order of feature slots is the order of modalities a model concatenates)
            "counts": {
                "nodes": {t: self.num_nodes(t) for t in self.node_types},
                "edges": {edge_key(k): e.num_edges for k, e in self.edges.items()},
            },
            "feature_slots": {t: list(s) for t, s in self.features.items()},
            "feature_mask_slots": {t: list(s) for t, s in self.feature_masks.items()},
        } | ({"array_dtypes": byte_orders} if byte_orders else {})
        nodes = {"ids": self.node_ids, "attrs": self.node_attrs} | ({"edge_values": values} if values else {})
        try:
            nodes_text = json.dumps(nodes, default=_json_default)
        except (TypeError, ValueError):
            for t, attrs in self.node_attrs.items():  # name the node type, attribute and node
                ids = self.node_ids[t]
                for a, v in attrs.items():
                    _json_values(v, lambda i, t=t, a=a, ids=ids: f"node attribute {t}.{a} of node {ids[i]!r}")
            raise
        with atomic_dir(path, overwrite=overwrite) as tmp:
            (tmp / GRAPH_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
            (tmp / NODES_FILE).write_text(nodes_text)
            save_safetensors(arrays, tmp / ARRAYS_FILE)
        logger.info("saved %r to %s", self, path)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeGraph:
        """Read a directory written by :meth:`save`.

        Raises:
            CheckpointError: a missing, unreadable or inconsistent file or key (named), a foreign
                or newer format; an array ``graph.json`` does not list, or one it lists missing; node
                or edge counts that differ from those ``graph.json`` records.
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        p = Path(path)
        for f in (GRAPH_FILE, NODES_FILE, ARRAYS_FILE):
            if not (p / f).is_file():
                raise CheckpointError(f"{p} is not a saved graph: {f} is missing")
        graph_file, nodes_file = p / GRAPH_FILE, p / NODES_FILE
        meta, nodes = _json_object(graph_file), _json_object(nodes_file)
        if meta.get("format") != "graph-rec.knowledge-graph":
            raise CheckpointError(f"{graph_file} is not a graph-rec knowledge graph")
        version = _key(meta, "format_version", int, graph_file)
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{p} has graph format version {version}, newer than this graph-rec "
                f"understands ({FORMAT_VERSION}); upgrade graph-rec"
            )
        node_types = _key(meta, "node_types", list, graph_file)
        edge_types = _key(meta, "edge_types", list, graph_file)
        edge_attrs = _key(meta, "edge_attrs", dict, graph_file)
        recipe, report = _key(meta, "recipe", list, graph_file), _key(meta, "report", dict, graph_file)
        ids, node_attrs = _key(nodes, "ids", dict, nodes_file), _key(nodes, "attrs", dict, nodes_file)
        edge_values = _key(nodes, "edge_values", dict, nodes_file) if "edge_values" in nodes else {}
        for et in edge_types:
            if not (isinstance(et, list) and len(et) == 3 and all(isinstance(x, str) for x in et)):
                raise CheckpointError(f"{graph_file}: an entry of 'edge_types' is not [src, relation, dst]: {et!r}")
        if not all(isinstance(t, str) for t in node_types) or set(node_types) != set(ids):
            raise CheckpointError(
                f"{graph_file}: 'node_types' {node_types} differ from the node types of {nodes_file.name} {list(ids)}"
            )
        for t, v in ids.items():
            if not isinstance(v, list):
                raise CheckpointError(f"{nodes_file}: key 'ids' of node type {t!r} must be a JSON list")
        for t, v in node_attrs.items():
            if not isinstance(v, dict) or not all(isinstance(x, list) for x in v.values()):
                raise CheckpointError(f"{nodes_file}: key 'attrs' of node type {t!r} must map names to JSON lists")
        try:
            build_report = BuildReport.from_dict(report)
        except TypeError as exc:
            raise CheckpointError(f"{graph_file}: key 'report' does not fit BuildReport ({exc})") from exc
        try:
            arrays = load_file(str(p / ARRAYS_FILE))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{p / ARRAYS_FILE}: unreadable ({exc})") from exc
        byte_orders = _key(meta, "array_dtypes", dict, graph_file) if "array_dtypes" in meta else {}
        for name, recorded in byte_orders.items():
            if name not in arrays:
                raise CheckpointError(f"{graph_file}: key 'array_dtypes' names {name!r}, not an array of {ARRAYS_FILE}")
            try:
                dt = dtype_from_name(recorded, f"{graph_file}: the dtype in 'array_dtypes' of {name!r}")
            except SchemaError as exc:
                raise CheckpointError(str(exc)) from exc
            if dt.newbyteorder("=") != arrays[name].dtype.newbyteorder("="):
                raise CheckpointError(
                    f"{graph_file}: key 'array_dtypes' gives {name!r} dtype {recorded}, "
                    f"but {ARRAYS_FILE} holds it as {arrays[name].dtype}"
                )
            arrays[name] = arrays[name].astype(dt)
        edges = {}
        try:
            for et in edge_types:
                k = (et[0], et[1], et[2])
                key = edge_key(k)
                attrs = {}
                for a in edge_attrs.get(key, []):
                    if f"{key}/{a}" in edge_values:
                        attrs[a] = _object_array(edge_values[f"{key}/{a}"], nodes_file, f"edge_values/{key}/{a}")
                    else:
                        attrs[a] = arrays[f"edges/{key}/attr/{a}"]
                edges[k] = EdgeStore(arrays[f"edges/{key}/edge_index"], arrays[f"edges/{key}/edge_weight"], attrs)
        except KeyError as exc:
            raise CheckpointError(f"{p / ARRAYS_FILE} lacks array {exc}") from exc
        features = _slots(meta, "feature_slots", "features", arrays, graph_file)
        masks = _slots(meta, "feature_mask_slots", "masks", arrays, graph_file)
        used = {f"{kind}/{t}/{n}" for kind, d in (("features", features), ("masks", masks)) for t in d for n in d[t]}
        for et in edge_types:
            key = edge_key((et[0], et[1], et[2]))
            used |= {f"edges/{key}/edge_index", f"edges/{key}/edge_weight"}
            used |= {f"edges/{key}/attr/{a}" for a in edge_attrs.get(key, []) if f"{key}/{a}" not in edge_values}
        unlisted = sorted(set(arrays) - used)
        if unlisted:
            raise CheckpointError(
                f"{p / ARRAYS_FILE} holds arrays {unlisted[:5]} that {graph_file.name} does not list "
                "(an edge type or feature slot removed from it by hand?)"
            )
        if "counts" in meta:
            _check_counts(_key(meta, "counts", dict, graph_file), ids, edges, graph_file)
        try:
            return cls(
                {t: ids[t] for t in node_types},
                edges,
                node_attrs=node_attrs,
                features=features,
                feature_masks=masks,
                report=build_report,
                recipe=recipe,
            )
        except SchemaError as exc:
            raise CheckpointError(f"{p}: inconsistent graph ({exc})") from exc


def _slots(
    meta: dict[str, Any], key: str, kind: str, arrays: dict[str, np.ndarray], file: Path
) -> dict[str, dict[str, np.ndarray]]:
    """The ``features`` or ``masks`` arrays per node type and slot, in the order ``meta[key]``
    records; from the array names (sorted) for a graph saved before that key existed.

    Raises:
        CheckpointError: ``meta[key]`` is not a mapping of node types to lists of slot names, or
            names an array the file lacks.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    if key not in meta:
        for name, arr in arrays.items():
            k, _, rest = name.partition("/")
            if k == kind:
                t, _, n = rest.partition("/")
                out.setdefault(t, {})[n] = arr
        return out
    for t, names in _key(meta, key, dict, file).items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise CheckpointError(f"{file}: key {key!r} of node type {t!r} must be a JSON list of slot names")
        for n in names:
            name = f"{kind}/{t}/{n}"
            if name not in arrays:
                raise CheckpointError(f"{file.parent / ARRAYS_FILE} lacks array {name!r} that {file.name} lists")
            out.setdefault(t, {})[n] = arrays[name]
    return out


def _check_counts(counts: dict[str, Any], ids: dict[str, Any], edges: dict[EdgeType, EdgeStore], file: Path) -> None:
    """The node and edge counts ``save`` recorded match what the files hold; a CheckpointError naming
    the node or edge type that differs (ids removed from nodes.json by hand, a cut array)."""
    nodes, n_edges = counts.get("nodes"), counts.get("edges")
    if not isinstance(nodes, dict) or not isinstance(n_edges, dict):
        raise CheckpointError(f"{file}: key 'counts' must hold 'nodes' and 'edges' objects")
    for t, v in ids.items():
        if nodes.get(t) != len(v):
            raise CheckpointError(
                f"{file.parent / NODES_FILE}: node type {t!r} has {len(v)} ids; {file.name} records {nodes.get(t)!r}"
            )
    for et, e in edges.items():
        key, ei = edge_key(et), e.edge_index
        if ei.ndim == 2 and n_edges.get(key) != ei.shape[1]:  # another shape: the graph's own check names it
            raise CheckpointError(
                f"{file.parent / ARRAYS_FILE}: edge type {key!r} has {ei.shape[1]} edges; "
                f"{file.name} records {n_edges.get(key)!r}"
            )


def _json_object(file: Path) -> dict[str, Any]:
    """The JSON object in ``file``; a CheckpointError naming the file when it is not one."""
    try:
        obj = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{file}: corrupt JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{file}: corrupt JSON (an object expected, got {type(obj).__name__})")
    return obj


def _key(obj: dict[str, Any], key: str, kind: type, file: Path) -> Any:
    """``obj[key]``, which must be a ``kind`` (never a bool); a CheckpointError naming the file and key."""
    if key not in obj:
        raise CheckpointError(f"{file}: key {key!r} is missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CheckpointError(f"{file}: key {key!r} must be a JSON {kind.__name__}, got {value!r:.80}")
    return value


def _text_as_objects(e: EdgeStore) -> EdgeStore:
    """``e`` with numpy text attributes (``<U``, ``S``) as object arrays of ``str``, the form every
    export and file restores; ``e`` itself when it has none."""
    text = [a for a, v in e.attrs.items() if np.asarray(v).dtype.kind in "US"]
    if not text:
        return e
    attrs = dict(e.attrs)
    for a in text:
        v = np.asarray(attrs[a])
        out = np.empty(v.shape, dtype=object)
        strings = (
            v.astype(str) if v.dtype.kind == "U" else np.asarray([x.decode("utf-8", "replace") for x in v.ravel()])
        )
        out[...] = strings.reshape(v.shape).tolist()
        attrs[a] = out
    return EdgeStore(e.edge_index, e.edge_weight, attrs)


def first_unjsonable(
    values: Sequence[Any], default: Callable[[Any], Any] | None = None
) -> tuple[int, Exception] | None:
    """``(position, json's error)`` of the first of ``values`` JSON cannot hold, or None (one
    ``json.dumps`` of the whole list when all can, the common case)."""

    def error(x: Any) -> Exception | None:
        try:
            json.dumps(x, default=default)
        except (TypeError, ValueError) as exc:
            return exc
        return None

    if error(list(values)) is None:
        return None
    return next(((i, exc) for i, x in enumerate(values) if (exc := error(x)) is not None), None)


def _json_values(values: Sequence[Any], what: Callable[[int], str]) -> list[Any]:
    """``values`` as a list JSON can hold; a SchemaError ``"{what(i)} cannot be saved: ..."`` naming
    the first value it cannot."""
    out = list(values)
    bad = first_unjsonable(out, _json_default)
    if bad is not None:
        raise SchemaError(f"{what(bad[0])} cannot be saved: {bad[1]}") from bad[1]
    return out


#: what a saved graph (safetensors) holds in arrays
_NOT_STORABLE = "which a saved graph cannot hold (bool, integers, float16, float32 or float64)"


def _storable(dt: np.dtype) -> bool:
    """Whether safetensors stores arrays of ``dt``: bool, integers, float16/32/64 (not float128)."""
    return dt.kind in "biu" or (dt.kind == "f" and dt.itemsize in (2, 4, 8))


def _object_array(values: Any, file: Path, key: str) -> np.ndarray:
    if not isinstance(values, list):
        raise CheckpointError(f"{file}: key {key!r} must be a JSON list")
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _json_default(o: Any) -> Any:
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (np.ndarray, tuple)):
        return list(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _attrs_key(attrs: dict[str, dict[str, list[Any]]]) -> str | dict[str, dict[str, list[str]]]:
    """Node attributes in a form ``==`` compares: their JSON text; where JSON cannot hold a value
    (a set, an object), each value's :func:`_value_key`."""
    try:
        return json.dumps(attrs, sort_keys=True, default=_json_default)
    except (TypeError, ValueError):
        return {t: {n: [_value_key(x) for x in v] for n, v in a.items()} for t, a in attrs.items()}


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and values (NaN equals NaN)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "O" and a.ndim == 1:  # Python values: as JSON, so a tuple equals the list a file gives back
        return bool(np.array_equal(_sortable(a), _sortable(b)))
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _value_key(x: Any) -> str:
    """A Python value as text that compares like the value: its JSON, or its repr where JSON cannot
    hold it (a set, an object: a graph may hold them)."""
    try:
        return json.dumps(x, sort_keys=True, default=_json_default)
    except (TypeError, ValueError):
        return repr(x)


def _sortable(v: np.ndarray) -> np.ndarray:
    """A 1-D column np.lexsort can order: object values (None, mixed types) by their JSON text."""
    if v.dtype.kind != "O":
        return v
    return np.asarray([_value_key(x) for x in v.tolist()])


def _canonical(e: EdgeStore) -> dict[str, np.ndarray]:
    cols = [e.edge_weight] + [_sortable(e.attrs[k]) for k in sorted(e.attrs) if e.attrs[k].ndim == 1]
    order = np.lexsort(tuple(reversed([e.edge_index[0], e.edge_index[1], *cols])))
    out = {"edge_index": e.edge_index[:, order], "edge_weight": e.edge_weight[order]}
    out.update({f"attr/{k}": v[order] for k, v in e.attrs.items()})
    return out


# --------------------------------------------------------------------- building
def build_graph(tables: Tables, builders: Iterable[Builder], *, progress: bool = False) -> KnowledgeGraph:
    """Run ``builders`` on ``tables`` and merge their fragments into one graph.

    Node order per type is first appearance across fragments, in builder order. Attributes of
    a node given by several builders are merged (the first non-missing value wins). An edge
    whose endpoint no builder declared is dropped and counted in the report.

    Args:
        tables: the (training) tables.
        builders: run in order.
        progress: show a tqdm bar over the builders.
    """
    t0 = time.perf_counter()
    builders = list(builders)
    frags: list[tuple[Any, GraphFragment]] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(builders), desc="building graph", unit="builder")
    for b in builders:
        if bar is not None:
            bar.set_postfix_str(type(b).__name__)
        frag = b.build(tables)
        if bar is not None:
            bar.update()
        if not isinstance(frag, GraphFragment):
            raise SchemaError(f"{type(b).__name__}.build must return a GraphFragment")
        frags.append((b, frag))
    if bar is not None:
        bar.close()
    node_ids: dict[str, list[str]] = {}
    node_pos: dict[str, dict[str, int]] = {}
    attr_vals: dict[str, dict[str, dict[int, Any]]] = {}
    for _, frag in frags:
        for t, block in frag.nodes.items():
            ids, pos = node_ids.setdefault(t, []), node_pos.setdefault(t, {})
            new = [i for i in dict.fromkeys(str(x) for x in block.ids) if i not in pos]
            for i in new:
                pos[i] = len(ids)
                ids.append(i)
            tattrs = attr_vals.setdefault(t, {})
            for name, values in block.attrs.items():
                store = tattrs.setdefault(name, {})
                for i, v in zip(block.ids, values, strict=True):
                    j = pos[str(i)]
                    if j not in store and not _missing(v):
                        store[j] = v
    node_attrs = {
        t: {name: [store.get(j) for j in range(len(node_ids[t]))] for name, store in a.items()}
        for t, a in attr_vals.items()
    }
    indexes = {t: pd.Index(ids) for t, ids in node_ids.items()}
    dropped: list[Dropped] = []
    parts: dict[EdgeType, list[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]]] = {}
    owners: dict[EdgeType, list[str]] = {}  # the builder of each part
    for b, frag in frags:
        dropped.extend(frag.dropped)
        for et, block in frag.edges.items():
            s, r, d = et
            for t in (s, d):
                if t not in indexes:
                    raise SchemaError(f"{type(b).__name__} makes edges {et} but no builder declares {t!r} nodes")
            si = indexes[s].get_indexer(block.src.astype(str))
            di = indexes[d].get_indexer(block.dst.astype(str))
            ok = (si >= 0) & (di >= 0)
            if not ok.all():
                missing = np.concatenate([block.src[si < 0].astype(str), block.dst[di < 0].astype(str)])
                dropped.append(
                    Dropped(
                        type(b).__name__,
                        f"{et[1]} edges whose endpoint is not a node of the graph",
                        int((~ok).sum()),
                        sorted(set(missing.tolist()))[:5],
                    )
                )
            owners.setdefault(et, []).append(type(b).__name__)
            parts.setdefault(et, []).append(
                (
                    si[ok].astype(np.int64),
                    di[ok].astype(np.int64),
                    block.weight[ok],
                    {k: v[ok] for k, v in block.attrs.items()},
                )
            )
    edges = {}
    for et, ps in parts.items():
        keys = set(ps[0][3])
        if any(set(p[3]) != keys for p in ps):
            given = "; ".join(f"{o}: {sorted(p[3])}" for o, p in zip(owners[et], ps, strict=True))
            raise SchemaError(f"builders give edges {et} with different edge attributes ({given})")
        edges[et] = EdgeStore(
            np.stack([np.concatenate([p[0] for p in ps]), np.concatenate([p[1] for p in ps])]),
            np.concatenate([p[2] for p in ps]).astype(np.float32),
            {k: np.concatenate([p[3][k] for p in ps]) for k in keys},
        )
    report = BuildReport(
        source=tables.source,
        nodes={t: len(ids) for t, ids in node_ids.items()},
        edges={edge_key(k): v.num_edges for k, v in edges.items()},
        dropped=[d.to_dict() for d in dropped],
        input_rows=tables.counts(),
        skipped_rows=[i.to_dict() for i in tables.issues],
        seconds=round(time.perf_counter() - t0, 4),
    )
    recipe = []
    for b, frag in frags:
        entry = settings_of(b)
        if frag.info:
            entry["info"] = plain_value(frag.info)
        recipe.append(entry)
    kg = KnowledgeGraph(node_ids, edges, node_attrs=node_attrs, report=report, recipe=recipe)
    logger.info("built %r in %.2f s", kg, report.seconds)
    return kg


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    return v is pd.NA
