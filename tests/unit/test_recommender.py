"""The Recommender facade on a small synthetic world: ids, exclude-seen, save/load, explain, cold start."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graph_rec.errors import CheckpointError, ConfigError, DataError, UnknownIdError
from graph_rec.eval.metrics import intra_list_diversity
from graph_rec.recommender import Recommender
from kg_builders.graph import KnowledgeGraph
from tests.worlds import synthetic_graph

TRAIN = {
    "epochs": 4,
    "batch_size": 256,
    "lr": 0.02,
    "eval_every": 2,
    "patience": 5,
    "loss": "softmax",
    "num_negatives": 32,
}


@pytest.fixture(scope="module")
def world():
    return synthetic_graph()


def _fit(world, **settings):
    kg, sp = world
    base = {"embedding_dim": 8, "num_layers": 2, "relation_mode": "none", "score": "cosine"}
    return Recommender.fit(kg, split=sp, settings={**base, **settings}, train=TRAIN)


@pytest.fixture(scope="module")
def rec(world):
    return _fit(world)


def _seen(rec, user_id):
    u = rec.user_ids.index(user_id)
    t = rec.data.train
    return {rec.item_ids[j] for j in t.indices[t.indptr[u] : t.indptr[u + 1]].tolist()}


# ------------------------------------------------------------------ recommend, score, similar items
def test_recommend_excludes_seen_and_matches_the_model_scores(rec):
    with torch.inference_mode():
        full = rec.model.scorer()(torch.arange(rec.data.num_users))
    for user_id in rec.user_ids[:10]:
        r = rec.recommend(user_id, k=7)
        assert len(r) == 7 and len(set(r.item_ids)) == 7
        assert not set(r.item_ids) & _seen(rec, user_id)
        assert list(r.scores) == sorted(r.scores, reverse=True)
        u = rec.user_ids.index(user_id)
        expected = full[u].clone()
        for i in _seen(rec, user_id):
            expected[rec.item_ids.index(i)] = -torch.inf
        top = torch.topk(expected, 7)
        assert list(r.item_ids) == [rec.item_ids[j] for j in top.indices.tolist()]
        np.testing.assert_allclose(r.scores, top.values.numpy(), rtol=1e-5)
    with_seen = rec.recommend(rec.user_ids[0], k=rec.data.num_items, exclude_seen=False)
    assert set(with_seen.item_ids) == set(rec.item_ids)


def test_batch_equals_single_and_converts_to_pandas(rec):
    users = list(rec.user_ids[:13])
    batch = rec.recommend_batch(users, k=5, batch_size=4)
    assert [b.user_id for b in batch] == users
    for b in batch:
        one = rec.recommend(b.user_id, k=5)  # the same ranking; scores up to float rounding of the matmul
        assert b.item_ids == one.item_ids
        np.testing.assert_allclose(b.scores, one.scores, rtol=1e-6)
    df = batch.to_pandas()
    assert list(df.columns) == ["user_id", "item_id", "score", "rank", "model"]
    assert len(df) == 13 * 5 and df["rank"].tolist()[:5] == [1, 2, 3, 4, 5]
    assert (df["model"] == "graphrec").all()


def test_candidates_score_and_similar_items(rec):
    user = rec.user_ids[3]
    cands = [i for i in rec.item_ids[:30] if i not in _seen(rec, user)][:6]
    r = rec.recommend(user, k=3, candidates=cands)
    assert set(r.item_ids) <= set(cands)
    s = rec.score(user, list(reversed(cands)))
    assert s.item_ids == tuple(reversed(cands))
    assert s.as_dict()[r.item_ids[0]] == pytest.approx(r.scores[0], rel=1e-5)
    assert max(s.scores) == pytest.approx(r.scores[0], rel=1e-5)
    assert rec.score(user, []).scores == ()
    with pytest.raises(ConfigError, match="candidates must be a list of item ids, not one string"):
        rec.recommend(user, k=3, candidates=cands[0])
    sim = rec.similar_items(rec.item_ids[0], k=5)
    assert rec.item_ids[0] not in sim.item_ids and list(sim.scores) == sorted(sim.scores, reverse=True)
    emb = F.normalize(rec._snap.item_repr, dim=-1)
    assert sim.scores[0] == pytest.approx(float(emb[rec.item_ids.index(sim.item_ids[0])] @ emb[0]), rel=1e-5)


def test_bad_input_is_a_clear_error(rec):
    with pytest.raises(UnknownIdError, match="unknown user id\\(s\\): .nobody., .ghost."):
        rec.recommend_batch(["nobody", rec.user_ids[0], "ghost"], k=3)
    skipped = rec.recommend_batch(["nobody", rec.user_ids[0]], k=3, on_unknown="skip")
    assert skipped.skipped == ("nobody",) and len(skipped) == 1
    with pytest.raises(UnknownIdError, match="nobody"):
        rec.recommend("nobody")
    for k in (0, -1, rec.data.num_items + 1, 2.5, True):
        with pytest.raises(ConfigError, match="k"):
            rec.recommend(rec.user_ids[0], k=k)
    with pytest.raises(UnknownIdError, match="no-such-item"):
        rec.score(rec.user_ids[0], ["no-such-item"])
    with pytest.raises(ConfigError, match="diversity"):
        rec.recommend(rec.user_ids[0], diversity=1.5)
    with pytest.raises(ConfigError, match="one string"):
        rec.recommend_batch(rec.user_ids[0])


# ------------------------------------------------------------------ save / load
def test_save_load_gives_identical_answers_and_uses_no_pickle(rec, tmp_path):
    rec.save(tmp_path / "m")
    names = {p.name for p in (tmp_path / "m").rglob("*") if p.is_file()}
    assert {"recommender.json", "model.safetensors", "interactions.safetensors", "checksums.json"} <= names
    assert not [n for n in names if n.endswith((".pt", ".pkl", ".pickle", ".bin"))]
    back = Recommender.load(tmp_path / "m")
    for u in rec.user_ids[:5]:
        assert back.recommend(u, k=10) == rec.recommend(u, k=10)
    assert back.explain(rec.user_ids[0], rec.item_ids[1]).paths == rec.explain(rec.user_ids[0], rec.item_ids[1]).paths
    with pytest.raises(ConfigError, match="already exists"):
        rec.save(tmp_path / "m")


def test_load_refuses_tampered_missing_and_newer_directories(rec, tmp_path):
    rec.save(tmp_path / "m")
    target = tmp_path / "m" / "model.safetensors"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"checksum mismatch in \['model.safetensors'\]"):
        Recommender.load(tmp_path / "m")

    rec.save(tmp_path / "n")
    (tmp_path / "n" / "interactions.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing.*interactions.safetensors"):
        Recommender.load(tmp_path / "n")

    rec.save(tmp_path / "o")
    meta = json.loads((tmp_path / "o" / "recommender.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "o" / "recommender.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format 99"):
        Recommender.load(tmp_path / "o")
    with pytest.raises(CheckpointError, match="not a saved recommender"):
        Recommender.load(tmp_path / "nothing-here")
    for damage in ({"view": None}, {"model": "graphrec"}):  # checksums still consistent: verify=False
        rec.save(tmp_path / "p", overwrite=True)
        meta = json.loads((tmp_path / "p" / "recommender.json").read_text())
        (tmp_path / "p" / "recommender.json").write_text(json.dumps({**meta, **damage}))
        with pytest.raises(CheckpointError, match="recommender.json is damaged"):
            Recommender.load(tmp_path / "p", verify=False)
    (tmp_path / "p" / "recommender.json").write_text("[1]")
    with pytest.raises(CheckpointError, match="must each hold a JSON object"):
        Recommender.load(tmp_path / "p", verify=False)


def test_explanations_score_the_heaviest_walks_exactly_whatever_the_fan_out(rec):
    view = rec.propagation_view()
    g = rec.data.graph
    widened = 0
    for user_id in rec.user_ids[:6]:
        item_id = rec.recommend(user_id, k=1).item_ids[0]
        u = rec.user_ids.index(user_id) + g.node_offsets["user"]
        i = rec.item_ids.index(item_id) + g.node_offsets["item"]
        exhaustive = view.candidate_paths(u, i, max_hops=3, candidates=20, fan_out=10**9)
        narrow = view.candidate_paths(u, i, max_hops=3, candidates=20, fan_out=2)
        assert narrow == exhaustive
        widened += int(view.e_ptr[u + 1] - view.e_ptr[u]) > 2
    assert widened >= 3  # the narrow join really had neighbours to leave out


@pytest.mark.parametrize(
    "model, settings", [("ease", {"l2": 50.0}), ("popularity", {}), ("itemknn", {}), ("als", {"factors": 8})]
)
def test_closed_form_models_serve_and_export_too(world, tmp_path, model, settings):
    kg, sp = world
    cf = Recommender.fit(kg, model=model, settings=settings, split=sp, train=TRAIN)
    r = cf.recommend(cf.user_ids[0], k=5)
    assert not set(r.item_ids) & _seen(cf, cf.user_ids[0])
    cf.save(tmp_path / model)
    assert Recommender.load(tmp_path / model).recommend(cf.user_ids[0], k=5) == r
    with pytest.raises(ConfigError, match="propagation model"):
        cf.explain(cf.user_ids[0], r.item_ids[0])
    with pytest.raises(ConfigError, match="propagation model"):
        cf.add_item("new", tags=[])
    # the knowledge stores get their recommendations, and the factors of the models that have them
    emb, recs, paths = cf.export_tables(k=3, explain_top=0)
    assert len(recs) == 3 * cf.data.num_users and len(paths) == 0
    if model == "als":
        assert set(emb) == {"user", "item"}
        np.testing.assert_array_equal(emb["item"], cf.model.item_factors.numpy())
    else:
        assert emb == {}
    stored = cf.store(k=3).recommendations(cf.user_ids[0])
    assert tuple(x.item_id for x in stored) == cf.recommend(cf.user_ids[0], k=3).item_ids


# ------------------------------------------------------------------ explanations
def _dense_masked_score(rec, user_id, item_id, path) -> float:
    """Independent reference: Â written out densely, the path's edges masked, propagation redone."""
    model, g = rec.model, rec.data.graph
    prop = model.propagation
    with torch.no_grad():
        x0 = model.layer0()[0].double()
        vals = prop.values(x0.float()).double()
        n = g.num_nodes
        a = torch.zeros(n, n, dtype=torch.float64)
        rows = torch.repeat_interleave(torch.arange(n), prop.crow[1:] - prop.crow[:-1])
        a[rows, prop.col] = vals
        w = prop.relation_weights().double()[prop.edge_type] * prop.edge_weight.double()
        deg = torch.zeros(n, dtype=torch.float64).index_add(0, prop.dst, w)
        left, right = deg**-model.config.norm_exponent, deg ** (model.config.norm_exponent - 1)
        offsets = g.node_offsets
        index = {t: {i: k for k, i in enumerate(rec.graph.node_ids[t])} for t in rec.graph.node_types}
        rel_ids = {name: k for k, name in enumerate(g.relations)}
        for (x, y), rel, fwd in zip(
            zip(path.nodes[:-1], path.nodes[1:], strict=True), path.relations, path.forward, strict=True
        ):
            s, d = (x, y) if fwd else (y, x)
            si, di = offsets[s.type] + index[s.type][s.id], offsets[d.type] + index[d.type][d.id]
            r = rel_ids[f"{s.type}__{rel}__{d.type}"]
            for src, dst, rid in ((si, di, r), (di, si, r + 1)):
                hit = (prop.src == src) & (prop.dst == dst) & (prop.edge_type == rid)
                assert bool(hit.any()), f"path hop {s} -{rel}-> {d} is not an edge of the graph"
                a[dst, src] -= float(w[hit].sum() * left[dst] * right[src])
        layers = [x0]
        for _ in range(model.config.num_layers):
            layers.append(a @ layers[-1])
        h = torch.stack(layers).mean(0)
        u = offsets["user"] + index["user"][user_id]
        i = offsets["item"] + index["item"][item_id]
        hu, hi = h[u], h[i]
        if model.config.score == "cosine":
            hu, hi = F.normalize(hu, dim=0), F.normalize(hi, dim=0)
        return float(hu @ hi)


