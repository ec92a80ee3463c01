"""The evaluation protocol: full ranking over every item, with known positives masked.

:func:`evaluate` ranks, for each user with at least one pair in ``data.<part>``, every item of the
graph, in batches of users (never a ``num_users x num_items`` matrix):

1. ``s = scorer(users)``, ``[B, num_items]`` (a new tensor per call, as :class:`Scorer` promises; a
   view is copied first);
2. the user's already-known positives get ``-inf`` *before* the top-k, in place: the training pairs
   when evaluating ``"valid"``, the training and validation pairs when evaluating ``"test"``; a NaN
   score among the other items raises :class:`DataError` naming the users (``torch.topk`` ranks NaN
   first, so it is checked on the lists: no extra pass over the scores; with a ``rerank``, every
   score is checked);
3. ``torch.topk(s, max(ks))`` (sorted) gives each user's list, taken over the items in a random
   order drawn once from ``EvalConfig.seed``: tied scores are listed in the order ``torch.topk``
   returns for those positions, so which of several tied items makes the list is random with
   respect to the items, not decided by how they are numbered (``torch.topk`` alone favours some
   positions: a constant scorer would then "find" every held-out item that happens to sit there).
   A model that ties many items (popularity) gets, up to the draw, the expected value of its
   metrics under random tie-breaking (McSherry and Najork, ECIR 2008); the same seed gives the
   same lists;
4. the accuracy metrics of :mod:`graph_rec.eval.metrics` per user, averaged over the evaluated
   users (users without held-out pairs are not evaluated, rather than counted as 0).

Beyond accuracy (``EvalConfig.beyond_accuracy``), at ``max(ks)``: catalogue coverage (accumulated as
item exposure counts over batches), intra-list diversity (by the ``item_features`` the caller passes,
e.g. the items' text features; without them it is left out rather than measured in some model's
own embedding space, which would make two models' figures incomparable; items whose feature row is
zero, i.e. that have no features, are left out of their list's pairs) and novelty (popularity from
the training pairs). All three look at the slots a user is actually shown: a user with fewer
unmasked items than ``max(ks)`` has a shorter list.

The sampled protocol of KGCN / RippleNet (``EvalConfig.sampled``): every held-out pair ``(u, i)``
gets one negative item ``j`` drawn uniformly from the items ``u`` has in none of train / valid /
test; AUC and F1 are computed over all these labelled pairs together.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from graph_rec.data import RecData, UserItems, check_int, config_from_dict, config_to_dict
from graph_rec.distributed import SINGLE, DistContext
from graph_rec.errors import ConfigError, DataError
from graph_rec.eval.metrics import (
    ACCURACY_METRICS,
    auc,
    coverage_from_counts,
    f1_at_threshold,
    intra_list_diversity,
    item_exposure,
    novelty,
)
from graph_rec.models.base import Scorer

logger = logging.getLogger(__name__)

__all__ = ["EvalConfig", "EvalResult", "evaluate", "sample_negatives"]

#: part evaluated -> the parts whose pairs are masked before ranking.
MASKED_PARTS: dict[str, tuple[str, ...]] = {"valid": ("train",), "test": ("train", "valid")}

#: rounds of rejection sampling before the exact fallback (see :func:`sample_negatives`).
NEGATIVE_ROUNDS = 10


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """How to evaluate.

    Args:
        ks: cut-offs of the top-k metrics.
        metrics: accuracy metrics, among ``recall``, ``ndcg``, ``precision``, ``hit``, ``mrr``.
        beyond_accuracy: also coverage, diversity (needs item features) and novelty at ``max(ks)``.
        sampled: also the sampled AUC / F1 protocol (one uniform negative per held-out pair).
        batch_size: users per batch.
        seed: seeds the random item order that breaks ties in the lists, and the generator of the
            sampled negatives.
    """

    ks: tuple[int, ...] = (10, 20)
    metrics: tuple[str, ...] = ("recall", "ndcg", "precision", "hit", "mrr")
    beyond_accuracy: bool = True
    sampled: bool = False
    batch_size: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.ks, str | int) or not isinstance(self.ks, tuple | list) or not self.ks:
            raise ConfigError(f"eval.ks must be a non-empty list of positive integers, got {self.ks!r}")
        for k in self.ks:
            check_int("each of eval.ks", k, minimum=1)
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        if isinstance(self.metrics, str) or not isinstance(self.metrics, tuple | list):
            raise ConfigError(f"eval.metrics must be a list of metric names, got {self.metrics!r}")
        if not self.metrics:
            raise ConfigError(f"eval.metrics must name at least one metric; valid metrics: {list(ACCURACY_METRICS)}")
        unknown = [m for m in self.metrics if m not in ACCURACY_METRICS]
        if unknown:
            raise ConfigError(f"metrics has unknown metric(s) {unknown}; valid metrics: {list(ACCURACY_METRICS)}")
        object.__setattr__(self, "metrics", tuple(dict.fromkeys(self.metrics)))  # repeats once, like ks
        for name in ("beyond_accuracy", "sampled"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"eval.{name} must be true or false, got {getattr(self, name)!r}")
        check_int("eval.batch_size", self.batch_size, minimum=1)
        check_int("eval.seed", self.seed, minimum=0, maximum=2**63 - 1)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalConfig:
        """From a settings mapping (e.g. a TOML table); unknown keys raise :class:`ConfigError`."""
        return config_from_dict(cls, d, "eval")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


@dataclass
class EvalResult:
    """The result of :func:`evaluate`.

    Attributes:
        part: ``"valid"`` or ``"test"``.
        metrics: name -> mean over evaluated users (``"recall@20"``, ``"ndcg@10"``, ...), plus
            ``"coverage@K"``, ``"diversity@K"``, ``"novelty@K"`` at ``K = max(ks)`` and ``"auc"``,
            ``"f1"`` for the sampled protocol, when enabled.
        num_users: users evaluated (those with at least one pair in the part).
        seconds: wall-clock time.
        per_user: with ``keep_per_user``: each per-user metric as float ``[num_users]`` (for confidence
            intervals and paired tests), and ``"user_idx"``, long ``[num_users]``, the users in that order.
    """

    part: str
    metrics: dict[str, float]
    num_users: int
    seconds: float
    per_user: dict[str, Tensor] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: per-user tensors become lists."""
        return {
            "part": self.part,
            "metrics": dict(self.metrics),
            "num_users": self.num_users,
            "seconds": self.seconds,
            "per_user": None if self.per_user is None else {k: v.tolist() for k, v in self.per_user.items()},
        }


