"""The baselines against their formulas, computed by hand or directly in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graph_rec.data import RecData
from graph_rec.errors import ConfigError, DataError
from graph_rec.models.baselines import (
    ALS,
    EASE,
    MF,
    ALSConfig,
    EASEConfig,
    ItemKNN,
    ItemKNNConfig,
    LightGCN,
    LightGCNConfig,
    MFConfig,
    Popularity,
    PopularityConfig,
)
from kg_builders.graph import EdgeStore, KnowledgeGraph


def _data(x: np.ndarray, *, with_tags: bool = False) -> RecData:
    """RecData of a binary ``[num_users, num_items]`` matrix (optionally with item-tag edges)."""
    num_users, num_items = x.shape
    u, i = np.nonzero(x)
    edges = {
        ("user", "interacted", "item"): EdgeStore(
            edge_index=np.stack([u, i]).astype(np.int64), edge_weight=np.ones(u.size, dtype=np.float32)
        )
    }
    node_ids = {"user": [f"u{k}" for k in range(num_users)], "item": [f"i{k}" for k in range(num_items)]}
    if with_tags:
        node_ids["tag"] = ["t0", "t1"]
        tag_pairs = np.array([[0, 1, 2, num_items - 1], [0, 0, 1, 1]], dtype=np.int64)
        edges[("item", "tagged_with", "tag")] = EdgeStore(
            edge_index=tag_pairs, edge_weight=np.ones(4, dtype=np.float32)
        )
    return RecData(KnowledgeGraph(node_ids, edges))


def _random_matrix(num_users: int, num_items: int, p: float, seed: int) -> np.ndarray:
    x = (np.random.default_rng(seed).random((num_users, num_items)) < p).astype(np.float64)
    x[0, 0] = 1.0  # never empty
    return x


def _scores(model, users) -> np.ndarray:
    with torch.inference_mode():
        return model.scorer()(torch.as_tensor(users)).numpy()


# ------------------------------------------------------------------------------------------ popularity
def test_popularity_scores_are_item_counts_for_every_user() -> None:
    x = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0]], dtype=np.float64)  # counts 3, 2, 1, 0
    data = _data(x)
    model = Popularity(PopularityConfig(), data.graph, data.train)
    model.fit(data.train)
    scores = _scores(model, [2, 0, 1])
    np.testing.assert_array_equal(scores, np.tile([3.0, 2.0, 1.0, 0.0], (3, 1)))
    assert [int(k) for k in np.argsort(-scores[0], kind="stable")] == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------ ItemKNN
def test_itemknn_hand_computed_example() -> None:
    # items: 0 seen by u0,u1,u2; 1 by u0,u1; 2 by u1. c01 = 2, c02 = 1, c12 = 1.
    x = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=np.float64)
    data = _data(x)
    model = ItemKNN(ItemKNNConfig(k=1, shrink=1.0), data.graph, data.train)
    model.fit(data.train)
    s01 = 2 / (math.sqrt(3 * 2) + 1)  # 0.580
    s02 = 1 / (math.sqrt(3 * 1) + 1)  # 0.366
    s12 = 1 / (math.sqrt(2 * 1) + 1)  # 0.414
    # column 0 keeps item 1 (s01 > s02); column 1 keeps item 0 (s01 > s12); column 2 keeps item 1 (s12 > s02)
    assert s01 > s12 > s02
    expected_s = np.array([[0, s01, 0], [s01, 0, s12], [0, 0, 0]])
    np.testing.assert_allclose(model.dense_similarity().numpy(), expected_s, rtol=1e-6)
    np.testing.assert_allclose(_scores(model, [2, 0]), [[0, s01, 0], [s01, s01, s12]], rtol=1e-6)


def _numpy_similarity(x: np.ndarray, shrink: float, alpha: float = 0.5) -> np.ndarray:
    """sim[i, j] = c_ij / (n_i^(2 (1 - alpha)) n_j^(2 alpha) + shrink), diagonal 0 (alpha 0.5: cosine)."""
    co = x.T @ x
    c = x.sum(0)
    sim = co / (c[:, None] ** (1 - alpha) * c[None, :] ** alpha + shrink)
    np.fill_diagonal(sim, 0.0)
    return sim


@pytest.mark.parametrize(("similarity", "alpha"), [("cosine", 0.5), ("asymmetric", 0.8)])
def test_itemknn_without_pruning_is_the_full_similarity(similarity: str, alpha: float) -> None:
    x = _random_matrix(12, 7, 0.4, seed=1)
    data = _data(x)
    cfg = ItemKNNConfig(k=50, shrink=2.5, similarity=similarity, alpha=alpha)  # k capped at 6 = all neighbours
    model = ItemKNN(cfg, data.graph, data.train)
    model.fit(data.train)
    assert model.knn_index.shape == (7, 6)
    sim = _numpy_similarity(x, 2.5, alpha)
    np.testing.assert_allclose(model.dense_similarity().numpy(), sim, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(_scores(model, np.arange(12)), x @ sim, rtol=1e-5, atol=1e-6)


def test_itemknn_keeps_the_top_k_of_each_column() -> None:
    x = _random_matrix(30, 9, 0.35, seed=2)
    x[:, 8] = 0  # an item without interactions: its column and row stay zero
    data = _data(x)
    model = ItemKNN(ItemKNNConfig(k=3, shrink=1.0), data.graph, data.train)
    model.fit(data.train)
    sim = _numpy_similarity(x, 1.0)
    sim[np.isnan(sim)] = 0.0
    kept = model.dense_similarity().numpy()
    for j in range(9):
        # tie-robust: the kept values are the 3 largest of the column, each at a position holding that value
        np.testing.assert_allclose(np.sort(kept[:, j])[-3:], np.sort(sim[:, j])[-3:], rtol=1e-5, atol=1e-7)
        nz = np.nonzero(kept[:, j])[0]
        assert nz.size <= 3
        np.testing.assert_allclose(kept[nz, j], sim[nz, j], rtol=1e-5)
    np.testing.assert_array_equal(kept[8], 0)
    np.testing.assert_array_equal(kept[:, 8], 0)
    np.testing.assert_allclose(_scores(model, np.arange(30)), x @ kept, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ EASE
def test_ease_matches_the_closed_form_in_numpy() -> None:
    x = _random_matrix(25, 10, 0.3, seed=3)
    x[:, 9] = 0  # an item without interactions keeps a (zero) row and column
    data = _data(x)
    model = EASE(EASEConfig(l2=3.0), data.graph, data.train)
    model.fit(data.train)
    p = np.linalg.inv(x.T @ x + 3.0 * np.eye(10))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    assert model.weights.dtype == torch.float32
    np.testing.assert_allclose(model.weights.numpy(), b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.weights.numpy()[:, 9], 0)
    np.testing.assert_array_equal(model.weights.numpy()[9], 0)
    np.testing.assert_allclose(_scores(model, np.arange(25)), x @ b, rtol=1e-5, atol=1e-6)


def test_ease_gram_matrix_is_built_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    import graph_rec.models.baselines as baselines

    x = _random_matrix(20, 11, 0.3, seed=4)
    data = _data(x)
    reference = EASE(EASEConfig(l2=2.0), data.graph, data.train)
    reference.fit(data.train)
    monkeypatch.setattr(baselines, "_BLOCK_ELEMENTS", 3 * 20)  # blocks of 3 item columns
    blocked = EASE(EASEConfig(l2=2.0), data.graph, data.train)
    blocked.fit(data.train)
    torch.testing.assert_close(blocked.weights, reference.weights)


def test_fit_rejects_a_train_matrix_of_another_shape() -> None:
    data = _data(_random_matrix(6, 5, 0.5, seed=5))
    other = _data(_random_matrix(6, 4, 0.5, seed=5))
    model = EASE(EASEConfig(), data.graph, data.train)
    with pytest.raises(DataError, match="6x4"):
        model.fit(other.train)


# ------------------------------------------------------------------------------------------ iALS
def _als_normal_equations(x: np.ndarray, other: np.ndarray, lam: float, alpha: float) -> np.ndarray:
    """Each row's exact solution, one ``np.linalg.solve`` per row (the reference)."""
    out = np.zeros((x.shape[0], other.shape[1]))
    for r in range(x.shape[0]):
        c = np.where(x[r] > 0, alpha, 1.0)
        a = (other.T * c) @ other + lam * np.eye(other.shape[1])
        out[r] = np.linalg.solve(a, other.T @ (c * x[r]))
    return out


