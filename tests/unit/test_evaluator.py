"""The full-ranking protocol on tiny hand-made splits: masking, exclusion, batching, beyond accuracy, sampled AUC."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from graph_rec.data import RecData, UserItems
from graph_rec.errors import ConfigError, DataError
from graph_rec.eval import EvalConfig, evaluate, sample_negatives
from graph_rec.eval.metrics import auc
from graph_rec.models.base import Scorer
from kg_builders.graph import EdgeStore, KnowledgeGraph
from kg_builders.split import Split

Pairs = list[tuple[int, int]]


def make_data(num_users: int, num_items: int, train: Pairs, valid: Pairs, test: Pairs) -> RecData:
    """A real RecData: users u0.., items i0.., training pairs as interaction edges."""
    users = [f"u{i}" for i in range(num_users)]
    items = [f"i{i}" for i in range(num_items)]
    ei = np.array([[u for u, _ in train], [i for _, i in train]], dtype=np.int64)
    kg = KnowledgeGraph(
        {"user": users, "item": items},
        {("user", "interacted", "item"): EdgeStore(ei, np.ones(len(train), dtype=np.float32))},
    )

    def table(pairs: Pairs) -> pd.DataFrame:
        return pd.DataFrame({"user_id": [f"u{u}" for u, _ in pairs], "item_id": [f"i{i}" for _, i in pairs]})

    return RecData(kg, Split(table(train), table(valid), table(test), "hand"))


# 4 users x 6 items.       train        valid          test
#   u0                      {i0}         {i1}           {i2}
#   u1                      {i1, i2}     {i0, i3}       {i5}
#   u2                      {i3}         -              {i4}
#   u3                      -            {i3}           -
TRAIN = [(0, 0), (1, 1), (1, 2), (2, 3)]
VALID = [(0, 1), (1, 0), (1, 3), (3, 3)]
TEST = [(0, 2), (1, 5), (2, 4)]
SCORES = torch.tensor(
    [
        [10.0, 9.0, 8.0, 1.0, 2.0, 3.0],  # u0: the training item i0 is ranked first
        [5.0, 9.0, 8.0, 1.0, 7.0, 6.0],
        [1.0, 2.0, 3.0, 9.0, 8.0, 4.0],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    ]
)
# ranked after masking, valid: u0 i1 i2 i5 ..; u1 i4 i5 i0 i3; u3 i5 i4 i3 ..  (u2 has no valid pair)
# ranked after masking, test:  u0 i2 i5 i4 ..; u1 i4 i5;       u2 i4 i5 i2 ..  (u3 has no test pair)
FEATS = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


def table_scorer(scores: torch.Tensor, **kwargs) -> Scorer:
    return Scorer(lambda users: scores[users], **kwargs)


@pytest.fixture
def data() -> RecData:
    return make_data(4, 6, TRAIN, VALID, TEST)


def test_valid_metrics_hand_computed(data: RecData) -> None:
    cfg = EvalConfig(ks=(1, 3), beyond_accuracy=False)
    res = evaluate(table_scorer(SCORES), data, part="valid", config=cfg, keep_per_user=True)
    d = lambda p: 1 / math.log2(p + 1)  # noqa: E731
    # u0: hit at 1 (|rel| 1); u1: hit at 3 (|rel| 2); u3: hit at 3 (|rel| 1); u2 is not evaluated
    expected = {
        "recall@1": 1 / 3,
        "recall@3": (1 + 1 / 2 + 1) / 3,
        "ndcg@1": 1 / 3,
        "ndcg@3": (1 + d(3) / (d(1) + d(2)) + d(3)) / 3,
        "precision@1": 1 / 3,
        "precision@3": (1 / 3) * 3 / 3,
        "hit@1": 1 / 3,
        "hit@3": 1.0,
        "mrr@1": 1 / 3,
        "mrr@3": (1 + 1 / 3 + 1 / 3) / 3,
    }
    assert list(res.metrics) == list(expected)
    assert res.metrics == pytest.approx(expected, abs=1e-6)
    assert res.num_users == 3 and res.part == "valid"
    assert res.per_user["user_idx"].tolist() == [0, 1, 3]
    assert res.per_user["ndcg@3"].tolist() == pytest.approx([1.0, d(3) / (d(1) + d(2)), 0.5], abs=1e-6)


def test_training_item_ranked_first_is_masked_and_takes_no_slot(data: RecData) -> None:
    res = evaluate(table_scorer(SCORES), data, config=EvalConfig(ks=(1,), beyond_accuracy=False), keep_per_user=True)
    # u0's scorer puts the training item i0 first; after masking its valid item i1 is at position 1
    assert res.per_user["hit@1"][0].item() == 1.0
    assert res.per_user["mrr@1"][0].item() == 1.0


def test_test_part_masks_validation_items_too(data: RecData) -> None:
    cfg = EvalConfig(ks=(1, 3), metrics=("recall", "mrr"), beyond_accuracy=False)
    res = evaluate(table_scorer(SCORES), data, part="test", config=cfg, keep_per_user=True)
    # u0: i0 (train) and i1 (valid) masked -> i2 first; u1: only i4, i5 unmasked -> i5 second; u2: i4 first
    assert res.per_user["user_idx"].tolist() == [0, 1, 2]
    assert res.per_user["mrr@3"].tolist() == pytest.approx([1.0, 0.5, 1.0])
    assert res.metrics == pytest.approx({"recall@1": 2 / 3, "recall@3": 1.0, "mrr@1": 2 / 3, "mrr@3": 2.5 / 3})


def test_users_without_ground_truth_are_excluded_not_zero(data: RecData) -> None:
    cfg = EvalConfig(ks=(3,), metrics=("recall",), beyond_accuracy=False)
    res = evaluate(table_scorer(SCORES), data, part="valid", config=cfg)
    assert res.num_users == 3
    assert res.metrics["recall@3"] == pytest.approx(2.5 / 3)  # counting u2 as 0 would give 2.5 / 4


def test_k_beyond_the_catalogue_and_masked_slots_are_misses(data: RecData) -> None:
    cfg = EvalConfig(ks=(10,), metrics=("precision", "recall"), beyond_accuracy=True)
    res = evaluate(table_scorer(SCORES), data, part="valid", config=cfg)
    # 6 items ranked; masked (-inf) slots never count: u0 1 hit, u1 2 hits, u3 1 hit, over k = 10
    assert res.metrics["precision@10"] == pytest.approx((1 + 2 + 1) / 10 / 3)
    assert res.metrics["recall@10"] == pytest.approx(1.0)
    assert res.metrics["coverage@10"] == pytest.approx(1.0)


def test_beyond_accuracy_hand_case(data: RecData) -> None:
    cfg = EvalConfig(ks=(2,), metrics=("hit",))
    res = evaluate(table_scorer(SCORES), data, part="valid", config=cfg, item_features=FEATS)
    # lists: u0 [i1, i2], u1 [i4, i5], u3 [i5, i4] -> items {1, 2, 4, 5} of 6
    assert res.metrics["coverage@2"] == pytest.approx(4 / 6)
    diversity = (1 + 2 * (1 - 1 / math.sqrt(2))) / 3  # [1,0]-[0,1]: 1; [1,0]-[1,1]: 1 - 1/sqrt(2)
    assert res.metrics["diversity@2"] == pytest.approx(diversity, abs=1e-6)
    # training popularity: i0..i3 once, i4 and i5 never (-> count 1): p = 1/4 for every item, 2 bits
    assert res.metrics["novelty@2"] == pytest.approx(2.0)
    assert list(res.metrics) == ["hit@2", "coverage@2", "diversity@2", "novelty@2"]
    # without item features diversity is left out: never measured in the scorer's own embedding space,
    # which differs from model to model
    from_repr = evaluate(table_scorer(SCORES, item_repr=FEATS), data, config=cfg)
    assert "diversity@2" not in from_repr.metrics
    assert "diversity@2" not in evaluate(table_scorer(SCORES), data, config=cfg).metrics


def _random_case(seed: int = 0, num_users: int = 40, num_items: int = 25) -> tuple[RecData, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, Pairs] = {"train": [], "valid": [], "test": []}
    for u in range(num_users):
        perm = torch.randperm(num_items, generator=g).tolist()
        n_train, n_valid, n_test = (int(x) for x in torch.randint(0, 5, (3,), generator=g))
        parts["train"] += [(u, i) for i in perm[:n_train]]
        parts["valid"] += [(u, i) for i in perm[n_train : n_train + n_valid]]
        parts["test"] += [(u, i) for i in perm[n_train + n_valid : n_train + n_valid + n_test]]
    parts["train"].append((num_users - 1, num_items - 1))  # every graph needs a training pair
    scores = torch.randn(num_users, num_items, generator=g)  # continuous: no ties
    return make_data(num_users, num_items, parts["train"], parts["valid"], parts["test"]), scores


def _reference(data: RecData, scores: torch.Tensor, part: str, k: int) -> dict[str, float]:
    """A per-user loop, straight from the definitions."""
    masked = [data.train] + ([data.valid] if part == "test" else [])
    held = getattr(data, part)
    out = {"recall": [], "ndcg": [], "precision": [], "hit": [], "mrr": []}
    for u in range(data.num_users):
        rel = set(held.indices[held.indptr[u] : held.indptr[u + 1]].tolist())
        if not rel:
            continue
        known = set().union(*(set(m.indices[m.indptr[u] : m.indptr[u + 1]].tolist()) for m in masked))
        ranked = [i for i in torch.argsort(scores[u], descending=True).tolist() if i not in known][:k]
        hits = [i in rel for i in ranked]
        out["recall"].append(sum(hits) / len(rel))
        out["precision"].append(sum(hits) / k)
        out["hit"].append(float(any(hits)))
        out["mrr"].append(1 / (hits.index(True) + 1) if any(hits) else 0.0)
        dcg = sum(1 / math.log2(p + 2) for p, h in enumerate(hits) if h)
        out["ndcg"].append(dcg / sum(1 / math.log2(p + 2) for p in range(min(len(rel), k))))
    return {f"{m}@{k}": sum(v) / len(v) for m, v in out.items()}


@pytest.mark.parametrize("part", ["valid", "test"])
def test_matches_per_user_reference_and_batching_invariance(part: str) -> None:
    data, scores = _random_case()
    feats = torch.randn(data.num_items, 3, generator=torch.Generator().manual_seed(5))
    base = dict(ks=(5, 10), sampled=True)
    results = [
        evaluate(table_scorer(scores), data, part=part, config=EvalConfig(batch_size=b, **base), item_features=feats)
        for b in (1, 7, 1000)
    ]
    assert results[0].metrics == results[1].metrics == results[2].metrics  # identical, not approximately
    for k in (5, 10):
        ref = _reference(data, scores, part, k)
        assert {n: results[0].metrics[n] for n in ref} == pytest.approx(ref, abs=1e-6)
    assert set(results[0].metrics) >= {"coverage@10", "diversity@10", "novelty@10", "auc", "f1"}


def test_sampled_negatives_avoid_known_positives_and_follow_the_seed() -> None:
    data, _ = _random_case(seed=3)
    known = data.train.union(data.valid).union(data.test)
    users = data.test.users()
    a = sample_negatives(users, known, generator=torch.Generator().manual_seed(1))
    b = sample_negatives(users, known, generator=torch.Generator().manual_seed(1))
    c = sample_negatives(users, known, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == users.shape and int(a.min()) >= 0 and int(a.max()) < data.num_items
    assert not known.contains(users, a).any()


def test_sampled_negatives_exact_fallback_and_users_who_know_everything() -> None:
    # user 0 knows items 0..4 but 3 (one free item); user 1 knows all 5; user 2 knows nothing
    pairs = [(0, i) for i in (0, 1, 2, 4)] + [(1, i) for i in range(5)]
    known = UserItems.from_pairs([u for u, _ in pairs], [i for _, i in pairs], 3, 5)
    users = torch.tensor([0, 0, 0, 1, 2, 2])
    for rounds in (0, 10):  # 0 rounds: everything rejected goes through the exact fallback
        got = sample_negatives(users, known, generator=torch.Generator().manual_seed(0), max_rounds=rounds)
        assert got[:3].tolist() == [3, 3, 3] and got[3].item() == -1
        assert 0 <= got[4].item() < 5 and 0 <= got[5].item() < 5
    # the fallback alone is uniform over the free items: user with free items {1, 3}
    known2 = UserItems.from_pairs([0, 0, 0], [0, 2, 4], 1, 5)
    draws = sample_negatives(
        torch.zeros(4000, dtype=torch.long), known2, generator=torch.Generator().manual_seed(0), max_rounds=0
    )
    assert set(draws.tolist()) == {1, 3}
    assert abs(float((draws == 1).float().mean()) - 0.5) < 0.05


def test_sampled_auc_and_f1(data: RecData) -> None:
    held = torch.full((4, 6), -5.0)
    for u, i in VALID:
        held[u, i] = 5.0
    cfg = EvalConfig(ks=(1,), metrics=("hit",), beyond_accuracy=False, sampled=True, seed=3)
    res = evaluate(table_scorer(held), data, part="valid", config=cfg)
    assert res.metrics["auc"] == 1.0 and res.metrics["f1"] == 1.0
    # a constant scorer: every pair tied (AUC 1/2); sigmoid(0) = 0.5 predicts all positive: F1 = 2P / 3P
    flat = evaluate(table_scorer(torch.zeros(4, 6)), data, part="valid", config=cfg)
    assert flat.metrics["auc"] == 0.5 and flat.metrics["f1"] == pytest.approx(2 / 3)
    # the same negatives as sample_negatives under the seed, scored by gathering
    known = data.train.union(data.valid).union(data.test)
    neg = sample_negatives(data.valid.users(), known, generator=torch.Generator().manual_seed(3))
    expected = auc(SCORES[data.valid.users(), data.valid.indices], SCORES[data.valid.users(), neg])
    assert evaluate(table_scorer(SCORES), data, config=cfg).metrics["auc"] == pytest.approx(expected)


def test_nan_scores_name_the_users(data: RecData) -> None:
    bad = SCORES.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(DataError, match=r"user indices \[3\]"):
        evaluate(table_scorer(bad), data, part="valid")


def test_errors_for_parts_and_shapes(data: RecData) -> None:
    with pytest.raises(ConfigError, match="part must be one of"):
        evaluate(table_scorer(SCORES), data, part="train")
    with pytest.raises(DataError, match="shape"):
        evaluate(table_scorer(SCORES[:, :5]), data)
    nan_feats = FEATS.clone()
    nan_feats[4, 1] = float("nan")
    with pytest.raises(DataError, match=r"NaN or infinite values in 1 row\(s\) \(item indices, first: \[4\]\)"):
        evaluate(table_scorer(SCORES), data, config=EvalConfig(ks=(2,)), item_features=nan_feats)
    empty = make_data(2, 3, [(0, 0)], [], [(1, 1)])
    with pytest.raises(DataError, match="nothing to evaluate"):
        evaluate(table_scorer(torch.zeros(2, 3)), empty, part="valid")


def test_config_errors_and_round_trip() -> None:
    with pytest.raises(ConfigError, match=r"unknown eval setting.*'kss'.*valid keys.*'ks'"):
        EvalConfig.from_dict({"kss": [10]})
    with pytest.raises(ConfigError, match=r"unknown metric.*'ndgc'.*valid metrics.*'ndcg'"):
        EvalConfig(metrics=("ndgc",))
    for bad in ({"ks": [0]}, {"ks": []}, {"ks": 10}, {"batch_size": 0}, {"sampled": "yes"}, {"seed": -1}):
        with pytest.raises(ConfigError):
            EvalConfig.from_dict(bad)
    cfg = EvalConfig.from_dict({"ks": [5, 50], "metrics": ["ndcg"], "sampled": True})
    assert cfg.ks == (5, 50) and cfg.metrics == ("ndcg",)
    assert EvalConfig.from_dict(cfg.to_dict()) == cfg
    assert json.loads(json.dumps(cfg.to_dict()))["ks"] == [5, 50]


def test_a_metric_named_twice_is_computed_once_per_user(data: RecData) -> None:
    cfg = EvalConfig(ks=(1, 1), metrics=("recall", "ndcg", "recall"), beyond_accuracy=False, batch_size=1)
    assert cfg.metrics == ("recall", "ndcg")
    res = evaluate(table_scorer(SCORES), data, part="test", config=cfg, keep_per_user=True)
    assert res.per_user["user_idx"].tolist() == [0, 1, 2]
    assert res.per_user["recall@1"].tolist() == [1.0, 0.0, 1.0]  # u0 i2 hit, u1 i4 miss, u2 i4 hit


def test_result_to_dict_is_json(data: RecData) -> None:
    res = evaluate(table_scorer(SCORES), data, config=EvalConfig(ks=(2,)), keep_per_user=True)
    back = json.loads(json.dumps(res.to_dict()))
    assert back["metrics"] == res.metrics and back["num_users"] == 3
    assert back["per_user"]["user_idx"] == [0, 1, 3]
    assert evaluate(table_scorer(SCORES), data).per_user is None


def test_masked_padding_slots_are_left_out_of_coverage() -> None:
    # lists of 3 over 3 items: u0 trained on i0 and i1, so only i2 is shown (two masked slots); u1
    # trained on i1 is shown i0 and i2: items {0, 2} of 3, coverage 2/3
    data = make_data(2, 3, [(0, 0), (0, 1), (1, 1)], [(0, 2), (1, 0)], [])
    scores = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    res = evaluate(table_scorer(scores), data, part="valid", config=EvalConfig(ks=(3,), metrics=("hit",)))
    assert res.metrics["coverage@3"] == pytest.approx(2 / 3)  # counting the masked slots would give 1


def test_ties_are_broken_by_a_random_item_order_not_by_item_numbering() -> None:
    # a constant scorer lists 1 of 6 items: whichever item every user holds out, it is found at
    # hit@1 with probability 1/6 over the tie-breaking seed (topk alone always picks the same slot)
    rates = []
    for held in range(6):
        data = make_data(8, 6, [(7, (held + 1) % 6)], [(u, held) for u in range(7)], [])
        constant = table_scorer(torch.zeros(8, 6))
        hits = [
            evaluate(constant, data, config=EvalConfig(ks=(1,), metrics=("hit",), seed=seed)).metrics["hit@1"]
            for seed in range(150)
        ]
        rates.append(sum(hits) / len(hits))
        # the same seed gives the same lists
        again = evaluate(constant, data, config=EvalConfig(ks=(1,), metrics=("hit",), seed=7)).metrics["hit@1"]
        assert again == hits[7]
    # every user holds out the same item, so each seed finds it for all or none: 150 draws of p = 1/6
    # (standard deviation 0.03) per item
    assert all(abs(r - 1 / 6) < 0.12 for r in rates), rates


def test_a_held_out_pair_that_is_also_masked_is_an_error(data: RecData) -> None:
    # RecData drops such pairs; a hand-built split that overlaps must not be scored silently
    valid = data.valid.union(UserItems.from_pairs([0], [0], data.num_users, data.num_items))  # u0's training item
    data.valid = valid
    with pytest.raises(
        DataError, match=r"1 'valid' pair\(s\) are also known \(masked\) pairs, first: user index 0, item index 0"
    ):
        evaluate(table_scorer(SCORES), data, part="valid", config=EvalConfig(ks=(2,)))


def _rerank_with(lists: torch.Tensor):
    return lambda scores, k: lists[: scores.shape[0], :k].clone()


def test_a_reranked_list_is_scored_and_bad_lists_are_errors(data: RecData) -> None:
    cfg = EvalConfig(ks=(2,), metrics=("recall", "ndcg"), beyond_accuracy=False)
    # valid users u0, u1, u3; u0 holds out i1, u1 i0 and i3, u3 i3; training: u0 i0, u1 i1 i2
    good = torch.tensor([[1, 3], [3, 4], [5, 3]])
    res = evaluate(table_scorer(SCORES), data, config=cfg, rerank=_rerank_with(good))
    assert res.metrics["recall@2"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert res.metrics["ndcg@2"] == pytest.approx((1 + 1 / (1 + 1 / math.log2(3)) + 1 / math.log2(3)) / 3)
    bad = {
        "listed an item twice for user index 0": torch.tensor([[1, 1], [3, 4], [5, 3]]),
        "listed a masked \\(known\\) item for user index 1": torch.tensor([[1, 3], [3, 2], [5, 3]]),
        "outside \\[0, 6\\)": torch.tensor([[1, 6], [3, 4], [5, 3]]),
    }
    for message, lists in bad.items():
        with pytest.raises(DataError, match=message):
            evaluate(table_scorer(SCORES), data, config=cfg, rerank=_rerank_with(lists))
    with pytest.raises(DataError, match=r"rerank must return item indices of shape \(3, 2\), got \(3, 1\)"):
        evaluate(table_scorer(SCORES), data, config=cfg, rerank=lambda s, k: good[:, :1].clone())


def test_a_reranked_list_may_end_but_not_start_with_masked_items() -> None:
    # 1 user, 5 items, training i0 i1, test i2: 3 unmasked items, lists of 4 end with a masked one
    data = make_data(1, 5, [(0, 0), (0, 1)], [], [(0, 2)])
    scores = torch.tensor([[9.0, 8, 7, 6, 5]])
    cfg = EvalConfig(ks=(1, 4), beyond_accuracy=False)
    plain = evaluate(table_scorer(scores), data, part="test", config=cfg).metrics
    last = evaluate(
        table_scorer(scores), data, part="test", config=cfg, rerank=_rerank_with(torch.tensor([[2, 3, 4, 0]]))
    )
    assert last.metrics == plain and plain["recall@1"] == 1.0
    with pytest.raises(DataError, match="listed a masked \\(known\\) item for user index 0"):
        evaluate(table_scorer(scores), data, part="test", config=cfg, rerank=_rerank_with(torch.tensor([[0, 2, 3, 4]])))


def test_a_reranker_that_marks_its_picks_in_the_scores_is_scored_on_the_real_ones() -> None:
    data = make_data(1, 5, [(0, 0), (0, 1)], [], [(0, 2)])
    scores = torch.tensor([[9.0, 8, 7, 6, 5]])

    def greedy(s, k):  # knocks each pick out of the matrix it is given
        picks = []
        for _ in range(k):
            j = s.argmax(1)
            picks.append(j)
            s[torch.arange(s.shape[0]), j] = float("-inf")
        return torch.stack(picks, 1)

    cfg = EvalConfig(ks=(3,), metrics=("recall", "hit"), beyond_accuracy=False)
    res = evaluate(table_scorer(scores), data, part="test", config=cfg, rerank=greedy)
    assert res.metrics == {"recall@3": 1.0, "hit@3": 1.0}


def test_config_refuses_no_metric_and_a_seed_beyond_64_bits() -> None:
    with pytest.raises(ConfigError, match="eval.metrics must name at least one metric"):
        EvalConfig(metrics=())
    with pytest.raises(ConfigError, match=r"eval.seed must be an integer in \[0, 9223372036854775807\]"):
        EvalConfig(seed=2**64)


@pytest.mark.parametrize("min_rating", [None, 4.0])
def test_held_out_positives_follow_the_training_rating_threshold(min_rating: float | None) -> None:
    # with InteractionBuilder(min_rating=4) a rating below 4 is not a training positive: a held-out
    # one is no positive either, else models are scored on finding items training calls negatives
    from kg_builders.builders.interactions import InteractionBuilder
    from kg_builders.graph import build_graph
    from kg_builders.split import split_leave_one_out
    from kg_builders.tables import Tables

    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u2", "u3", "u3", "u3"],
            "item_id": ["i1", "i2", "i3", "i1", "i3", "i2", "i2", "i1", "i4"],
            "rating": [5.0, 4.0, 2.0, 4.0, 5.0, 5.0, 5.0, 1.0, 4.0],
            "timestamp": [1, 2, 3, 1, 2, 3, 1, 2, 3],
        }
    )
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i4"], "title": ["A", "B", "C", "D"]})
    tables = Tables(interactions=inter, items=items)  # i4 is a node through the catalogue
    sp = split_leave_one_out(tables, valid=False)  # tests u1-i3 (rated 2), u2-i2, u3-i4
    train = sp.train_tables(tables)
    kg = build_graph(train, [InteractionBuilder(min_rating=min_rating)])
    data = RecData(kg, sp)
    test = {
        (data.user_ids[u], data.item_ids[i])
        for u, i in zip(data.test.users().tolist(), data.test.indices.tolist(), strict=True)
    }
    if min_rating is None:
        assert test == {("u1", "i3"), ("u2", "i2"), ("u3", "i4")}
        assert data.dropped["test"]["below_min_rating"] == 0
    else:
        assert test == {("u2", "i2"), ("u3", "i4")}
        assert data.min_rating == 4.0
        assert data.dropped["test"]["below_min_rating"] == 1
        # u3's training row rated 1 is no positive either: not masked, not an edge
        u3, i1 = data.user_ids.index("u3"), data.item_ids.index("i1")
        assert not bool(data.train.contains(torch.tensor([u3]), torch.tensor([i1])).item())
    scores = torch.zeros(data.num_users, data.num_items)
    result = evaluate(table_scorer(scores), data, part="test", config=EvalConfig(ks=(1,), beyond_accuracy=False))
    assert result.num_users == len({u for u, _ in test})
