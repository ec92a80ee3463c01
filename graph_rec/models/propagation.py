"""Linear propagation over the normalised adjacency of a typed graph (LightGCN-style layers).

Given layer-0 node embeddings ``E^(0)`` ``[N, d]``, ``L`` layers compute ``E^(l+1) = Â E^(l)`` and
the output is ``sum_l alpha_l E^(l)`` with ``alpha_l = 1 / (L + 1)`` (He et al., "LightGCN:
Simplifying and Powering Graph Convolution Network for Recommendation", SIGIR 2020). ``Â`` is
built from the typed edges in one of three ways (``relation_mode``):

* ``"none"``: ``A_ij = sum_e w_e`` over the edges ``j -> i`` (weights 1 unless the data keeps
  them), ``Â = D^-1/2 A D^-1/2`` with ``D`` the row sums. Symmetric. Cached. With
  ``norm_exponent`` ``a`` other than 1/2, ``Â = D^-a A D^-(1-a)`` (Zhao et al., "Investigating
  Accuracy-Novelty Performance for Graph-based Collaborative Filtering", SIGIR 2022): a larger
  ``a`` shrinks what high-degree nodes receive, a smaller one what they send; not symmetric.
* ``"weights"``: each relation ``r`` has a learned weight ``omega_r = softplus(rho_r)``
  (initialised to 1, shared by a relation and its reverse so ``A`` stays symmetric) and
  ``A_ij = sum_e omega_r(e) w_e``, then the same normalisation, recomputed per forward.
* ``"attention"``: KGAT-style knowledge-aware attention (Wang et al., "KGAT: Knowledge Graph
  Attention Network for Recommendation", KDD 2019) with a diagonal relation transform:
  ``pi(i, r, j) = (r ⊙ e_j)^T tanh(r ⊙ e_i + b_r)`` on the layer-0 embeddings, normalised by a
  softmax over the edges arriving at ``i``; ``Â_ij = sum_e softmax(pi)_e w_e``. Row-stochastic, not
  symmetric; it costs ``E x d`` memory per forward.

Parallel edges (two relations between the same pair of nodes) are summed into one matrix entry,
so ``Â`` is a sparse CSR matrix with one entry per connected (i, j) pair.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graph_rec.data import check_float, csr_tensor, expand_ranges
from graph_rec.errors import ConfigError

RELATION_MODES = ("none", "weights", "attention")


def check_norm_exponent(relation_mode: str, norm_exponent: float) -> None:
    """``norm_exponent`` is in [0, 1], and 0.5 under ``"attention"`` (whose softmax normalises instead)."""
    check_float("norm_exponent", norm_exponent, high=1.0)
    if relation_mode == "attention" and norm_exponent != 0.5:
        raise ConfigError(
            f"norm_exponent={norm_exponent} does not apply to relation_mode='attention' (its softmax "
            "normalises each node's incoming edges): leave it at 0.5"
        )


class Propagation(nn.Module):
    """The normalised adjacency of a graph and linear propagation over it.

    Args:
        edge_index: ``[2, E]`` long, (source, destination); both directions of each edge present.
        edge_type: ``[E]`` long relation ids; relation ``2k + 1`` is the reverse of ``2k``.
        edge_weight: ``[E]`` float, non-negative.
        num_nodes: ``N``.
        num_relations: number of relation ids.
        relation_mode: ``"none"``, ``"weights"`` or ``"attention"`` (see the module docstring).
        embedding_dim: ``d`` (needed by ``"attention"`` for its relation vectors).
        norm_exponent: ``a`` of ``Â = D^-a A D^-(1-a)`` (``"none"`` and ``"weights"``; 1/2 is the
            symmetric normalisation; ``"attention"`` normalises by its softmax and takes 1/2 only).
    """

    def __init__(
        self,
        edge_index: Tensor,
        edge_type: Tensor,
        edge_weight: Tensor,
        num_nodes: int,
        num_relations: int,
        *,
        relation_mode: Literal["none", "weights", "attention"] = "none",
        embedding_dim: int = 64,
        norm_exponent: float = 0.5,
    ) -> None:
        super().__init__()
        if relation_mode not in RELATION_MODES:
            raise ConfigError(f"relation_mode must be one of {list(RELATION_MODES)}, got {relation_mode!r}")
        check_norm_exponent(relation_mode, norm_exponent)
        self.norm_exponent = float(norm_exponent)
        self.relation_mode = relation_mode
        self.num_nodes = int(num_nodes)
        n = self.num_nodes
        src, dst = edge_index[0].long(), edge_index[1].long()
        key = dst * n + src
        uniq, inverse = torch.unique(key, return_inverse=True)
        rows = torch.div(uniq, n, rounding_mode="floor")
        crow = torch.zeros(n + 1, dtype=torch.long)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
        self.register_buffer("crow", crow, persistent=False)
        self.register_buffer("col", uniq - rows * n, persistent=False)
        self.register_buffer("row", rows, persistent=False)
        self.register_buffer("keys", uniq, persistent=False)  # row * N + col, sorted: the CSR order
        # the transpose's CSR structure, for the backward pass: entry q of A^T is entry t_perm[q] of A
        t_key = self.col * n + rows
        t_perm = torch.argsort(t_key)
        t_crow = torch.zeros(n + 1, dtype=torch.long)
        t_crow[1:] = torch.cumsum(torch.bincount(self.col, minlength=n), 0)
        self.register_buffer("t_crow", t_crow, persistent=False)
        self.register_buffer("t_col", rows[t_perm], persistent=False)
        self.register_buffer("t_perm", t_perm, persistent=False)
        self.register_buffer("pair", inverse, persistent=False)  # edge -> pair slot
        self.register_buffer("src", src, persistent=False)
        self.register_buffer("dst", dst, persistent=False)
        self.register_buffer("edge_type", edge_type.long(), persistent=False)
        self.register_buffer("edge_weight", edge_weight.float(), persistent=False)
        self.num_relations = int(num_relations)
        num_tied = max((self.num_relations + 1) // 2, 1)
        if relation_mode == "weights":
            # softplus(rho) = 1 at init
            self.rho = nn.Parameter(torch.full((num_tied,), float(torch.log(torch.expm1(torch.tensor(1.0))))))
        if relation_mode == "attention":
            self.rel_vec = nn.Parameter(torch.ones(max(self.num_relations, 1), embedding_dim))
            self.rel_bias = nn.Parameter(torch.zeros(max(self.num_relations, 1), embedding_dim))
        self._cached: Tensor | None = None
        # walks(rows=...) propagates the last layer for those rows only; False computes every row
        # and picks them afterwards (the same values: for benchmarks comparing the two)
        self.last_layer_rows = True

    # ----------------------------------------------------------------- the matrix
    def relation_weights(self) -> Tensor:
        """``[num_relations]`` the weight of each relation (1 unless ``relation_mode="weights"``)."""
        if self.relation_mode == "weights":
            return F.softplus(self.rho).repeat_interleave(2)[: self.num_relations]
        return torch.ones(self.num_relations, device=self.crow.device)

    def _sym_norm(self, edge_values: Tensor) -> Tensor:
        vals = torch.zeros(self.col.numel(), dtype=edge_values.dtype, device=edge_values.device)
        vals = vals.index_add(0, self.pair, edge_values)
        deg = torch.zeros(self.num_nodes, dtype=vals.dtype, device=vals.device).index_add(0, self.row, vals)
        left, right = self.degree_scales(deg)
        return vals * left[self.row] * right[self.col]

    def degree_scales(self, deg: Tensor) -> tuple[Tensor, Tensor]:
        """``(deg^-a, deg^-(1-a))``: the row and column factors of ``Â_ij = A_ij deg_i^-a deg_j^-(1-a)``.

        ``a`` is ``norm_exponent``; a node of degree 0 gets 0 (it has no entries to scale).
        """
        if self.norm_exponent == 0.5:
            inv = deg.clamp_min(1e-12).rsqrt() * (deg > 0)
            return inv, inv
        d = deg.clamp_min(1e-12)
        return d.pow(-self.norm_exponent) * (deg > 0), d.pow(self.norm_exponent - 1.0) * (deg > 0)

    def values(self, x0: Tensor | None = None) -> Tensor:
        """The non-zero values of ``Â``, one per connected pair, in CSR order.

        ``x0`` (``[N, d]`` layer-0 embeddings) is needed by ``"attention"`` only.
        """
        if self.relation_mode == "none":
            return self._sym_norm(self.edge_weight)
        if self.relation_mode == "weights":
            return self._sym_norm(self.relation_weights()[self.edge_type] * self.edge_weight)
        if x0 is None:
            raise ConfigError("relation_mode='attention' needs the layer-0 embeddings")
        r = self.rel_vec[self.edge_type]
        logits = ((r * x0[self.src]) * torch.tanh(r * x0[self.dst] + self.rel_bias[self.edge_type])).sum(-1)
        att = _segment_softmax(logits, self.dst, self.num_nodes) * self.edge_weight
        vals = torch.zeros(self.col.numel(), dtype=att.dtype, device=att.device)
        return vals.index_add(0, self.pair, att)

    def pair_values(self, rows: Tensor, cols: Tensor, values: Tensor) -> Tensor:
        """``[n]`` the entries ``Â[rows, cols]`` of a matrix with CSR ``values`` (0 where not connected)."""
        if self.col.numel() == 0:
            return torch.zeros(rows.shape, dtype=values.dtype, device=values.device)
        keys = self.keys
        want = rows * self.num_nodes + cols
        pos = torch.searchsorted(keys, want).clamp_max(keys.numel() - 1)
        return torch.where(keys[pos] == want, values[pos], torch.zeros((), dtype=values.dtype, device=values.device))

    def matrix(self, x0: Tensor | None = None) -> Tensor:
        """``Â`` as a sparse CSR tensor ``[N, N]`` (no gradient; :meth:`forward` differentiates through ``Â``)."""
        return _csr(self.crow, self.col, self.values(x0).detach(), self.num_nodes)

    def _apply(self, fn, recurse=True):  # noqa: ANN001 - nn.Module signature; drop the cache on .to()
        self._cached = None
        return super()._apply(fn, recurse)

    def _values_cached(self, x0: Tensor) -> Tensor:
        if self.relation_mode != "none":
            return self.values(x0)
        if self._cached is None:
            with torch.inference_mode(False), torch.no_grad():  # a normal tensor, reusable under autograd
                self._cached = self.values(x0).detach()
        return self._cached

    def dense(self, x0: Tensor | None = None) -> Tensor:
        """``Â`` as a dense ``[N, N]`` tensor (tests and tiny graphs only)."""
        return self.matrix(x0).to_dense()

    # ----------------------------------------------------------------- propagation
    def forward(self, x0: Tensor, num_layers: int) -> Tensor:
        """``[N, d]`` layer-0 embeddings -> ``[N, d]`` mean of layers ``0 .. num_layers``."""
        return self.walks(x0, num_layers)[0]

    def walks(
        self, x0: Tensor, num_layers: int, rows: Tensor | None = None, *, values: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(mean of layers 0 .. L, sum of layers 0 .. L - 1)`` from one pass.

        The sum holds every walk of fewer than ``L`` steps (see GraphRec's ``drop_scored_edge``); it
        is always ``[N, d]``. The mean is ``[N, d]``, or with ``rows`` (``[n]`` distinct node
        indices) ``[n, d]``, the mean's rows ``rows`` in that order: the last layer is then
        propagated for those rows only (a training batch needs the rows of its own nodes). The
        values are the full pass's rows exactly, and so are the gradients, up to the order in which
        autograd sums a tensor's gradient contributions (see :class:`_SpMMRows`). ``values``: ``Â``'s
        pair values when the caller has them already (``_values_cached(x0)``), so they are not
        computed twice in one step.
        """
        if num_layers == 0 or self.col.numel() == 0:  # no walk of one step or more: layers 1 .. L are 0
            mean = (x0 if rows is None else x0[rows]) / (num_layers + 1)
            return mean, (x0 if num_layers else torch.zeros_like(x0))
        vals = self._values_cached(x0) if values is None else values
        structure = (self.crow, self.col, self.t_crow, self.t_col, self.t_perm, self.row)
        out, x = x0, x0
        subset = rows is not None and self.last_layer_rows
        for layer in range(num_layers):
            shorter = out
            if subset and layer == num_layers - 1:
                out = out[rows] + _SpMMRows.apply(vals, x, structure, rows)
            else:
                x = _SpMM.apply(vals, x, structure)
                out = out + x
        if rows is not None and not subset:
            out = out[rows]
        return out / (num_layers + 1), shorter


