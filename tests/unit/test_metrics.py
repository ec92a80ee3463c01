"""Ranking metrics against hand-computed values."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from graph_rec.errors import ConfigError, DataError
from graph_rec.eval.metrics import (
    auc,
    coverage,
    coverage_from_counts,
    f1_at_threshold,
    hit_at_k,
    intra_list_diversity,
    item_exposure,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    recall_at_k,
)

T, F = True, False
# user A: 5 relevant items, hits at positions 1 and 3; user B: 1 relevant item, at position 2;
# user C: 2 relevant items, hits at positions 1 and 5; user D: no hit.
HITS = torch.tensor(
    [
        [T, F, T, F, F],
        [F, T, F, F, F],
        [T, F, F, F, T],
        [F, F, F, F, F],
    ]
)
N_REL = torch.tensor([5, 1, 2, 3])


def _d(p: int) -> float:
    """Discount of 1-based position p."""
    return 1 / math.log2(p + 1)


def _close(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32), rtol=0, atol=1e-6)


def test_ndcg_idcg_over_min_of_relevant_and_k() -> None:
    # A: |rel| = 5 > k = 3: IDCG over 3 positions; C: |rel| = 2 < k = 5: IDCG over 2 positions
    a = (_d(1) + _d(3)) / (_d(1) + _d(2) + _d(3))
    b = _d(2) / _d(1)
    c3 = _d(1) / (_d(1) + _d(2))  # C's second hit (position 5) is outside the top 3
    _close(ndcg_at_k(HITS, N_REL, 3), [a, b, c3, 0.0])
    c = (_d(1) + _d(5)) / (_d(1) + _d(2))
    a5 = (_d(1) + _d(3)) / sum(_d(p) for p in range(1, 6))
    _close(ndcg_at_k(HITS, N_REL, 5), [a5, b, c, 0.0])
    assert abs(c - 0.850345) < 1e-6  # 1.386853 / 1.630930


def test_ndcg_single_relevant_item_at_position_1_vs_3() -> None:
    hits = torch.tensor([[T, F, F], [F, F, T]])
    n_rel = torch.tensor([1, 1])
    _close(ndcg_at_k(hits, n_rel, 3), [1.0, 0.5])  # 1 / log2(1 + 1), 1 / log2(3 + 1)
    _close(ndcg_at_k(hits, n_rel, 2), [1.0, 0.0])  # the hit at 3 is outside the top 2
    _close(mrr_at_k(hits, n_rel, 3), [1.0, 1 / 3])


def test_recall_uses_number_of_relevant_items() -> None:
    _close(recall_at_k(HITS, N_REL, 3), [2 / 5, 1.0, 1 / 2, 0.0])
    _close(recall_at_k(HITS, N_REL, 5), [2 / 5, 1.0, 1.0, 0.0])
    _close(recall_at_k(HITS, N_REL, 1), [1 / 5, 0.0, 1 / 2, 0.0])


def test_precision_divides_by_k_even_when_k_exceeds_relevant() -> None:
    _close(precision_at_k(HITS, N_REL, 4), [2 / 4, 1 / 4, 1 / 4, 0.0])  # B has 1 relevant item, k = 4
    _close(precision_at_k(HITS, N_REL, 1), [1.0, 0.0, 1.0, 0.0])


def test_hit_and_mrr() -> None:
    _close(hit_at_k(HITS, N_REL, 1), [1.0, 0.0, 1.0, 0.0])
    _close(hit_at_k(HITS, N_REL, 2), [1.0, 1.0, 1.0, 0.0])
    _close(mrr_at_k(HITS, N_REL, 5), [1.0, 1 / 2, 1.0, 0.0])
    _close(mrr_at_k(HITS, N_REL, 1), [1.0, 0.0, 1.0, 0.0])
    late = torch.tensor([[F, F, T, T]])
    _close(mrr_at_k(late, torch.tensor([2]), 4), [1 / 3])  # the first hit counts, not the best


@pytest.mark.parametrize("fn", [recall_at_k, precision_at_k, hit_at_k, mrr_at_k, ndcg_at_k])
def test_argument_checks(fn) -> None:
    with pytest.raises(ConfigError, match="k must be"):
        fn(HITS, N_REL, 0)
    with pytest.raises(ConfigError, match="k must be"):
        fn(HITS, N_REL, 6)
    with pytest.raises(DataError, match="num_relevant must be >= 1"):
        fn(HITS, torch.tensor([1, 0, 1, 1]), 3)
    with pytest.raises(DataError, match=r"\[B\]"):
        fn(HITS, torch.tensor([1, 1]), 3)
    assert fn(HITS, N_REL, 2).shape == (4,) and fn(HITS, N_REL, 2).dtype == torch.float32


def test_coverage_over_batches_and_from_counts() -> None:
    assert coverage(torch.tensor([[0, 1], [1, 2]]), 5) == pytest.approx(3 / 5)
    batches = [torch.tensor([[0, 1]]), torch.tensor([[3, 3], [1, 0]])]
    assert coverage(batches, 5) == pytest.approx(3 / 5)  # {0, 1, 3}
    counts = item_exposure(batches[0], 5) + item_exposure(batches[1], 5)
    assert counts.tolist() == [2, 2, 0, 2, 0]
    assert coverage_from_counts(counts) == pytest.approx(3 / 5)


def test_intra_list_diversity_hand_case() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    topk = torch.tensor([[0, 1, 2], [0, 3, 0]])
    # [0, 1, 2]: distances 1 - 0, 1 - 1/sqrt(2), 1 - 1/sqrt(2); [0, 3, 0]: parallel vectors, all 0
    expected = (1 + 2 * (1 - 1 / math.sqrt(2))) / 3
    _close(intra_list_diversity(topk, feats), [expected, 0.0])
    _close(intra_list_diversity(torch.tensor([[0, 1]]), feats), [1.0])
    assert torch.isnan(intra_list_diversity(torch.tensor([[2]]), feats)).all()  # no pairs: no diversity


def test_intra_list_diversity_leaves_out_items_without_features_and_unshown_slots() -> None:
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 0.0], [0.0, 1.0]])  # item 2 has no features
    cos01 = 1 / math.sqrt(1.01)
    # [0, 1, 2]: only the pair (0, 1) counts (item 2 would have been "distance 1" from both)
    _close(intra_list_diversity(torch.tensor([[0, 1, 2]]), feats), [1 - cos01])
    assert torch.isnan(intra_list_diversity(torch.tensor([[0, 2]]), feats)).all()  # one featured item
    # an unshown (padding) slot is not part of the list
    shown = torch.tensor([[True, True, False]])
    _close(intra_list_diversity(torch.tensor([[0, 1, 3]]), feats, shown=shown), [1 - cos01])
    _close(intra_list_diversity(torch.tensor([[0, 1, 3]]), feats), [(1 - cos01 + 1 + 1 - 0.1 / math.sqrt(1.01)) / 3])


def test_intra_list_diversity_matches_pairwise_loop() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(20, 5, generator=g)
    topk = torch.randint(0, 20, (6, 4), generator=g)
    unit = torch.nn.functional.normalize(feats, dim=1)
    expected = []
    for row in topk.tolist():
        pairs = list(itertools.combinations(row, 2))
        expected.append(sum(1 - float(unit[i] @ unit[j]) for i, j in pairs) / len(pairs))
    _close(intra_list_diversity(topk, feats), expected)


def test_novelty_self_information_unseen_items_count_one() -> None:
    popularity = torch.tensor([4, 2, 0, 1])  # 4 users: p = 1, 1/2, 1/4 (unseen -> count 1), 1/4
    topk = torch.tensor([[0, 1], [2, 3], [1, 3]])
    _close(novelty(topk, popularity, 4), [0.5, 2.0, 1.5])
    # over the shown slots only: [0, (1 hidden)] -> 0 bits; [2, 3] -> 2; [(1 hidden), 3] -> 2
    shown = torch.tensor([[True, False], [True, True], [False, True]])
    _close(novelty(topk, popularity, 4, shown=shown), [0.0, 2.0, 2.0])


def _pairwise_auc(pos: list[float], neg: list[float]) -> float:
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


def test_auc_with_ties() -> None:
    # pairs: (0.9, 0.5) 1, (0.9, 0.1) 1, (0.5, 0.5) 1/2, (0.5, 0.1) 1, (0.3, 0.5) 0, (0.3, 0.1) 1
    assert auc(torch.tensor([0.9, 0.5, 0.3]), torch.tensor([0.5, 0.1])) == pytest.approx(4.5 / 6)
    assert auc(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0, 1.0])) == pytest.approx(0.5)
    assert auc(torch.tensor([2.0, 3.0]), torch.tensor([1.0])) == pytest.approx(1.0)
    assert auc(torch.tensor([0.0]), torch.tensor([1.0, 2.0])) == pytest.approx(0.0)
    g = torch.Generator().manual_seed(1)
    pos = torch.randint(0, 5, (30,), generator=g).float()  # many ties
    neg = torch.randint(0, 4, (25,), generator=g).float()
    assert auc(pos, neg) == pytest.approx(_pairwise_auc(pos.tolist(), neg.tolist()), abs=1e-12)
    with pytest.raises(DataError, match="positives and negatives"):
        auc(torch.tensor([1.0]), torch.tensor([]))


def test_f1_at_threshold_on_the_sigmoid() -> None:
    scores = torch.tensor([2.0, -1.0, 0.5, -3.0, 0.0])  # sigmoid >= 0.5 <=> score >= 0
    labels = torch.tensor([1, 1, 0, 0, 1])
    # predicted positive: 0, 2, 4 -> TP 2 (0, 4), FP 1 (2), FN 1 (1): F1 = 4 / 6
    assert f1_at_threshold(scores, labels) == pytest.approx(2 / 3)
    # F1 depends on the score scale: sigmoid(2) < 0.9 predicts nothing; scaled by 10 it predicts 0, 2
    assert f1_at_threshold(scores, labels, threshold=0.9) == 0.0
    assert f1_at_threshold(scores * 10, labels, threshold=0.9) == pytest.approx(2 * 1 / (2 * 1 + 1 + 2))
    assert f1_at_threshold(torch.tensor([-1.0]), torch.tensor([0])) == 0.0  # nothing to find, nothing predicted


def test_more_hits_than_relevant_items_is_an_error() -> None:
    # a list holding the one relevant item twice would give recall 2 and NDCG above 1
    hits = torch.tensor([[True, True, False]])
    for metric in (recall_at_k, ndcg_at_k, precision_at_k, hit_at_k, mrr_at_k):
        with pytest.raises(DataError, match=r"more hits than relevant items in row\(s\) \[0\]"):
            metric(hits, torch.tensor([1]), 3)


def test_exposure_refuses_items_outside_the_catalogue() -> None:
    with pytest.raises(DataError, match=r"item indices must be in \[0, 5\), got 0 .. 7"):
        coverage(torch.tensor([[0, 7]]), 5)
    with pytest.raises(DataError, match=r"got -1 .. 2"):
        item_exposure(torch.tensor([[-1, 2]]), 5)


def test_f1_refuses_labels_other_than_0_1_nan_scores_and_thresholds_outside_0_1() -> None:
    scores = torch.tensor([2.0, -2.0])
    with pytest.raises(DataError, match=r"labels must be 0/1 \(or bool\), got \[-1\]"):
        f1_at_threshold(scores, torch.tensor([1, -1]))
    with pytest.raises(DataError, match="F1 got NaN scores"):
        f1_at_threshold(torch.tensor([float("nan"), 1.0]), torch.tensor([1, 0]))
    for bad in (0.0, 1.0, 1.5, -1.0):
        with pytest.raises(ConfigError, match="threshold must be a number in"):
            f1_at_threshold(scores, torch.tensor([1, 0]), threshold=bad)
    assert f1_at_threshold(scores, torch.tensor([1.0, 0.0])) == 1.0  # float 0/1 labels are fine