@pytest.mark.parametrize(
    ("relation_mode", "num_layers", "norm_exponent"),
    [("none", 2, 0.5), ("weights", 3, 0.5), ("none", 1, 0.5), ("weights", 2, 0.3)],
)
def test_explanation_contributions_pass_the_deletion_test(world, relation_mode, num_layers, norm_exponent):
    rec = _fit(
        world,
        relation_mode=relation_mode,
        num_layers=num_layers,
        score="dot" if num_layers == 3 else "cosine",
        norm_exponent=norm_exponent,
    )
    if relation_mode == "weights":
        with torch.no_grad():  # relation weights away from 1
            rho = rec.model.propagation.rho
            rho.copy_(torch.linspace(-1.0, 1.5, rho.numel()))
        rec = Recommender(rec.model, rec.data, rec.graph, model_name="graphrec", model_settings=rec.model_settings)
    checked = 0
    for user_id in rec.user_ids[:4]:
        top = rec.recommend(user_id, k=2)
        for item_id in top.item_ids:
            ex = rec.explain(user_id, item_id, max_paths=4)
            assert ex.score == pytest.approx(rec.score(user_id, [item_id]).scores[0], rel=1e-4, abs=1e-6)
            contributions = [p.contribution for p in ex.paths]
            assert contributions == sorted(contributions, reverse=True)
            for p in ex.paths:
                assert p.nodes[0].type == "user" and p.nodes[0].id == user_id
                assert p.nodes[-1].type == "item" and p.nodes[-1].id == item_id
                assert 1 <= p.hops <= 3 and len(set(p.nodes)) == len(p.nodes)
                masked = _dense_masked_score(rec, user_id, item_id, p)
                assert ex.score - masked == pytest.approx(p.contribution, rel=1e-3, abs=1e-6)
                checked += 1
            # every candidate path: scored one at a time, in chunks that cut the list anywhere, or all at once
            view, g = rec.propagation_view(), rec.data.graph
            u = g.node_offsets["user"] + rec.user_ids.index(user_id)
            i = g.node_offsets["item"] + rec.item_ids.index(item_id)
            paths = view.candidate_paths(u, i, max_hops=3, candidates=64)
            alone = view.masked_scores(u, i, paths, chunk=1)
            assert alone.shape == (len(paths),) and len(paths) > 5
            for chunk in (5, len(paths)):
                torch.testing.assert_close(view.masked_scores(u, i, paths, chunk=chunk), alone, rtol=1e-5, atol=1e-6)
    assert checked >= 8


