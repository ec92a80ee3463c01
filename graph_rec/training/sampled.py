"""Sampled mini-batch training for graphs whose full propagation does not fit, and exact layer-wise inference.

Full-graph training propagates every node through ``L`` layers at every step (``L`` sparse
products over all ``P`` connected pairs). Here a step touches only the ``L``-hop neighbourhood of
the batch's users and items, with each node's neighbours capped at a fan-out per hop (GraphSAGE's
node-wise sampling, Hamilton et al., "Inductive Representation Learning on Large Graphs", NeurIPS
2017; PyG's ``NeighborLoader``):

* :class:`NeighbourSampler`: a :class:`torch_geometric.sampler.BaseSampler` in pure, vectorised
  torch over the CSR structure of :class:`~graph_rec.models.propagation.Propagation` (PyG's own
  ``NeighborSampler`` needs pyg-lib or torch-sparse, which have no wheels for this torch). It also
  works inside PyG's :class:`~torch_geometric.loader.LinkLoader`.
* :func:`sampled_batch_scores`: the ``batch_scores`` contract of GraphRec and LightGCN computed on
  the sampled subgraph. A node ``v`` expanded at hop ``h`` keeps ``s_v`` of its ``deg(v)`` pairs
  (a uniform ``s_v``-subset) and each kept message is rescaled by ``deg(v) / s_v``, so one layer
  ``sum_{u kept} Â_vu (deg(v) / s_v) x_u`` is an unbiased estimate of ``(Â x)_v`` given the layer
  below. The seeds' ``L``-layer output is unbiased for ``L <= 2``; from ``L = 3`` a walk that
  returns to a node (``v -> u -> v -> ...``) uses that node's one sample twice, a product of two
  factors of the same draw, so the estimate carries a small bias (as PyG's ``NeighborLoader``
  does: node-wise samples are drawn once per node, not once per layer). With every neighbour kept
  it is exactly ``(Â x)_v`` and the step equals the full-graph step (scores, regulariser and
  gradients).
* :func:`layerwise_embed`: exact full-neighbour inference, one layer at a time over chunks of
  destination rows (PyG's layer-wise ``inference``), memory ``3 x [N, d]``, no autograd.

Models opt in with four hooks (GraphRec and LightGCN have them): ``layer0_rows(nodes)``,
``sampling_offsets()``, ``layer0_reg(e0_users, e0_pos, e0_neg)`` and ``score_repr(h)``, plus a
``propagation`` attribute and ``config.num_layers``.
"""

from __future__ import annotations

import logging
from itertools import accumulate
from typing import Any

import torch
from torch import Tensor
from torch_geometric.sampler import BaseSampler, EdgeSamplerInput, NodeSamplerInput, SamplerOutput
from torch_geometric.sampler.neighbor_sampler import edge_sample

from graph_rec.data import expand_ranges
from graph_rec.errors import ConfigError, DataError
from graph_rec.models.base import BatchOutput, neg_scores
from graph_rec.models.propagation import _csr, _sampled_dot

logger = logging.getLogger(__name__)

SAMPLED_RELATION_MODES = ("none", "weights")
_HOOKS = ("layer0_rows", "sampling_offsets", "layer0_reg", "score_repr")


