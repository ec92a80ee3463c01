"""Sampled mini-batch training: the neighbour sampler, exactness with full fan-out, unbiasedness, inference."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import LinkLoader
from torch_geometric.sampler import NodeSamplerInput

from graph_rec.data import RecData
from graph_rec.errors import ConfigError, DataError
from graph_rec.models.base import make_model
from graph_rec.training.losses import bpr_loss
from graph_rec.training.sampled import (
    NeighbourSampler,
    layerwise_embed,
    propagate_sampled,
    sampled_batch_scores,
)
from graph_rec.training.sampling import epoch_batches
from tests.worlds import synthetic_graph


@pytest.fixture(scope="module")
def world_data() -> RecData:
    kg, sp = synthetic_graph()
    return RecData(kg, sp)


def _graphrec(data: RecData, **settings):
    torch.manual_seed(0)
    model = make_model("graphrec", {"embedding_dim": 8, "num_layers": 2, **settings}, data.graph, data.train)
    with torch.no_grad():  # move the relation weights and the gate away from their initial values
        if hasattr(model.propagation, "rho"):
            model.propagation.rho.copy_(torch.linspace(-1.0, 2.0, model.propagation.rho.numel()))
        if hasattr(model, "gate"):
            model.gate.normal_()
    return model


def _max_degree(prop) -> int:
    return int((prop.crow[1:] - prop.crow[:-1]).max())


def _batch(data: RecData, shared: bool):
    g = torch.Generator().manual_seed(5)
    users = torch.randint(0, data.num_users, (12,), generator=g)
    users[1] = users[0]  # repeated users and items are scored (and regularised) once per occurrence
    pos = torch.randint(0, data.num_items, (12,), generator=g)
    shape = (7,) if shared else (12, 3)
    neg = torch.randint(0, data.num_items, shape, generator=g)
    neg.view(-1)[0] = pos[0]
    return users, pos, neg


# ---------------------------------------------------------------------------------------------- sampler
def test_sampler_output_is_a_capped_subgraph_with_seeds_first(world_data):
    prop = _graphrec(world_data).propagation
    crow, col = prop.crow, prop.col
    deg = crow[1:] - crow[:-1]
    fanout = [3, 2, 4]
    sampler = NeighbourSampler(crow, col, fanout, generator=torch.Generator().manual_seed(0))
    seeds = torch.tensor([7, 3, 7, 150, 3, 0])
    out = sampler.sample_from_nodes(NodeSamplerInput(input_id=torch.arange(6), node=seeds))
    assert out.node[:4].tolist() == [7, 3, 150, 0]  # deduplicated, in order of first occurrence
    assert out.node.unique().numel() == out.node.numel()
    assert out.num_sampled_nodes[0] == 4 and sum(out.num_sampled_nodes) == out.node.numel()
    assert len(out.num_sampled_edges) == 3 and sum(out.num_sampled_edges) == out.edge.numel() == out.row.numel()
    assert torch.equal(out.metadata[0], torch.arange(6))
    # every sampled pair exists: its source is node[row], its destination (the CSR row) is node[col]
    src, dst = out.node[out.row], out.node[out.col]
    assert torch.equal(col[out.edge], src)
    assert bool(((out.edge >= crow[dst]) & (out.edge < crow[dst + 1])).all())
    assert out.edge.unique().numel() == out.edge.numel()
    node_ends = torch.tensor([0, *out.num_sampled_nodes]).cumsum(0)
    edge_ends = torch.tensor([0, *out.num_sampled_edges]).cumsum(0)
    for h, k in enumerate(fanout):
        e = slice(int(edge_ends[h]), int(edge_ends[h + 1]))
        lo, hi = int(node_ends[h]), int(node_ends[h + 1])
        # hop h + 1 expands exactly the frontier found at hop h, and reaches only nodes found so far
        frontier = torch.arange(lo, hi)
        assert bool(((out.col[e] >= lo) & (out.col[e] < hi)).all())
        assert bool((out.row[e] < node_ends[h + 2]).all())
        kept = torch.bincount(out.col[e] - lo, minlength=hi - lo)
        assert torch.equal(kept, torch.clamp(deg[out.node[frontier]], max=k))  # min(deg, k) pairs each
    # the new nodes of a hop are exactly the sampled neighbours not seen before
    seen = set(out.node[: int(node_ends[1])].tolist())
    for h in range(3):
        e = slice(int(edge_ends[h]), int(edge_ends[h + 1]))
        new = set(out.node[out.row[e]].tolist()) - seen
        assert new == set(out.node[int(node_ends[h + 1]) : int(node_ends[h + 2])].tolist())
        seen |= new


def test_sampler_is_seeded_and_reusable(world_data):
    prop = _graphrec(world_data).propagation
    gen = torch.Generator()
    sampler = NeighbourSampler.from_propagation(prop, [2, 2], generator=gen)
    seeds = torch.arange(0, 200, 9)
    outs = []
    for seed in (11, 11, 12):
        gen.manual_seed(seed)
        outs.append(sampler.sample(seeds))
    a, b, c = outs
    for name in ("node", "row", "col", "edge"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.num_sampled_nodes == b.num_sampled_nodes and a.num_sampled_edges == b.num_sampled_edges
    assert not torch.equal(a.edge, c.edge)
    assert bool((sampler._map == -1).all())  # the relabelling map is left clean


def test_sampler_rejects_bad_arguments(world_data):
    prop = _graphrec(world_data).propagation
    with pytest.raises(ConfigError, match="num_neighbours"):
        NeighbourSampler(prop.crow, prop.col, [3, 0])
    with pytest.raises(ConfigError, match="col must be"):
        NeighbourSampler(prop.crow, prop.col[:-1], [3])
    sampler = NeighbourSampler(prop.crow, prop.col, [3])
    with pytest.raises(DataError, match="seed node ids"):
        sampler.sample(torch.tensor([0, prop.num_nodes]))


def test_neighbours_are_drawn_uniformly_without_replacement():
    # 100 hubs of degree 5 (k=3 drawn by random keys) and 100 of degree 40 (k=3 by redrawing duplicates),
    # each hub with its own leaves; every hub is a seed, so one sample draws 100 subsets of each kind
    hubs, trials, k = 100, 20, 3
    degs = torch.tensor([5] * hubs + [40] * hubs)
    num_leaves = int(degs.sum())
    crow = torch.cat([torch.zeros(1, dtype=torch.long), degs.cumsum(0), torch.full((num_leaves,), num_leaves)])
    col = 2 * hubs + torch.arange(num_leaves)
    sampler = NeighbourSampler(crow, col, [k], generator=torch.Generator().manual_seed(0))
    counts = torch.zeros(2, 40)
    for _ in range(trials):
        out = sampler.sample(torch.arange(2 * hubs))
        assert out.edge.unique().numel() == out.edge.numel() == 2 * hubs * k  # k distinct pairs per hub
        hub = out.node[out.col]
        offset = out.edge - crow[hub]
        counts.index_put_((hub // hubs, offset), torch.ones(offset.numel()), accumulate=True)
    n = hubs * trials
    for kind, deg in ((0, 5), (1, 40)):
        p = k / deg
        tol = 5 * (p * (1 - p) / n) ** 0.5
        assert (counts[kind, :deg] / n - p).abs().max() < tol
        assert counts[kind, deg:].sum() == 0


def test_one_sampled_layer_is_an_unbiased_estimate_of_the_propagation(world_data):
    model = _graphrec(world_data, relation_mode="weights")
    prop = model.propagation
    with torch.no_grad():
        vals = prop.values()
        x0 = torch.randn(prop.num_nodes, 3, generator=torch.Generator().manual_seed(1))
        exact = prop.matrix() @ x0
    seeds = torch.arange(prop.num_nodes)
    k = 4  # the graph has nodes of degree <= 4, in (4, 8] and > 8: every branch of the sampler is used
    deg = prop.crow[1:] - prop.crow[:-1]
    assert bool((deg <= k).any() and ((deg > k) & (deg <= 2 * k)).any() and (deg > 2 * k).any())
    sampler = NeighbourSampler.from_propagation(prop, [k], generator=torch.Generator().manual_seed(2))
    trials = 150
    est = torch.empty(trials, prop.num_nodes, 3)
    for t in range(trials):
        out = sampler.sample(seeds)
        h = propagate_sampled(out, vals, x0[out.node], prop.crow, 1)  # (x0 + x1) / 2 for the seeds
        est[t, out.node[: out.num_sampled_nodes[0]]] = 2 * h - x0[out.node[: out.num_sampled_nodes[0]]]
    mean, se = est.mean(0), est.std(0) / trials**0.5
    assert bool((se[deg <= k] < 1e-5).all())  # every neighbour taken: no variance
    assert bool(((mean - exact).abs() <= 5 * se + 1e-5).all())
    assert bool((se[deg > k].sum(1) > 0).all())  # capped nodes were really sampled


def test_sampler_works_inside_pyg_link_loader(world_data):
    prop = _graphrec(world_data).propagation
    n = prop.num_nodes
    # a Data whose edges are the CSR pairs in order, so the sampler's pair indices are its edge ids
    data = Data(
        edge_index=torch.stack([prop.col, prop.row]),
        x=torch.arange(n, dtype=torch.float32)[:, None],
        edge_attr=torch.arange(prop.col.numel()),
        num_nodes=n,
    )
    sampler = NeighbourSampler.from_propagation(prop, [4, 3], generator=torch.Generator().manual_seed(0))
    uo, io = world_data.graph.node_offsets["user"], world_data.graph.node_offsets["item"]
    train = world_data.train
    label_index = torch.stack([train.users() + uo, train.indices + io])
    loader = LinkLoader(data, sampler, edge_label_index=label_index, batch_size=64, neg_sampling="binary")
    batches = 0
    for batch in loader:
        batches += 1
        nid = batch.n_id
        assert torch.equal(batch.x[:, 0].long(), nid)
        pos = batch.edge_label == 1
        assert int(pos.sum()) == batch.input_id.numel() and int((~pos).sum()) == batch.input_id.numel()
        assert bool((batch.edge_label_index < batch.num_nodes).all())
        assert torch.equal(nid[batch.edge_label_index[:, pos]], label_index[:, batch.input_id])
        # the sampled edges exist in the graph and carry their own attributes
        assert torch.equal(batch.edge_attr, batch.e_id)
        assert torch.equal(nid[batch.edge_index[0]], prop.col[batch.e_id])
        assert torch.equal(nid[batch.edge_index[1]], prop.row[batch.e_id])
        assert sum(batch.num_sampled_edges) == batch.edge_index.shape[1]
    assert batches == -(-train.nnz // 64)


# ---------------------------------------------------------------------------------------------- exactness
def _grads(model) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _check_equal_steps(model, sampler, batch) -> None:
    outs, grads = [], []
    for fn in (model.batch_scores, lambda u, p, n: sampled_batch_scores(model, sampler, u, p, n)):
        model.zero_grad()
        out = fn(*batch)
        (out.pos.sum() - 0.5 * out.neg.sum() + out.reg).backward()
        outs.append(out)
        grads.append(_grads(model))
    full, sampled = outs
    assert sampled.neg.shape == full.neg.shape and not sampled.extra
    for name in ("pos", "neg", "reg"):
        torch.testing.assert_close(getattr(sampled, name), getattr(full, name), rtol=1e-5, atol=1e-5)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("relation_mode", ["none", "weights"])
@pytest.mark.parametrize(
    ("id_embedding", "use_features", "fusion"),
    [
        ("add", True, "sum"),
        ("add", True, "gated"),
        ("gated", True, "sum"),
        ("none", True, "concat"),
        ("add", False, "sum"),
    ],
)
@pytest.mark.parametrize("score", ["dot", "cosine"])
def test_full_fanout_graphrec_step_equals_the_full_graph_step(
    world_data, relation_mode, id_embedding, use_features, fusion, score
):
    model = _graphrec(
        world_data,
        num_layers=3,
        relation_mode=relation_mode,
        id_embedding=id_embedding,
        use_features=use_features,
        fusion=fusion,
        score=score,
    )
    k = _max_degree(model.propagation)
    sampler = NeighbourSampler.from_propagation(model.propagation, [k, k, k], generator=torch.Generator())
    _check_equal_steps(model, sampler, _batch(world_data, shared=score == "cosine"))


@pytest.mark.parametrize("num_layers", [0, 2])
@pytest.mark.parametrize("shared", [False, True])
def test_full_fanout_lightgcn_step_equals_the_full_graph_step(world_data, num_layers, shared):
    torch.manual_seed(0)
    model = make_model("lightgcn", {"embedding_dim": 8, "num_layers": num_layers}, world_data.graph, world_data.train)
    sampler = NeighbourSampler.from_propagation(model.propagation, [-1] * num_layers)
    _check_equal_steps(model, sampler, _batch(world_data, shared))


def test_layer0_rows_equal_the_full_layer0(world_data):
    model = _graphrec(world_data, id_embedding="gated", fusion="gated")
    nodes = torch.tensor([5, 0, 5, world_data.graph.num_nodes - 1])
    torch.testing.assert_close(model.layer0_rows(nodes), model.layer0()[0][nodes])
    lgcn = make_model("lightgcn", {"embedding_dim": 4}, world_data.graph, world_data.train)
    nodes = torch.tensor([world_data.num_users + 3, 2, world_data.num_users, 2])
    torch.testing.assert_close(lgcn.layer0_rows(nodes), lgcn.layer0()[nodes])


@pytest.mark.parametrize(
    "settings",
    [
        {"relation_mode": "none"},  # the precomputed path
        {"relation_mode": "weights", "id_embedding": "gated", "score": "cosine"},
        {"relation_mode": "none", "use_features": False, "num_layers": 3},
    ],
)
def test_layerwise_embed_equals_embed(world_data, settings):
    model = _graphrec(world_data, **settings)
    with torch.no_grad():
        users, items = model.embed()
    lw_users, lw_items = layerwise_embed(model, batch_size=37)  # chunks do not align with node types
    torch.testing.assert_close(lw_users, users, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lw_items, items, rtol=1e-5, atol=1e-5)
    assert not lw_users.requires_grad


def test_layerwise_embed_lightgcn(world_data):
    torch.manual_seed(0)
    model = make_model("lightgcn", {"embedding_dim": 8, "num_layers": 3}, world_data.graph, world_data.train)
    with torch.no_grad():
        users, items = model.embed()
    lw_users, lw_items = layerwise_embed(model, batch_size=50)
    torch.testing.assert_close(lw_users, users, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lw_items, items, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- errors
def test_unsupported_settings_raise_config_errors(world_data):
    batch = _batch(world_data, shared=False)
    att = _graphrec(world_data, relation_mode="attention")
    sampler = NeighbourSampler.from_propagation(att.propagation, [3, 3])
    with pytest.raises(ConfigError, match=r"relation_mode \['none', 'weights'\], got 'attention'"):
        sampled_batch_scores(att, sampler, *batch)
    with pytest.raises(ConfigError, match="relation_mode"):
        layerwise_embed(att)
    align = _graphrec(world_data, relation_mode="none", align_weight=0.1)
    with pytest.raises(ConfigError, match="align_weight"):
        sampled_batch_scores(align, sampler, *batch)
    with torch.no_grad():  # inference does not use the alignment loss
        torch.testing.assert_close(layerwise_embed(align)[1], align.embed()[1], rtol=1e-5, atol=1e-5)
    cut = _graphrec(world_data, relation_mode="none", drop_scored_edge=True)
    with pytest.raises(ConfigError, match="drop_scored_edge"):
        sampled_batch_scores(cut, sampler, *batch)
    ok = _graphrec(world_data, relation_mode="none", num_layers=3)
    with pytest.raises(ConfigError, match="2 hops but the model has 3 layers"):
        sampled_batch_scores(ok, sampler, *batch)
    with pytest.raises(ConfigError, match="batch_size"):
        layerwise_embed(ok, batch_size=0)


# ---------------------------------------------------------------------------------------------- training
def test_sampled_training_lowers_the_loss(world_data):
    model = _graphrec(world_data, relation_mode="weights", num_layers=2)
    gen = torch.Generator().manual_seed(0)
    sampler = NeighbourSampler.from_propagation(model.propagation, [5, 5], generator=torch.Generator().manual_seed(1))
    # the exact (full-graph) BPR loss over every training pair with fixed negatives
    users, pos = world_data.train.users(), world_data.train.indices
    neg = torch.randint(0, world_data.num_items, (users.numel(), 4), generator=torch.Generator().manual_seed(3))

    def full_loss() -> float:
        with torch.no_grad():
            out = model.batch_scores(users, pos, neg)
            return float(bpr_loss(out.pos, out.neg))

    before = full_loss()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    first_epoch, last_epoch = [], []
    for epoch in range(8):
        for u, p, n in epoch_batches(world_data.train, 128, 2, gen):
            out = sampled_batch_scores(model, sampler, u, p, n)
            loss = bpr_loss(out.pos, out.neg) + 1e-4 * out.reg
            opt.zero_grad()
            loss.backward()
            opt.step()
            (first_epoch if epoch == 0 else last_epoch if epoch == 7 else []).append(float(loss.detach()))
    after = full_loss()
    assert sum(last_epoch) / len(last_epoch) < sum(first_epoch) / len(first_epoch)
    assert after < before - 0.05