def test_explanation_paths_are_typed_and_pandas_friendly(rec):
    user = rec.user_ids[0]
    item = rec.recommend(user, k=1).item_ids[0]
    ex = rec.explain(user, item, max_paths=3)
    assert 1 <= len(ex.paths) <= 3
    kinds = {p.kind for p in ex.paths}
    assert all(k.startswith("user-") and k.endswith("item") for k in kinds)
    df = ex.to_pandas()
    assert list(df["rank"]) == list(range(1, len(ex.paths) + 1))
    assert df["contribution"].tolist() == [p.contribution for p in ex.paths]
    with pytest.raises(ConfigError, match="max_hops"):
        rec.explain(user, item, max_hops=4)


def test_explanations_name_relations_that_contain_a_double_underscore(world):
    # relation names may contain "__"; explain used to split "item__has__genre__entity" at "__"
    # and report the relation "has", which no store could match
    kg, sp = world
    renamed = {(("item", "has__genre", "entity") if et[1] == "has_genre" else et): e for et, e in kg.edges.items()}
    kg2 = KnowledgeGraph(kg.node_ids, renamed, node_attrs=kg.node_attrs, features=kg.features)
    rec = Recommender.fit(kg2, split=sp, settings={"embedding_dim": 8, "num_layers": 2}, train={**TRAIN, "epochs": 1})
    seen = set()
    for user in rec.user_ids[:8]:
        item = rec.recommend(user, k=1).item_ids[0]
        seen |= {r for p in rec.explain(user, item, max_paths=20).paths for r in p.relations}
    assert "has__genre" in seen and seen <= {r for _, r, _ in kg2.edge_types}
    with pytest.raises(ConfigError, match="'has__genre'"):  # the list of relations in the error, too
        rec.add_item("new", neighbours=[("no_such", "entity", "x")])


