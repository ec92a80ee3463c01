"""Classical and id-only baselines: popularity, ItemKNN, EASE (closed form), iALS (alternating least
squares); BPR-MF and LightGCN (trained by the gradient trainer).

All six see only the training positives ``X`` (``[num_users, num_items]``, binary, from
:class:`~graph_rec.data.UserItems`); none reads node features or knowledge-graph edges, so they are
the reference points the knowledge-enhanced :mod:`graph_rec.models.graphrec` is measured against.

Models fitted without the gradient trainer (``trainable = False``: the closed-form ones and iALS) are
fitted once with :meth:`fit`; their fitted state lives in persistent buffers (so it saves in
``state_dict``), with a persistent ``fitted`` flag. The closed-form ones score a batch of users from
the users' dense training rows ``X_B`` ``[B, num_items]`` (``train.dense_rows``):

* ``popularity``: ``s(u, i) = |{v : X_vi = 1}|``, the same for every user.
* ``itemknn``: ``s(u, :) = X_u S`` with ``S`` the item-item similarity pruned to the ``k`` nearest
  neighbours of each item (column), as in RecBole's and Cornac's ItemKNN.
* ``ease``: ``s(u, :) = X_u B`` with Steck's closed-form item-item weights.
* ``als``: ``s(u, i) = x_u . y_i``, factors of the confidence-weighted least squares over every
  user-item pair (Hu et al., ICDM 2008), fitted by alternating conjugate-gradient sweeps.

Gradient-trained models (``trainable = True``) score by inner products of user and item embeddings:

* ``mf``: BPR matrix factorisation (Rendle et al., UAI 2009).
* ``lightgcn``: id embeddings propagated over the user-item bipartite graph of the training
  positives only (He et al., SIGIR 2020).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from graph_rec.data import GraphTensors, UserItems, check_float, check_int, csr_tensor
from graph_rec.errors import ConfigError, DataError
from graph_rec.models.base import BatchOutput, RecModel, Scorer, l2_of, neg_scores, register
from graph_rec.models.propagation import Propagation

logger = logging.getLogger(__name__)

SIMILARITIES = ("cosine", "asymmetric")

# elements of the dense [num_items, block] co-occurrence block (and of the [num_users, block] slice of X)
# computed at once when fitting ItemKNN / EASE: 2^24 float32 = 64 MiB
_BLOCK_ELEMENTS = 1 << 24


# ---------------------------------------------------------------------------------------------- helpers
def _check_train(model: RecModel, train: UserItems) -> None:
    if not isinstance(train, UserItems):
        raise DataError(f"{type(model).__name__}.fit needs a UserItems, got {type(train).__name__}")
    if train.num_users != model.num_users or train.num_items != model.num_items:
        raise DataError(
            f"{type(model).__name__} was built for {model.num_users}x{model.num_items} but train is "
            f"{train.num_users}x{train.num_items}"
        )


def _item_major(train: UserItems) -> tuple[Tensor, Tensor, Tensor]:
    """``X^T`` in CSR: ``(item_ptr [num_items + 1], users_by_item [nnz], items_sorted [nnz])``."""
    items = train.indices
    order = torch.argsort(items, stable=True)
    item_ptr = torch.zeros(train.num_items + 1, dtype=torch.long)
    item_ptr[1:] = torch.cumsum(torch.bincount(items, minlength=train.num_items), 0)
    return item_ptr, train.users()[order], items[order]


def _ones_csr(ptr: Tensor, idx: Tensor, shape: tuple[int, int], *, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A CSR ``shape`` matrix of ones with row pointers ``ptr`` and column indices ``idx``."""
    ones = torch.ones(idx.numel(), dtype=dtype, device=device)
    return csr_tensor(ptr.to(device), idx.to(device), ones, shape)