class NeighbourSampler(BaseSampler):
    """Uniform node-wise neighbour sampling over a CSR adjacency, hop by hop, vectorised.

    Args:
        crow: ``[N + 1]`` long, the CSR row pointer: node ``v``'s pairs are ``crow[v] .. crow[v + 1] - 1``
            (``Propagation.crow``; ``v`` is the pair's destination).
        col: ``[P]`` long, the source node of each pair (``Propagation.col``).
        num_neighbours: the fan-out ``k_h`` of each hop ``h = 1 .. H``; ``-1`` takes every neighbour.
        generator: the random source (on the device where draws are made); the same generator
            state gives the same sample.

    Sampling: the deduplicated seeds form hop 0's frontier. At hop ``h`` each frontier node ``v``
    with ``deg(v) <= k_h`` keeps all its pairs; otherwise it keeps a uniformly random ``k_h``-subset
    of them, drawn exactly without replacement (as PyG's ``NeighborSampler(replace=False)``):

    * ``k_h < deg(v) <= 2 k_h``: a random key per pair, the ``k_h`` smallest kept (``O(deg)``);
    * ``deg(v) > 2 k_h``: ``k_h`` offsets drawn with replacement, then only the duplicates are redrawn
      until the ``k_h`` are distinct (each redraw collides with probability ``< 1/2``, so a few
      rounds on a shrinking set of rows). The rule depends only on which draws are equal, never
      on their values, so the kept set is a uniform ``k_h``-subset.

    The nodes first reached at hop ``h`` (not seeds, not reached before) are hop ``h + 1``'s frontier.
    A node is expanded at most once: its sampled pairs all belong to one hop.

    Output (:class:`~torch_geometric.sampler.SamplerOutput`):

    * ``node``: global ids; the seeds first (deduplicated, in order of first occurrence), then the new
      nodes of hop 1 (sorted by id), of hop 2, ...
    * ``row``, ``col``: local indices into ``node``, PyG's ``source_to_target`` orientation: the
      message of a sampled pair goes from ``row`` (the neighbour, the pair's source ``col[e]``) to
      ``col`` (the frontier node, the pair's destination).
    * ``edge``: the pair index ``e`` into ``crow``/``col`` (``Propagation.values()[edge]`` gathers ``Â``).
      Edges are in hop order, sorted by pair index within a hop.
    * ``num_sampled_nodes``: ``[#seeds, #new at hop 1, ...]``; ``num_sampled_edges``: ``[#pairs at hop 1, ...]``.

    Node relabelling uses one reusable ``[N]`` long map, reset (only the touched entries) after each
    sample, so a sample costs ``O(sampled pairs + frontier x fan-out)``, never ``O(N)``.
    """

    def __init__(
        self,
        crow: Tensor,
        col: Tensor,
        num_neighbours: list[int],
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(crow, Tensor) or crow.dim() != 1 or crow.numel() < 1:
            raise ConfigError("crow must be a [N + 1] tensor")
        if not isinstance(col, Tensor) or col.dim() != 1 or col.numel() != int(crow[-1]):
            raise ConfigError(f"col must be a [P] tensor with P = crow[-1] = {int(crow[-1])}")
        if not isinstance(num_neighbours, list | tuple) or not all(
            isinstance(k, int) and not isinstance(k, bool) and (k > 0 or k == -1) for k in num_neighbours
        ):
            raise ConfigError(f"num_neighbours must be a list of positive ints (or -1 for all), got {num_neighbours!r}")
        self.crow = crow.long()
        self.col = col.long()
        self.num_neighbours = list(num_neighbours)
        self.generator = generator
        self.num_nodes = crow.numel() - 1
        self._map = torch.full((self.num_nodes,), -1, dtype=torch.long, device=crow.device)

    @classmethod
    def from_propagation(
        cls, propagation: Any, num_neighbours: list[int], *, generator: torch.Generator | None = None
    ) -> NeighbourSampler:
        """A sampler over the CSR structure of a :class:`~graph_rec.models.propagation.Propagation`."""
        return cls(propagation.crow, propagation.col, num_neighbours, generator=generator)

    @property
    def device(self) -> torch.device:
        return self.crow.device

    # ------------------------------------------------------------------ random draws
    def _rand(self, *shape: int) -> Tensor:
        """Uniform ``[0, 1)`` float64 draws from the generator, on the sampler's device."""
        dev = self.generator.device if self.generator is not None else self.device
        return torch.rand(shape, generator=self.generator, dtype=torch.float64, device=dev).to(self.device)

    def _choose(self, deg: Tensor, k: int) -> Tensor:
        """``[m, k]`` distinct offsets in ``[0, deg[j])`` per row ``j``, a uniform k-subset (all ``deg > k``)."""
        m = deg.numel()
        out = torch.empty(m, k, dtype=torch.long, device=self.device)
        small = deg <= 2 * k
        idx = small.nonzero().squeeze(1)
        if idx.numel():  # random keys over every pair, keep the k smallest
            keys = self._rand(idx.numel(), 2 * k)
            keys = keys.masked_fill(torch.arange(2 * k, device=self.device)[None, :] >= deg[idx, None], 2.0)
            out[idx] = keys.topk(k, dim=1, largest=False).indices
        idx = (~small).nonzero().squeeze(1)
        if idx.numel():  # with replacement, then redraw the duplicates until distinct
            d = deg[idx, None]
            r = torch.minimum((self._rand(idx.numel(), k) * d).long(), d - 1)
            pend = torch.arange(idx.numel(), device=self.device)
            while pend.numel():
                sub = r[pend].sort(dim=1).values
                dup = torch.zeros_like(sub, dtype=torch.bool)
                dup[:, 1:] = sub[:, 1:] == sub[:, :-1]
                has = dup.any(dim=1)
                pend, sub, dup = pend[has], sub[has], dup[has]
                if pend.numel():
                    dd = d[pend].expand(-1, k)[dup]
                    sub[dup] = torch.minimum((self._rand(dd.numel()) * dd).long(), dd - 1)
                    r[pend] = sub
            out[idx] = r
        return out

    def _hop(self, frontier: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Sampled pairs of the frontier nodes: ``(owner position in frontier [m], pair index [m])``."""
        start = self.crow[frontier]
        deg = self.crow[frontier + 1] - start
        if k < 0 or not bool((deg > k).any()):
            return expand_ranges(start, deg)
        take_all = deg <= k
        idx = take_all.nonzero().squeeze(1)
        owner_all, pair_all = expand_ranges(start[idx], deg[idx])
        owner_all = idx[owner_all]
        idx = (~take_all).nonzero().squeeze(1)
        offsets = self._choose(deg[idx], k)  # [m', k]
        owner_some = idx.repeat_interleave(k)
        pair_some = (start[idx, None] + offsets).reshape(-1)
        return torch.cat([owner_all, owner_some]), torch.cat([pair_all, pair_some])

    # ------------------------------------------------------------------ sampling
    def sample(self, seeds: Tensor) -> SamplerOutput:
        """Sample the neighbourhood of ``[s]`` global node ids (duplicates allowed); see the class docstring."""
        seeds = seeds.to(self.device).long().reshape(-1)
        if seeds.numel() and (int(seeds.min()) < 0 or int(seeds.max()) >= self.num_nodes):
            lo, hi = int(seeds.min()), int(seeds.max())
            raise DataError(f"seed node ids must lie in [0, {self.num_nodes}), got [{lo}, {hi}]")
        uniq, inverse = torch.unique(seeds, return_inverse=True)
        first = torch.full((uniq.numel(),), seeds.numel(), dtype=torch.long, device=self.device)
        first = first.scatter_reduce(0, inverse, torch.arange(seeds.numel(), device=self.device), reduce="amin")
        seeds = seeds[first.sort().values]
        mp = self._map
        nodes, rows, cols, edges = [seeds], [], [], []
        num_nodes, num_edges = [seeds.numel()], []
        try:
            mp[seeds] = torch.arange(seeds.numel(), device=self.device)
            frontier, frontier_start, count = seeds, 0, seeds.numel()
            for k in self.num_neighbours:
                owner, pair = self._hop(frontier, k)
                order = torch.argsort(pair)
                owner, pair = owner[order], pair[order]
                nb = self.col[pair]
                new = torch.unique(nb[mp[nb] < 0])
                nodes.append(new)  # before relabelling, so the finally clause resets it
                mp[new] = torch.arange(count, count + new.numel(), device=self.device)
                rows.append(mp[nb])
                cols.append(owner + frontier_start)
                edges.append(pair)
                num_nodes.append(new.numel())
                num_edges.append(pair.numel())
                frontier, frontier_start, count = new, count, count + new.numel()
            node = torch.cat(nodes)
        finally:
            for part in nodes:
                mp[part] = -1
        empty = torch.zeros(0, dtype=torch.long, device=self.device)
        return SamplerOutput(
            node=node,
            row=torch.cat(rows) if rows else empty,
            col=torch.cat(cols) if cols else empty,
            edge=torch.cat(edges) if edges else empty,
            num_sampled_nodes=num_nodes,
            num_sampled_edges=num_edges,
        )

    def _sample(self, seed: Tensor, seed_time: Tensor | None = None, **kwargs: Any) -> SamplerOutput:
        """The ``sample_fn`` of PyG's ``edge_sample``; temporal sampling is not supported."""
        if seed_time is not None or kwargs:
            raise ConfigError("NeighbourSampler does not support temporal or heterogeneous sampling")
        return self.sample(seed)

    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs: Any) -> SamplerOutput:
        """PyG's node-sampling entry point: :meth:`sample` from ``index.node``; ``metadata = (input_id, time)``."""
        if index.time is not None or index.input_type is not None:
            raise ConfigError("NeighbourSampler does not support temporal or heterogeneous sampling")
        out = self.sample(index.node)
        out.metadata = (index.input_id, index.time)
        return out

    def sample_from_edges(self, index: EdgeSamplerInput, neg_sampling: Any = None) -> SamplerOutput:
        """PyG's link-sampling entry point: seeds are both ends of the links (and negatives), via ``edge_sample``."""
        if index.time is not None or index.input_type is not None:
            raise ConfigError("NeighbourSampler does not support temporal or heterogeneous sampling")
        return edge_sample(index, self._sample, self.num_nodes, disjoint=False, neg_sampling=neg_sampling)


# ---------------------------------------------------------------------------------------------- training
def check_model(model: Any, *, training: bool) -> None:
    missing = [h for h in _HOOKS if not hasattr(model, h)]
    if missing or not hasattr(model, "propagation"):
        raise ConfigError(f"{type(model).__name__} does not support sampled training (missing {missing})")
    mode = model.propagation.relation_mode
    if mode not in SAMPLED_RELATION_MODES:
        raise ConfigError(
            f"sampled training supports relation_mode {list(SAMPLED_RELATION_MODES)}, got {mode!r}: attention "
            "normalises over all of a node's incoming edges with the layer-0 embeddings of every node"
        )
    if training and float(getattr(model.config, "align_weight", 0.0)) > 0:
        raise ConfigError("sampled training does not support the id/text alignment loss; set align_weight = 0")
    if training and getattr(model.config, "drop_scored_edge", False):
        raise ConfigError(
            "sampled training does not support drop_scored_edge (it needs the full graph's walks); "
            "set drop_scored_edge = false or train on the full graph"
        )


def _pair_values(propagation: Any) -> Tensor:
    """``[P]`` the values of ``Â``: cached for ``"none"``, recomputed (differentiable, ``O(E)``) for ``"weights"``."""
    if propagation.relation_mode == "none":
        # the module's own cache: a plain tensor without gradient, dropped when the module moves device
        return propagation._values_cached(None)
    return propagation.values()


def propagate_sampled(out: SamplerOutput, values: Tensor, x0: Tensor, crow: Tensor, num_layers: int) -> Tensor:
    """The seeds' ``mean(x_0, ..., x_L)`` over a :meth:`NeighbourSampler.sample` output, rescaled to be unbiased.

    Args:
        out: the sample (``num_layers`` hops or more; the first ``num_layers`` are used).
        values: ``[P]`` the values of ``Â`` per pair (gathered with ``out.edge``).
        x0: ``[len(out.node), d]`` layer-0 rows of ``out.node``.
        crow: ``[N + 1]`` the CSR row pointer the sample was drawn from (for the degrees).
        num_layers: ``L``.

    Returns:
        ``[num seeds, d]``. Per layer ``l``: ``x_l[v] = sum_{(u -> v) sampled} Â_vu (deg(v) / s_v) x_{l-1}[u]``
        with ``s_v`` the number of ``v``'s pairs kept, for the nodes of hops ``0 .. L - l`` only (the
        only ones a seed's ``x_L`` depends on). Each layer is unbiased given the one below; a node's
        sample serves every layer, so for ``L >= 3`` the output is slightly biased (module docstring).
    """
    num_seeds = out.num_sampled_nodes[0]
    h = x0[:num_seeds]
    if num_layers == 0:
        return h
    if len(out.num_sampled_edges) < num_layers:
        raise ConfigError(f"the sample has {len(out.num_sampled_edges)} hops but {num_layers} layers were asked for")
    n = out.node.numel()
    deg = crow[out.node + 1] - crow[out.node]
    kept = torch.bincount(out.col, minlength=n)
    scale = deg / kept.clamp_min(1)
    order = torch.argsort(out.col * n + out.row)  # CSR order: by destination, then source
    dst, src, edge = out.col[order], out.row[order], out.edge[order]
    w = values[edge] * scale[dst].to(x0.dtype)
    # the sampled matrix in CSR over destinations; a node's pairs all come from the hop that expanded it,
    # so the nodes of hops 0 .. L - l are a row prefix and their pairs an edge prefix
    s_crow = torch.zeros(n + 1, dtype=torch.long, device=dst.device)
    s_crow[1:] = torch.cumsum(kept, 0)
    node_ends = list(accumulate(out.num_sampled_nodes))
    x = x0
    for layer in range(1, num_layers + 1):
        n_rows = node_ends[num_layers - layer]  # x_l is needed for the nodes of hops 0 .. L - l
        n_cols = node_ends[num_layers - layer + 1]  # and reads x_{l-1} of hops 0 .. L - l + 1
        m = int(s_crow[n_rows])
        x = _BlockSpMM.apply(w[:m], x[:n_cols], s_crow[: n_rows + 1], src[:m], dst[:m])
        h = h + x[:num_seeds]
    return h / (num_layers + 1)


class _BlockSpMM(torch.autograd.Function):
    """``y = A x`` for a rectangular CSR block ``A`` ``[n_rows, n_cols]`` with differentiable values.

    The backward computes ``dL/dx = A^T dL/dy`` with the transpose's CSR (one sort of the block's
    pairs) and ``dL/dA_ij = <dL/dy_i, x_j>`` for the stored entries only, as
    :class:`~graph_rec.models.propagation.Propagation` does for the full matrix.
    """

    @staticmethod
    def forward(ctx, values: Tensor, x: Tensor, crow: Tensor, col: Tensor, row: Tensor) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(values, x, crow, col, row)
        ctx.n_rows = crow.numel() - 1
        return torch.sparse.mm(_csr(crow, col, values, x.shape[0], ctx.n_rows), x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        values, x, crow, col, row = ctx.saved_tensors
        n_cols = x.shape[0]
        grad_v = grad_x = None
        if ctx.needs_input_grad[1]:
            order = torch.argsort(col, stable=True)
            t_crow = torch.zeros(n_cols + 1, dtype=torch.long, device=col.device)
            t_crow[1:] = torch.cumsum(torch.bincount(col, minlength=n_cols), 0)
            grad_x = torch.sparse.mm(_csr(t_crow, row[order], values[order], ctx.n_rows, n_cols), grad)
        if ctx.needs_input_grad[0]:
            grad_v = _sampled_dot(crow, col, grad, x)
        return grad_v, grad_x, None, None, None


def sampled_batch_scores(model: Any, sampler: NeighbourSampler, users: Tensor, pos: Tensor, neg: Tensor) -> BatchOutput:
    """``model.batch_scores`` on a sampled neighbourhood of the batch.

    Args:
        model: a GraphRec or LightGCN (any model with the hooks of the module docstring).
        sampler: a :class:`NeighbourSampler` over ``model.propagation``'s CSR, with at least
            ``num_layers`` hops (the first ``num_layers`` are used).
        users: ``[B]`` user indices; ``pos``: ``[B]`` item indices; ``neg``: ``[B, n]`` or shared ``[n]``.

    Returns:
        :class:`~graph_rec.models.base.BatchOutput` with ``pos`` ``[B]``, ``neg`` ``[B, n]`` and the
        model's regulariser; ``extra`` is empty.

    Per layer ``l = 1 .. L``: ``x_l[v] = sum_{(u -> v) sampled} Â_vu (deg(v) / s_v) x_{l-1}[u]`` for the
    nodes of hops ``0 .. L - l`` only (the others are not needed), and the seeds' representation is
    ``h = mean(x_0, ..., x_L)``. With every neighbour kept this is exactly the full-graph step.

    Raises:
        ConfigError: ``relation_mode="attention"``, ``align_weight > 0``, a model without the hooks, or
            a sampler with fewer hops than layers, over another graph or on another device.
    """
    check_model(model, training=True)
    prop = model.propagation
    num_layers = int(model.config.num_layers)
    if len(sampler.num_neighbours) < num_layers:
        raise ConfigError(
            f"the sampler has {len(sampler.num_neighbours)} hops but the model has {num_layers} layers; "
            "give num_neighbours one fan-out per layer"
        )
    if sampler.num_nodes != prop.num_nodes or sampler.col.numel() != prop.col.numel():
        raise ConfigError("the sampler's graph is not the model's propagation graph (build it from model.propagation)")
    if sampler.device != prop.crow.device:
        raise ConfigError(f"the sampler is on {sampler.device} but the model on {prop.crow.device}")
    dev = sampler.device
    b = users.numel()
    n_shape = (*neg.shape, -1)
    uo, io = model.sampling_offsets()
    seeds = torch.cat([users.to(dev) + uo, pos.to(dev) + io, neg.reshape(-1).to(dev) + io])
    uniq, inverse = torch.unique(seeds, return_inverse=True)
    out = sampler.sample(uniq)  # seeds first, in uniq's order: seed k is local node k
    x0 = model.layer0_rows(out.node)
    vals = _pair_values(prop) if num_layers > 0 else x0.new_zeros(0)
    h = propagate_sampled(out, vals, x0, sampler.crow, num_layers)
    h_all, e0_all = h[inverse], x0[inverse]
    hu, hp, hn = (model.score_repr(t) for t in (h_all[:b], h_all[b : 2 * b], h_all[2 * b :].view(n_shape)))
    reg = model.layer0_reg(e0_all[:b], e0_all[b : 2 * b], e0_all[2 * b :].view(n_shape))
    return BatchOutput(pos=(hu * hp).sum(-1), neg=neg_scores(hu, hn), reg=reg, extra={})


# ---------------------------------------------------------------------------------------------- inference
def layerwise_embed(model: Any, *, batch_size: int = 65536, progress: bool = False) -> tuple[Tensor, Tensor]:
    """Exact full-neighbour representations, one layer at a time over chunks of ``batch_size`` rows.

    ``x_{l+1}[rows] = Â[rows, :] x_l`` with the CSR slice of ``rows``; keeps ``x_l``, ``x_{l+1}`` and the
    running sum (each ``[N, d]``), no autograd; layer 0 is computed chunk by chunk with ``layer0_rows``.

    Returns:
        ``(users [num_users, d], items [num_items, d])``, equal to ``model.embed()`` (through
        ``score_repr``, so unit-length for GraphRec's cosine score).

    Raises:
        ConfigError: ``relation_mode="attention"``, a model without the hooks, or ``batch_size < 1``
            (the alignment loss, a training term, does not matter here).
    """
    check_model(model, training=False)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    prop = model.propagation
    n, num_layers = prop.num_nodes, int(model.config.num_layers)
    chunks = [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chunks) * (num_layers + 1), desc="layer-wise embed", unit="chunk")
    with torch.inference_mode():
        crow, col = prop.crow, prop.col
        dev = crow.device
        x = None
        for a, e in chunks:
            rows = model.layer0_rows(torch.arange(a, e, device=dev))
            if x is None:
                x = rows.new_empty(n, rows.shape[1])
            x[a:e] = rows
            if bar is not None:
                bar.update(1)
        total = x.clone()
        vals = _pair_values(prop).to(x.dtype) if num_layers > 0 else None
        for _ in range(num_layers):
            nxt = torch.empty_like(x)
            for a, e in chunks:
                s, t = int(crow[a]), int(crow[e])
                nxt[a:e] = torch.sparse.mm(_csr(crow[a : e + 1] - s, col[s:t], vals[s:t], n, e - a), x)
                if bar is not None:
                    bar.update(1)
            total += nxt
            x = nxt
        if bar is not None:
            bar.close()
        h = total / (num_layers + 1)
        uo, io = model.sampling_offsets()
        users = model.score_repr(h[uo : uo + model.num_users])
        items = model.score_repr(h[io : io + model.num_items])
    return users, items


__all__ = ["NeighbourSampler", "layerwise_embed", "propagate_sampled", "sampled_batch_scores"]