# ------------------------------------------------------------------ cold start
def _dense_fold_in_layer1(rec, x0_new, neighbours) -> torch.Tensor:
    """One layer with a new node appended to the dense adjacency (exact for num_layers=1)."""
    model, g = rec.model, rec.data.graph
    prop = model.propagation
    with torch.no_grad():
        x0 = model.layer0()[0].double()
        n = g.num_nodes
        a = torch.zeros(n + 1, n + 1, dtype=torch.float64)
        a.index_put_((prop.dst, prop.src), prop.edge_weight.double(), accumulate=True)
        for j in neighbours:
            a[n, j] += 1.0
            a[j, n] += 1.0
        deg = a.sum(1)
        e = model.config.norm_exponent
        left = torch.where(deg > 0, deg.clamp_min(1e-12) ** -e, torch.zeros_like(deg))
        right = torch.where(deg > 0, deg.clamp_min(1e-12) ** (e - 1), torch.zeros_like(deg))
        a = left[:, None] * a * right[None, :]
        x = torch.cat([x0, x0_new.double()[None]])
        return ((x + a @ x) / 2)[n]


def test_add_item_is_exact_for_one_layer_and_recommendable(world, tmp_path):
    rec = _fit(world, num_layers=1, score="dot")
    kg = rec.graph
    tags = kg.node_ids["tag"][:2]
    feats = np.random.default_rng(5).normal(size=6).astype(np.float32)
    rec.add_item("brand-new", features={"text": feats}, tags=tags)
    g = rec.data.graph
    neighbours = [g.node_offsets["tag"] + kg.node_ids["tag"].index(t) for t in tags]
    with torch.no_grad():
        x0_new = rec.model.fusion({"text": torch.tensor(feats)[None]}, {"text": torch.ones(1, dtype=torch.bool)})[0]
    expected = _dense_fold_in_layer1(rec, x0_new, neighbours)
    torch.testing.assert_close(rec._snap.item_repr[-1].double(), expected, rtol=1e-4, atol=1e-6)
    user = rec.user_ids[0]
    r = rec.recommend(user, k=1, candidates=["brand-new"])
    assert r.item_ids == ("brand-new",)
    assert r.scores[0] == pytest.approx(float(rec._snap.user_repr[0] @ rec._snap.item_repr[-1]), rel=1e-5)
    assert "brand-new" in rec.recommend(user, k=rec.data.num_items - len(_seen(rec, user)) + 1).item_ids
    rec.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert back.item_ids[-1] == "brand-new"
    assert back.recommend(user, k=5) == rec.recommend(user, k=5)
    with pytest.raises(ConfigError, match="already known"):
        rec.add_item("brand-new", tags=tags)
    with pytest.raises(UnknownIdError, match="tag:no-such-tag"):
        rec.add_item("other", tags=["no-such-tag"])
    with pytest.raises(ConfigError, match="needs features"):
        rec.add_item("empty")
    with pytest.raises(ConfigError, match="recipe"):
        rec.add_item("texty", text="a film without an encoder in the recipe")
    # a link named twice counts once; links all unknown under on_unknown="skip" leave nothing to score
    rec.add_item("twice", tags=[tags[0], tags[0]])
    rec.add_item("once", tags=[tags[0]])
    torch.testing.assert_close(rec._snap.item_repr[-1], rec._snap.item_repr[-2])
    with pytest.raises(ConfigError, match=r"needs features .* every link it named is unknown: \['tag:no-such-tag'\]"):
        rec.add_item("ghost", tags=["no-such-tag"], on_unknown="skip")
    assert "ghost" not in rec.item_ids
    with pytest.raises(UnknownIdError, match=r"'brand-new'") as err:
        rec.explain(user, "brand-new")
    assert repr(user) not in str(err.value).split("hint")[0]  # the trained user is not named as unknown


@pytest.mark.parametrize("norm_exponent", [0.5, 0.3])
def test_add_user_folds_in_from_items_and_excludes_them(world, norm_exponent):
    rec = _fit(world, num_layers=1, score="dot", norm_exponent=norm_exponent)
    items = list(rec.item_ids[:4])
    rec.add_user("newcomer", items)
    g = rec.data.graph
    neighbours = [g.node_offsets["item"] + k for k in range(4)]
    expected = _dense_fold_in_layer1(rec, torch.zeros(rec.model.config.embedding_dim), neighbours)
    torch.testing.assert_close(rec._snap.user_repr[-1].double(), expected, rtol=1e-4, atol=1e-6)
    r = rec.recommend("newcomer", k=10)
    assert not set(r.item_ids) & set(items)
    with pytest.raises(ConfigError, match="already known"):
        rec.add_user("newcomer", items)
    with pytest.raises(UnknownIdError, match="nope"):
        rec.add_user("other", ["nope"])


