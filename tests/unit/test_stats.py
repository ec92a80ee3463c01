"""Paired bootstrap intervals (graph_rec.eval.stats) against cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graph_rec.errors import ConfigError, DataError
from graph_rec.eval import EvalConfig, evaluate
from graph_rec.eval.stats import compare_results, paired_bootstrap
from tests.unit.test_evaluator import SCORES, table_scorer


def _normal(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_a_constant_shift_is_recovered_exactly_with_a_zero_width_interval():
    a = _normal(500, 1).abs()
    c = paired_bootstrap(a, a + 0.05, rounds=300)
    assert c.difference == pytest.approx(0.05)
    assert c.difference_ci == pytest.approx((0.05, 0.05))
    assert c.p_value == pytest.approx(1 / 300)  # every resample is above 0


def test_a_proportional_change_gives_its_relative_difference_exactly():
    a = _normal(400, 2).abs() + 0.1
    c = paired_bootstrap(a, a * 1.1, rounds=300)
    assert c.relative == pytest.approx(0.1)
    assert c.relative_ci == pytest.approx((0.1, 0.1))


def test_identical_models_differ_by_nothing_and_are_not_significant():
    a = _normal(300, 3)
    c = paired_bootstrap(a, a.clone(), rounds=200)
    assert c.difference == 0 and c.difference_ci == (0.0, 0.0)
    assert c.p_value == 1.0


def test_the_interval_has_the_width_the_normal_theory_gives():
    # b - a ~ N(0.1, 1), n = 4000: the 95% interval of the mean difference is 0.1 +- 1.96 / sqrt(n)
    a = _normal(4000, 4)
    b = a + 0.1 + _normal(4000, 5)
    c = paired_bootstrap(a, b, rounds=2000)
    d = (b - a).numpy()
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    lo, hi = c.difference_ci
    assert lo < c.difference < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert (lo + hi) / 2 == pytest.approx(d.mean(), abs=0.2 * half)
    assert c.p_value < 0.01


def test_pairing_matters_an_unpaired_view_would_be_much_wider():
    # b is a plus a small shift plus small noise: the per-user differences vary little although
    # the users vary a lot, so the paired interval must be narrow
    a = _normal(1000, 6) * 10
    b = a + 0.1 + 0.1 * _normal(1000, 7)
    lo, hi = paired_bootstrap(a, b).difference_ci
    assert 0 < lo < 0.1 < hi and hi - lo < 0.05


def test_clusters_of_repeated_rows_give_the_interval_of_the_rows_once():
    a = _normal(200, 8)
    b = a + _normal(200, 9) * 0.5
    once = paired_bootstrap(a, b, seed=3, rounds=500)
    # each row three times (the same user under three seeds with the same values), clustered by row
    clusters = torch.arange(200).repeat(3)
    thrice = paired_bootstrap(a.repeat(3), b.repeat(3), clusters=clusters, seed=3, rounds=500)
    assert thrice.difference_ci == pytest.approx(once.difference_ci)
    assert thrice.rows == 600 and thrice.clusters == 200
    # resampled as independent rows instead, the interval would be too narrow
    naive = paired_bootstrap(a.repeat(3), b.repeat(3), seed=3, rounds=500)
    assert naive.difference_ci[1] - naive.difference_ci[0] < 0.7 * (once.difference_ci[1] - once.difference_ci[0])


def test_the_same_seed_gives_the_same_intervals_and_another_seed_other_ones():
    a, b = _normal(300, 10), _normal(300, 11)
    assert paired_bootstrap(a, b, seed=5) == paired_bootstrap(a, b, seed=5)
    assert paired_bootstrap(a, b, seed=5).difference_ci != paired_bootstrap(a, b, seed=6).difference_ci


def test_numpy_arrays_and_lists_are_accepted():
    a = np.array([0.1, 0.2, 0.3])
    c = paired_bootstrap(a, [0.2, 0.3, 0.4], rounds=50)
    assert c.difference == pytest.approx(0.1) and c.to_dict()["difference_ci"] == pytest.approx([0.1, 0.1])


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "error", "match"),
    [
        ([0.1, 0.2], [0.1], {}, DataError, "a has 2 values, b has 1"),
        ([], [], {}, DataError, "empty"),
        ([0.1, float("nan")], [0.1, 0.2], {}, DataError, "a has 1 non-finite values .first at row 1"),
        ([0.1, 0.2], [0.1, 0.2], {"clusters": [0]}, DataError, "clusters has 1 ids for 2 rows"),
        ([0.1, 0.2], [0.1, 0.2], {"clusters": [0.5, 1.5]}, DataError, "integer ids"),
        ([0.1, 0.2], [0.1, 0.2], {"rounds": 0}, ConfigError, "rounds"),
        ([0.1, 0.2], [0.1, 0.2], {"level": 1.0}, ConfigError, "level"),
    ],
)
def test_bad_input_is_a_clear_error(a, b, kwargs, error, match):
    with pytest.raises(error, match=match):
        paired_bootstrap(a, b, **kwargs)


def test_compare_results_matches_users_by_index_whatever_their_order():
    from tests.unit.test_evaluator import TEST, TRAIN, VALID, make_data

    data = make_data(4, 6, TRAIN, VALID, TEST)
    cfg = EvalConfig(ks=(1, 3), beyond_accuracy=False)
    good = evaluate(table_scorer(SCORES), data, part="test", config=cfg, keep_per_user=True)
    worse = evaluate(table_scorer(-SCORES), data, part="test", config=cfg, keep_per_user=True)
    c = compare_results(good, worse, "mrr@3", rounds=100)
    assert c.mean_a == pytest.approx(good.metrics["mrr@3"]) and c.mean_b == pytest.approx(worse.metrics["mrr@3"])
    # the same users in another order: the same comparison
    order = torch.tensor([2, 0, 1])
    shuffled = type(worse)(
        worse.part, worse.metrics, worse.num_users, worse.seconds, {k: v[order] for k, v in worse.per_user.items()}
    )
    assert compare_results(good, shuffled, "mrr@3", rounds=100) == c


def test_compare_results_refuses_results_it_cannot_pair():
    from tests.unit.test_evaluator import TEST, TRAIN, VALID, make_data

    data = make_data(4, 6, TRAIN, VALID, TEST)
    cfg = EvalConfig(ks=(1,), beyond_accuracy=False)
    test = evaluate(table_scorer(SCORES), data, part="test", config=cfg, keep_per_user=True)
    valid = evaluate(table_scorer(SCORES), data, part="valid", config=cfg, keep_per_user=True)
    bare = evaluate(table_scorer(SCORES), data, part="test", config=cfg)
    with pytest.raises(DataError, match="keep_per_user=True"):
        compare_results(bare, test, "recall@1")
    with pytest.raises(ConfigError, match=r"no per-user 'recall@20'; it has \['hit@1'"):
        compare_results(test, test, "recall@20")
    with pytest.raises(DataError, match=r"different parts \('test' and 'valid'\)"):
        compare_results(test, valid, "recall@1")
    other_users = type(valid)("test", valid.metrics, valid.num_users, valid.seconds, valid.per_user)
    with pytest.raises(DataError, match=r"different users .3 and 3; only in the baseline, first: \[2\]"):
        compare_results(test, other_users, "recall@1")
    doubled = type(test)(
        test.part,
        test.metrics,
        test.num_users,
        test.seconds,
        {**test.per_user, "recall@1": test.per_user["recall@1"].repeat(2)},
    )
    with pytest.raises(DataError, match=r"per-user 'recall@1' has 6 values for 3 users"):
        compare_results(test, doubled, "recall@1")


def test_the_relative_interval_counts_resamples_where_the_baseline_scores_zero():
    # the baseline scores on 2 of 20 rows only: many resamples have mean_a = 0 and an infinite
    # relative change; the interval keeps them (an unbounded upper end) instead of dropping them
    a = [1.0, 1.0] + [0.0] * 18
    b = [0.0, 1.0, 1.0, 1.0] + [0.0] * 16
    c = paired_bootstrap(a, b, rounds=2000, seed=0)
    assert c.relative == pytest.approx(0.5)
    assert c.relative_ci[1] == math.inf
    # both zero in a resample is no change, not an undefined value
    z = paired_bootstrap([0.0, 0.0, 1.0], [0.0, 0.0, 1.0], rounds=500, seed=1)
    assert z.relative_ci == (0.0, 0.0)


def test_bootstrap_chunks_bound_memory_and_give_the_same_intervals(monkeypatch):
    from graph_rec.eval import stats

    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(50, generator=g), torch.rand(50, generator=g)
    whole = paired_bootstrap(a, b, rounds=300, seed=2)
    monkeypatch.setattr(stats, "_CHUNK_VALUES", 50 * 7)  # 7 resamples per chunk
    assert paired_bootstrap(a, b, rounds=300, seed=2) == whole


def test_compare_results_leaves_out_users_whose_value_is_nan_in_either_result():
    from graph_rec.eval import EvalResult

    users = torch.tensor([0, 1, 2, 3])
    a = EvalResult("test", {}, 4, 0.0, {"diversity@2": torch.tensor([0.5, float("nan"), 0.2, 0.4]), "user_idx": users})
    b = EvalResult("test", {}, 4, 0.0, {"diversity@2": torch.tensor([0.7, 0.1, 0.2, float("nan")]), "user_idx": users})
    c = compare_results(a, b, "diversity@2", rounds=50)
    assert c.rows == 2 and c.mean_a == pytest.approx(0.35) and c.mean_b == pytest.approx(0.45)


def test_one_user_or_one_cluster_is_refused_not_called_significant():
    # one resampled unit: every resample is that unit, so the interval has no width and the
    # p-value would be 1 / rounds for any difference at all
    with pytest.raises(DataError, match="at least 2 rows to resample, got 1"):
        paired_bootstrap([0.2], [0.3], rounds=200)
    with pytest.raises(DataError, match="at least 2 clusters to resample, got 1"):
        paired_bootstrap([0.2, 0.1, 0.4], [0.3, 0.2, 0.4], clusters=[7, 7, 7], rounds=200)
    two = paired_bootstrap([0.2, 0.1], [0.3, 0.1], rounds=200)
    assert two.rows == 2 and two.p_value > 0.05


def test_clusters_given_as_raw_string_ids_are_a_clear_error():
    with pytest.raises(DataError, match="clusters must be integer ids, got <U2 values"):
        paired_bootstrap([0.1, 0.2, 0.3], [0.2, 0.2, 0.1], clusters=["u1", "u2", "u1"])