def _cooccurrence_blocks(
    train: UserItems, *, dtype: torch.dtype, device: torch.device, block: int | None = None
) -> Iterator[tuple[int, int, Tensor]]:
    """Yield ``(start, end, C[:, start:end])`` with ``C = X^T X`` ``[num_items, num_items]`` the co-occurrence counts.

    ``X^T`` is a sparse CSR ``[num_items, num_users]`` and each block of columns of ``X`` a dense
    ``[num_users, end - start]`` slice, so memory stays ``(num_items + num_users) x block``.
    """
    n_items, n_users = train.num_items, train.num_users
    item_ptr, users_by_item, items_sorted = _item_major(train)
    xt = _ones_csr(item_ptr, users_by_item, (n_items, n_users), dtype=dtype, device=device)
    if block is None:
        block = max(1, _BLOCK_ELEMENTS // max(n_items, n_users, 1))
    for start in range(0, n_items, block):
        end = min(start + block, n_items)
        s, e = int(item_ptr[start]), int(item_ptr[end])
        x_cols = torch.zeros(n_users, end - start, dtype=dtype, device=device)
        x_cols[users_by_item[s:e].to(device), (items_sorted[s:e] - start).to(device)] = 1
        yield start, end, torch.sparse.mm(xt, x_cols)


def _bipartite_edges(train: UserItems) -> tuple[Tensor, Tensor]:
    """``([2, 2 nnz] edge_index, [2 nnz] edge_type)`` over users ``0..U-1`` then items ``U..U+I-1``, both directions."""
    u = train.users()
    i = train.indices + train.num_users
    edge_index = torch.cat([torch.stack([u, i]), torch.stack([i, u])], 1)
    edge_type = torch.cat([torch.zeros(train.nnz, dtype=torch.long), torch.ones(train.nnz, dtype=torch.long)])
    return edge_index, edge_type


class _ClosedForm(RecModel):
    """Shared behaviour of the closed-form models: the ``fitted`` flag and the training rows."""

    trainable = False

    def __init__(self, config: object, graph: GraphTensors, train: UserItems) -> None:
        super().__init__(config, graph, train)
        self._train = train
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool), persistent=True)

    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def _mark_fitted(self, train: UserItems) -> None:
        self._train = train
        self.fitted.fill_(True)

    def _rows(self, users: Tensor, like: Tensor) -> Tensor:
        """``[B, num_items]`` 0/1 training rows of ``users``, on the device and dtype of ``like``."""
        return self._train.dense_rows(users.detach().cpu().long(), dtype=like.dtype).to(like.device)


# ---------------------------------------------------------------------------------------------- popularity
@dataclass(frozen=True, kw_only=True)
class PopularityConfig:
    """Settings of :class:`Popularity` (none)."""


@register
class Popularity(_ClosedForm):
    """Most-popular items: every user gets the items' training interaction counts as scores.

    Buffers: ``item_count`` ``[num_items]`` float32 (persistent).
    """

    name = "popularity"
    config_class = PopularityConfig
    paper = "the most-popular baseline, e.g. Cremonesi et al., 'Performance of recommender algorithms on top-N tasks', RecSys 2010"

    def __init__(self, config: PopularityConfig, graph: GraphTensors, train: UserItems) -> None:
        super().__init__(config, graph, train)
        self.register_buffer("item_count", torch.zeros(self.num_items), persistent=True)

    def fit(self, train: UserItems) -> None:
        """Count each item's training users."""
        _check_train(self, train)
        self.item_count.copy_(train.item_counts().to(self.item_count))
        self._mark_fitted(train)

    def scorer(self) -> Scorer:
        """``users [B] -> [B, num_items]`` counts (a fresh tensor per call, so callers may mask it in place)."""
        self.check_fitted()
        counts = self.item_count
        return Scorer(lambda users: counts.unsqueeze(0).repeat(users.numel(), 1))


