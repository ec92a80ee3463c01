"""A :class:`~kg_builders.graph.KnowledgeGraph` as a networkx ``MultiDiGraph``, and back.

Layout of the networkx graph made by :func:`to_networkx`:

- nodes are keyed ``(node_type, node_id)``; their attributes are ``node_type``, ``node_id``,
  ``index`` (position within the type), every node attribute of the graph that is not ``None``
  (tuples become lists), ``feature:<slot>`` (the feature row as a list) and
  ``feature_mask:<slot>`` (bool);
- each edge of type ``(src, rel, dst)`` is ``(src, src_id) -> (dst, dst_id)`` with key ``rel``
  (``rel#1``, ``rel#2``, ... for further parallel edges of the same relation between the same
  pair), and attributes ``relation``, ``weight``, ``index`` (position within its edge type) and
  the edge attributes as Python scalars;
- graph attributes: ``recipe``, ``report`` (dict), ``node_types`` and ``edge_types`` (in graph
  order), ``node_attrs`` (attribute names per type), ``edge_dtypes`` (weight and attribute dtypes
  and shapes per edge key), ``feature_dtypes``, ``feature_dims`` and ``feature_mask_slots``.

:func:`from_networkx` reads such a graph back exactly (``equals(kg, check_report=True)``).
"""

from __future__ import annotations

import copy
import logging
import reprlib
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from kg_builders._optional import require
from kg_builders.errors import SchemaError
from kg_builders.fragment import EdgeType, plain
from kg_builders.graph import (
    BuildReport,
    EdgeStore,
    KnowledgeGraph,
    array_from_spec,
    dtype_from_name,
    dtype_name,
    edge_key,
)

if TYPE_CHECKING:
    import networkx as nx

logger = logging.getLogger(__name__)

FEATURE_PREFIX = "feature:"
MASK_PREFIX = "feature_mask:"
NODE_KEYS = ("node_type", "node_id", "index")
EDGE_KEYS = ("relation", "weight", "index")


def to_networkx(kg: KnowledgeGraph) -> nx.MultiDiGraph:
    """The graph as a ``networkx.MultiDiGraph`` (layout in the module docstring).

    Values are copies: changing the networkx graph never changes ``kg``. Attributes are handed
    to networkx as dicts, so an attribute may have any name that is not reserved (``key``,
    ``node_for_adding`` too).

    Raises:
        SchemaError: a node attribute is named like a reserved key (``node_type``, ``node_id``,
            ``index``, ``feature:*``, ``feature_mask:*``) or an edge attribute is named
            ``relation``, ``weight`` or ``index``.
        MissingDependencyError: networkx is not installed.
    """
    nx = require("networkx")
    g = nx.MultiDiGraph()
    g.graph.update(
        recipe=copy.deepcopy(kg.recipe),
        report=kg.report.to_dict(),
        node_types=kg.node_types,
        edge_types=[tuple(et) for et in kg.edge_types],
        node_attrs={t: list(a) for t, a in kg.node_attrs.items()},
        edge_dtypes={edge_key(et): e.dtype_spec() for et, e in kg.edges.items()},
        feature_dtypes={t: {n: dtype_name(a.dtype) for n, a in s.items()} for t, s in kg.features.items()},
        feature_dims={t: {n: int(a.shape[1]) for n, a in s.items()} for t, s in kg.features.items()},
        feature_mask_slots={t: list(s) for t, s in kg.feature_masks.items()},
    )
    nodes: list[tuple[tuple[str, str], dict[str, Any]]] = []  # data as dicts, never keyword arguments:
    edges: list[tuple[tuple[str, str], tuple[str, str], str, dict[str, Any]]] = []  # ('key' is any name)
    for t in kg.node_types:
        attrs = kg.node_attrs.get(t, {})
        for name in attrs:
            if name in NODE_KEYS or name.startswith((FEATURE_PREFIX, MASK_PREFIX)):
                raise SchemaError(f"node attribute {t}.{name} clashes with a reserved networkx node key")
        feats = kg.features.get(t, {})
        masks = kg.feature_masks.get(t, {})
        for i, node_id in enumerate(kg.node_ids[t]):
            data: dict[str, Any] = {"node_type": t, "node_id": node_id, "index": i}
            for name, values in attrs.items():
                if values[i] is not None:
                    data[name] = plain(values[i])
            for slot, arr in feats.items():
                data[FEATURE_PREFIX + slot] = arr[i].tolist()
            for slot, arr in masks.items():
                data[MASK_PREFIX + slot] = bool(arr[i])
            nodes.append(((t, node_id), data))
    for et, e in kg.edges.items():
        s, r, d = et
        for name in e.attrs:
            if name in EDGE_KEYS:
                raise SchemaError(f"edge attribute {name!r} of {et} clashes with a reserved networkx edge key")
        src_ids, dst_ids = kg.node_ids[s], kg.node_ids[d]
        weights = np.asarray(e.edge_weight).tolist()
        attrs = {name: _values(v) for name, v in e.attrs.items()}
        seen: Counter[tuple[int, int]] = Counter()
        for i, (a, b) in enumerate(np.asarray(e.edge_index).T.tolist()):
            n = seen[(a, b)]
            seen[(a, b)] += 1
            data = {"relation": r, "weight": weights[i], "index": i}
            for name, values in attrs.items():
                data[name] = values[i]
            edges.append(((s, src_ids[a]), (d, dst_ids[b]), r if n == 0 else f"{r}#{n}", data))
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    logger.debug("to_networkx: %d nodes, %d edges", g.number_of_nodes(), g.number_of_edges())
    return g