def _als_objective(x: np.ndarray, u: np.ndarray, v: np.ndarray, lam: float, alpha: float) -> float:
    c = np.where(x > 0, alpha, 1.0)
    return float((c * (x - u @ v.T) ** 2).sum() + lam * ((u**2).sum() + (v**2).sum()))


def test_als_conjugate_gradients_solve_every_rows_normal_equations() -> None:
    import graph_rec.models.baselines as baselines

    x = _random_matrix(12, 9, 0.35, seed=11)
    x[3] = 0  # a row without observed pairs solves to zero
    data = _data(x)
    rng = np.random.default_rng(0)
    items = rng.normal(size=(9, 5))
    start = torch.as_tensor(rng.normal(size=(12, 5)))
    pattern = baselines._ones_csr(
        data.train.indptr, data.train.indices, (12, 9), dtype=start.dtype, device=start.device
    )
    got = baselines._als_solve(
        start,
        torch.as_tensor(items),
        pattern,
        regularization=0.7,
        alpha=4.0,
        steps=5,  # d steps: exact
    )
    want = _als_normal_equations(x, items, 0.7, 4.0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-8, atol=1e-10)
    assert np.abs(got.numpy()[3]).max() < 1e-12
    # fewer steps from the same start: not exact, but closer to the solution than the start
    few = baselines._als_solve(start, torch.as_tensor(items), pattern, regularization=0.7, alpha=4.0, steps=2)
    assert np.abs(few.numpy() - want).max() < np.abs(start.numpy() - want).max()
    # warm start: one step from the solution stays there (from zeros, one step is far from it)
    warm = baselines._als_solve(
        torch.as_tensor(want), torch.as_tensor(items), pattern, regularization=0.7, alpha=4.0, steps=1
    )
    np.testing.assert_allclose(warm.numpy(), want, rtol=1e-8, atol=1e-10)
    cold = baselines._als_solve(
        torch.zeros(12, 5, dtype=torch.float64), torch.as_tensor(items), pattern, regularization=0.7, alpha=4.0, steps=1
    )
    assert np.abs(cold.numpy() - want).max() > 1e-3