# ---------------------------------------------------------------------------------------------- ItemKNN
@dataclass(frozen=True, kw_only=True)
class ItemKNNConfig:
    """Settings of :class:`ItemKNN`.

    Args:
        k: neighbours kept per item (capped at ``num_items - 1``).
        shrink: added to the similarity's denominator; damps similarities from few co-occurrences.
        similarity: ``"cosine"``: ``c_ij / (n_i n_j + shrink)``; ``"asymmetric"`` (Aiolli, RecSys 2013):
            ``c_ij / (n_i^(2 (1 - alpha)) n_j^(2 alpha) + shrink)`` for neighbour ``i`` of item ``j``,
            with ``c`` the co-occurrence counts and ``n_i`` the norm of item ``i``'s column of ``X``.
        alpha: the asymmetry of ``"asymmetric"`` (0.5 is the cosine).
    """

    k: int = 100
    shrink: float = 10.0
    similarity: Literal["cosine", "asymmetric"] = "cosine"
    alpha: float = 0.5

    def __post_init__(self) -> None:
        check_int("k", self.k, minimum=1)
        check_float("shrink", self.shrink)
        if self.similarity not in SIMILARITIES:
            raise ConfigError(f"similarity must be one of {list(SIMILARITIES)}, got {self.similarity!r}")
        check_float("alpha", self.alpha, high=1.0)


@register
class ItemKNN(_ClosedForm):
    """Item-based k-nearest-neighbours over the binary training matrix.

    ``S_ij`` is the similarity of item ``i`` to item ``j`` (diagonal 0); for each item ``j`` (column)
    only its ``k`` most similar items ``i`` are kept, and ``s(u, :) = X_u S``. Storage: the pruned
    similarity is always kept as ``[num_items, k]`` neighbour indices and values (``S^T`` in CSR form
    with ``k`` entries per row, sorted by index; columns with fewer than ``k`` non-zero similarities
    are padded with zero values), never as a dense ``[num_items, num_items]`` matrix, so memory is
    ``num_items x k`` at any size; scoring is one sparse-dense product, ``B x num_items x k``.
    Fitting computes ``X^T X`` in dense blocks of item columns, ``(num_users + num_items) x block``.

    Buffers (persistent): ``knn_index`` ``[num_items, k]`` long, ``knn_value`` ``[num_items, k]`` float32;
    row ``j`` holds the neighbours ``i`` of item ``j`` and ``S_ij``.
    """

    name = "itemknn"
    config_class = ItemKNNConfig
    paper = (
        "Sarwar et al., 'Item-based collaborative filtering recommendation algorithms', WWW 2001; "
        "Aiolli, 'Efficient top-N recommendation for very large scale binary rated datasets', RecSys 2013"
    )

    def __init__(self, config: ItemKNNConfig, graph: GraphTensors, train: UserItems) -> None:
        super().__init__(config, graph, train)
        self.k = min(config.k, max(self.num_items - 1, 0))
        self.register_buffer("knn_index", torch.zeros(self.num_items, self.k, dtype=torch.long), persistent=True)
        self.register_buffer("knn_value", torch.zeros(self.num_items, self.k), persistent=True)

    def fit(self, train: UserItems) -> None:
        """Compute the pruned similarity from ``train`` in blocks of item columns."""
        _check_train(self, train)
        cfg, device = self.config, self.knn_value.device
        counts = train.item_counts().to(device=device, dtype=torch.float32)  # = squared column norms
        if cfg.similarity == "cosine":
            left, right = counts.sqrt(), counts.sqrt()
        else:
            left, right = counts.pow(1.0 - cfg.alpha), counts.pow(cfg.alpha)
        index = torch.empty(self.num_items, self.k, dtype=torch.long, device=device)
        value = torch.empty(self.num_items, self.k, device=device)
        for start, end, co in _cooccurrence_blocks(train, dtype=torch.float32, device=device):
            # co [num_items, block]: co[i, j - start] = c_ij; similarity of neighbour i to item j
            sim = co.div_((left[:, None] * right[None, start:end]).add_(cfg.shrink).clamp_min_(1e-12))
            cols = torch.arange(start, end, device=device)
            sim[cols, cols - start] = 0.0
            top_v, top_i = torch.topk(sim, self.k, dim=0)  # [k, block]
            top_i, order = torch.sort(top_i.t(), dim=1)
            index[start:end] = top_i
            value[start:end] = torch.gather(top_v.t(), 1, order)
        self.knn_index.copy_(index)
        self.knn_value.copy_(value)
        self._mark_fitted(train)
        logger.info("itemknn: %d items, %d neighbours each", self.num_items, self.k)

    def similarity_matrix(self) -> Tensor:
        """``S^T`` as a sparse CSR tensor ``[num_items, num_items]``: row ``j`` holds ``S_ij`` for ``j``'s neighbours ``i``."""
        n = self.num_items
        crow = torch.arange(n + 1, device=self.knn_index.device) * self.k  # k entries per row
        return csr_tensor(crow, self.knn_index.reshape(-1), self.knn_value.reshape(-1), (n, n))

    def dense_similarity(self) -> Tensor:
        """The pruned ``S`` ``[num_items, num_items]`` as a dense tensor (tests and tiny data only)."""
        return self.similarity_matrix().to_dense().t()

    def scorer(self) -> Scorer:
        """``users [B] -> X_B S`` ``[B, num_items]``."""
        self.check_fitted()
        s_t = self.similarity_matrix()

        def score(users: Tensor) -> Tensor:
            x = self._rows(users, self.knn_value)
            return torch.sparse.mm(s_t, x.t().contiguous()).t().contiguous()

        return Scorer(score)

    def extra_repr(self) -> str:
        c = self.config
        return f"{super().extra_repr()}, k={self.k}, shrink={c.shrink}, similarity={c.similarity!r}"