def sample_negatives(
    users: Tensor, known: UserItems, *, generator: torch.Generator, max_rounds: int = NEGATIVE_ROUNDS
) -> Tensor:
    """One item per entry of ``users``, drawn uniformly from the items that user has not in ``known``.

    Vectorised rejection sampling: draw every item uniformly, test membership with
    :meth:`UserItems.contains`, redraw only the rejected ones, for at most ``max_rounds`` rounds. Any
    still rejected then (users who know nearly every item) are drawn exactly: a uniform rank ``r``
    among the user's unknown items is mapped to the ``r``-th unknown item by a binary search over the
    user's sorted known items. A user who knows every item gets no negative: ``-1``.

    Args:
        users: long ``[P]`` user indices.
        known: the pairs that are not negatives (usually train ∪ valid ∪ test).
        generator: a CPU ``torch.Generator``; the draws depend only on it and the inputs.
        max_rounds: rejection rounds before the exact fallback.

    Returns:
        long ``[P]`` item indices, ``-1`` where the user has no unknown item.
    """
    users = users.to(torch.long).cpu()
    n_items = known.num_items
    n_free = n_items - known.counts()[users]
    out = torch.randint(0, n_items, (users.numel(),), generator=generator)
    out[n_free <= 0] = -1
    todo = (n_free > 0) & known.contains(users, out.clamp(min=0))
    for _ in range(max_rounds):
        idx = todo.nonzero().flatten()
        if idx.numel() == 0:
            break
        out[idx] = torch.randint(0, n_items, (idx.numel(),), generator=generator)
        todo[idx] = known.contains(users[idx], out[idx])
    idx = todo.nonzero().flatten()
    if idx.numel():
        u = users[idx]
        free = n_free[idx]
        r = (torch.rand(idx.numel(), generator=generator, dtype=torch.float64) * free).long().clamp(max=free - 1)
        # for user u with sorted known items k_0 < k_1 < ..., b_m = k_m - m unknown items lie below k_m;
        # the r-th unknown item is r + #{m : b_m <= r}. Keys u * (n_items + 1) + b_m are globally sorted.
        rows = known.users()
        pos_in_row = torch.arange(known.nnz) - known.indptr[rows]
        keys = rows * (n_items + 1) + (known.indices - pos_in_row)
        below = torch.searchsorted(keys, u * (n_items + 1) + r, right=True) - known.indptr[u]
        out[idx] = r + below
    return out