@pytest.mark.parametrize("cg_steps", [3, 6])
def test_als_objective_is_the_weighted_loss_and_never_increases(cg_steps: int) -> None:
    x = _random_matrix(30, 14, 0.25, seed=12)
    x[:, 13] = 0  # a cold item gets zero factors and scores 0
    data = _data(x)
    torch.manual_seed(0)
    model = ALS(
        ALSConfig(factors=6, regularization=0.5, alpha=8.0, iterations=6, cg_steps=cg_steps), data.graph, data.train
    )
    model.fit(data.train)
    u, v = model.user_factors.double().numpy(), model.item_factors.double().numpy()
    assert model.losses[-1] == pytest.approx(_als_objective(x, u, v, 0.5, 8.0), rel=1e-4)
    assert all(b <= a * (1 + 1e-6) for a, b in zip(model.losses, model.losses[1:], strict=False))
    assert model.losses[-1] < 0.9 * model.losses[0]
    np.testing.assert_array_equal(v[13], 0)
    np.testing.assert_allclose(_scores(model, np.arange(30)), u @ v.T, rtol=1e-5, atol=1e-6)
    # the last half-sweep solved the items: with d CG steps its normal equations hold
    if cg_steps == 6:
        want = _als_normal_equations(x.T, u, 0.5, 8.0)
        np.testing.assert_allclose(v, want, rtol=1e-3, atol=1e-5)


def test_als_refit_is_deterministic_and_learns_the_block_structure() -> None:
    x = np.zeros((20, 10))
    x[:10, :5] = 1
    x[10:, 5:] = 1
    x[0, 0] = x[10, 5] = 0  # held out: each should rank first among the user's unseen items
    data = _data(x)
    torch.manual_seed(3)
    model = ALS(ALSConfig(factors=4, regularization=0.1, alpha=10.0, iterations=10), data.graph, data.train)
    model.fit(data.train)
    first = _scores(model, np.arange(20))
    model.fit(data.train)
    np.testing.assert_array_equal(_scores(model, np.arange(20)), first)
    for user, item in ((0, 0), (10, 5)):
        unseen = np.flatnonzero(x[user] == 0)
        assert unseen[np.argmax(first[user, unseen])] == item


# ------------------------------------------------------------------------------------------ MF
def test_mf_scores_and_regulariser() -> None:
    data = _data(_random_matrix(5, 6, 0.5, seed=6))
    torch.manual_seed(0)
    model = MF(MFConfig(embedding_dim=4), data.graph, data.train)
    users, pos, neg = torch.tensor([0, 3]), torch.tensor([1, 2]), torch.tensor([[4, 5, 0], [1, 1, 3]])
    out = model.batch_scores(users, pos, neg)
    p, q = model.user_emb.weight.detach(), model.item_emb.weight.detach()
    torch.testing.assert_close(out.pos.detach(), (p[users] * q[pos]).sum(1))
    torch.testing.assert_close(out.neg.detach(), torch.einsum("bd,bnd->bn", p[users], q[neg]))
    reg = (p[users].pow(2).sum() + q[pos].pow(2).sum() + q[neg].pow(2).sum()) / 2
    torch.testing.assert_close(out.reg.detach(), reg)
    torch.testing.assert_close(torch.as_tensor(_scores(model, [0, 3])), p[[0, 3]] @ q.T)


