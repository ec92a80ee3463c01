"""The peers of the benchmark suite (benchmarks/peers.py): PyG's LightGCN, implicit's ALS and BPR.

On the small synthetic world each peer fits, ranks every item, keeps its best validated parameters and
beats random scores. It cannot beat popularity there: with 80 items and ~10 training items per user the
generator's popularity skew dominates (popularity's validation Recall@20 is 0.64; no peer setting tried
reached it), so the "beats popularity" check runs on a larger world from the same generator (600 users,
300 items, 40 interactions per user), where popularity scores 0.32 and the peers 0.39-0.45.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from graph_rec.data import RecData
from graph_rec.errors import ConfigError, MissingDependencyError
from graph_rec.eval.evaluator import EvalConfig, evaluate
from graph_rec.models.base import Scorer
from graph_rec.training import fit, init_model
from kg_builders.builders.standard import standard_builders
from kg_builders.graph import build_graph
from kg_builders.sources.synthetic import make_synthetic_world
from kg_builders.split import split_random
from tests.benchmark_scripts import load_benchmark
from tests.worlds import synthetic_graph

peers = load_benchmark("peers")

PEERS = ["pyg_lightgcn", "implicit_als", "implicit_bpr"]
# settings that suit each world (the benchmark's defaults are for real data sets)
TINY = {
    "pyg_lightgcn": {"embedding_dim": 16, "lr": 0.05, "max_epochs": 40},
    "implicit_als": {"factors": 8, "regularization": 5.0, "alpha": 20.0},
    "implicit_bpr": {"factors": 16, "learning_rate": 0.05, "iterations": 60},
}
LARGER = {
    "pyg_lightgcn": {"embedding_dim": 32, "lr": 0.02, "max_epochs": 40},
    "implicit_als": {"factors": 16, "regularization": 1.0, "alpha": 10.0},
    "implicit_bpr": {"factors": 16, "learning_rate": 0.05, "iterations": 40},
}
EV = EvalConfig(ks=(10, 20), beyond_accuracy=False)


def _need(peer: str) -> None:
    if peer.startswith("implicit"):
        pytest.importorskip("implicit", reason="implicit is not installed (pip install 'graph-rec[bench]')")
    else:
        pytest.importorskip("torch_geometric", reason="torch_geometric is not installed (graph extra)")


def _fit(peer: str, data: RecData, settings: dict, **options):
    if peer == "implicit_bpr":
        options.setdefault("num_threads", 1)  # lock-free SGD is only reproducible on one thread
    return peers.FITS[peer](data, settings=settings, eval_config=EV, **options)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: the many small steps here slow ten-fold when two threads share busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> RecData:
    return RecData(*synthetic_graph())


@pytest.fixture(scope="module")
def larger() -> RecData:
    tables = make_synthetic_world(num_users=600, num_items=300, interactions_per_user=40, seed=3, with_images=False)
    sp = split_random(tables, ratios=(0.8, 0.1, 0.1), seed=2026)
    train = sp.train_tables(tables)
    return RecData(build_graph(train, standard_builders(train)), sp)


@pytest.fixture(scope="module")
def tiny_fits(tiny):
    cache: dict = {}

    def get(peer: str):
        _need(peer)
        if peer not in cache:
            cache[peer] = _fit(peer, tiny, TINY[peer])
        return cache[peer]

    return get


# ------------------------------------------------------------------------------------------ every peer
@pytest.mark.parametrize("peer", PEERS)
def test_peer_ranks_every_item_with_its_best_validated_parameters(peer, tiny, tiny_fits) -> None:
    r = tiny_fits(peer)
    users = torch.arange(tiny.num_users)
    with torch.inference_mode():
        s = r.scorer(users)
    assert s.shape == (tiny.num_users, tiny.num_items)
    assert bool(torch.isfinite(s).all())
    # the scorer holds the best epoch: evaluating it again gives that epoch's validation metrics
    with torch.inference_mode():
        again = evaluate(r.scorer, tiny, part="valid", config=EV).metrics
    assert again["recall@20"] == pytest.approx(r.best_valid["recall@20"], abs=1e-6)
    assert again["ndcg@20"] == pytest.approx(r.best_valid["ndcg@20"], abs=1e-6)
    recalls = [h["valid_recall@20"] for h in r.history]
    assert r.best_valid["recall@20"] == pytest.approx(max(recalls))
    best = next(h for h in r.history if h["epoch"] == r.best_epoch)
    assert best["valid_recall@20"] == pytest.approx(max(recalls))
    assert r.seconds_to_best == pytest.approx(best["seconds"], abs=1e-3)
    epochs = [h["epoch"] for h in r.history]
    assert epochs == sorted(set(epochs)) and epochs[0] >= 1
    assert all(h["train_seconds"] <= h["seconds"] + 1e-9 for h in r.history)
    assert all(a["seconds"] <= b["seconds"] for a, b in zip(r.history, r.history[1:], strict=False))
    assert 0 < r.train_seconds <= r.seconds
    assert r.stopped in ("epochs", "early_stopping")
    assert r.peak_rss_growth_mb is None or r.peak_rss_growth_mb >= 0
    assert json.loads(json.dumps(r.to_dict()))["name"] == peer


@pytest.mark.parametrize("peer", PEERS)
def test_peer_beats_random_scores_on_the_small_world(peer, tiny, tiny_fits) -> None:
    gen = torch.Generator().manual_seed(0)
    rand = Scorer(lambda users: torch.rand(users.numel(), tiny.num_items, generator=gen))
    with torch.inference_mode():
        random_recall = evaluate(rand, tiny, part="valid", config=EV).metrics["recall@20"]
    assert tiny_fits(peer).best_valid["recall@20"] > random_recall + 0.1


@pytest.mark.parametrize("peer", PEERS)
def test_peer_beats_popularity_on_a_larger_world(peer, larger) -> None:
    _need(peer)
    popularity = fit(init_model("popularity", {}, larger, seed=0), larger, eval_config=EV).best_valid["recall@20"]
    r = _fit(peer, larger, LARGER[peer])
    assert r.best_valid["recall@20"] > popularity + 0.04, (r.best_valid["recall@20"], popularity)


# ------------------------------------------------------------------------------------------ PyG LightGCN
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_pyg_lightgcn_propagation_equals_graph_rec_lightgcn(tiny, num_layers) -> None:
    pyg_nn = pytest.importorskip("torch_geometric.nn", reason="torch_geometric is not installed (graph extra)")
    ours = init_model("lightgcn", {"embedding_dim": 8, "num_layers": num_layers}, tiny, seed=1)
    theirs = pyg_nn.LightGCN(tiny.num_users + tiny.num_items, 8, num_layers)  # alpha = 1 / (L + 1) by default
    with torch.no_grad():
        theirs.embedding.weight.copy_(torch.cat([ours.user_emb.weight, ours.item_emb.weight]))
        users, items = ours.embed()
        emb = theirs.get_embedding(peers.bipartite_edge_index(tiny))
    torch.testing.assert_close(emb, torch.cat([users, items]), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(emb, theirs.embedding.weight, atol=1e-3)  # the layers did propagate


def test_bipartite_edge_index_holds_the_training_pairs_both_ways(tiny) -> None:
    ei = peers.bipartite_edge_index(tiny)
    nnz, u = tiny.train.nnz, tiny.num_users
    assert ei.shape == (2, 2 * nnz)
    assert bool((ei[0, :nnz] < u).all()) and bool((ei[1, :nnz] >= u).all())
    assert bool(tiny.train.contains(ei[0, :nnz], ei[1, :nnz] - u).all())
    torch.testing.assert_close(ei[:, nnz:], ei.flip(0)[:, :nnz])


# ------------------------------------------------------------------------------------------ implicit
def test_implicit_als_scores_are_the_factor_product_and_rank_as_implicit_does(tiny, tiny_fits) -> None:
    r = tiny_fits("implicit_als")
    users = np.arange(tiny.num_users)
    with torch.inference_mode():
        s = r.scorer(torch.as_tensor(users)).numpy()
    np.testing.assert_allclose(s, r.model.user_factors @ r.model.item_factors.T, rtol=1e-5, atol=1e-6)
    # implicit's own recommend (seen items filtered) gives our top-10 over the unseen items: the matrix
    # handed to implicit is users x items, as it expects
    matrix = peers.train_csr(tiny)
    ids, _ = r.model.recommend(users, matrix[users], N=10, filter_already_liked_items=True)
    masked = s.copy()
    masked[tiny.train.users().numpy(), tiny.train.indices.numpy()] = -np.inf
    np.testing.assert_array_equal(ids, np.argsort(-masked, axis=1, kind="stable")[:, :10])


def test_train_csr_is_the_training_matrix(tiny) -> None:
    pytest.importorskip("scipy", reason="scipy is not installed")
    m = peers.train_csr(tiny)
    assert m.shape == (tiny.num_users, tiny.num_items) and m.nnz == tiny.train.nnz
    np.testing.assert_array_equal(m.toarray(), tiny.train.dense_rows(torch.arange(tiny.num_users)).numpy())


def test_missing_implicit_names_the_bench_extra(tiny, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "implicit.cpu.als", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match=r"graph-rec\[bench\]"):
        peers.fit_implicit_als(tiny)


# ------------------------------------------------------------------------------------------ stopping, selection
@pytest.mark.parametrize("peer", ["pyg_lightgcn", "implicit_als"])
def test_time_budget_stops_after_the_first_epoch(peer, tiny) -> None:
    _need(peer)
    r = _fit(peer, tiny, TINY[peer], valid_every=5, time_budget_s=1e-9)
    assert r.stopped == "time_budget"
    assert [h["epoch"] for h in r.history] == [1]  # validated at once although valid_every is 5
    assert r.best_epoch == 1


def test_select_keeps_the_setting_best_on_validation(tiny) -> None:
    _need("implicit_als")
    grid = [{"factors": 8, "regularization": 5.0, "alpha": 20.0}, {"factors": 2, "regularization": 50.0}]
    best, table = peers.select("implicit_als", tiny, grid=grid, eval_config=EV, valid_every=5)
    assert [t["settings"]["factors"] for t in table] == [8, 2]
    assert best.best_valid["recall@20"] == max(t["valid_recall@20"] for t in table)
    assert best.settings == table[int(np.argmax([t["valid_recall@20"] for t in table]))]["settings"]


def test_time_to_reads_the_first_validation_that_reaches_the_target() -> None:
    history = [
        {"epoch": 5, "seconds": 2.0, "train_seconds": 1.5, "valid_recall@20": 0.10, "valid_ndcg@20": 0.05},
        {"epoch": 10, "seconds": 4.0, "train_seconds": 3.0, "valid_recall@20": 0.30, "valid_ndcg@20": 0.20},
        {"epoch": 15, "seconds": 6.0, "train_seconds": 4.5, "valid_recall@20": 0.25, "valid_ndcg@20": 0.25},
    ]
    r = peers.PeerResult(name="x", settings={}, scorer=Scorer(lambda u: u), history=history)
    assert r.time_to(0.2) == 4.0
    assert r.time_to(0.3, clock="train_seconds") == 3.0
    assert r.time_to(0.05) == 2.0
    assert r.time_to(0.31) is None
    assert r.time_to(0.22, metric="ndcg@20") == 6.0
    with pytest.raises(ConfigError, match="clock"):
        r.time_to(0.2, clock="cpu")
    with pytest.raises(ConfigError, match="recall@10"):
        r.time_to(0.2, metric="recall@10")


def test_settings_and_options_are_checked(tiny) -> None:
    with pytest.raises(ConfigError, match=r"unknown peer 'implicit_als' setting\(s\) \['factor'\].*'factors'"):
        peers.settings_of("implicit_als", {"factor": 3})
    with pytest.raises(ConfigError, match="factors"):
        peers.settings_of("implicit_bpr", {"factors": 0})
    with pytest.raises(ConfigError, match="lr"):
        peers.settings_of("pyg_lightgcn", {"lr": -1.0})
    with pytest.raises(ConfigError, match="unknown peer 'recbole'"):
        peers.select("recbole", tiny)
    with pytest.raises(ConfigError, match="valid_every"):
        peers.fit_pyg_lightgcn(tiny, valid_every=0)
    with pytest.raises(ConfigError, match="ks must contain 20"):
        peers.fit_pyg_lightgcn(tiny, eval_config=EvalConfig(ks=(10,)))
    assert peers.settings_of("implicit_als", None) == peers.ALSSettings()