def _cat(parts: list[Tensor], dtype: torch.dtype) -> Tensor:
    """``torch.cat(parts)``, or an empty tensor for a rank that had no users."""
    return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)


def _check_nan(bad: Tensor, batch: Tensor) -> None:
    """Raise naming the users of ``batch`` whose row of ``bad`` is set (their scores hold NaN)."""
    bad = bad.cpu()
    if bool(bad.any()):
        raise DataError(
            f"the scorer returned NaN scores for user indices {batch[bad][:10].tolist()}"
            + (f" and {int(bad.sum()) - 10} more" if int(bad.sum()) > 10 else "")
        )


def _check_disjoint(part: str, held: UserItems, mask: UserItems, batch: Tensor, row: Tensor, item: Tensor) -> None:
    """Raise if a held-out pair of ``batch`` (``row`` indexes ``batch``) is also a masked pair: masked
    before ranking, it could never be found, yet it would count in the user's ``|rel|``."""
    if row.numel() == 0:
        return
    both = mask.contains(batch[row], item)
    if bool(both.any()):
        first = int(both.nonzero()[0])
        raise DataError(
            f"{int(both.sum())} {part!r} pair(s) are also known (masked) pairs, first: user index "
            f"{int(batch[row[first]])}, item index {int(item[first])}; a split's parts must not overlap"
        )


def _check_reranked(top_i: Tensor, s: Tensor, batch: Tensor, list_len: int) -> Tensor:
    """``rerank``'s lists, checked: long ``[B, list_len]`` item indices in range, no item twice in a
    list, and no masked item while the user has unmasked ones left."""
    b, n = s.shape
    if not isinstance(top_i, Tensor) or tuple(top_i.shape) != (b, list_len):
        shape = tuple(top_i.shape) if isinstance(top_i, Tensor) else type(top_i).__name__
        raise DataError(f"rerank must return item indices of shape ({b}, {list_len}), got {shape}")
    if top_i.is_floating_point() or top_i.dtype == torch.bool:
        raise DataError(f"rerank must return integer item indices, got {top_i.dtype}")
    top_i = top_i.to(s.device, torch.long)
    if top_i.numel() and (int(top_i.min()) < 0 or int(top_i.max()) >= n):
        raise DataError(f"rerank returned item indices outside [0, {n}): {int(top_i.min())} .. {int(top_i.max())}")
    srt = top_i.sort(1).values
    dup = (srt[:, 1:] == srt[:, :-1]).any(1)
    if bool(dup.any()):
        raise DataError(f"rerank listed an item twice for user index {int(batch[dup.nonzero()[0].cpu()])}")
    ok = s.gather(1, top_i) > float("-inf")
    # as many unmasked items as there are (up to the list's length), and every one before any masked one
    short = (ok.sum(1) < (s > float("-inf")).sum(1).clamp(max=list_len)) | (~ok[:, :-1] & ok[:, 1:]).any(1)
    if bool(short.any()):
        raise DataError(
            f"rerank listed a masked (known) item for user index {int(batch[short.nonzero()[0].cpu()])} "
            "while unmasked items remained"
        )
    return top_i


