"""PyTorch Geometric views of a :class:`~kg_builders.graph.KnowledgeGraph`.

:func:`to_hetero_data` gives a :class:`torch_geometric.data.HeteroData` with one node store per node
type and one edge store per edge type (plus ``rev_<relation>`` reverses); :func:`to_homogeneous`
gives one flat graph over all nodes, with node-type offsets, for models that want a single
``edge_index``. Both return new objects: tensors are copies, the graph is never changed.
"""

from __future__ import annotations

import bisect
import logging
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kg_builders._optional import require
from kg_builders.errors import ConfigError, SchemaError
from kg_builders.fragment import EdgeType
from kg_builders.graph import KnowledgeGraph

if TYPE_CHECKING:
    import torch
    from torch_geometric.data import HeteroData

logger = logging.getLogger(__name__)

REVERSE_PREFIX = "rev_"


def reverse_edge_type(etype: EdgeType) -> EdgeType:
    """``("user", "interacted", "item")`` -> ``("item", "rev_interacted", "user")``."""
    s, r, d = etype
    return (d, REVERSE_PREFIX + r, s)


def to_hetero_data(kg: KnowledgeGraph, *, add_reverse: bool = True, features: str | None = "concat") -> HeteroData:
    """The graph as a PyG :class:`~torch_geometric.data.HeteroData`.

    Per node type: ``num_nodes`` and ``n_id`` (``arange(num_nodes)``, long); raw ids stay in
    ``kg.node_ids`` (PyG stores tensors, not string lists). Where the type has feature slots,
    ``x`` ``[num_nodes, dim]`` and, where the slots have masks, ``x_mask`` ``[num_nodes]`` (bool).

    Per edge type ``(src, rel, dst)``: ``edge_index`` ``[2, E]`` (long), ``edge_weight`` ``[E]``
    (float32), and each numeric edge attribute ``name`` as ``edge_attr_<name>`` ``[E, ...]``
    (non-numeric attributes are left out, with a log message). With ``add_reverse``, each type
    also gets ``(dst, "rev_" + rel, src)`` with the flipped ``edge_index`` and the same weights and
    attributes, self-type relations such as ``(item, similar_to, item)`` included. Forward types
    come first, in graph order, then the reverses in the same order.

    Args:
        kg: the graph; not modified.
        add_reverse: add the reverse of every edge type.
        features: ``"concat"`` to concatenate all slots of a node type along the feature
            dimension in sorted slot order (``x_mask`` is then the AND of the slot masks), a slot
            name to use that slot only (types without it get no ``x``), or ``None`` for no ``x``.

    Raises:
        ConfigError: ``features`` names a slot that no node type has.
        MissingDependencyError: torch_geometric is not installed.
    """
    import torch

    require("torch_geometric")
    from torch_geometric.data import HeteroData

    _check_features_option(kg, features)
    data = HeteroData()
    for t in kg.node_types:
        n = kg.num_nodes(t)
        store = data[t]
        store.num_nodes = n
        store.n_id = torch.arange(n, dtype=torch.long)
        x, mask = _node_features(kg, t, features)
        if x is not None:
            store.x = x
        if mask is not None:
            store.x_mask = mask
    etypes = kg.edge_types
    for et in etypes:
        _put_edges(data, et, kg, reverse=False)
    if add_reverse:
        for et in etypes:
            _put_edges(data, et, kg, reverse=True)
    return data


def _check_features_option(kg: KnowledgeGraph, features: str | None) -> None:
    if features is None or features == "concat":
        return
    if not isinstance(features, str):
        raise ConfigError(f"features must be 'concat', a slot name or None, got {features!r}")
    slots = sorted({n for s in kg.features.values() for n in s})
    if features not in slots:
        raise ConfigError(f"no node type has feature slot {features!r}; slots: {slots} (or 'concat', None)")


