"""Faithful path explanations and fold-in for GraphRec's linear propagation.

GraphRec scores ``s(u, i) = <h_u, h_i>`` (on unit vectors with ``score="cosine"``) with
``h = (1 / (L + 1)) sum_{l=0..L} X_l``, ``X_l = Â X_{l-1}`` and ``X_0 = F(X)``
(:mod:`graph_rec.models.graphrec`). Everything here works on the propagation the model already
computed: the per-layer node embeddings ``X_l`` ``[L + 1, N, d]`` and the values of ``Â``.

**Path contributions.** A path ``u - a - b - i`` (up to three hops, edges followed either way) is
removed by masking its edges, in both directions, out of ``Â``. Normalisation stays that of the
trained graph, as PyTorch Geometric's explainers mask messages after normalisation. With the
masked entries ``Δ`` (``Â' = Â - Δ``) the layers change by

    δ_0 = 0,   δ_l = Â δ_{l-1} - Δ (X_{l-1} + δ_{l-1}),

which stays sparse: ``δ_1`` lives on the path's endpoints and ``δ_2`` on their neighbours. So
``h'_u`` and ``h'_i``, and with them the masked score ``s'``, are exact without a new propagation.
A path's contribution is ``s - s'``, the drop of the score when the path is removed. A deletion test
(``tests/unit/test_recommender.py``) rebuilds ``Â'`` and propagates in full to check this.

Candidate paths are all typed simple paths of at most ``max_hops`` edges between the user and the
item. When there are more than ``candidates`` of them, the ``candidates`` with the largest walk
weight (the product of their ``Â`` entries) are scored exactly.

**Fold-in.** A new node ``n`` joined to existing nodes ``j`` by edges of weight ``w_j`` (relation
weight ``ω_r`` under ``relation_mode="weights"``) gets ``Â_nj = ω w_j / sqrt(deg_n (deg_j + ω w_j))``
(``ω w_j deg_n^-a (deg_j + ω w_j)^-(1-a)`` with a ``norm_exponent`` ``a`` other than 1/2),
``x_0 = F(x_n)`` and ``x_l = sum_j Â_nj X_{l-1}[j]``. The trained nodes keep their embeddings:
the new node's own echo through its neighbours is left out. That is exact at the first layer and an
approximation beyond it, the usual inductive fold-in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from graph_rec.data import expand_ranges
from graph_rec.errors import ConfigError

#: paths whose masked scores are propagated together (benchmarks/recommender_api.py, part explain)
MASK_CHUNK = 16


class PropagationView:
    """A trained GraphRec's propagation, frozen, for explanations and fold-in.

    Args:
        model: a :class:`~graph_rec.models.graphrec.GraphRec` (its weights are read, not changed).

    Attributes:
        layers: ``[L + 1, N, d]`` the layer embeddings ``X_l``.
        h: ``[N, d]`` their mean (before any cosine normalisation).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        from graph_rec.models.graphrec import GraphRec

        if not isinstance(model, GraphRec):
            raise ConfigError(
                f"explanations and cold start need a propagation model ('graphrec'); this is {type(model).__name__}"
            )
        prop = model.propagation
        self.model = model
        self.num_layers = int(model.config.num_layers)
        self.cosine = model.config.score == "cosine"
        self.relation_mode = prop.relation_mode
        with torch.inference_mode():
            x0, _ = model.layer0()
            x0 = x0.detach().float()
            vals = prop.values(x0).detach()
            a = prop.matrix(x0)
            layers = [x0]
            for _ in range(self.num_layers):
                layers.append(torch.sparse.mm(a, layers[-1]))
        self.layers = torch.stack(layers)
        self.h = self.layers.mean(0)
        self.num_nodes = int(prop.num_nodes)
        self.vals = vals
        self.crow, self.col = prop.crow, prop.col
        self.t_crow, self.t_col, self.t_perm = prop.t_crow, prop.t_col, prop.t_perm
        self.rel_w = prop.relation_weights().detach()
        # per-edge entry of Â: omega_r w_e deg[dst]^-a deg[src]^-(1-a) (attention: its share of the pair)
        src, dst = prop.src, prop.dst
        if self.relation_mode == "attention":
            self.deg = None
            self.edge_value = self._attention_edge_values(prop, x0)
        else:
            w = self.rel_w[prop.edge_type] * prop.edge_weight
            deg = torch.zeros(self.num_nodes).index_add(0, dst, w)
            self.deg = deg
            left, right = prop.degree_scales(deg)
            self.edge_value = w * left[dst] * right[src]
        # directed edges sorted by (src, dst) for neighbour lists and pair look-ups
        key = src * self.num_nodes + dst
        order = torch.argsort(key, stable=True)
        self.e_src, self.e_dst = src[order], dst[order]
        self.e_type = prop.edge_type[order]
        self.e_id = order
        self.e_key = key[order]
        # each node's heaviest edge out and in: bounds on the paths the three-hop join leaves out
        self.max_out = torch.zeros(self.num_nodes).scatter_reduce(0, src, self.edge_value, reduce="amax")
        self.max_in = torch.zeros(self.num_nodes).scatter_reduce(0, dst, self.edge_value, reduce="amax")
        self.e_ptr = torch.zeros(self.num_nodes + 1, dtype=torch.long)
        self.e_ptr[1:] = torch.cumsum(torch.bincount(self.e_src, minlength=self.num_nodes), 0)

    @staticmethod
    def _attention_edge_values(prop: torch.nn.Module, x0: Tensor) -> Tensor:
        from graph_rec.models.propagation import _segment_softmax

        r = prop.rel_vec[prop.edge_type]
        logits = ((r * x0[prop.src]) * torch.tanh(r * x0[prop.dst] + prop.rel_bias[prop.edge_type])).sum(-1)
        return (_segment_softmax(logits, prop.dst, prop.num_nodes) * prop.edge_weight).detach()

    # ------------------------------------------------------------------ scores
    def _norm(self, h: Tensor) -> Tensor:
        return F.normalize(h, dim=-1) if self.cosine else h

    def score(self, h_user: Tensor, h_item: Tensor) -> float:
        return float((self._norm(h_user) * self._norm(h_item)).sum())

    # ------------------------------------------------------------------ neighbours and paths
    def neighbours(self, node: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(dst [k], relation [k], edge id [k])`` of the directed edges leaving ``node``."""
        a, b = int(self.e_ptr[node]), int(self.e_ptr[node + 1])
        return self.e_dst[a:b], self.e_type[a:b], self.e_id[a:b]

    def edges_between(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """For pairs ``(a[k], b[k])``: ``(pair index [m], edge id [m])`` of every edge ``a[k] -> b[k]``."""
        key = a * self.num_nodes + b
        lo = torch.searchsorted(self.e_key, key, right=False)
        hi = torch.searchsorted(self.e_key, key, right=True)
        pair, pos = expand_ranges(lo, hi - lo)
        return pair, self.e_id[pos]

    def candidate_paths(
        self, user: int, item: int, *, max_hops: int, candidates: int, fan_out: int = 256
    ) -> list[list[int]]:
        """Simple paths ``user .. item`` of at most ``max_hops`` edges, as the edge ids along them.

        The ``candidates`` with the largest walk weight (product of ``Â`` entries) are kept, in
        that order, exactly. Three-hop paths ``user -> a -> b -> item`` are joined from the
        ``fan_out`` strongest neighbours of each end first; the kept set is widened (doubling
        ``fan_out``) until no path through a left-out neighbour could outweigh the last one kept,
        bounded by that neighbour's edge to its end, its heaviest edge on the other side, and the
        heaviest edge at the far end.
        """
        if isinstance(max_hops, bool) or max_hops not in (1, 2, 3):
            raise ConfigError(f"max_hops must be 1, 2 or 3, got {max_hops!r}")
        found: list[tuple[float, list[int]]] = []
        ev = self.edge_value
        u_dst, _, u_eid = self.neighbours(user)
        i_dst, _, _ = self.neighbours(item)
        for e in u_eid[u_dst == item].tolist():  # 1 hop
            found.append((float(ev[e]), [e]))
        keep = (u_dst != item) & (u_dst != user)  # (a self-loop at the user would repeat it)
        a_nodes, a_eids = u_dst[keep], u_eid[keep]
        if max_hops >= 2 and a_nodes.numel():  # u -> a -> i
            pair, e2 = self.edges_between(a_nodes, torch.full_like(a_nodes, item))
            for p, e in zip(pair.tolist(), e2.tolist(), strict=True):
                e1 = int(a_eids[p])
                found.append((float(ev[e1] * ev[e]), [e1, e]))
        b_nodes = torch.unique(i_dst[(i_dst != user) & (i_dst != item)])  # simple paths only
        if max_hops >= 3 and a_nodes.numel() and b_nodes.numel():  # u -> a -> b -> i
            b_pair, b_eid = self.edges_between(b_nodes, torch.full_like(b_nodes, item))  # edges b -> i
            b_best = torch.zeros(b_nodes.numel()).scatter_reduce(
                0, b_pair, ev[b_eid], reduce="amax", include_self=False
            )
            a_order = torch.argsort(ev[a_eids], descending=True, stable=True)
            b_order = torch.argsort(b_best, descending=True, stable=True)
            width = fan_out
            while True:
                three = self._three_hop(
                    a_nodes[a_order[:width]],
                    a_eids[a_order[:width]],
                    b_nodes,
                    b_pair,
                    b_eid,
                    b_order[:width],
                    candidates,
                )
                ranked = sorted(found + three, key=lambda t: -t[0])
                last = ranked[candidates - 1][0] if len(ranked) >= candidates else 0.0
                bound = 0.0
                if a_order.numel() > width:  # a path through a left-out a
                    rest = a_order[width:]
                    bound = float((ev[a_eids[rest]] * self.max_out[a_nodes[rest]]).max() * b_best.max())
                if b_order.numel() > width:  # through a left-out b
                    rest = b_order[width:]
                    bound = max(bound, float((b_best[rest] * self.max_in[b_nodes[rest]]).max() * ev[a_eids].max()))
                if bound <= last or (a_order.numel() <= width and b_order.numel() <= width):
                    break
                width *= 2
            found += three
        found.sort(key=lambda t: -t[0])
        return [edges for _, edges in found[:candidates]]

    def _three_hop(
        self,
        a_nodes: Tensor,
        a_eids: Tensor,
        b_nodes: Tensor,
        b_pair: Tensor,
        b_eid: Tensor,
        b_keep: Tensor,
        candidates: int,
    ) -> list[tuple[float, list[int]]]:
        """The ``candidates`` heaviest paths ``u -> a -> b -> i`` through the given ``a`` and the ``b_keep`` of ``b``."""
        ev = self.edge_value
        sel = torch.zeros(b_nodes.numel(), dtype=torch.bool)
        sel[b_keep] = True
        remap = torch.cumsum(sel.long(), 0) - 1
        kept = sel[b_pair]
        b_pair, b_eid = remap[b_pair[kept]], b_eid[kept]
        b_nodes = b_nodes[sel]
        aa = a_nodes.repeat_interleave(b_nodes.numel())
        bb = b_nodes.repeat(a_nodes.numel())
        ok = (aa != bb).nonzero().squeeze(1)
        pair, e_ab = self.edges_between(aa[ok], bb[ok])
        if not pair.numel():
            return []
        flat = ok[pair]
        ia, ib = flat // b_nodes.numel(), flat % b_nodes.numel()
        # join each (a, b) pair with every edge b -> i, vectorised; keep the heaviest
        order = torch.argsort(b_pair, stable=True)
        bp, be = b_pair[order], b_eid[order]
        cnt = torch.bincount(bp, minlength=b_nodes.numel())
        start = torch.cumsum(cnt, 0) - cnt
        k_idx, pos = expand_ranges(start[ib], cnt[ib])
        e1, e2 = a_eids[ia[k_idx]], e_ab[k_idx]
        e3 = be[pos]
        w = ev[e1] * ev[e2] * ev[e3]
        top = torch.argsort(-w, stable=True)[:candidates]
        return [(float(w[q]), [int(e1[q]), int(e2[q]), int(e3[q])]) for q in top.tolist()]

    def path_nodes(self, edges: list[int]) -> list[int]:
        """Global node indices along a path given as edge ids."""
        src, dst = self.model.propagation.src, self.model.propagation.dst
        return [int(src[edges[0]])] + [int(dst[e]) for e in edges]

    def hop_edges(self, paths: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Every directed edge each path removes, as ``(path index [m], edge id [m])``.

        For each hop ``a -r-> b`` of a path (given as edge ids): all edges ``a -r-> b`` and
        ``b -rev r-> a``. Sorted by path, then edge id, with no repeats within a path.
        """
        prop = self.model.propagation
        lengths = torch.tensor([len(p) for p in paths], dtype=torch.long)
        e = torch.tensor([x for p in paths for x in p], dtype=torch.long)
        owner = torch.repeat_interleave(torch.arange(len(paths)), lengths)
        a, b, r = prop.src[e], prop.dst[e], prop.edge_type[e]
        reverse = torch.where(r % 2 == 0, r + 1, r - 1)  # relations come in (forward, reverse) pairs
        q_owner, q_rel = torch.cat([owner, owner]), torch.cat([r, reverse])
        pair, eids = self.edges_between(torch.cat([a, b]), torch.cat([b, a]))
        ok = prop.edge_type[eids] == q_rel[pair]
        num_edges = int(prop.src.numel())
        key = torch.unique(q_owner[pair][ok] * num_edges + eids[ok])
        return key // num_edges, key % num_edges

    def masked_reprs(self, targets: Tensor, owner: Tensor, edges: Tensor, count: int) -> Tensor:
        """``[count, len(targets), d]`` the mean-of-layers representations of ``targets``, once per edge set masked.

        Edge set ``c`` is ``edges[owner == c]``: directed edge ids, unique within a set (mask both
        directions by listing both, as :meth:`hop_edges` does). The sets are propagated
        together, each on its own copy of the nodes (keyed ``c * N + node``): a few large sparse
        steps instead of a few small ones per set, which is what keeps explanations fast when the
        machine is busy (every small parallel step then waits for a descheduled thread).
        """
        prop = self.model.propagation
        n = self.num_nodes
        rows = owner * n + prop.dst[edges]
        cols = prop.src[edges]
        a = self.edge_value[edges]
        d = self.layers.shape[-1]
        queries = (torch.arange(count)[:, None] * n + targets[None, :]).reshape(-1)
        supp = torch.zeros(0, dtype=torch.long)
        dv = torch.zeros(0, d)
        acc = torch.zeros(queries.numel(), d)
        for layer in range(1, self.num_layers + 1):
            idx_parts, val_parts = [], []
            if supp.numel():
                nodes = supp % n
                starts = self.t_crow[nodes]
                src, q = expand_ranges(starts, self.t_crow[nodes + 1] - starts)
                idx_parts.append(supp[src] - nodes[src] + self.t_col[q])
                val_parts.append(self.vals[self.t_perm[q]][:, None] * dv[src])
            prev = self.layers[layer - 1][cols] + _lookup(supp, dv, owner * n + cols)
            idx_parts.append(rows)
            val_parts.append(-a[:, None] * prev)
            idx = torch.cat(idx_parts)
            val = torch.cat(val_parts)
            supp, inv = torch.unique(idx, return_inverse=True)
            dv = torch.zeros(supp.numel(), d).index_add_(0, inv, val)
            acc += _lookup(supp, dv, queries)
        return self.h[targets][None] + acc.view(count, targets.numel(), d) / (self.num_layers + 1)

    def masked_scores(self, user: int, item: int, paths: list[list[int]], *, chunk: int = MASK_CHUNK) -> Tensor:
        """``[len(paths)]`` the score of ``(user, item)`` with each path's :meth:`hop_edges` masked.

        ``chunk`` paths are propagated together (memory grows with it: each path's second-layer
        change lives on its nodes' neighbours).
        """
        out = []
        targets = torch.tensor([user, item])
        for lo in range(0, len(paths), chunk):
            owner, edges = self.hop_edges(paths[lo : lo + chunk])
            h = self._norm(self.masked_reprs(targets, owner, edges, len(paths[lo : lo + chunk])))
            out.append((h[:, 0] * h[:, 1]).sum(-1))
        return torch.cat(out) if out else torch.zeros(0)

    # ------------------------------------------------------------------ fold-in
    def fold_in(self, x0: Tensor, neighbours: Tensor, relations: Tensor, weights: Tensor) -> Tensor:
        """``[d]`` the mean-of-layers representation of a new node (module docstring).

        Args:
            x0: ``[d]`` its layer-0 embedding ``F(x_n)`` (zeros without features).
            neighbours: ``[k]`` global indices of the existing nodes it is joined to.
            relations: ``[k]`` relation ids of those edges (forward or reverse: weights are tied).
            weights: ``[k]`` edge weights.
        """
        if self.relation_mode == "attention":
            raise ConfigError("cold start needs relation_mode 'none' or 'weights'; this model uses 'attention'")
        xs = [x0]
        if neighbours.numel():
            w = self.rel_w[relations] * weights
            prop = self.model.propagation
            left, _ = prop.degree_scales(w.sum().reshape(1))
            # a neighbour joined by several edges (two relations) gains all of them in its degree
            uniq, inv = torch.unique(neighbours, return_inverse=True)
            gained = torch.zeros(uniq.numel(), dtype=w.dtype).index_add(0, inv, w)[inv]
            _, right = prop.degree_scales(self.deg[neighbours] + gained)
            a = w * left * right
            for layer in range(1, self.num_layers + 1):
                xs.append((a[:, None] * self.layers[layer - 1][neighbours]).sum(0))
        else:
            xs += [torch.zeros_like(x0)] * self.num_layers
        return torch.stack(xs).mean(0)


def _lookup(supp: Tensor, values: Tensor, query: Tensor) -> Tensor:
    """Rows of the sparse ``(supp sorted [m], values [m, d])`` at ``query`` ``[q]`` (zeros where absent)."""
    out = torch.zeros(query.numel(), values.shape[1] if values.dim() == 2 else 0)
    if supp.numel() == 0:
        return out
    pos = torch.searchsorted(supp, query).clamp_max(supp.numel() - 1)
    hit = supp[pos] == query
    out[hit] = values[pos[hit]]
    return out