def _csr(crow: Tensor, col: Tensor, values: Tensor, n: int, num_rows: int | None = None) -> Tensor:
    """A ``[num_rows (default n), n]`` sparse CSR tensor."""
    return csr_tensor(crow, col, values, (n if num_rows is None else num_rows, n))


class _SpMM(torch.autograd.Function):
    """``y = A x`` for a CSR matrix with differentiable values, with an explicit backward.

    torch's own backward for sparse CSR values goes through dense ``N x N`` buffers on CPU; here
    ``dL/dx = A^T (dL/dy)`` uses the transpose's precomputed CSR structure and
    ``dL/dA_ij = <dL/dy_i, x_j>`` is gathered for the stored entries only.
    """

    @staticmethod
    def forward(ctx, values: Tensor, x: Tensor, structure: tuple[Tensor, ...]) -> Tensor:  # noqa: ANN001
        crow, col, t_crow, t_col, t_perm, row = structure
        n = crow.numel() - 1
        ctx.save_for_backward(values, x)
        ctx.structure = structure
        return torch.sparse.mm(_csr(crow, col, values, n), x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # noqa: ANN001
        values, x = ctx.saved_tensors
        grad_v, grad_x = _spmm_grads(values, x, grad, ctx.structure, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return grad_v, grad_x, None


def _spmm_grads(
    values: Tensor, x: Tensor, grad: Tensor, structure: tuple[Tensor, ...], need_values: bool, need_x: bool
) -> tuple[Tensor | None, Tensor | None]:
    """``(dL/dvalues, dL/dx)`` of ``y = A x`` from ``dL/dy`` ``[N, d]`` (None where not needed)."""
    crow, col, t_crow, t_col, t_perm, row = structure
    grad_x = grad_v = None
    if need_x:
        grad_x = torch.sparse.mm(_csr(t_crow, t_col, values[t_perm], crow.numel() - 1), grad)
    if need_values:
        grad_v = _sampled_dot(crow, col, grad, x)
    return grad_v, grad_x


def _sampled_dot(crow: Tensor, col: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``[nnz]`` ``<a_i, b_j>`` for the stored entries ``(i, j)`` of a CSR structure, in CSR order.

    ``(a b^T)`` sampled at the structure's entries by ``torch.sparse.sampled_addmm``, without the
    ``[nnz, d]`` gathers of ``(a[row] * b[col]).sum(-1)`` (about 27 times faster on CPU for 2.4M
    entries and d = 128, and no 1.2 GB temporaries).
    """
    pattern = _csr(crow, col, torch.zeros(col.numel(), dtype=a.dtype, device=a.device), b.shape[0], a.shape[0])
    return torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()


class _SpMMRows(torch.autograd.Function):
    """``y = A[rows] x``: the rows ``rows`` (distinct) of ``A x`` without the others.

    Forward reads only the CSR rows ``rows``, so each output row is computed exactly as
    :class:`_SpMM` computes it. Backward pads ``dL/dy`` with zero rows to ``[N, d]`` and applies
    ``A^T`` as :class:`_SpMM` does: the gradients of ``(A x)[rows]`` taken through the full
    product, the same values.
    """

    @staticmethod
    def forward(ctx, values: Tensor, x: Tensor, structure: tuple[Tensor, ...], rows: Tensor) -> Tensor:  # noqa: ANN001
        crow, col, _, _, _, _ = structure
        n = crow.numel() - 1
        starts = crow[rows]
        counts = crow[rows + 1] - starts
        _, pos = expand_ranges(starts, counts)
        sub_crow = torch.zeros(rows.numel() + 1, dtype=crow.dtype, device=crow.device)
        sub_crow[1:] = torch.cumsum(counts, 0)
        ctx.save_for_backward(values, x, rows, sub_crow, pos)
        ctx.structure = structure
        return torch.sparse.mm(_csr(sub_crow, col[pos], values[pos], n, rows.numel()), x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:  # noqa: ANN001
        values, x, rows, sub_crow, pos = ctx.saved_tensors
        full = torch.zeros(x.shape[0], grad.shape[1], dtype=grad.dtype, device=grad.device)
        full = full.index_put((rows,), grad)
        _, grad_x = _spmm_grads(values, x, full, ctx.structure, False, ctx.needs_input_grad[1])
        grad_v = None
        if ctx.needs_input_grad[0]:  # non-zero for the entries of the rows only
            grad_v = torch.zeros_like(values)
            grad_v[pos] = _sampled_dot(sub_crow, ctx.structure[1][pos], grad, x)
        return grad_v, grad_x, None, None


def _segment_softmax(logits: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Softmax of ``logits`` within groups of equal ``index`` (edges arriving at the same node)."""
    mx = torch.full((num_segments,), float("-inf"), dtype=logits.dtype, device=logits.device)
    mx = mx.scatter_reduce(0, index, logits, reduce="amax", include_self=True)
    ex = torch.exp(logits - mx[index].detach())
    den = torch.zeros(num_segments, dtype=logits.dtype, device=logits.device).index_add(0, index, ex)
    return ex / den[index].clamp_min(1e-30)
