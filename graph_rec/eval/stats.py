"""Is a difference between two models real? Paired bootstrap intervals over users.

Two models evaluated on the same users give two per-user metric vectors ``a`` (the baseline) and
``b``. On a 610-user test set a 2% difference in mean Recall@20 can be noise, so every comparison
is reported with an interval: the users (or, with ``clusters``, groups of rows such as the same
user across several split seeds) are resampled with replacement ``rounds`` times, the same draw for
both models (a *paired* bootstrap: what varies is which users are in the test set, not the models),
and the percentile interval of the difference ``mean(b) - mean(a)`` and of the relative difference
``mean(b) / mean(a) - 1`` is taken (Efron and Tibshirani, An Introduction to the Bootstrap, 1993,
ch. 13; the paired form is the one Sakai, SIGIR 2006, recommends for IR metrics).

With ``clusters``, rows that share a cluster id are resampled together: use it when the same user
contributes one row per split seed, since those rows are not independent.

    >>> cmp = compare_results(als_result, graphrec_result, "recall@20")   # both with keep_per_user
    >>> cmp.relative, cmp.relative_ci                                      # e.g. -0.022, (-0.061, 0.016)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from graph_rec.data import check_float, check_int, config_to_dict
from graph_rec.errors import ConfigError, DataError

__all__ = ["PairedComparison", "compare_results", "paired_bootstrap"]

#: resample indices drawn per chunk (about 32 MiB of them), so memory stays bounded whatever
#: ``rounds`` and the number of clusters are.
_CHUNK_VALUES = 2**22


@dataclass(frozen=True)
class PairedComparison:
    """The paired comparison of ``b`` against the baseline ``a`` (:func:`paired_bootstrap`).

    Attributes:
        mean_a, mean_b: the means over all rows.
        difference: ``mean_b - mean_a``; ``difference_ci`` its percentile interval.
        relative: ``mean_b / mean_a - 1`` (NaN where ``mean_a`` is 0); ``relative_ci`` its interval over
            every resample: one where the resampled ``mean_a`` is 0 counts as ``+inf`` (or ``-inf``)
            when ``mean_b`` is above (below) 0 and as no change when both are 0, so a baseline that
            often scores 0 gives an unbounded interval rather than one over the other resamples only.
        p_value: two-sided bootstrap p-value of "no difference": twice the smaller share of
            resamples on either side of 0, at least ``1 / rounds``.
        rows, clusters: the number of paired rows and of resampled units.
        rounds, level, seed: the bootstrap's settings.
    """

    mean_a: float
    mean_b: float
    difference: float
    difference_ci: tuple[float, float]
    relative: float
    relative_ci: tuple[float, float]
    p_value: float
    rows: int
    clusters: int
    rounds: int
    level: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (tuples become lists; NaN stays a float, which ``json`` writes as ``NaN``)."""
        return config_to_dict(self)


def _vector(name: str, x: Tensor | np.ndarray | list[float]) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).to(torch.float64).flatten()
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise DataError(f"{name} has {int(bad.sum())} non-finite values (first at row {int(bad.nonzero()[0])})")
    return t