def test_fold_in_through_two_edges_to_one_neighbour_counts_both_in_its_degree(world):
    rec = _fit(world, num_layers=1, score="dot", norm_exponent=0.3)
    g = rec.data.graph
    item = g.node_offsets["item"]
    neighbours = [item, item, item + 1]  # item 0 joined twice (two relations), item 1 once
    view = rec.propagation_view()
    x0 = torch.zeros(rec.model.config.embedding_dim)
    rels = torch.zeros(3, dtype=torch.long)
    got = view.fold_in(x0, torch.tensor(neighbours), rels, torch.ones(3))
    expected = _dense_fold_in_layer1(rec, x0, neighbours)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-6)


def test_concurrent_queries_while_items_are_added(world):
    rec = _fit(world)
    users = list(rec.user_ids[:20])
    expected = {u: rec.recommend(u, k=5, candidates=list(rec.item_ids)) for u in users}
    errors: list[BaseException] = []

    def reader():
        try:
            for _ in range(5):
                for u in users:
                    got = rec.recommend(u, k=5, candidates=list(expected[u].item_ids) + list(rec.item_ids[:80]))
                    assert got == expected[u] or set(got.item_ids) <= set(rec.item_ids)
                    assert rec.recommend(u, k=5, candidates=list(rec.item_ids[:80])) == expected[u]
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    def writer():
        try:
            for k in range(10):
                rec.add_item(f"added-{k}", tags=[rec.graph.node_ids["tag"][k]])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert rec.item_ids[-10:] == tuple(f"added-{k}" for k in range(10))


def test_save_during_add_item_writes_the_records_of_the_saved_items_only(rec, tmp_path, monkeypatch):
    rec.save(tmp_path / "m")
    served = Recommender.load(tmp_path / "m")  # a copy to add items to
    tags = served.graph.node_ids["tag"]
    served.add_item("before", tags=[tags[0]])
    save_graph = served.graph.save

    def add_while_saving(path):  # another thread's add_item, between the snapshot and the JSON
        served.add_item("during", tags=[tags[1]])
        return save_graph(path)

    monkeypatch.setattr(served.graph, "save", add_while_saving)
    served.save(tmp_path / "s")
    added = json.loads((tmp_path / "s" / "recommender.json").read_text())["added"]
    assert added["items"] == ["before"] and list(added["meta"]["items"]) == ["before"]
    back = Recommender.load(tmp_path / "s")
    assert back.added_items == ("before",) and list(back._added_meta["items"]) == ["before"]
    assert served.added_items == ("before", "during")


# ------------------------------------------------------------------ re-ranking
def test_mmr_trades_relevance_for_diversity(rec):
    users = list(rec.user_ids[:30])
    plain = rec.recommend_batch(users, k=8)
    assert rec.recommend_batch(users, k=8, diversity=0.0) == plain
    diverse = rec.recommend_batch(users, k=8, diversity=0.7)
    feats = rec._snap.item_repr
    idx = {i: k for k, i in enumerate(rec.item_ids)}

    def ild(batch):
        top = torch.tensor([[idx[i] for i in r.item_ids] for r in batch])
        return float(intra_list_diversity(top, feats).mean())

    assert ild(diverse) > ild(plain)
    for p, d in zip(plain, diverse, strict=True):
        assert d.item_ids[0] == p.item_ids[0]  # the first pick is the most relevant
        assert len(set(d.item_ids)) == 8 and not set(d.item_ids) & _seen(rec, d.user_id)
        assert sum(d.scores) <= sum(p.scores) + 1e-6


def test_the_evaluator_scores_mmr_lists_and_they_pass_its_checks(rec):
    from graph_rec.eval import EvalConfig, evaluate
    from graph_rec.models.base import Scorer

    cfg = EvalConfig(ks=(5, 10), beyond_accuracy=True)
    snap, data = rec._snap, rec.data
    feats = snap.item_repr[: data.num_items]
    scorer = Scorer.from_embeddings(snap.user_repr[: data.num_users], feats)
    plain = evaluate(scorer, data, part="test", config=cfg, item_features=feats)
    diverse = evaluate(scorer, data, part="test", config=cfg, item_features=feats, rerank=rec.reranker(0.7))
    assert diverse.num_users == plain.num_users
    assert diverse.metrics["diversity@10"] > plain.metrics["diversity@10"]
    assert diverse.metrics["recall@10"] <= plain.metrics["recall@10"] + 0.05