# ---------------------------------------------------------------------------------------------- EASE
@dataclass(frozen=True, kw_only=True)
class EASEConfig:
    """Settings of :class:`EASE`.

    Args:
        l2: the L2 penalty ``lambda`` on the item-item weights (> 0).
    """

    l2: float = 500.0

    def __post_init__(self) -> None:
        check_float("l2", self.l2, open_low=True)


def cooccurrence_gram(train: UserItems, device: torch.device) -> Tensor:
    """``X^T X`` ``[num_items, num_items]`` float64, assembled from :func:`_cooccurrence_blocks`."""
    n = train.num_items
    gram = torch.empty(n, n, dtype=torch.float64, device=device)
    for start, end, co in _cooccurrence_blocks(train, dtype=torch.float64, device=device):
        gram[:, start:end] = co
    return gram


def ease_weights(gram: Tensor, l2: float) -> Tensor:
    """EASE's item-item weights from a Gram matrix ``G`` ``[n, n]`` (float64, overwritten): ``B = -P / diag(P)``.

    Pass the Gram matrix without keeping a reference to it, and it is freed before ``P`` is
    allocated (two ``[n, n]`` float64 matrices at a time, not three).

    ``P = (G + l2 I)^-1`` by Cholesky; ``B_jj = 0``. Any symmetric positive semi-definite ``G``
    works (``X^T X``, or a weighted co-occurrence). Raises :class:`DataError` when ``G + l2 I`` is not
    positive definite.
    """
    gram.diagonal().add_(l2)
    chol, info = torch.linalg.cholesky_ex(gram)
    del gram
    if int(info) != 0:
        raise DataError(f"ease: X^T X + l2 I is not positive definite (l2={l2}); use a larger l2")
    p = torch.cholesky_inverse(chol)
    del chol
    p.div_(-p.diagonal().clone()[None, :])  # B_ij = -P_ij / P_jj
    p.diagonal().zero_()
    return p