def paired_bootstrap(
    a: Tensor | np.ndarray | list[float],
    b: Tensor | np.ndarray | list[float],
    *,
    clusters: Tensor | np.ndarray | list[int] | None = None,
    rounds: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired percentile bootstrap of ``mean(b) - mean(a)`` and ``mean(b) / mean(a) - 1``.

    Args:
        a: ``[n]`` per-row values of the baseline (e.g. each user's Recall@20).
        b: ``[n]`` the other model's values for the same rows, in the same order.
        clusters: ``[n]`` integer ids; rows with the same id are resampled together (the same user
            under several split seeds). Default: every row its own unit.
        rounds: bootstrap resamples.
        level: coverage of the intervals, in (0, 1).
        seed: seeds the resampling generator (the same seed gives the same intervals).

    Returns:
        A :class:`PairedComparison`.

    Raises:
        DataError: ``a`` and ``b`` differ in length, are empty or hold NaN / infinite values;
            ``clusters`` has the wrong length or is not integers; fewer than 2 rows (or clusters)
            to resample.
        ConfigError: ``rounds``, ``level`` or ``seed`` out of range.
    """
    check_int("rounds", rounds, minimum=1)
    check_float("level", level, open_low=True, high=0.999999)
    check_int("seed", seed, minimum=0, maximum=2**63 - 1)
    va, vb = _vector("a", a), _vector("b", b)
    if va.numel() != vb.numel():
        raise DataError(f"a and b must pair up row by row: a has {va.numel()} values, b has {vb.numel()}")
    if va.numel() == 0:
        raise DataError("a and b are empty: nothing to compare")
    if clusters is None:
        sum_a, sum_b, count = va, vb, torch.ones_like(va)
    else:
        arr = np.asarray(clusters) if not isinstance(clusters, Tensor) else None
        if arr is not None and arr.dtype.kind not in "biuf":  # strings (raw user ids), objects: not for torch
            raise DataError(f"clusters must be integer ids, got {arr.dtype} values: map them to integers first")
        c = torch.as_tensor(arr if arr is not None else clusters).flatten()
        if c.numel() != va.numel():
            raise DataError(f"clusters has {c.numel()} ids for {va.numel()} rows")
        if c.is_floating_point():
            raise DataError("clusters must be integer ids")
        _, inverse = torch.unique(c, return_inverse=True)
        k = int(inverse.max()) + 1
        sum_a = torch.zeros(k, dtype=torch.float64).index_add_(0, inverse, va)
        sum_b = torch.zeros(k, dtype=torch.float64).index_add_(0, inverse, vb)
        count = torch.zeros(k, dtype=torch.float64).index_add_(0, inverse, torch.ones_like(va))
    k = sum_a.numel()
    if k < 2:  # every resample would be that one unit: a zero-width interval and p = 1 / rounds
        unit = "cluster" if clusters is not None else "row"
        raise DataError(
            f"a bootstrap needs at least 2 {unit}s to resample, got 1: it cannot tell noise from a difference"
        )
    gen = torch.Generator().manual_seed(seed)
    means_a, means_b = [], []
    chunk = max(1, _CHUNK_VALUES // k)
    for start in range(0, rounds, chunk):
        idx = torch.randint(0, k, (min(chunk, rounds - start), k), generator=gen)
        n = count[idx].sum(1)
        means_a.append(sum_a[idx].sum(1) / n)
        means_b.append(sum_b[idx].sum(1) / n)
    ma, mb = torch.cat(means_a), torch.cat(means_b)
    diff = mb - ma
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (mb / ma - 1).numpy()
    rel[(ma == 0).numpy() & (mb == 0).numpy()] = 0.0  # 0 against 0: no change; x / 0 stays +-inf
    mean_a, mean_b = float(va.mean()), float(vb.mean())
    lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
    d = diff.numpy()
    p = 2 * min(float((d <= 0).mean()), float((d >= 0).mean()))
    # "inverted_cdf": an order statistic, so an infinite tail gives an infinite bound (no inf - inf)
    rel_ci = (float(np.quantile(rel, lo, method="inverted_cdf")), float(np.quantile(rel, hi, method="inverted_cdf")))
    return PairedComparison(
        mean_a=mean_a,
        mean_b=mean_b,
        difference=mean_b - mean_a,
        difference_ci=(float(np.quantile(d, lo)), float(np.quantile(d, hi))),
        relative=mean_b / mean_a - 1 if mean_a != 0 else math.nan,
        relative_ci=rel_ci,
        p_value=min(1.0, max(p, 1.0 / rounds)),
        rows=int(va.numel()),
        clusters=k,
        rounds=rounds,
        level=level,
        seed=seed,
    )


def compare_results(baseline: Any, other: Any, metric: str, **kwargs: Any) -> PairedComparison:
    """:func:`paired_bootstrap` of two :class:`~graph_rec.eval.EvalResult` s on one per-user ``metric``.

    Both must come from ``evaluate(..., keep_per_user=True)`` on the same part of the same split;
    the users are matched by index (their order may differ). A user whose value is NaN in either
    result (diversity of a list without two items with features) is left out of the pairs.
    ``kwargs`` go to :func:`paired_bootstrap`.

    Raises:
        DataError: a result without per-user values, results of different parts, or the two evaluated
            different users.
        ConfigError: a result without ``metric`` among its per-user values (the message lists them).
    """
    parts = getattr(baseline, "part", None), getattr(other, "part", None)
    if parts[0] != parts[1]:
        raise DataError(f"the results are of different parts ({parts[0]!r} and {parts[1]!r}): compare the same part")
    rows = []
    for label, res in (("baseline", baseline), ("other", other)):
        per_user = getattr(res, "per_user", None)
        if per_user is None:
            raise DataError(f"the {label} result has no per-user values: evaluate it with keep_per_user=True")
        if metric not in per_user:
            valid = sorted(k for k in per_user if k != "user_idx")
            raise ConfigError(f"the {label} result has no per-user {metric!r}; it has {valid}")
        if per_user[metric].shape[0] != per_user["user_idx"].shape[0]:
            raise DataError(
                f"the {label} result's per-user {metric!r} has {per_user[metric].shape[0]} values for "
                f"{per_user['user_idx'].shape[0]} users: the values cannot be matched to users"
            )
        order = torch.argsort(per_user["user_idx"])
        rows.append((per_user["user_idx"][order], per_user[metric][order]))
    (users_a, a), (users_b, b) = rows
    if users_a.numel() != users_b.numel() or not torch.equal(users_a, users_b):
        only_a = sorted(set(users_a.tolist()) - set(users_b.tolist()))[:5]
        only_b = sorted(set(users_b.tolist()) - set(users_a.tolist()))[:5]
        raise DataError(
            f"the two results evaluated different users ({users_a.numel()} and {users_b.numel()}; "
            f"only in the baseline, first: {only_a}; only in the other, first: {only_b})"
        )
    both = ~(torch.isnan(a) | torch.isnan(b))
    return paired_bootstrap(a[both], b[both], **kwargs)