def test_add_item_encodes_an_image_with_the_encoder_recorded_in_the_recipe(tmp_path, monkeypatch, caplog):
    """A graph whose items have image features (a tiny random ViT): a new item's image goes through the same encoder."""
    transformers = pytest.importorskip("transformers", reason="image encoders need the 'text' extra (transformers)")
    from kg_builders.builders.image_features import ImageEncoder, ImageFeatureBuilder
    from kg_builders.builders.standard import standard_builders
    from kg_builders.graph import build_graph
    from kg_builders.sources.synthetic import make_synthetic_world
    from kg_builders.split import split_random

    with torch.random.fork_rng():
        torch.manual_seed(0)
        vit = transformers.ViTModel(
            transformers.ViTConfig(
                image_size=16,
                patch_size=8,
                hidden_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=64,
            )
        )
    vit.save_pretrained(tmp_path / "vit")
    (tmp_path / "vit" / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "ViTImageProcessor",
                "do_resize": True,
                "size": {"height": 16, "width": 16},
                "do_rescale": True,
                "rescale_factor": 1 / 255,
                "do_normalize": True,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            }
        )
    )
    tables = make_synthetic_world(num_users=40, num_items=60, interactions_per_user=10, seed=4, image_size=16)
    sp = split_random(tables, ratios=(0.8, 0.1, 0.1), seed=1)
    train = sp.train_tables(tables)
    kg = build_graph(train, standard_builders(train))
    ImageFeatureBuilder(encoder=ImageEncoder(model=str(tmp_path / "vit"), local_files_only=True)).build(kg, tables)
    rec = Recommender.fit(
        kg, split=sp, settings={"embedding_dim": 8, "num_layers": 1, "relation_mode": "none"}, train=TRAIN
    )
    assert rec.model.slots == ["image"]
    image = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    vector = ImageEncoder(model=str(tmp_path / "vit"), local_files_only=True).encode([image]).vectors[0]
    rec.add_item("from-image", image=image)
    rec.add_item("from-vector", features={"image": vector})
    rec.add_item("other-image", image=255 - image)
    reprs = rec._snap.item_repr
    torch.testing.assert_close(reprs[-3], reprs[-2], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(reprs[-3], reprs[-1])
    with pytest.raises(DataError, match="image"):
        rec.add_item("bad", features={"image": np.zeros(7, dtype=np.float32)})
    # an image the encoder skips (it does not decode) is refused, not added as a zero feature
    n = len(rec.item_ids)
    for bad in (b"not an image", np.full((16, 16, 3), 7.5, dtype=np.float32)):
        with pytest.raises(DataError, match="feature 'image' of the new item could not be encoded"):
            rec.add_item("undecodable", image=bad)
    assert len(rec.item_ids) == n
    # [H, W, 3] arrays are read as such, however short: a 3-pixel-tall image as a 3 x 16 image
    enc = ImageEncoder(model=str(tmp_path / "vit"), local_files_only=True)
    short = np.random.default_rng(5).integers(0, 256, (3, 16, 3), dtype=np.uint8)
    by_processor = enc.encode([short]).vectors[0]
    by_torch = ImageEncoder(model=str(tmp_path / "vit"), local_files_only=True, preprocess="torch").encode([short])
    np.testing.assert_allclose(by_processor, by_torch.vectors[0], atol=2e-3)
    assert enc.encode([short[:1]]).mask.tolist() == [True]

    # the same encoder under another transformers version: a warning, not a refusal
    import kg_builders.builders.image_features as image_features

    def other_transformers(name):
        return "0.0-other" if name == "transformers" else None

    with monkeypatch.context() as m, caplog.at_level(logging.WARNING, logger="graph_rec.recommender"):
        m.setattr(image_features, "package_version", other_transformers)
        again = Recommender(rec.model, rec.data, rec.graph, model_name="graphrec", model_settings=rec.model_settings)
        again.add_item("under-other-libraries", image=image)
    assert "transformers/tokenizers versions or the compute dtype" in caplog.text
    torch.testing.assert_close(again._snap.item_repr[-1], reprs[-3], rtol=1e-5, atol=1e-6)
    # a graph built before the library versions were fingerprinted recorded what is now the identity
    entry = next(r for r in rec.graph.recipe if r.get("info", {}).get("slot") == "image")
    identity = entry["info"].pop("encoder_identity")
    entry["info"]["fingerprint"] = identity
    older = Recommender(rec.model, rec.data, rec.graph, model_name="graphrec", model_settings=rec.model_settings)
    older.add_item("from-an-older-graph", image=image)
    torch.testing.assert_close(older._snap.item_repr[-1], reprs[-3], rtol=1e-5, atol=1e-6)
    # another model (its identity differs too) is refused
    entry["info"]["fingerprint"] = entry["info"]["encoder_identity"] = "0" * 64
    with monkeypatch.context() as m:
        m.setattr(image_features, "package_version", other_transformers)
        refused = Recommender(rec.model, rec.data, rec.graph, model_name="graphrec", model_settings=rec.model_settings)
        with pytest.raises(ConfigError, match="is not the one the graph was built with"):
            refused.add_item("refused", image=image)


def test_add_item_links_entities_through_relations_the_model_kept(world):
    kg, sp = world
    base = {"embedding_dim": 8, "num_layers": 2, "relation_mode": "none", "score": "cosine"}
    rec = Recommender.fit(kg, split=sp, settings=base, train=TRAIN, view={"drop_relations": ["has_genre"]})
    genres = kg.edges[("item", "has_genre", "entity")].edge_index[1]
    directors = kg.edges[("item", "directed_by", "entity")].edge_index[1]
    genre, director = (kg.node_ids["entity"][int(x[0])] for x in (genres, directors))
    with pytest.raises(ConfigError, match=r"joined to no item by a relation the model propagates over"):
        rec.add_item("by-genre", entities=[genre])
    rec.add_item("by-director", entities=[director])
    assert rec._added_meta["items"]["by-director"]["links"] == [["directed_by", "entity", director]]


# ------------------------------------------------------------------ edge cases of the API
def test_mmr_at_full_diversity_never_picks_masked_items(rec):
    """At λ = 1 the relevance term (which kept masked items last) is gone: seen items and items
    outside the candidates must still only fill slots once no allowed item is left."""
    users = list(rec.user_ids[:20])
    for r in rec.recommend_batch(users, k=10, diversity=1.0):
        assert len(r) == 10 and not set(r.item_ids) & _seen(rec, r.user_id)
    cands = list(rec.item_ids[:15])
    r = rec.recommend(users[0], k=10, candidates=cands, diversity=1.0, exclude_seen=False)
    assert len(r) == 10 and set(r.item_ids) <= set(cands)
    # the evaluator's checks refuse a masked item while unmasked ones remain
    from graph_rec.eval import EvalConfig, evaluate
    from graph_rec.models.base import Scorer

    snap, data = rec._snap, rec.data
    scorer = Scorer.from_embeddings(snap.user_repr[: data.num_users], snap.item_repr[: data.num_items])
    evaluate(scorer, data, part="test", config=EvalConfig(ks=(10,)), rerank=rec.reranker(1.0))


def test_numpy_integers_are_accepted_where_ints_are(rec):
    u = rec.user_ids[0]
    assert rec.recommend(u, k=np.int64(5)) == rec.recommend(u, k=5)
    assert rec.recommend_batch(list(rec.user_ids[:6]), k=np.int32(3), batch_size=np.int64(4)) == rec.recommend_batch(
        list(rec.user_ids[:6]), k=3
    )
    first = rec.recommend(u, k=1).item_ids[0]
    assert rec.explain(u, first, max_paths=np.int64(2)).paths == rec.explain(u, first, max_paths=2).paths
    for k in (np.int64(0), np.float64(2.0), np.bool_(True)):
        with pytest.raises(ConfigError, match="k must be a positive integer"):
            rec.recommend(u, k=k)


def test_numpy_scalars_in_settings_are_saved_as_json_numbers(world, tmp_path):
    kg, sp = world
    settings = {"embedding_dim": np.int64(8), "num_layers": np.int32(2), "relation_mode": "none", "score": "cosine"}
    train = {**TRAIN, "epochs": np.int64(2), "lr": np.float32(0.02)}
    r = Recommender.fit(kg, split=sp, settings=settings, train=train)
    r.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "recommender.json").read_text())
    assert meta["model"]["settings"]["embedding_dim"] == 8 and type(meta["model"]["settings"]["embedding_dim"]) is int
    assert meta["train"]["epochs"] == 2
    u = r.user_ids[0]
    assert Recommender.load(tmp_path / "m").recommend(u, k=5) == r.recommend(u, k=5)
    # NumPy floats where a number in [0, 1] is meant, and a feature vector of NumPy floats
    assert r.recommend(u, k=5, diversity=np.float32(0.25)) == r.recommend(u, k=5, diversity=0.25)
    dim = r.data.graph.features["text"].shape[1]
    vec = np.linspace(-1, 1, dim, dtype=np.float32)
    r.add_item("np-floats", features={"text": list(vec)})
    r.add_item("py-floats", features={"text": [float(x) for x in vec]})
    reps = r._snap.item_repr[[r.item_ids.index("np-floats"), r.item_ids.index("py-floats")]]
    torch.testing.assert_close(reps[0], reps[1])