def _node_features(
    kg: KnowledgeGraph, node_type: str, features: str | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    import torch

    slots = kg.features.get(node_type, {})
    if features is None or not slots:
        return None, None
    names = sorted(slots) if features == "concat" else [features] if features in slots else []
    if not names:
        return None, None
    parts = [torch.tensor(np.asarray(slots[n])) for n in names]
    x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    masks = [kg.feature_masks.get(node_type, {}).get(n) for n in names]
    if all(m is None for m in masks):
        return x, None
    mask = torch.ones(kg.num_nodes(node_type), dtype=torch.bool)
    for m in masks:
        if m is not None:
            mask &= torch.tensor(np.asarray(m, dtype=bool))
    return x, mask


def _put_edges(data: HeteroData, et: EdgeType, kg: KnowledgeGraph, *, reverse: bool) -> None:
    import torch

    e = kg.edges[et]
    ei = torch.tensor(np.asarray(e.edge_index), dtype=torch.long)
    store = data[reverse_edge_type(et) if reverse else et]
    store.edge_index = ei.flip(0) if reverse else ei
    store.edge_weight = torch.tensor(np.asarray(e.edge_weight), dtype=torch.float32)
    for name, values in e.attrs.items():
        arr = np.asarray(values)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            if not reverse:
                logger.info(
                    "edge attribute %s.%s has dtype %s: not numeric, left out of HeteroData", et, name, arr.dtype
                )
            continue
        store[f"edge_attr_{name}"] = torch.tensor(arr)


@dataclass(frozen=True, eq=False)
class HomogeneousView:
    """All node types in one index space: node ``i`` of type ``t`` is ``node_offsets[t] + i``.

    Attributes:
        edge_index: ``[2, E]`` long, global node indices.
        edge_weight: ``[E]`` float32.
        edge_type: ``[E]`` long, position of each edge's type in ``edge_types``.
        node_type: ``[N]`` long, position of each node's type in ``node_types``.
        node_offsets: node type -> global index of its first node.
        node_types: node types in index order.
        edge_types: ``(src, rel, dst)`` types in the order of ``edge_type`` values.
    """

    edge_index: torch.Tensor
    edge_weight: torch.Tensor
    edge_type: torch.Tensor
    node_type: torch.Tensor
    node_offsets: dict[str, int]
    node_types: list[str]
    edge_types: list[EdgeType]

    @property
    def num_nodes(self) -> int:
        return int(self.node_type.numel())

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def num_nodes_of(self, node_type: str) -> int:
        """Number of nodes of ``node_type``."""
        self._check_type(node_type)
        i = self.node_types.index(node_type)
        end = self.node_offsets[self.node_types[i + 1]] if i + 1 < len(self.node_types) else self.num_nodes
        return end - self.node_offsets[node_type]

    def global_index(
        self, node_type: str, local_idx: int | Sequence[int] | np.ndarray | torch.Tensor
    ) -> int | torch.Tensor:
        """Global indices of local indices of ``node_type``.

        Returns an ``int`` for an ``int``, else a long tensor of the same shape.

        Raises:
            SchemaError: unknown node type.
            IndexError: a local index outside ``0 .. num_nodes_of(node_type) - 1``.
            TypeError: indices that are not integers (floats, bools).
        """
        import torch

        n = self.num_nodes_of(node_type)
        off = self.node_offsets[node_type]
        if isinstance(local_idx, (int, np.integer)) and not isinstance(local_idx, (bool, np.bool_)):
            i = int(local_idx)
            if not 0 <= i < n:
                raise IndexError(f"{node_type} index {i} out of range 0..{n - 1}")
            return off + i
        idx = torch.as_tensor(np.asarray(local_idx) if not isinstance(local_idx, torch.Tensor) else local_idx)
        if idx.numel() == 0:
            return torch.zeros(idx.shape, dtype=torch.long)  # [] is float64 to numpy: no values to check
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(f"{node_type} indices must be integers, got {idx.dtype} (a value would be truncated)")
        idx = idx.to(torch.long)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(f"{node_type} indices out of range 0..{n - 1}")
        return idx + off

    def local_index(self, global_idx: int) -> tuple[str, int]:
        """``(node_type, local index)`` of a global node index.

        Raises:
            IndexError: ``global_idx`` outside ``0 .. num_nodes - 1``.
            TypeError: ``global_idx`` is not an integer.
        """
        dtype = getattr(global_idx, "dtype", None)  # a 0-d tensor or array, e.g. view.edge_index[0, k]
        if isinstance(global_idx, (bool, np.bool_)) or str(dtype) in ("bool", "torch.bool"):
            raise TypeError(f"a global index must be an integer, got {global_idx!r}")
        try:
            g = operator.index(global_idx)
        except TypeError:
            raise TypeError(f"a global index must be an integer, got {global_idx!r}") from None
        if not 0 <= g < self.num_nodes:
            raise IndexError(f"global index {g} out of range 0..{self.num_nodes - 1}")
        starts = [self.node_offsets[t] for t in self.node_types]
        # empty node types share their offset with the next type: take the last type starting at or before g
        i = bisect.bisect_right(starts, g) - 1
        t = self.node_types[i]
        return t, g - starts[i]

    def _check_type(self, node_type: str) -> None:
        if node_type not in self.node_offsets:
            raise SchemaError(f"unknown node type {node_type!r}; view has {self.node_types}")


def to_homogeneous(kg: KnowledgeGraph, *, add_reverse: bool = True) -> HomogeneousView:
    """All nodes and edges of the graph in one index space.

    Nodes are numbered type by type in ``kg.node_types`` order; edge types are the forward types
    in graph order, then (with ``add_reverse``) their reverses in the same order, the layout of
    ``to_hetero_data(kg, add_reverse=...).to_homogeneous()``, computed without PyG.

    Args:
        kg: the graph; not modified.
        add_reverse: include ``rev_<relation>`` edges (flipped ``edge_index``, same weights).
    """
    import torch

    node_types = kg.node_types
    counts = [kg.num_nodes(t) for t in node_types]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    offsets = {t: int(starts[i]) for i, t in enumerate(node_types)}
    forward = kg.edge_types
    etypes = forward + ([reverse_edge_type(et) for et in forward] if add_reverse else [])
    idx_parts, w_parts, t_parts = [], [], []
    for k, et in enumerate(etypes):
        rev = k >= len(forward)
        src_et = forward[k - len(forward)] if rev else et
        e = kg.edges[src_et]
        ei = np.asarray(e.edge_index, dtype=np.int64)
        if rev:
            ei = ei[::-1]
        s, _, d = et
        idx_parts.append(np.stack([ei[0] + offsets[s], ei[1] + offsets[d]]))
        w_parts.append(np.asarray(e.edge_weight, dtype=np.float32))
        t_parts.append(np.full(ei.shape[1], k, dtype=np.int64))
    if etypes:
        edge_index = np.concatenate(idx_parts, axis=1)
        edge_weight = np.concatenate(w_parts)
        edge_type = np.concatenate(t_parts)
    else:
        edge_index = np.zeros((2, 0), dtype=np.int64)
        edge_weight = np.zeros(0, dtype=np.float32)
        edge_type = np.zeros(0, dtype=np.int64)
    node_type = np.repeat(np.arange(len(node_types), dtype=np.int64), counts)
    return HomogeneousView(
        edge_index=torch.from_numpy(np.ascontiguousarray(edge_index)),
        edge_weight=torch.from_numpy(np.ascontiguousarray(edge_weight)),
        edge_type=torch.from_numpy(edge_type),
        node_type=torch.from_numpy(node_type),
        node_offsets=offsets,
        node_types=list(node_types),
        edge_types=etypes,
    )