@register
class EASE(_ClosedForm):
    """Embarrassingly shallow autoencoder: item-item weights in closed form.

    ``G = X^T X + lambda I``, ``P = G^-1``, ``B_ij = -P_ij / P_jj``, ``B_jj = 0`` (computed in float64
    with a Cholesky factorisation, stored as float32); ``s(u, :) = X_u B``. Items without training
    interactions keep a row and a column of ``B`` (all zero: they score 0). Memory while fitting: two
    float64 ``[num_items, num_items]`` matrices (2.5 GB each for 17,632 items); the stored weights are
    one float32 ``[num_items, num_items]`` matrix.

    Buffers (persistent): ``weights`` ``[num_items, num_items]`` float32, ``B``.
    """

    name = "ease"
    config_class = EASEConfig
    paper = "Steck, 'Embarrassingly Shallow Autoencoders for Sparse Data', WWW 2019"

    def __init__(self, config: EASEConfig, graph: GraphTensors, train: UserItems) -> None:
        super().__init__(config, graph, train)
        self.register_buffer("weights", torch.zeros(self.num_items, self.num_items), persistent=True)

    def fit(self, train: UserItems) -> None:
        """Solve for ``B`` from ``train``."""
        _check_train(self, train)
        device = self.weights.device
        # the Gram matrix is handed over, not kept here: ease_weights frees it before inverting
        self.weights.copy_(ease_weights(cooccurrence_gram(train, device), self.config.l2))
        self._mark_fitted(train)
        logger.info("ease: %d items, l2=%g", self.num_items, self.config.l2)

    def scorer(self) -> Scorer:
        """``users [B] -> X_B B`` ``[B, num_items]``."""
        self.check_fitted()
        weights = self.weights
        return Scorer(lambda users: self._rows(users, weights) @ weights)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, l2={self.config.l2}"


# ---------------------------------------------------------------------------------------------- iALS
@dataclass(frozen=True, kw_only=True)
class ALSConfig:
    """Settings of :class:`ALS`.

    Args:
        factors: ``d``, the width of the user and item factors.
        regularization: ``lambda``, the L2 weight on every factor (not scaled by counts, as in implicit).
        alpha: the confidence of an observed pair; unobserved pairs weigh 1 (implicit's convention: its
            ``alpha`` scales the 0/1 matrix, so the same value means the same model).
        iterations: alternating sweeps (users, then items).
        cg_steps: conjugate-gradient steps per row and sweep, warm-started from the previous factors
            (implicit's default is 3); ``d`` steps solve each row's normal equations exactly, up to
            rounding.
        init_std: standard deviation of the initial factors.
    """

    factors: int = 128
    regularization: float = 20.0
    alpha: float = 5.0
    iterations: int = 15
    cg_steps: int = 3
    init_std: float = 0.01

    def __post_init__(self) -> None:
        check_int("factors", self.factors, minimum=1)
        check_int("iterations", self.iterations, minimum=1)
        check_int("cg_steps", self.cg_steps, minimum=1)
        check_float("regularization", self.regularization)
        check_float("alpha", self.alpha, open_low=True)
        check_float("init_std", self.init_std, open_low=True)


def _als_solve(x: Tensor, other: Tensor, pattern: Tensor, *, regularization: float, alpha: float, steps: int) -> Tensor:
    """New ``x`` ``[n, d]``: each row's weighted least-squares solution against fixed ``other`` ``[m, d]``.

    ``pattern`` is the ``[n, m]`` CSR matrix of ones at the observed pairs. Row ``r`` with observed
    columns ``N(r)`` solves ``(O^T O + (alpha - 1) sum_{j in N(r)} o_j o_j^T + lambda I) x_r =
    alpha sum_{j in N(r)} o_j``, the normal equations of ``sum_j c_rj (p_rj - x_r . o_j)^2 + lambda
    |x_r|^2`` with ``c = alpha``, ``p = 1`` on observed pairs and ``c = 1``, ``p = 0`` elsewhere.
    Solved for every row at once by ``steps`` conjugate-gradient steps from ``x``; the observed
    pairs' part of ``A v`` is a sampled product (``v_r . o_j`` only at the pattern) and a sparse
    product, so memory is ``O((n + m) d + nnz)``, never ``n x m``.
    """
    gram = other.t() @ other
    gram.diagonal().add_(regularization)
    other_t = other.t()

    def apply(v: Tensor) -> Tensor:  # A v, row by row
        dots = torch.sparse.sampled_addmm(pattern, v, other_t, beta=0.0, alpha=alpha - 1.0)
        return torch.addmm(torch.sparse.mm(dots, other), v, gram)

    b = torch.sparse.mm(pattern, other).mul_(alpha)
    x = x.clone()
    crow = pattern.crow_indices()
    x[crow[1:] == crow[:-1]] = 0  # no observed pair: b = 0, so the solution is exactly 0 (CG keeps it there)
    r = b - apply(x)
    p = r.clone()
    rs = (r * r).sum(1)
    tiny = torch.finfo(rs.dtype).tiny
    for _ in range(steps):
        ap = apply(p)
        den = (p * ap).sum(1)
        step = torch.where(den > 0, rs / den.clamp_min(tiny), torch.zeros_like(rs))
        x.addcmul_(step[:, None], p)
        r.addcmul_(step[:, None], ap, value=-1.0)
        rs_new = (r * r).sum(1)
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs))
        p = r + beta[:, None] * p
        rs = rs_new
    return x