def test_unknown_id_errors_offer_on_unknown_only_where_it_exists(rec):
    u = rec.user_ids[0]
    for call in (
        lambda: rec.recommend("ghost"),
        lambda: rec.recommend(u, candidates=[rec.item_ids[0], "ghost"]),
        lambda: rec.recommend_batch([u], candidates=["ghost"], on_unknown="skip"),
        lambda: rec.score(u, ["ghost"]),
        lambda: rec.similar_items("ghost"),
        lambda: rec.explain(u, "ghost"),
    ):
        with pytest.raises(UnknownIdError, match="'ghost'") as err:
            call()
        assert "on_unknown" not in str(err.value)
    with pytest.raises(UnknownIdError, match="add_user, or pass on_unknown='skip'"):
        rec.recommend_batch(["ghost"])


def test_query_on_given_text_vectors_says_no_encoder_is_recorded(rec):
    assert not rec._recipe_entry("text")  # the synthetic world's text vectors are given
    with pytest.raises(ConfigError, match="recipe names none .its text vectors were given"):
        rec.recommend(rec.user_ids[0], query="war films")


def test_lightgcn_serves_and_refuses_explanations_and_cold_start_by_name(world):
    kg, sp = world
    lg = Recommender.fit(kg, model="lightgcn", split=sp, settings={"embedding_dim": 8, "num_layers": 2}, train=TRAIN)
    emb, recs, _ = lg.export_tables(k=3, explain_top=0)
    assert set(emb) == {"user", "item"} and emb["item"].shape == (lg.data.num_items, 8)
    assert len(lg.store(k=3).recommendations(lg.user_ids[0])) == 3
    u, i = lg.user_ids[0], lg.item_ids[1]
    for call in (
        lambda: lg.explain(u, i),
        lambda: lg.add_item("new", tags=[kg.node_ids["tag"][0]]),
        lambda: lg.add_user("nu", [lg.item_ids[0]]),
    ):
        with pytest.raises(ConfigError, match="need a propagation model .'graphrec'.; this is LightGCN"):
            call()