# ------------------------------------------------------------------------------------------ LightGCN
def test_lightgcn_without_layers_is_matrix_factorisation() -> None:
    data = _data(_random_matrix(5, 6, 0.5, seed=7))
    torch.manual_seed(0)
    model = LightGCN(LightGCNConfig(embedding_dim=4, num_layers=0), data.graph, data.train)
    p, q = model.user_emb.weight.detach(), model.item_emb.weight.detach()
    torch.testing.assert_close(torch.as_tensor(_scores(model, np.arange(5))), p @ q.T)
    out = model.batch_scores(torch.tensor([1, 4]), torch.tensor([0, 5]), torch.tensor([[2], [3]]))
    torch.testing.assert_close(out.pos.detach(), torch.stack([p[1] @ q[0], p[4] @ q[5]]))
    torch.testing.assert_close(out.neg.detach(), torch.stack([p[1] @ q[2], p[4] @ q[3]])[:, None])


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lightgcn_propagates_over_the_normalised_bipartite_graph_only(num_layers: int) -> None:
    x = _random_matrix(6, 5, 0.4, seed=8)
    x[5] = 0  # a user without interactions (degree 0)
    x[:, 4] = 0  # an item without interactions
    x[0, 4] = 1  # ... now with one, so tags touch a connected item too
    x[:, 3] = 0  # an item without interactions
    data = _data(x, with_tags=True)  # item-tag edges are in the graph; LightGCN must ignore them
    assert data.graph.num_nodes == 6 + 5 + 2
    torch.manual_seed(0)
    model = LightGCN(LightGCNConfig(embedding_dim=3, num_layers=num_layers), data.graph, data.train)
    assert model.propagation.num_nodes == 11
    e0 = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().double().numpy()
    a = np.zeros((11, 11))
    a[:6, 6:] = x
    a[6:, :6] = x.T
    deg = a.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.where(deg > 0, deg, 1)), 0.0)
    a_hat = inv[:, None] * a * inv[None, :]
    layers = [e0]
    for _ in range(num_layers):
        layers.append(a_hat @ layers[-1])
    h = sum(layers) / (num_layers + 1)
    expected = h[:6] @ h[6:].T
    np.testing.assert_allclose(_scores(model, np.arange(6)), expected, rtol=1e-5, atol=1e-6)
    # the regulariser is on the layer-0 embeddings of the batch
    users, pos, neg = torch.tensor([0, 2]), torch.tensor([1, 4]), torch.tensor([[0], [2]])
    out = model.batch_scores(users, pos, neg)
    reg = (e0[[0, 2]] ** 2).sum() + (e0[[7, 10]] ** 2).sum() + (e0[[6, 8]] ** 2).sum()
    np.testing.assert_allclose(float(out.reg.detach()), reg / 2, rtol=1e-5)
    np.testing.assert_allclose(out.pos.detach().numpy(), [expected[0, 1], expected[2, 4]], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize(
    ("cls", "settings"),
    [
        (ItemKNNConfig, {"k": 0}),
        (ItemKNNConfig, {"shrink": -1.0}),
        (ItemKNNConfig, {"similarity": "jaccard"}),
        (ItemKNNConfig, {"alpha": 1.5}),
        (EASEConfig, {"l2": 0.0}),
        (ALSConfig, {"factors": 0}),
        (ALSConfig, {"alpha": 0.0}),
        (ALSConfig, {"regularization": -1.0}),
        (ALSConfig, {"cg_steps": 0}),
        (ALSConfig, {"iterations": 1.5}),
        (EASEConfig, {"l2": float("nan")}),
        (MFConfig, {"embedding_dim": 0}),
        (MFConfig, {"init_std": 0.0}),
        (LightGCNConfig, {"num_layers": -1}),
        (LightGCNConfig, {"embedding_dim": 2.5}),
    ],
)
def test_configs_reject_bad_values(cls: type, settings: dict) -> None:
    name = next(iter(settings))
    with pytest.raises(ConfigError, match=name):
        cls(**settings)


def test_sparse_products_print_no_torch_beta_warning() -> None:
    """torch warns once per process that CSR support is in beta; graph-rec's users should not see it.

    A fresh interpreter (the warning fires once per process) with UserWarnings as errors.
    """
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from graph_rec.data import csr_tensor\n"
        "from graph_rec.models.baselines import _ones_csr\n"
        "a = csr_tensor(torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.ones(2), (2, 2))\n"
        "b = _ones_csr(torch.tensor([0, 2, 2]), torch.tensor([0, 1]), (2, 2), dtype=torch.float32, device=torch.device('cpu'))\n"
        "assert torch.equal((a @ b.to_dense()), torch.tensor([[0.0, 0.0], [1.0, 1.0]]))\n"
    )
    p = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