def from_networkx(g: nx.MultiDiGraph) -> KnowledgeGraph:
    """Read back a graph made by :func:`to_networkx`.

    Node order per type follows the ``index`` node attribute; edges are regrouped per edge type
    ``(node_type of source, relation, node_type of target)`` and ordered by their ``index``
    attribute when every edge has one. Dtypes come from the graph attributes; where those are
    absent (a graph built by hand with only ``node_types`` and ``edge_types``), node attributes,
    features and masks are taken from the node keys, edge attributes from the edge keys, and
    dtypes are inferred by numpy (weights float32).

    Raises:
        SchemaError: the graph lacks ``node_types`` / ``edge_types`` or a graph attribute does
            not have the layout :func:`to_networkx` writes (``edge_types`` of other than three
            names, an unknown dtype, a ``report`` that is not a :class:`BuildReport`), a node
            lacks ``node_type``, ``node_id`` or ``index``, an index (of a node or an edge) is not
            an integer, indices of a type are not ``0 .. n-1``, a feature row has the wrong
            length, a weight is not a number, a weight, edge attribute, feature or mask value does
            not fit its dtype (checked by :func:`~kg_builders.graph.array_from_spec`, never cast),
            or an edge has a type not listed in ``edge_types``. The message names the node, edge
            or graph attribute.
    """
    missing = [k for k in ("node_types", "edge_types") if k not in g.graph]
    if missing:
        raise SchemaError(f"networkx graph lacks graph attribute(s) {missing}: not made by to_networkx")
    meta = g.graph
    node_types, raw_edge_types = meta["node_types"], meta["edge_types"]
    if not isinstance(node_types, (list, tuple)) or not all(isinstance(t, str) for t in node_types):
        raise SchemaError(f"graph attribute node_types is {reprlib.repr(node_types)}, not a list of node type names")
    if not isinstance(raw_edge_types, (list, tuple)) or not all(
        isinstance(et, (list, tuple)) and len(et) == 3 for et in raw_edge_types
    ):
        raise SchemaError(
            f"graph attribute edge_types is {reprlib.repr(raw_edge_types)}, not a list of (source, relation, target)"
        )
    for name in ("node_attrs", "edge_dtypes", "feature_dtypes", "feature_dims", "feature_mask_slots"):
        if not isinstance(meta.get(name, {}), dict):
            raise SchemaError(f"graph attribute {name} is {reprlib.repr(meta[name])}, not a dict")
    node_types = list(node_types)
    edge_types: list[EdgeType] = [(str(s), str(r), str(d)) for s, r, d in raw_edge_types]
    rows: dict[str, list[tuple[int, str, dict[str, Any]]]] = {t: [] for t in node_types}
    for key, data in g.nodes(data=True):
        lacking = [k for k in NODE_KEYS if k not in data]
        if lacking:
            raise SchemaError(f"node {key!r} lacks attribute(s) {lacking}")
        t = data["node_type"]
        if t not in rows:
            raise SchemaError(f"node {key!r} has node type {t!r}, not in node_types {node_types}")
        rows[t].append((_index(data["index"], f"node {key!r}"), str(data["node_id"]), data))
    node_ids: dict[str, list[str]] = {}
    for t in node_types:
        rows[t].sort(key=lambda row: row[0])
        if [row[0] for row in rows[t]] != list(range(len(rows[t]))):
            raise SchemaError(f"indices of {t!r} nodes are not 0 .. {len(rows[t]) - 1}")
        node_ids[t] = [row[1] for row in rows[t]]

    attr_names = meta.get("node_attrs")
    if attr_names is None:
        inferred = {t: _undeclared(d for _, _, d in rows[t]) for t in node_types}
        attr_names = {t: names for t, names in inferred.items() if names}
    node_attrs = {
        t: {name: [copy.deepcopy(d.get(name)) for _, _, d in rows[t]] for name in names}
        for t, names in attr_names.items()
    }
    features: dict[str, dict[str, np.ndarray]] = {}
    masks: dict[str, dict[str, np.ndarray]] = {}
    dtypes, dims = meta.get("feature_dtypes"), meta.get("feature_dims", {})
    mask_slots = meta.get("feature_mask_slots")
    for t in node_types:
        slots = dtypes.get(t, {}) if dtypes is not None else _prefixed(rows[t], FEATURE_PREFIX)
        for slot in slots:
            key = FEATURE_PREFIX + slot
            values = _column(rows[t], key, t)
            dim = dims.get(t, {}).get(slot)
            for (_, node_id, _), row in zip(rows[t], values, strict=True):
                if not isinstance(row, (list, tuple, np.ndarray)) or (dim is not None and len(row) != dim):
                    length = f"{dim} " if dim is not None else ""
                    raise SchemaError(
                        f"node ({t!r}, {node_id!r}) has {key!r} {reprlib.repr(row)}, not a list of {length}numbers"
                    )
            if dtypes is not None:
                dtype = dtype_from_name(slots[slot], f"graph attribute feature_dtypes[{t!r}][{slot!r}]")
                width = dim if dim is not None else (len(values[0]) if values else 0)
                arr = array_from_spec(values, dtype_name(dtype), [width], where=_node_key(rows[t], t, key))
            else:  # a graph built by hand: numpy infers the dtype
                try:
                    arr = np.asarray(values)
                    if dim is not None or not values:
                        arr = arr.reshape(len(values), dim or 0)
                except (TypeError, ValueError) as e:
                    raise SchemaError(
                        f"{key!r} of {t!r} nodes cannot be read as a [{len(values)}, dim] array: {e}"
                    ) from e
            features.setdefault(t, {})[slot] = arr
        for slot in mask_slots.get(t, []) if mask_slots is not None else _prefixed(rows[t], MASK_PREFIX):
            key = MASK_PREFIX + slot
            flags = _column(rows[t], key, t)
            masks.setdefault(t, {})[slot] = array_from_spec(flags, "bool", [], where=_node_key(rows[t], t, key))

    edges = _read_edges(g, edge_types, meta.get("edge_dtypes"))
    report = None
    if "report" in meta:
        try:
            report = BuildReport.from_dict(copy.deepcopy(meta["report"]))
        except TypeError as e:
            raise SchemaError(f"graph attribute report is not a build report: {e}") from e
    recipe = meta.get("recipe", [])
    if not isinstance(recipe, list):
        raise SchemaError(f"graph attribute recipe is {reprlib.repr(recipe)}, not a list")
    return KnowledgeGraph(
        node_ids,
        edges,
        node_attrs=node_attrs,
        features=features,
        feature_masks=masks,
        report=report,
        recipe=copy.deepcopy(recipe),
    )