def test_add_item_and_add_user_refuse_what_they_would_misread(world):
    rec = _fit(world)
    tag = world[0].node_ids["tag"][0]
    # a slot given as None is no feature: nothing is left to score the item by
    for kwargs in ({"features": {"text": None}}, {"text": None, "features": {"text": None}}):
        with pytest.raises(ConfigError, match="needs features .text, image. or links"):
            rec.add_item("x", **kwargs)
    # one string where a list of ids is meant (it would be split into characters)
    for name in ("tags", "entities", "neighbours"):
        with pytest.raises(ConfigError, match=f"{name} must be a list of ids, not one string"):
            rec.add_item("x", **{name: tag})
    # a user link is an interaction (it would have to be seen for that user): refused
    with pytest.raises(ConfigError, match="names a user among its neighbours"):
        rec.add_item("x", tags=[tag], neighbours=[("interacted", "user", rec.user_ids[0])])
    assert "x" not in rec.item_ids
    # an unknown entity left out under on_unknown="skip" is recorded, as unknown tags are
    rec.add_item("e", tags=[tag], entities=["no-such-entity"], on_unknown="skip")
    assert rec._added_meta["items"]["e"]["skipped"] == ["entity:no-such-entity"]
    with pytest.raises(ConfigError, match=r"every link it named is unknown: \['entity:no-such-entity'\]"):
        rec.add_item("e2", entities=["no-such-entity"], on_unknown="skip")
    # add_user takes any sequence of ids (a NumPy array, a pandas Series), not one string
    import pandas as pd

    rec.add_user("nu-array", np.array(rec.item_ids[:3]))
    rec.add_user("nu-series", pd.Series(rec.item_ids[:3]))
    assert rec.recommend("nu-array", k=5).item_ids == rec.recommend("nu-series", k=5).item_ids
    with pytest.raises(ConfigError, match="not one string"):
        rec.add_user("nu-str", rec.item_ids[0])


def test_load_refuses_a_cold_start_state_that_does_not_fit(world, tmp_path):
    """checksums.json catches accidents, not a consistent rewrite: the added rows are checked on their own."""
    from safetensors.torch import load_file, save_file

    from graph_rec.recommender import _all_files
    from kg_builders._files import sha256_file

    rec = _fit(world)
    rec.add_item("new1", tags=[world[0].node_ids["tag"][0]])
    rec.add_user("nu", [rec.item_ids[0], rec.item_ids[1]])

    def resum(d):
        (d / "checksums.json").write_text(json.dumps({str(p.relative_to(d)): sha256_file(p) for p in _all_files(d)}))

    def tamper_tensors(name, **changes):
        d = tmp_path / name
        rec.save(d)
        t = load_file(str(d / "added.safetensors"))
        save_file({**t, **changes}, str(d / "added.safetensors"))
        resum(d)
        return d

    def tamper_meta(name, items=None, **added):
        d = tmp_path / name
        rec.save(d)
        meta = json.loads((d / "recommender.json").read_text())
        if items is not None:
            meta["added"]["items"] = items
        meta["added"].update(added)
        if "whole" in added:
            meta["added"] = added["whole"]
        (d / "recommender.json").write_text(json.dumps(meta))
        resum(d)
        return d

    ni = rec.data.num_items + 1
    cases = [
        (
            tamper_tensors("seen", user_seen_idx=torch.tensor([0, 500])),
            f"user_seen_idx names items outside 0..{ni - 1}",
        ),
        (tamper_tensors("ptr", user_seen_ptr=torch.tensor([0, 3])), "user_seen_ptr must run from 0 to 2"),
        (tamper_tensors("rows", item_repr=torch.zeros(2, 8)), r"item_repr has shape \[2, 8\], expected \[1, 8\]"),
        (tamper_tensors("nan", user_repr=torch.full((1, 8), float("nan"))), "user_repr holds NaN"),
        (
            tamper_meta("clash", [rec.item_ids[0]]),
            f"added item ids \\['{rec.item_ids[0]}'\\] are listed twice or are items",
        ),
        (tamper_meta("whole", whole=[]), r"recommender.json: 'added' must be a mapping, got list"),
        (tamper_meta("ids", users=[1]), r"recommender.json: 'added.users' must be a list of id strings"),
        (tamper_meta("meta", meta=[]), r"'added.meta' must be a mapping, got list"),
        (tamper_meta("records", meta={"items": [], "users": {}}), r"'added.meta.items' must be a mapping of ids"),
    ]
    for d, message in cases:
        with pytest.raises(CheckpointError, match=message):
            Recommender.load(d)
    rec.save(tmp_path / "ok")
    assert Recommender.load(tmp_path / "ok").recommend("nu", k=5) == rec.recommend("nu", k=5)


def test_explanation_paths_stay_simple_on_a_graph_with_self_loops(world):
    """The builders drop self-loops, but a KnowledgeGraph takes them (and training propagates over them)."""
    from kg_builders.graph import EdgeStore

    kg, sp = world
    n = len(kg.node_ids["item"])
    loops = EdgeStore(np.stack([np.arange(n), np.arange(n)]).astype(np.int64), np.ones(n, dtype=np.float32))
    looped = KnowledgeGraph(
        kg.node_ids, {**kg.edges, ("item", "similar_to", "item"): loops}, node_attrs=kg.node_attrs, features=kg.features
    )
    rec = _fit((looped, sp))
    for u in rec.user_ids[:10]:
        for i in rec.recommend(u, k=3).item_ids:
            paths = rec.explain(u, i, max_paths=50, candidates=50).paths
            assert paths and all(len(set(p.nodes)) == len(p.nodes) for p in paths)