def evaluate(
    scorer: Scorer,
    data: RecData,
    *,
    part: str = "valid",
    config: EvalConfig | None = None,
    item_features: Tensor | None = None,
    keep_per_user: bool = False,
    progress: bool = False,
    rerank: Callable[[Tensor, int], Tensor] | None = None,
    dist: DistContext | None = None,
) -> EvalResult:
    """Full-ranking evaluation of ``scorer`` on ``data.<part>``.

    Args:
        scorer: ``scorer(users [B]) -> [B, num_items]`` scores (see :class:`~graph_rec.models.base.Scorer`).
        data: the split as tensors; ``data.train`` / ``valid`` / ``test`` are :class:`UserItems`.
        part: ``"valid"`` (training pairs masked) or ``"test"`` (training and validation pairs masked).
        config: metrics, cut-offs, batch size; defaults to :class:`EvalConfig()`.
        item_features: ``[num_items, d]`` for intra-list diversity (e.g. the items' text features);
            without them diversity is left out. A zero row marks an item without features.
        keep_per_user: also return each per-user metric in :attr:`EvalResult.per_user`.
        progress: show a tqdm bar over batches.
        rerank: ``rerank(scores [B, num_items] with the masked items at -inf, k) -> items [B, k]``,
            used instead of the plain top-k (e.g. :meth:`graph_rec.recommender.Recommender.reranker`'s
            maximal marginal relevance). Its lists are checked: ``[B, k]`` item indices, no item twice
            in a list, no masked item while unmasked ones remain (:class:`DataError` otherwise).
        dist: in a data-parallel group (:mod:`graph_rec.distributed`), each rank ranks its own
            contiguous share of the users and the per-user results are gathered, so every rank
            returns the same result, equal to a single process's; every rank must call this.

    Returns:
        An :class:`EvalResult` with the means over the users that have at least one pair in ``part``.

    Raises:
        ConfigError: an unknown part.
        DataError: no user has a pair in ``part``; the scorer returned a wrong shape or NaN scores;
            a held-out pair is also a masked (known) pair; ``rerank`` returned a bad list.

    A user with fewer unmasked items than ``max(ks)`` gets a list padded with masked (``-inf``) items:
    those slots never count as hits and are left out of coverage, diversity and novelty. If
    ``max(ks)`` exceeds the number of items, the lists hold every item and the missing positions
    count as misses.
    """
    cfg = config or EvalConfig()
    if part not in MASKED_PARTS:
        raise ConfigError(f"part must be one of {list(MASKED_PARTS)}, got {part!r}")
    start = time.perf_counter()
    held: UserItems = getattr(data, part)
    masks: list[UserItems] = [getattr(data, p) for p in MASKED_PARTS[part]]
    num_items = int(data.num_items)
    counts = held.counts()
    users = torch.nonzero(counts > 0).flatten()
    if users.numel() == 0:
        raise DataError(f"no user has a {part!r} pair: nothing to evaluate")
    dist = dist or SINGLE
    all_users = users
    users = users[dist.shard(users.numel())]

    ks = sorted(set(cfg.ks))
    max_k = ks[-1]
    list_len = min(max_k, num_items)
    feats = None
    popularity = None
    if cfg.beyond_accuracy:
        feats = item_features
        if feats is not None and (feats.dim() != 2 or feats.shape[0] != num_items):
            raise DataError(f"item features must be [num_items={num_items}, d], got shape {tuple(feats.shape)}")
        if feats is not None and not bool(torch.isfinite(feats).all()):
            bad = torch.nonzero(~torch.isfinite(feats).all(1)).flatten()
            raise DataError(
                f"item features have NaN or infinite values in {bad.numel()} row(s) (item indices, first: "
                f"{bad[:5].tolist()}): intra-list diversity would be NaN"
            )
        if feats is None:
            logger.info("no item features given: diversity@%d is left out", max_k)
        popularity = data.train.item_counts()
    exposure = torch.zeros(num_items, dtype=torch.long)

    negatives = None
    pos_parts: list[Tensor] = []
    neg_parts: list[Tensor] = []
    if cfg.sampled:
        known = data.train.union(data.valid).union(data.test)
        generator = torch.Generator().manual_seed(cfg.seed)
        negatives = sample_negatives(held.users(), known, generator=generator)
        if bool((negatives < 0).any()):
            logger.info(
                "%d %s pairs belong to users who know every item: no negative, left out of AUC/F1",
                int((negatives < 0).sum()),
                part,
            )

    # ties in the lists are broken by this random order of the items (the same for every batch and rank)
    tie_order = torch.randperm(num_items, generator=torch.Generator().manual_seed(cfg.seed))
    per_user: dict[str, list[Tensor]] = {f"{m}@{k}": [] for m in cfg.metrics for k in ks}
    if feats is not None:
        per_user[f"diversity@{max_k}"] = []
    if popularity is not None:
        per_user[f"novelty@{max_k}"] = []

    batches = users.split(cfg.batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"evaluating {part}", unit="batch")
    minus_inf = torch.tensor(float("-inf"))
    with torch.inference_mode():
        for batch in batches:
            s = scorer(batch)
            if tuple(s.shape) != (batch.numel(), num_items):
                raise DataError(f"the scorer returned shape {tuple(s.shape)}, expected ({batch.numel()}, {num_items})")
            if not s.is_floating_point():
                s = s.to(torch.float32)
            elif s._base is not None or not s.is_contiguous():  # a view: mask a copy, not the scorer's data
                s = s.clone(memory_format=torch.contiguous_format)
            if rerank is not None:  # a reranker may not rank NaN first: check every score
                _check_nan(torch.isnan(s).any(1), batch)
            dev = s.device
            held_row, held_item = held.rows(batch)  # the CSR slice of the batch's users, in order
            if negatives is not None:
                lo, hi = int(held.indptr[batch[0]]), int(held.indptr[batch[-1] + 1])
                neg = negatives[lo:hi]
                has = neg >= 0
                pos_parts.append(s[held_row[has].to(dev), held_item[has].to(dev)].cpu())
                neg_parts.append(s[held_row[has].to(dev), neg[has].to(dev)].cpu())
            for m in masks:  # in place: a Scorer returns a new tensor per call
                _check_disjoint(part, held, m, batch, held_row, held_item)
                row, item = m.rows(batch)
                if row.numel():
                    s.index_put_((row.to(dev), item.to(dev)), minus_inf.to(dev, s.dtype))
            if rerank is None:
                order = tie_order.to(dev)
                top_s, at = torch.topk(s.index_select(1, order), list_len, dim=1, sorted=True)
                top_i = order[at]
                # topk ranks NaN above every number, so a NaN among the unmasked items shows in every list
                _check_nan(torch.isnan(top_s).any(1), batch)
            else:
                # (a copy: a reranker that marks its picks in the scores must not change what is checked)
                top_i = _check_reranked(rerank(s.clone(), list_len), s, batch, list_len)
                top_s = s.gather(1, top_i)
            top_i = top_i.cpu()
            shown = (top_s > float("-inf")).cpu()
            hits = held.contains(batch[:, None].expand_as(top_i), top_i) & shown
            if list_len < max_k:
                hits = torch.cat([hits, torch.zeros(batch.numel(), max_k - list_len, dtype=torch.bool)], 1)
            n_rel = counts[batch]
            for k in ks:
                for m in cfg.metrics:
                    per_user[f"{m}@{k}"].append(ACCURACY_METRICS[m](hits, n_rel, k))
            if cfg.beyond_accuracy:
                exposure += item_exposure(top_i[shown], num_items)
                if feats is not None:
                    per_user[f"diversity@{max_k}"].append(intra_list_diversity(top_i, feats, shown=shown))
                per_user[f"novelty@{max_k}"].append(novelty(top_i, popularity, data.num_users, shown=shown))

    values = {name: _cat(parts, torch.float32) for name, parts in per_user.items()}
    if cfg.sampled:
        pos, neg = _cat(pos_parts, torch.float32), _cat(neg_parts, torch.float32)
    if dist.enabled:  # every rank's share, in rank order: the same order as one process's users
        shares = dist.all_gather_object((values, exposure, pos if cfg.sampled else None, neg if cfg.sampled else None))
        values = {name: torch.cat([sh[0][name] for sh in shares]) for name in values}
        exposure = torch.stack([sh[1] for sh in shares]).sum(0)
        if cfg.sampled:
            pos, neg = torch.cat([sh[2] for sh in shares]), torch.cat([sh[3] for sh in shares])
        users = all_users
    # a list without two featured items has no diversity (NaN): the mean is over the lists that have one
    metrics = {name: float(v.to(torch.float64).nanmean()) for name, v in values.items()}
    ordered = {f"{m}@{k}": metrics[f"{m}@{k}"] for m in cfg.metrics for k in ks}
    if cfg.beyond_accuracy:
        ordered[f"coverage@{max_k}"] = coverage_from_counts(exposure)
        if feats is not None and math.isfinite(metrics[f"diversity@{max_k}"]):
            ordered[f"diversity@{max_k}"] = metrics[f"diversity@{max_k}"]
        elif feats is not None:
            logger.info("no list holds two items with features: diversity@%d is left out", max_k)
        ordered[f"novelty@{max_k}"] = metrics[f"novelty@{max_k}"]
    if cfg.sampled:
        if pos.numel() == 0:
            raise DataError(f"no {part!r} pair could get a negative: every such user knows every item")
        ordered["auc"] = auc(pos, neg)
        labels = torch.cat([torch.ones(pos.numel(), dtype=torch.bool), torch.zeros(neg.numel(), dtype=torch.bool)])
        ordered["f1"] = f1_at_threshold(torch.cat([pos, neg]), labels)
    seconds = time.perf_counter() - start
    logger.info(
        "%s: %d users in %.2f s: %s",
        part,
        users.numel(),
        seconds,
        ", ".join(f"{k}={v:.4f}" for k, v in ordered.items()),
    )
    kept = None
    if keep_per_user:
        kept = {**values, "user_idx": users.clone()}
    return EvalResult(part=part, metrics=ordered, num_users=int(users.numel()), seconds=seconds, per_user=kept)
