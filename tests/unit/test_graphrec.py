"""GraphRec's scores equal an explicit dense computation of s(u, i) = [P F(X) h_u]_i on a tiny graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graph_rec.data import DataConfig, RecData
from graph_rec.errors import ConfigError, DataError
from graph_rec.models.base import make_model
from graph_rec.models.graphrec import GraphRecConfig
from graph_rec.models.propagation import Propagation
from kg_builders.builders.standard import standard_builders
from kg_builders.graph import build_graph
from kg_builders.split import split_random


@pytest.fixture
def tiny_data(tiny_tables):
    sp = split_random(tiny_tables, ratios=(0.6, 0.2, 0.2), seed=1)
    train = sp.train_tables(tiny_tables)
    kg = build_graph(train, standard_builders(train))
    rng = np.random.default_rng(0)
    for t in kg.node_types:
        kg.set_features(t, "text", rng.normal(size=(kg.num_nodes(t), 5)).astype(np.float32))
    return kg, sp


def _dense_adjacency(data: RecData, rel_weight: np.ndarray, exponent: float = 0.5) -> np.ndarray:
    """``D^-a A D^-(1-a)`` written out edge by edge (row i of A: the edges arriving at i)."""
    g = data.graph
    a = np.zeros((g.num_nodes, g.num_nodes))
    ei = g.edge_index.numpy()
    for e in range(ei.shape[1]):  # written out edge by edge on purpose: the reference computation
        a[ei[1, e], ei[0, e]] += rel_weight[g.edge_type[e]] * float(g.edge_weight[e])
    deg = a.sum(1)
    safe = np.where(deg > 0, deg, 1)
    left = np.where(deg > 0, safe**-exponent, 0)
    right = np.where(deg > 0, safe ** (exponent - 1), 0)
    return left[:, None] * a * right[None, :]


@pytest.mark.parametrize(
    ("relation_mode", "fusion"), [("none", "sum"), ("none", "gated"), ("weights", "sum"), ("weights", "concat")]
)
@pytest.mark.parametrize("num_layers", [0, 1, 3])
@pytest.mark.parametrize("norm_exponent", [0.5, 0.3])
def test_scores_equal_dense_formula(tiny_data, relation_mode, fusion, num_layers, norm_exponent):
    kg, sp = tiny_data
    data = RecData(kg, sp)
    torch.manual_seed(0)
    settings = {
        "embedding_dim": 4,
        "num_layers": num_layers,
        "relation_mode": relation_mode,
        "fusion": fusion,
        "norm_exponent": norm_exponent,
    }
    model = make_model("graphrec", settings, data.graph, data.train)
    # the fast path (features propagated once) is taken exactly for an affine F and a fixed P
    assert model.precomputed == (relation_mode == "none" and fusion == "sum")
    if relation_mode == "weights":  # move the relation weights away from 1
        with torch.no_grad():
            model.propagation.rho.copy_(torch.linspace(-1.0, 2.0, model.propagation.rho.numel()))
    model.eval()
    with torch.no_grad():
        f0 = model.layer0()[0].double().numpy()  # F(X), [N, d]
        w = model.propagation.relation_weights().double().numpy()
        scores = model.scorer()(torch.arange(data.num_users)).double().numpy()
    a_hat = _dense_adjacency(data, w, norm_exponent)
    # symmetric exactly for the default exponent (the graph holds both directions of every edge)
    assert np.allclose(a_hat, a_hat.T) == (norm_exponent == 0.5)
    p = sum(np.linalg.matrix_power(a_hat, k) for k in range(num_layers + 1)) / (num_layers + 1)
    h = p @ f0
    uo, io = data.graph.node_offsets["user"], data.graph.node_offsets["item"]
    h_users = h[uo : uo + data.num_users]
    expected = h_users @ h[io : io + data.num_items].T
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    # the same scores as adjacency-weighted inner products with the layer-0 embeddings:
    # s(u, i) = sum_j P_ij <F(x_j), h_u>
    weighted = (p @ (f0 @ h_users.T)).T[:, io : io + data.num_items]
    np.testing.assert_allclose(scores, weighted, rtol=1e-4, atol=1e-5)


def test_precomputed_path_trains_like_the_general_path(tiny_data):
    kg, sp = tiny_data
    data = RecData(kg, sp)
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([[3, 4], [0, 3], [1, 1]])
    outs, grads = [], []
    for precomputed in (True, False):
        torch.manual_seed(0)
        m = make_model(
            "graphrec", {"embedding_dim": 4, "num_layers": 2, "relation_mode": "none"}, data.graph, data.train
        )
        m.precomputed = precomputed
        out = m.batch_scores(users, pos, neg)
        (out.pos.sum() - out.neg.sum() + out.reg).backward()
        outs.append(out)
        grads.append({k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
    torch.testing.assert_close(outs[0].pos, outs[1].pos)
    torch.testing.assert_close(outs[0].neg, outs[1].neg)
    torch.testing.assert_close(outs[0].reg, outs[1].reg)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6)


def test_attention_scores_equal_dense_formula(tiny_data):
    kg, sp = tiny_data
    data = RecData(kg, sp)
    torch.manual_seed(0)
    model = make_model(
        "graphrec", {"embedding_dim": 4, "num_layers": 2, "relation_mode": "attention"}, data.graph, data.train
    )
    with torch.no_grad():
        model.propagation.rel_vec.normal_()
        model.propagation.rel_bias.normal_()
        f0 = model.layer0()[0].double()
        scores = model.scorer()(torch.arange(data.num_users)).double().numpy()
        g = data.graph
        r = model.propagation.rel_vec.double()
        b = model.propagation.rel_bias.double()
        n = g.num_nodes
        a = np.zeros((n, n))
        logits: dict[int, list[tuple[int, float]]] = {}
        for e in range(g.num_edges):
            s, d, t = int(g.edge_index[0, e]), int(g.edge_index[1, e]), int(g.edge_type[e])
            val = float(((r[t] * f0[s]) * torch.tanh(r[t] * f0[d] + b[t])).sum())
            logits.setdefault(d, []).append((s, val))
        for d, lst in logits.items():
            vals = np.array([v for _, v in lst])
            sm = np.exp(vals - vals.max()) / np.exp(vals - vals.max()).sum()
            for (s, _), wgt in zip(lst, sm, strict=True):
                a[d, s] += wgt
    np.testing.assert_allclose(a.sum(1)[list(logits)], 1.0, rtol=1e-6)
    p = (np.eye(n) + a + a @ a) / 3
    h = p @ f0.numpy()
    uo, io = g.node_offsets["user"], g.node_offsets["item"]
    expected = h[uo : uo + data.num_users] @ h[io : io + data.num_items].T
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


def test_layer0_modes(tiny_data):
    kg, sp = tiny_data
    data = RecData(kg, sp)
    for mode in ("add", "gated", "none"):
        torch.manual_seed(0)
        m = make_model("graphrec", {"embedding_dim": 4, "id_embedding": mode}, data.graph, data.train)
        with torch.no_grad():
            e0, fx = m.layer0()
        assert e0.shape == (data.graph.num_nodes, 4)
        if mode == "none":
            assert torch.equal(e0, fx)
        elif mode == "add":
            assert torch.allclose(e0, fx + m.id_emb.weight)
        else:
            assert torch.allclose(e0, 0.5 * fx + 0.5 * m.id_emb.weight)  # gate starts at sigmoid(0)


def test_ablation_views_change_the_graph(tiny_data):
    kg, sp = tiny_data
    full = RecData(kg, sp)
    bare = RecData(kg, sp, config=DataConfig(node_types=(), relations=("interacted",), features=()))
    assert set(bare.graph.node_counts) == {"user", "item"}
    assert bare.graph.features == {}
    assert bare.graph.num_edges < full.graph.num_edges
    assert {r.split("__")[1] for r in bare.graph.relations} == {"interacted", "rev_interacted"}
    no_tags = RecData(kg, sp, config=DataConfig(node_types=("entity",)))
    assert "tag" not in no_tags.graph.node_counts and "entity" in no_tags.graph.node_counts
    with pytest.raises(ConfigError, match="not in the graph"):
        RecData(kg, sp, config=DataConfig(node_types=("tagz",)))
    with pytest.raises(ConfigError, match="id_embedding='none'"):
        make_model("graphrec", {"id_embedding": "none"}, bare.graph, bare.train)


def test_nan_features_are_an_error_naming_the_node(tiny_data):
    kg, sp = tiny_data
    x = kg.features["item"]["text"].copy()
    x[1, 2] = np.nan
    kg.set_features("item", "text", x)
    with pytest.raises(DataError, match=f"item.text has NaN.*{kg.node_ids['item'][1]}"):
        RecData(kg, sp)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="relation_mode"):
        GraphRecConfig(relation_mode="kgat")
    with pytest.raises(ConfigError, match="num_layers"):
        GraphRecConfig(num_layers=-1)
    with pytest.raises(ConfigError, match=r"norm_exponent must be a number in \[0.0, 1.0\], got 1.5"):
        GraphRecConfig(norm_exponent=1.5)
    with pytest.raises(ConfigError, match="norm_exponent=0.3 does not apply to relation_mode='attention'"):
        GraphRecConfig(relation_mode="attention", norm_exponent=0.3)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("path", ["precomputed", "general", "weights", "attention"])
def test_drop_scored_edge_scores_each_positive_without_its_edge(tiny_data, num_layers, path):
    """Training scores of a positive (u, i), and their gradients, equal the dense formula on the graph
    less the edge u - i (the normalisation kept); negatives are scored against the same h_u'."""
    kg, sp = tiny_data
    data = RecData(kg, sp)
    torch.manual_seed(0)
    mode = path if path in ("weights", "attention") else "none"
    settings = {"embedding_dim": 4, "num_layers": num_layers, "relation_mode": mode, "drop_scored_edge": True}
    model = make_model("graphrec", settings, data.graph, data.train)
    assert model.precomputed == (mode == "none")
    model.precomputed = path == "precomputed"  # "general": the same model through the general path
    with torch.no_grad():  # move the relation weights away from 1, the attention's vectors off their init
        if hasattr(model.propagation, "rho"):
            model.propagation.rho.copy_(torch.linspace(-1.0, 2.0, model.propagation.rho.numel()))
        if hasattr(model.propagation, "rel_vec"):
            model.propagation.rel_vec.normal_()
    uo, io = data.graph.node_offsets["user"], data.graph.node_offsets["item"]
    users, pos = data.train.users()[:6], data.train.indices[:6]
    neg = torch.stack([(pos + 1) % data.num_items, (pos + 3) % data.num_items], dim=1)
    out = model.batch_scores(users, pos, neg)
    out.pos.sum().backward()
    got = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None and "propagation" not in k}
    model.zero_grad()
    # the reference: dense matrices, one per pair, in float64
    f0 = model.layer0()[0]
    prop = model.propagation  # Â written out densely, differentiable (attention depends on F(X))
    a_hat = torch.zeros(prop.num_nodes, prop.num_nodes).index_put((prop.row, prop.col), prop.values(f0)).double()
    torch.testing.assert_close(a_hat.detach(), prop.dense(f0.detach()).double())
    f0 = f0.double()
    expected_pos, expected_neg = [], []
    for b, (u, i) in enumerate(zip(users.tolist(), pos.tolist(), strict=True)):
        a = a_hat.clone()
        assert a[uo + u, io + i] > 0 and a[io + i, uo + u] > 0  # a training pair is an edge
        a[uo + u, io + i] = a[io + i, uo + u] = 0.0  # the edge removed, the normalisation kept
        p_full = sum(torch.linalg.matrix_power(a_hat, k) for k in range(num_layers + 1)) / (num_layers + 1)
        p_cut = sum(torch.linalg.matrix_power(a, k) for k in range(num_layers + 1)) / (num_layers + 1)
        hu, hi = p_cut[uo + u] @ f0, p_cut[io + i] @ f0
        expected_pos.append(hu @ hi)
        expected_neg.append((p_full[io + neg[b]] @ f0) @ hu)
    expected_pos = torch.stack(expected_pos)
    torch.testing.assert_close(out.pos.double(), expected_pos.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.neg.double(), torch.stack(expected_neg).detach(), rtol=1e-4, atol=1e-5)
    expected_pos.sum().backward()
    want = {k: p.grad for k, p in model.named_parameters() if p.grad is not None and "propagation" not in k}
    assert got.keys() == want.keys() and got
    for k in got:
        torch.testing.assert_close(got[k].double(), want[k].double(), rtol=1e-4, atol=1e-5)
    # without the setting, the same model scores the positive with its edge in the graph
    model.config = GraphRecConfig(**{**settings, "drop_scored_edge": False})
    with torch.no_grad():
        with_edge = model.batch_scores(users, pos, neg).pos
    assert not torch.allclose(with_edge, out.pos)