def _read_edges(
    g: nx.MultiDiGraph, edge_types: list[EdgeType], dtypes: dict[str, Any] | None
) -> dict[EdgeType, EdgeStore]:
    cols: dict[EdgeType, list[tuple[int, int, float, dict[str, Any], int | None, tuple]]] = {
        et: [] for et in edge_types
    }
    nodes = g.nodes
    for u, v, key, data in g.edges(keys=True, data=True):
        what = f"edge {u!r} -> {v!r} (key {key!r})"
        if "relation" not in data or "weight" not in data:
            raise SchemaError(f"{what} lacks 'relation' or 'weight'")
        et = (nodes[u]["node_type"], str(data["relation"]), nodes[v]["node_type"])
        if et not in cols:
            raise SchemaError(f"edge {u!r} -> {v!r} has type {et}, not in edge_types")
        weight = data["weight"]
        if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, (int, float, np.integer, np.floating)):
            raise SchemaError(f"{what} has weight {reprlib.repr(weight)}, not a number")
        pos = data.get("index")
        pos = None if pos is None else _index(pos, what)
        cols[et].append((int(nodes[u]["index"]), int(nodes[v]["index"]), weight, data, pos, (u, v, key)))
    edges = {}
    for et, items in cols.items():
        if items and all(it[4] is not None for it in items):
            items.sort(key=lambda it: it[4])
        key = edge_key(et)
        spec = dtypes.get(key) if dtypes is not None else None
        if spec is not None and (not isinstance(spec, dict) or "weight" not in spec or "attrs" not in spec):
            raise SchemaError(
                f"graph attribute edge_dtypes[{key!r}] is {reprlib.repr(spec)}, without 'weight' and 'attrs'"
            )
        n = len(items)
        edge_index = np.asarray([[it[0] for it in items], [it[1] for it in items]], dtype=np.int64).reshape(2, n)
        wdtype = (
            dtype_from_name(spec["weight"], f"graph attribute edge_dtypes[{key!r}]['weight']") if spec else np.float32
        )

        def edge(i: int, items: list = items) -> str:
            u, v, k = items[i][5]
            return f"edge {u!r} -> {v!r} (key {k!r})"

        weight = array_from_spec(
            [it[2] for it in items], dtype_name(np.dtype(wdtype)), [], where=lambda i: f"weight of {edge(i)}"
        )
        if spec is not None:
            attr_specs = spec["attrs"]
        else:
            attr_specs = {name: None for name in _undeclared((it[3] for it in items), reserved=EDGE_KEYS)}
        attrs = {}
        for name, a in attr_specs.items():
            where = f"edge_dtypes[{key!r}]['attrs'][{name!r}]"
            if a is not None and (not isinstance(a, dict) or "dtype" not in a or "shape" not in a):
                raise SchemaError(f"graph attribute {where} is {reprlib.repr(a)}, without 'dtype' and 'shape'")
            values = [it[3].get(name) for it in items]
            if a is None or dtype_from_name(a["dtype"], f"graph attribute {where}['dtype']") == np.dtype(object):
                values = copy.deepcopy(values)  # objects are not shared with the networkx graph
            if a is not None:
                attrs[name] = array_from_spec(
                    values, a["dtype"], a["shape"], where=lambda i, name=name: f"attribute {name!r} of {edge(i)}"
                )
                continue
            try:  # a graph built by hand: numpy infers the dtype
                attrs[name] = np.asarray(values)
            except (TypeError, ValueError) as e:
                raise SchemaError(f"edge attribute {name!r} of {et} cannot be read as an array: {e}") from e
        edges[et] = EdgeStore(edge_index, weight, attrs)
    return edges