@register
class ALS(_ClosedForm):
    """Implicit-feedback matrix factorisation by alternating least squares (iALS, WMF).

    Minimises ``sum_{u,i} c_ui (p_ui - x_u . y_i)^2 + lambda (|X|^2 + |Y|^2)`` over every user-item
    pair, observed or not, with ``p = 1``, ``c = alpha`` on training positives and ``p = 0``,
    ``c = 1`` elsewhere (Hu, Koren and Volinsky's weighting in implicit's parametrisation); each
    sweep solves every user's factors with the items' fixed, then every item's, by conjugate
    gradients (Takacs et al.) vectorised over all rows: no Python loop over users or items, and no
    dense ``users x items`` matrix. ``s(u, i) = x_u . y_i``. Not trained by the gradient trainer:
    :meth:`fit` runs the sweeps (``trainable = False``). Items (users) without training pairs get
    zero factors, so they score 0.

    Buffers (persistent): ``user_factors`` ``[num_users, d]``, ``item_factors`` ``[num_items, d]``.
    """

    name = "als"
    config_class = ALSConfig
    paper = "Hu, Koren and Volinsky, 'Collaborative Filtering for Implicit Feedback Datasets', ICDM 2008"

    def __init__(self, config: ALSConfig, graph: GraphTensors, train: UserItems) -> None:
        super().__init__(config, graph, train)
        d = config.factors
        self.register_buffer("user_factors", torch.zeros(self.num_users, d), persistent=True)
        self.register_buffer("item_factors", torch.zeros(self.num_items, d), persistent=True)
        # drawn from the caller's (seeded) RNG now, so a model built under a seed fits the same way
        # however often fit is called
        self._init_seed = int(torch.randint(0, 2**62, ()))
        self.losses: list[float] = []

    def fit(self, train: UserItems) -> None:
        """Run ``iterations`` sweeps from the seeded initial factors; ``losses`` holds the objective after each."""
        _check_train(self, train)
        cfg = self.config
        gen = torch.Generator().manual_seed(self._init_seed)
        x = (torch.randn(self.num_users, cfg.factors, generator=gen) * cfg.init_std).to(self.user_factors)
        y = (torch.randn(self.num_items, cfg.factors, generator=gen) * cfg.init_std).to(self.item_factors)
        like = {"dtype": x.dtype, "device": x.device}
        by_user = _ones_csr(train.indptr, train.indices, (self.num_users, self.num_items), **like)
        item_ptr, users_by_item, _ = _item_major(train)
        by_item = _ones_csr(item_ptr, users_by_item, (self.num_items, self.num_users), **like)
        opts = {"regularization": cfg.regularization, "alpha": cfg.alpha, "steps": cfg.cg_steps}
        self.losses = []
        for _ in range(cfg.iterations):
            x = _als_solve(x, y, by_user, **opts)
            y = _als_solve(y, x, by_item, **opts)
            self.losses.append(self._objective(x, y, by_user))
        self.user_factors.copy_(x)
        self.item_factors.copy_(y)
        self._mark_fitted(train)
        logger.info(
            "als: %d users, %d items, d=%d, %d sweeps, objective %.4g -> %.4g",
            self.num_users,
            self.num_items,
            cfg.factors,
            cfg.iterations,
            self.losses[0],
            self.losses[-1],
        )

    def _objective(self, x: Tensor, y: Tensor, pattern: Tensor) -> float:
        """The weighted objective: ``tr(X^T X Y^T Y)`` counts every pair as unobserved, then each
        observed pair's term is swapped from ``s^2`` to ``alpha (1 - s)^2``."""
        cfg = self.config
        total = torch.sum((x.t() @ x) * (y.t() @ y), dtype=torch.float64)
        sc = torch.sparse.sampled_addmm(pattern, x, y.t(), beta=0.0).values().double()
        total += (cfg.alpha * (1 - sc) ** 2 - sc**2).sum()
        total += cfg.regularization * (x.double().pow(2).sum() + y.double().pow(2).sum())
        return float(total)

    def scorer(self) -> Scorer:
        """``users [B] -> x_B Y^T`` ``[B, num_items]``."""
        self.check_fitted()
        return Scorer.from_embeddings(self.user_factors, self.item_factors)

    def extra_repr(self) -> str:
        c = self.config
        return f"{super().extra_repr()}, factors={c.factors}, regularization={c.regularization}, alpha={c.alpha}"


