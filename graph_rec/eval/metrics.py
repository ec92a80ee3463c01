"""Ranking metrics as pure functions on tensors.

Top-k accuracy metrics take, for a batch of ``B`` users:

* ``hits``: bool ``[B, K]``, ``hits[b, p]`` is True when the item ranked at position ``p`` (0-based)
  of user ``b``'s list is relevant (in the user's held-out set);
* ``num_relevant``: long ``[B]``, the size of each user's held-out set (``>= 1``);
* ``k``: the cut-off, ``1 <= k <= K``;

and return a float ``[B]`` tensor of per-user values; the evaluator averages them over users.

Pitfalls these definitions avoid (each one changes published numbers):

* **IDCG over** ``min(|rel|, k)`` positions, not over ``|rel|`` (NDCG of a perfect list would stay
  below 1 when ``|rel| > k``) nor over ``k`` (a perfect list for a user with one relevant item would
  score below 1).
* **1-based positions** in the discount: the first item is discounted by ``log2(1 + 1) = 1``.
* **Users without ground truth are excluded** from the mean (they have no ``num_relevant >= 1``
  row here at all) rather than counted as 0, which would depend on how many such users the split has.
* **Known positives are masked before top-k, not after**: a training item removed from the list after
  ranking would leave a hole and the list would hold fewer than ``k`` candidates. The evaluator sets
  their scores to ``-inf`` and only then takes the top ``k``.

Beyond-accuracy metrics (coverage, intra-list diversity, novelty) look at the top-k item lists
``topk`` long ``[B, K]``; the sampled-protocol metrics (AUC, F1) of the KGCN/RippleNet papers look at
the scores of labelled (user, item) pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from graph_rec.data import check_float
from graph_rec.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

__all__ = [
    "ACCURACY_METRICS",
    "auc",
    "coverage",
    "coverage_from_counts",
    "f1_at_threshold",
    "hit_at_k",
    "intra_list_diversity",
    "item_exposure",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "recall_at_k",
]


def _top(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    """Check the common arguments and return ``hits[:, :k]`` as float ``[B, k]``."""
    if hits.dim() != 2:
        raise DataError(f"hits must be [B, K], got shape {tuple(hits.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= hits.shape[1]:
        raise ConfigError(f"k must be an integer in [1, {hits.shape[1]}] (the list length), got {k!r}")
    if num_relevant.shape != (hits.shape[0],):
        raise DataError(f"num_relevant must be [B] = [{hits.shape[0]}], got shape {tuple(num_relevant.shape)}")
    if num_relevant.numel() and bool((num_relevant < 1).any()):
        raise DataError("num_relevant must be >= 1 for every user: users without ground truth are not evaluated")
    h = hits[:, :k].to(torch.float32)
    over = h.sum(1) > num_relevant.to(h.device)
    if bool(over.any()):  # an item listed twice, or a wrong |rel|: recall and NDCG would exceed 1
        raise DataError(
            f"more hits than relevant items in row(s) {over.nonzero().flatten()[:5].tolist()}: "
            "a list holds an item twice, or num_relevant is wrong"
        )
    return h


def recall_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    """Recall@k = (hits in the top k) / |rel|.

    RecBole's definition: the denominator is ``|rel|``, not ``min(|rel|, k)``, so a user with more
    relevant items than ``k`` cannot reach 1.

    Args:
        hits: bool ``[B, K]``. num_relevant: long ``[B]``, ``>= 1``. k: cut-off ``<= K``.

    Returns:
        float ``[B]``.
    """
    h = _top(hits, num_relevant, k)
    return h.sum(1) / num_relevant.to(torch.float32)


def precision_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    """Precision@k = (hits in the top k) / k (also when the user has fewer than ``k`` relevant items).

    Args:
        hits: bool ``[B, K]``. num_relevant: long ``[B]``, ``>= 1``. k: cut-off ``<= K``.

    Returns:
        float ``[B]``.
    """
    return _top(hits, num_relevant, k).sum(1) / k


def hit_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    """Hit@k (HR@k) = 1 if at least one of the top k items is relevant, else 0.

    Args:
        hits: bool ``[B, K]``. num_relevant: long ``[B]``, ``>= 1``. k: cut-off ``<= K``.

    Returns:
        float ``[B]`` of 0/1.
    """
    return (_top(hits, num_relevant, k).sum(1) > 0).to(torch.float32)


def mrr_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    """MRR@k = 1 / p, with ``p`` the 1-based position of the first relevant item in the top k; 0 if none.

    Args:
        hits: bool ``[B, K]``. num_relevant: long ``[B]``, ``>= 1``. k: cut-off ``<= K``.

    Returns:
        float ``[B]``.
    """
    h = _top(hits, num_relevant, k)
    first = h.argmax(1)  # index of the first maximum, i.e. of the first hit when there is one
    found = h.sum(1) > 0
    return torch.where(found, 1.0 / (first + 1).to(torch.float32), torch.zeros(()))


def ndcg_at_k(hits: Tensor, num_relevant: Tensor, k: int) -> Tensor:
    """NDCG@k with binary relevance.

    ``DCG = sum_{p=1..k} hit_p / log2(p + 1)`` over 1-based positions ``p``;
    ``IDCG = sum_{p=1..min(|rel|, k)} 1 / log2(p + 1)``, the DCG of a perfect list of length ``k``;
    ``NDCG = DCG / IDCG``. See the module docstring for the pitfalls this avoids (IDCG over
    ``min(|rel|, k)``, 1-based positions, users without ground truth excluded, masking before top-k).

    Args:
        hits: bool ``[B, K]``. num_relevant: long ``[B]``, ``>= 1``. k: cut-off ``<= K``.

    Returns:
        float ``[B]`` in ``[0, 1]``.
    """
    h = _top(hits, num_relevant, k).to(torch.float64)
    discount = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))  # positions 1..k
    dcg = h @ discount
    ideal = torch.cumsum(discount, 0)  # ideal[n - 1] = IDCG with n relevant items in the list
    idcg = ideal[num_relevant.clamp(max=k) - 1]
    return (dcg / idcg).to(torch.float32)


#: The per-user accuracy metrics by the names :class:`~graph_rec.eval.evaluator.EvalConfig` accepts.
ACCURACY_METRICS: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "precision": precision_at_k,
    "hit": hit_at_k,
    "mrr": mrr_at_k,
}


# ---------------------------------------------------------------------------------------- beyond accuracy
def item_exposure(topk: Tensor, num_items: int) -> Tensor:
    """``[num_items]`` long: how many times each item appears in the lists ``topk`` ``[B, K]``.

    Sums of these over batches give the counts :func:`coverage_from_counts` needs, so coverage can be
    accumulated without storing every user's list.
    """
    flat = topk.reshape(-1).to(torch.long).cpu()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= num_items):
        raise DataError(f"item indices must be in [0, {num_items}), got {int(flat.min())} .. {int(flat.max())}")
    return torch.bincount(flat, minlength=num_items)


def coverage_from_counts(counts: Tensor) -> float:
    """Catalogue coverage from accumulated exposure counts ``[num_items]``: share of items shown at least once."""
    if counts.dim() != 1 or counts.numel() == 0:
        raise DataError(f"exposure counts must be a non-empty [num_items] vector, got shape {tuple(counts.shape)}")
    return float((counts > 0).sum()) / counts.numel()


def coverage(topk: Tensor | Iterable[Tensor], num_items: int) -> float:
    """Catalogue coverage = |distinct items in all users' top-k lists| / num_items.

    Args:
        topk: long ``[B, K]`` item lists, or an iterable of such batches.
        num_items: the catalogue size.

    Returns:
        A float in ``[0, 1]``. For batch-by-batch accumulation use :func:`item_exposure` and
        :func:`coverage_from_counts`.
    """
    if int(num_items) < 1:
        raise ConfigError(f"num_items must be >= 1, got {num_items!r}")
    batches = [topk] if isinstance(topk, Tensor) else topk
    counts = torch.zeros(num_items, dtype=torch.long)
    for batch in batches:
        counts += item_exposure(batch, num_items)
    return coverage_from_counts(counts)


def intra_list_diversity(topk: Tensor, item_features: Tensor, *, shown: Tensor | None = None) -> Tensor:
    """Intra-list diversity: mean pairwise cosine distance ``1 - cos(x_i, x_j)`` over the list's pairs.

    For a list of ``K`` items the mean is over the ``K (K - 1) / 2`` unordered pairs of items that
    count; computed for the whole batch at once with ``bmm``. An item whose feature vector is zero
    has no features: it is left out of the pairs (counting it as distance 1 from everything would
    make a list of featureless items look maximally diverse), as are the slots ``shown`` marks as
    not shown. A list with fewer than two items that count has no pairs: NaN (leave it out of a mean).

    Args:
        topk: long ``[B, K]`` item indices.
        item_features: float ``[num_items, d]``.
        shown: optional bool ``[B, K]``: the slots the user is shown (padding slots are False).

    Returns:
        float ``[B]`` in ``[0, 2]``, NaN where a list has fewer than two items that count.
    """
    if topk.dim() != 2 or item_features.dim() != 2:
        raise DataError(
            f"need topk [B, K] and item_features [num_items, d], got {tuple(topk.shape)}, {tuple(item_features.shape)}"
        )
    if shown is not None and shown.shape != topk.shape:
        raise DataError(f"shown must be [B, K] = {list(topk.shape)}, got shape {tuple(shown.shape)}")
    dev = item_features.device
    idx = topk.to(dev, torch.long)
    feats = item_features.to(torch.float32)
    has = (feats != 0).any(1)[idx]  # [B, K]
    if shown is not None:
        has = has & shown.to(dev)
    x = F.normalize(feats, dim=1)[idx] * has[..., None]  # [B, K, d]; rows that do not count are zero
    sim = torch.bmm(x, x.transpose(1, 2))  # [B, K, K]
    off_diag = sim.sum((1, 2)) - sim.diagonal(dim1=1, dim2=2).sum(1)  # both triangles
    n = has.sum(1).to(torch.float32)
    pairs = n * (n - 1)
    mean_cos = off_diag / pairs.clamp(min=1)
    return torch.where(pairs > 0, 1.0 - mean_cos, torch.full_like(mean_cos, float("nan"))).cpu()


def novelty(topk: Tensor, item_popularity: Tensor, num_users: int, *, shown: Tensor | None = None) -> Tensor:
    """Novelty: mean self-information ``-log2(p_i)`` of the items in each list.

    ``p_i = max(count_i, 1) / num_users``, with ``count_i`` the number of (training) users who
    interacted with item ``i``. Items no training user has seen get count 1 (the information of a
    single interaction) instead of ``p = 0``, which would give infinite self-information; so the
    maximum value is ``log2(num_users)``.

    Args:
        topk: long ``[B, K]`` item indices.
        item_popularity: ``[num_items]`` interaction counts per item.
        num_users: the number of users the counts are over.
        shown: optional bool ``[B, K]``: the slots the user is shown; the mean is over those (NaN for
            a list with none).

    Returns:
        float ``[B]``, in bits.
    """
    if int(num_users) < 1:
        raise ConfigError(f"num_users must be >= 1, got {num_users!r}")
    p = item_popularity.to(torch.float64).clamp(min=1.0) / float(num_users)
    info = -torch.log2(p)[topk.to(torch.long).cpu()]
    if shown is None:
        return info.mean(1).to(torch.float32)
    if shown.shape != topk.shape:
        raise DataError(f"shown must be [B, K] = {list(topk.shape)}, got shape {tuple(shown.shape)}")
    w = shown.cpu().to(torch.float64)
    return ((info * w).sum(1) / w.sum(1)).to(torch.float32)


# ---------------------------------------------------------------------------------------- sampled protocol
def auc(pos_scores: Tensor, neg_scores: Tensor) -> float:
    """ROC AUC of positives against negatives, over all labelled pairs together.

    ``AUC = P(score(pos) > score(neg)) + 0.5 * P(score(pos) == score(neg))`` over every (positive,
    negative) combination: the Mann-Whitney statistic, computed from mid-ranks of the pooled scores
    (``(sum of positive ranks - P (P + 1) / 2) / (P N)``), with ties given their average rank so a tie
    counts 1/2. This equals ``sklearn.metrics.roc_auc_score`` on the concatenated labels and scores:
    one AUC over all pairs, not a mean per user. The KGCN and RippleNet code differs: it averages
    ``roc_auc_score`` over fixed-size batches of test pairs and drops the last partial batch (and
    draws its negatives per user without replacement), so its published figures are close to, not
    equal to, this pooled AUC of the same scores.

    Args:
        pos_scores: ``[P]`` scores of positive pairs. neg_scores: ``[N]`` scores of negative pairs.

    Returns:
        A float in ``[0, 1]``.
    """
    pos = pos_scores.reshape(-1).to(torch.float64).cpu()
    neg = neg_scores.reshape(-1).to(torch.float64).cpu()
    if pos.numel() == 0 or neg.numel() == 0:
        raise DataError(f"AUC needs positives and negatives, got {pos.numel()} and {neg.numel()}")
    if torch.isnan(pos).any() or torch.isnan(neg).any():
        raise DataError("AUC got NaN scores")
    pooled = torch.cat([pos, neg])
    _, inverse, counts = torch.unique(pooled, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)  # 1-based rank of the last member of each tie group
    mid = ends - (counts.to(torch.float64) - 1) / 2
    ranks = mid[inverse]
    n_pos, n_neg = pos.numel(), neg.numel()
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1_at_threshold(scores: Tensor, labels: Tensor, threshold: float = 0.5) -> float:
    """F1 of the predictions ``sigmoid(score) >= threshold`` against 0/1 ``labels``.

    ``F1 = 2 TP / (2 TP + FP + FN)`` (0 when there is neither a positive label nor a positive
    prediction). Unlike AUC, F1 depends on the scale of the scores: it assumes they are logits of
    a pointwise (log-loss) model, as in KGCN/RippleNet; for models trained with a ranking loss (BPR)
    the scores are only meaningful up to a monotone transform and F1 at a fixed threshold says little.

    Args:
        scores: ``[N]`` raw scores (logits). labels: ``[N]`` 0/1 or bool. threshold: on the sigmoid,
            in (0, 1).

    Returns:
        A float in ``[0, 1]``.
    """
    check_float("threshold", threshold, open_low=True, high=float(np.nextafter(1.0, 0.0)))
    s = scores.reshape(-1).to(torch.float64).cpu()
    raw = labels.reshape(-1).cpu()
    if s.numel() != raw.numel():
        raise DataError(f"scores and labels differ in length: {s.numel()} vs {raw.numel()}")
    bad = ~((raw == 0) | (raw == 1))
    if bool(bad.any()):
        raise DataError(f"labels must be 0/1 (or bool), got {sorted(set(raw[bad].tolist()))[:5]}")
    if bool(torch.isnan(s).any()):
        raise DataError("F1 got NaN scores")
    y = raw.to(torch.bool)
    pred = torch.sigmoid(s) >= threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2 * tp / denom