def _propagation(g, relation_mode: str, dim: int) -> Propagation:
    return Propagation(
        g.edge_index,
        g.edge_type,
        g.edge_weight,
        g.num_nodes,
        g.num_relations,
        relation_mode=relation_mode,
        embedding_dim=dim,
    )


@pytest.mark.parametrize("relation_mode", ["none", "weights", "attention"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_walks_of_some_rows_equal_the_rows_of_the_full_walks(tiny_data, relation_mode, num_layers):
    """A batch propagates its last layer for its own rows only: same values, same gradients."""
    kg, sp = tiny_data
    g = RecData(kg, sp).graph
    prop = _propagation(g, relation_mode, 4)
    torch.manual_seed(0)
    if relation_mode == "attention":
        with torch.no_grad():
            prop.rel_vec.normal_()
    x0 = torch.randn(g.num_nodes, 4, requires_grad=True)
    rows = torch.tensor([5, 0, g.num_nodes - 1, 2])  # distinct, unsorted
    w = torch.randn(rows.numel(), 4)
    got = []
    for subset in (None, rows, "all rows, then picked"):
        prop.zero_grad()
        x0.grad = None
        prop.last_layer_rows = subset is not None and not isinstance(subset, str)
        mean, shorter = prop.walks(x0, num_layers, None if subset is None else rows)
        picked = mean[rows] if subset is None else mean
        ((picked * w).sum() + (shorter * shorter).sum()).backward()
        rho = {"weights": "rho", "attention": "rel_vec"}.get(relation_mode)
        rho = getattr(prop, rho).grad.clone() if rho else None
        got.append((picked.detach(), shorter.detach(), x0.grad.clone(), rho))
    full, part, picked_after = got
    for i in range(3):  # the switch that benchmarks flip computes every row, with the same result
        torch.testing.assert_close(picked_after[i], full[i], rtol=0, atol=0)
    assert part[0].shape == (rows.numel(), 4) and part[1].shape == (g.num_nodes, 4)
    torch.testing.assert_close(part[0], full[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(part[1], full[1], rtol=0, atol=0)
    torch.testing.assert_close(part[2], full[2], rtol=1e-6, atol=1e-6)
    assert float(part[2].abs().sum()) > 0
    if relation_mode != "none":  # the relation weights' (or attention vectors') gradients too
        assert float(full[3].abs().sum()) > 0
        torch.testing.assert_close(part[3], full[3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("relation_mode", "fusion"), [("none", "gated"), ("weights", "sum"), ("attention", "sum"), ("weights", "concat")]
)
def test_general_path_batch_scores_equal_the_full_propagation(tiny_data, relation_mode, fusion):
    """The general path (F not affine or P learned) propagates its last layer for the batch's rows only:
    its batch scores, regulariser and gradients equal those read off the full propagation."""
    kg, sp = tiny_data
    data = RecData(kg, sp)
    torch.manual_seed(0)
    settings = {"embedding_dim": 4, "num_layers": 2, "relation_mode": relation_mode, "fusion": fusion}
    model = make_model("graphrec", settings, data.graph, data.train)
    assert not model.precomputed
    with torch.no_grad():
        if hasattr(model.propagation, "rho"):
            model.propagation.rho.copy_(torch.linspace(-1.0, 2.0, model.propagation.rho.numel()))
        if hasattr(model.propagation, "rel_vec"):
            model.propagation.rel_vec.normal_()
    users, pos = data.train.users()[:6], data.train.indices[:6]
    neg = torch.stack([(pos + 1) % data.num_items, (pos + 3) % data.num_items], dim=1)
    out = model.batch_scores(users, pos, neg)
    (out.pos.sum() - 0.5 * out.neg.sum() + out.reg).backward()
    got = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    h, e0, _ = model.propagate()  # every node, the reference
    uo, io = data.graph.node_offsets["user"], data.graph.node_offsets["item"]
    hu, hp, hn = h[uo + users], h[io + pos], h[io + neg]
    want_pos, want_neg = (hu * hp).sum(-1), torch.einsum("bd,bnd->bn", hu, hn)
    want_reg = (e0[uo + users].pow(2).sum() + e0[io + pos].pow(2).sum() + e0[io + neg].pow(2).sum()) / users.numel()
    torch.testing.assert_close(out.pos, want_pos, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.neg, want_neg, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.reg, want_reg, rtol=1e-5, atol=1e-6)
    (want_pos.sum() - 0.5 * want_neg.sum() + want_reg).backward()
    want = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == want.keys() and len(got) > 2
    for k in got:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("relation_mode", ["weights", "attention"])
@pytest.mark.parametrize("subset", [False, True])
def test_propagation_gradients_equal_dense_autograd(tiny_data, relation_mode, subset):
    """The hand-written backward of the sparse products (value gradients by sampled dot products,
    the rows-only last layer) against torch's autograd through the dense matrix, in float64."""
    kg, sp = tiny_data
    g = RecData(kg, sp).graph
    prop = _propagation(g, relation_mode, 3).double()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in prop.parameters():
            p.normal_()
    x0 = torch.randn(g.num_nodes, 3, dtype=torch.float64, requires_grad=True)
    rows = torch.tensor([4, 1, g.num_nodes - 2]) if subset else None
    w = torch.randn(3 if subset else g.num_nodes, 3, dtype=torch.float64)
    grads = []
    for dense in (False, True):
        prop.zero_grad()
        x0.grad = None
        if dense:
            a = torch.zeros(g.num_nodes, g.num_nodes, dtype=torch.float64)
            a = a.index_put((prop.row, prop.col), prop.values(x0))
            mean = sum(torch.linalg.matrix_power(a, k) @ x0 for k in range(3)) / 3
            mean = mean if rows is None else mean[rows]
        else:
            mean = prop.walks(x0, 2, rows)[0]
        (mean * w).sum().backward()
        grads.append([x0.grad.clone()] + [p.grad.clone() for p in prop.parameters()])
    for got, want in zip(*grads, strict=True):
        assert float(want.abs().sum()) > 0
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_a_graph_without_edges_averages_layer_0_with_l_empty_layers():
    # Â = 0: the mean of layers 0 .. L is x_0 / (L + 1), as for an isolated node of a graph with edges
    empty = torch.zeros(2, 0, dtype=torch.long)
    prop = Propagation(
        empty, torch.zeros(0, dtype=torch.long), torch.zeros(0), 5, 2, relation_mode="none", embedding_dim=3
    )
    x0 = torch.randn(5, 3)
    mean, shorter = prop.walks(x0, 3)
    torch.testing.assert_close(mean, x0 / 4)
    torch.testing.assert_close(shorter, x0)  # the walks of 0 .. L - 1 steps: layer 0 only
    torch.testing.assert_close(prop.walks(x0, 3, torch.tensor([4, 1]))[0], x0[[4, 1]] / 4)
    torch.testing.assert_close(prop.walks(x0, 0)[0], x0)


def test_a_missing_feature_row_holding_nan_does_not_reach_the_precomputed_path(tiny_data):
    kg, sp = tiny_data
    data = RecData(kg, sp)
    tag = data.graph.node_offsets["tag"]
    data.graph.feature_masks["text"][tag] = False  # this tag's text is missing ...
    data.graph.features["text"][tag] = 0.0
    settings = {"embedding_dim": 4, "num_layers": 2, "relation_mode": "none", "fusion": "sum"}
    torch.manual_seed(0)
    clean = make_model("graphrec", settings, data.graph, data.train)
    data.graph.features["text"][tag] = float("nan")  # ... and its row holds garbage
    torch.manual_seed(0)
    dirty = make_model("graphrec", settings, data.graph, data.train)
    assert dirty.precomputed
    with torch.no_grad():
        for a, b in zip(clean.embed(), dirty.embed(), strict=True):
            torch.testing.assert_close(a, b)  # NaN * 0 would be NaN: the row is replaced, not multiplied
        users, pos, neg = torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([[2], [3]])
        torch.testing.assert_close(dirty.batch_scores(users, pos, neg).pos, clean.batch_scores(users, pos, neg).pos)
    # a scored item whose missing row holds NaN: the backward pass stays finite too (0 * NaN is NaN)
    item = data.graph.node_offsets["item"] + 2
    data.graph.feature_masks["text"][item] = False
    data.graph.features["text"][item] = float("nan")
    torch.manual_seed(0)
    model = make_model("graphrec", settings, data.graph, data.train)
    out = model.batch_scores(torch.tensor([0, 1]), torch.tensor([2, 0]), torch.tensor([[1], [3]]))
    (out.pos.sum() - out.neg.sum() + out.reg).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("relation_mode", ["weights", "attention"])
def test_a_step_that_drops_the_scored_edge_computes_the_adjacency_values_once(tiny_data, relation_mode, monkeypatch):
    kg, sp = tiny_data
    data = RecData(kg, sp)
    settings = {"embedding_dim": 4, "num_layers": 2, "relation_mode": relation_mode, "drop_scored_edge": True}
    model = make_model("graphrec", settings, data.graph, data.train)
    calls = []
    values = Propagation.values
    monkeypatch.setattr(Propagation, "values", lambda self, *a, **k: calls.append(1) or values(self, *a, **k))
    model.batch_scores(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([[2], [3]]))
    assert len(calls) == 1