def _node_key(rows: list[tuple[int, str, dict[str, Any]]], node_type: str, key: str) -> Callable[[int], str]:
    """Row number -> ``"'<key>' of node ('<node_type>', '<id>')"``, for :func:`array_from_spec`."""
    return lambda i: f"{key!r} of node ({node_type!r}, {rows[i][1]!r})"


def _index(value: Any, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise SchemaError(f"{what} has index {value!r}, not an integer")
    return int(value)


def _values(arr: np.ndarray) -> list[Any]:
    """One Python value per row of ``arr`` (rows of 2-D arrays as lists)."""
    arr = np.asarray(arr)
    out = arr.tolist()
    return [plain(x) for x in out] if arr.dtype == np.dtype(object) else out


def _column(rows: list[tuple[int, str, dict[str, Any]]], key: str, node_type: str) -> list[Any]:
    out = []
    for _, node_id, data in rows:
        if key not in data:
            raise SchemaError(f"node ({node_type!r}, {node_id!r}) lacks {key!r}")
        out.append(data[key])
    return out


def _prefixed(rows: list[tuple[int, str, dict[str, Any]]], prefix: str) -> dict[str, None]:
    return {k[len(prefix) :]: None for _, _, d in rows for k in d if k.startswith(prefix)}


def _undeclared(datas: Any, reserved: tuple[str, ...] = NODE_KEYS) -> list[str]:
    names: dict[str, None] = {}
    for d in datas:
        for k in d:
            if k not in reserved and not k.startswith((FEATURE_PREFIX, MASK_PREFIX)):
                names[k] = None
    return list(names)