# ---------------------------------------------------------------------------------------------- BPR-MF
@dataclass(frozen=True, kw_only=True)
class MFConfig:
    """Settings of :class:`MF`.

    Args:
        embedding_dim: ``d``.
        init_std: standard deviation of the embeddings at initialisation.
    """

    embedding_dim: int = 64
    init_std: float = 0.1

    def __post_init__(self) -> None:
        check_int("embedding_dim", self.embedding_dim, minimum=1)
        check_float("init_std", self.init_std, open_low=True)


@register
class MF(RecModel):
    """Matrix factorisation, ``s(u, i) = <p_u, q_i>``, trained with BPR (or any loss of the trainer).

    Parameters: ``user_emb`` ``[num_users, d]``, ``item_emb`` ``[num_items, d]``.
    """

    name = "mf"
    config_class = MFConfig
    trainable = True
    paper = "Rendle et al., 'BPR: Bayesian Personalized Ranking from Implicit Feedback', UAI 2009"

    def __init__(self, config: MFConfig, graph: GraphTensors, train: UserItems) -> None:
        super().__init__(config, graph, train)
        self.user_emb = nn.Embedding(self.num_users, config.embedding_dim)
        self.item_emb = nn.Embedding(self.num_items, config.embedding_dim)
        nn.init.normal_(self.user_emb.weight, std=config.init_std)
        nn.init.normal_(self.item_emb.weight, std=config.init_std)

    def embed(self) -> tuple[Tensor, Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def batch_scores(self, users: Tensor, pos: Tensor, neg: Tensor) -> BatchOutput:
        """``users [B]``, ``pos [B]``, ``neg [B, n]`` or shared ``[n]`` -> scores ``[B]``, ``[B, n]`` and ``reg`` (squared norms / B)."""
        pu, qp, qn = self.user_emb(users), self.item_emb(pos), self.item_emb(neg)
        return BatchOutput(
            pos=(pu * qp).sum(-1),
            neg=neg_scores(pu, qn),
            reg=l2_of(pu, qp, qn).to(pu) / users.numel(),
            extra={},
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, embedding_dim={self.config.embedding_dim}"


# ---------------------------------------------------------------------------------------------- LightGCN
@dataclass(frozen=True, kw_only=True)
class LightGCNConfig:
    """Settings of :class:`LightGCN`.

    Args:
        embedding_dim: ``d``.
        num_layers: ``L``, propagation layers (0 is matrix factorisation).
        init_std: standard deviation of the id embeddings at initialisation.
    """

    embedding_dim: int = 64
    num_layers: int = 3
    init_std: float = 0.1

    def __post_init__(self) -> None:
        check_int("embedding_dim", self.embedding_dim, minimum=1)
        check_int("num_layers", self.num_layers, minimum=0)
        check_float("init_std", self.init_std, open_low=True)


@register
class LightGCN(RecModel):
    """LightGCN: id embeddings of users and items averaged over ``L`` linear propagation layers.

    The graph is the user-item bipartite graph of the training positives only (both directions,
    every edge weighing 1, whatever else ``graph`` holds): nodes ``0..U-1`` are users and
    ``U..U+I-1`` items, ``Â = D^-1/2 A D^-1/2`` and ``E = sum_{l=0..L} Â^l E^(0) / (L + 1)``
    (:class:`~graph_rec.models.propagation.Propagation` with ``relation_mode="none"``).

    Parameters: ``user_emb`` ``[num_users, d]``, ``item_emb`` ``[num_items, d]`` (layer 0).
    """

    name = "lightgcn"
    config_class = LightGCNConfig
    trainable = True
    paper = "He et al., 'LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation', SIGIR 2020"

    def __init__(self, config: LightGCNConfig, graph: GraphTensors, train: UserItems) -> None:
        super().__init__(config, graph, train)
        self.user_emb = nn.Embedding(self.num_users, config.embedding_dim)
        self.item_emb = nn.Embedding(self.num_items, config.embedding_dim)
        nn.init.normal_(self.user_emb.weight, std=config.init_std)
        nn.init.normal_(self.item_emb.weight, std=config.init_std)
        edge_index, edge_type = _bipartite_edges(train)
        self.propagation = Propagation(
            edge_index,
            edge_type,
            torch.ones(edge_index.shape[1]),
            self.num_users + self.num_items,
            2,
            relation_mode="none",
            embedding_dim=config.embedding_dim,
        )

    def layer0(self) -> Tensor:
        """``[num_users + num_items, d]`` the id embeddings, users first."""
        return torch.cat([self.user_emb.weight, self.item_emb.weight], 0)

    def layer0_rows(self, nodes: Tensor) -> Tensor:
        """``[n, d]`` rows of :meth:`layer0` for ``[n]`` node indices (users ``< num_users``), from those rows only."""
        is_user = nodes < self.num_users
        u_at, i_at = is_user.nonzero().squeeze(1), (~is_user).nonzero().squeeze(1)
        rows = torch.cat([self.user_emb(nodes[u_at]), self.item_emb(nodes[i_at] - self.num_users)])
        out = rows.new_empty(nodes.numel(), self.config.embedding_dim)
        out[torch.cat([u_at, i_at])] = rows
        return out

    def sampling_offsets(self) -> tuple[int, int]:
        """``(0, num_users)``: users then items in the propagation's node index."""
        return 0, self.num_users

    def layer0_reg(self, e0_users: Tensor, e0_pos: Tensor, e0_neg: Tensor) -> Tensor:
        """:meth:`batch_scores`' regulariser, ``l2_of(...) / B``, from the batch's layer-0 rows.

        Shapes: users ``[B, d]``, positives ``[B, d]``, negatives ``[B, n, d]`` or shared ``[n, d]``.
        """
        return l2_of(e0_users, e0_pos, e0_neg).to(e0_users) / e0_users.shape[0]

    def score_repr(self, h: Tensor) -> Tensor:
        """The representation scored by inner product (``h`` itself)."""
        return h

    def embed(self) -> tuple[Tensor, Tensor]:
        h = self.propagation(self.layer0(), self.config.num_layers)
        return h[: self.num_users], h[self.num_users :]

    def batch_scores(self, users: Tensor, pos: Tensor, neg: Tensor) -> BatchOutput:
        """``users [B]``, ``pos [B]``, ``neg [B, n]`` or shared ``[n]`` -> scores ``[B]``, ``[B, n]`` and ``reg`` on layer 0 / B."""
        hu_all, hi_all = self.embed()
        hu, hp, hn = hu_all[users], hi_all[pos], hi_all[neg]
        reg = l2_of(self.user_emb(users), self.item_emb(pos), self.item_emb(neg)).to(hu) / users.numel()
        return BatchOutput(pos=(hu * hp).sum(-1), neg=neg_scores(hu, hn), reg=reg, extra={})

    def extra_repr(self) -> str:
        c = self.config
        return f"{super().extra_repr()}, embedding_dim={c.embedding_dim}, layers={c.num_layers}"
