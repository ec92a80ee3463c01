"""The scoring API measured on ml-latest-small: latency, throughput, cold start, explanations, MMR.

Parts (``--part``, repeatable; default all):

* ``serve``: GraphRec trained on protocol A (per-user random 80/10/10, seed 2026, the settings of
  ``benchmarks/protocols.py``), saved, and loaded again in this process. Then:
  - ``recommend(k=20)`` latency for one user (p50 / p99 over 2,000 calls on random users) on the
    9,742 items of the graph, and again after ``add_item`` has grown the catalogue to 40,000
    items (the added items copy the text vector and links of a random existing item);
  - ``add_item`` latency with a precomputed feature vector and with text encoded on the fly;
  - ``recommend_batch`` throughput in users per second (every user, k=20);
  - ``explain`` time per (user, top-1 item) pair, and the share of top-10 recommendations with
    at least one path of at most 3 hops (and with one through a tag or entity);
  - MMR: test Recall@20 / NDCG@20 against intra-list diversity (cosine distance of the items'
    text features), coverage and novelty for diversity λ in {0, 0.1, 0.2, 0.3, 0.5}, on the
    protocol A test set (training and validation items masked).
* ``explain``: ``explain``'s exact path scoring on the ``serve`` model, each candidate path's
  masked propagation run on its own against ``MASK_CHUNK`` paths propagated together, at torch
  threads 1 and 2, on an idle machine and next to two busy processes (``part_explain``).
* ``cold``: a cold-item split of ml-latest-small (10 % of the items held out for test, 10 % for
  validation; seed 2026). The training graph holds no test item at all: no node, no tag, no KG
  triple. GraphRec is trained (epoch chosen on the validation items, which stay in the graph as
  featured nodes without interactions); then every test item is added with ``add_item`` from its
  catalogue text (``title (year). Genres: ...``), its genre entities and its KG links. Each test
  user ranks the test items only (the standard item cold-start protocol); Recall@20 / NDCG@20
  against random ranking and popularity by genre (the mean training popularity of the item's
  genres: the best a popularity model can do for items nobody has seen). An id-only model cannot
  score these items at all.

    python benchmarks/recommender_api.py                # both parts (about 10 minutes on 2 cores)
    python benchmarks/recommender_api.py --part cold
    python benchmarks/recommender_api.py --part explain --reuse-model   # the model a serve run saved

Writes benchmarks/results/recommender_api.json and recommender_api.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, ROOT, SHARED, latency_ms, run_metadata  # noqa: E402
from protocols import GRAPHREC, SOFTMAX, TRAIN  # noqa: E402

OUT_JSON = RESULTS / "recommender_api.json"
OUT_MD = RESULTS / "recommender_api.md"
TARGET_ITEMS = 40_000


def _prepare(split: str, cache: Path) -> tuple[Any, Any]:
    from graph_rec.runs import RunConfig
    from graph_rec.runs import prepare as prepare_run

    config = RunConfig.from_dict(
        {
            "data": {
                "dataset": str(SHARED / "ml-latest-small"),
                "kg": str(SHARED / "kg-samples/movie"),
                "split": split,
                "ratios": [0.8, 0.1, 0.1],
                "seed": 2026,
            },
            "features": {"encoder": "all-MiniLM-L6-v2", "local_files_only": True},
        }
    )
    return prepare_run(config, cache_dir=cache)


def _fit(kg: Any, sp: Any) -> tuple[Any, float]:
    from graph_rec.recommender import Recommender

    t0 = time.perf_counter()
    rec = Recommender.fit(kg, split=sp, settings=GRAPHREC, train={**TRAIN, **SOFTMAX})
    return rec, time.perf_counter() - t0


# ------------------------------------------------------------------------------ serve
def _model(cache: Path, work: Path, *, reuse: bool) -> tuple[Any, Any, Any, float | None]:
    """``(kg, split, recommender, fit seconds)``: the protocol-A GraphRec, trained and saved, or the saved one."""
    from graph_rec.recommender import Recommender

    kg, sp = _prepare("random", cache)
    fit_s = None
    if not (reuse and (work / "ml-graphrec" / "recommender.json").is_file()):
        rec, fit_s = _fit(kg, sp)
        rec.save(work / "ml-graphrec", overwrite=True)
    return kg, sp, Recommender.load(work / "ml-graphrec"), fit_s


def part_serve(cache: Path, work: Path, *, reuse: bool = False, previous: dict | None = None) -> dict[str, Any]:
    from graph_rec.data import RecData
    from graph_rec.eval.evaluator import EvalConfig, evaluate
    from graph_rec.models.base import Scorer
    from graph_rec.recommender import Recommender

    kg, sp, _, fit_s = _model(cache, work, reuse=reuse)
    if fit_s is None:
        fit_s = (previous or {}).get("fit_seconds", float("nan"))  # the model of the previous run
    t0 = time.perf_counter()
    rec = Recommender.load(work / "ml-graphrec")
    load_s = time.perf_counter() - t0
    out: dict[str, Any] = {"fit_seconds": round(fit_s, 1), "load_seconds": round(load_s, 2)}
    rng = np.random.default_rng(0)
    users = list(rec.user_ids)

    def latency(n: int = 2000) -> dict[str, float]:
        picks = rng.integers(0, len(users), n)
        for u in picks[:50]:
            rec.recommend(users[u], k=20)
        times = []
        for u in picks:
            t = time.perf_counter()
            rec.recommend(users[u], k=20)
            times.append(time.perf_counter() - t)
        return latency_ms(times)

    def throughput(repeats: int = 3) -> float:
        rec.recommend_batch(users, k=20)
        t = time.perf_counter()
        for _ in range(repeats):
            rec.recommend_batch(users, k=20, batch_size=1024)
        return round(repeats * len(users) / (time.perf_counter() - t), 1)

    out["recommend_k20_9742_items"] = latency()
    out["batch_users_per_s_9742_items"] = throughput()

    # MMR trade-off on the protocol A test set (the loaded model; validation items masked too)
    data = RecData(kg, sp)
    text = torch.as_tensor(kg.features["item"]["text"])
    snap = rec._snap
    scorer = Scorer.from_embeddings(snap.user_repr[: data.num_users], snap.item_repr[: data.num_items])
    mmr = []
    for lam in (0.0, 0.1, 0.2, 0.3, 0.5):
        t = time.perf_counter()
        res = evaluate(
            scorer,
            data,
            part="test",
            config=EvalConfig(ks=(20,), beyond_accuracy=True),
            item_features=text,
            rerank=None if lam == 0 else rec.reranker(lam),
        )
        m = res.metrics
        mmr.append(
            {
                "diversity": lam,
                **{k: round(m[k], 4) for k in ("recall@20", "ndcg@20", "diversity@20", "coverage@20", "novelty@20")},
                "seconds": round(time.perf_counter() - t, 2),
            }
        )
    out["mmr"] = mmr

    # explanations: time per pair, and how many top-10 items have a path
    pairs = []
    for u in rng.choice(len(users), 100, replace=False):
        pairs.append((users[u], rec.recommend(users[u], k=1).item_ids[0]))
    rec.explain(*pairs[0])  # builds the propagation view once
    times, npaths = [], []
    for u, i in pairs:
        t = time.perf_counter()
        ex = rec.explain(u, i, max_paths=5)
        times.append(time.perf_counter() - t)
        npaths.append(len(ex.paths))
    out["explain"] = {**latency_ms(times), "mean_paths": float(np.mean(npaths))}
    out["top10_paths"] = _path_coverage(rec)

    # grow the catalogue to 40k items with add_item, then measure again
    feats = kg.features["item"]["text"]
    item_tags = _links(kg, "item", "tagged_with")
    item_ents: dict[int, list[str]] = {}
    for (s, r, d), e in kg.edges.items():
        if s == "item" and d == "entity" and r == "has_genre":
            for a, b in e.edge_index.T.tolist():
                item_ents.setdefault(a, []).append(kg.node_ids["entity"][b])
    add_times = []
    n0 = len(rec.item_ids)
    for k in range(TARGET_ITEMS - n0):
        src = int(rng.integers(0, n0))
        vec = feats[src] + rng.normal(scale=0.01, size=feats.shape[1]).astype(np.float32)
        t = time.perf_counter()
        rec.add_item(
            f"synthetic-{k}",
            features={"text": vec},
            tags=item_tags.get(src, [])[:3],
            entities=item_ents.get(src, [])[:3],
        )
        add_times.append(time.perf_counter() - t)
    out["add_item_vector"] = latency_ms(add_times)
    titles = kg.node_attrs["item"]["title"]
    threads = torch.get_num_threads()
    t = time.perf_counter()
    rec.add_item("text-warm-up", text="warm up", entities=item_ents.get(0, [])[:1])
    out["encoder_load_seconds"] = round(time.perf_counter() - t, 2)
    text_times: dict[int, list[float]] = {threads: [], 1: []}
    for k in range(200):  # interleaved: default threads and one thread, side by side
        n = threads if k % 2 == 0 else 1
        torch.set_num_threads(n)
        src = int(rng.integers(0, n0))
        t = time.perf_counter()
        rec.add_item(f"text-{k}", text=f"{titles[src]} (new edition)", entities=item_ents.get(src, [])[:2])
        text_times[n].append(time.perf_counter() - t)
    torch.set_num_threads(threads)
    out["add_item_text"] = latency_ms(text_times[threads])
    out["add_item_text_1_thread"] = latency_ms(text_times[1])
    out["items_after_add"] = len(rec.item_ids)
    out["recommend_k20_40k_items"] = latency()
    out["batch_users_per_s_40k_items"] = throughput()
    return out


def _links(kg: Any, src: str, rel: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for (s, r, d), e in kg.edges.items():
        if s == src and r == rel:
            for a, b in e.edge_index.T.tolist():
                out.setdefault(a, []).append(kg.node_ids[d][b])
    return out


def _path_coverage(rec: Any) -> dict[str, Any]:
    """Share of every user's top-10 with a path of <= 3 hops, and with one through a tag or entity."""
    import scipy.sparse as sp

    g = rec.data.graph
    n = g.num_nodes
    ei = g.edge_index.numpy()
    adj = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    adj.data[:] = 1.0
    uo, io, nu, ni = g.node_offsets["user"], g.node_offsets["item"], rec.data.num_users, rec.data.num_items
    x1 = adj[uo : uo + nu]
    x2 = x1 @ adj
    x3 = x2 @ adj
    reach = ((x1 + x2 + x3)[:, io : io + ni] > 0).tocsr()
    # knowledge paths: user -> item -> (tag | entity) -> item, or user -> tag -> item
    know_nodes = np.zeros(n, dtype=bool)
    for t in g.node_offsets:
        if t not in ("user", "item"):
            know_nodes[g.node_offsets[t] : g.node_offsets[t] + g.node_counts[t]] = True
    k_mask = sp.diags(know_nodes.astype(float))
    items_mask = np.zeros(n, dtype=bool)
    items_mask[io : io + ni] = True
    i_mask = sp.diags(items_mask.astype(float))
    know = (x1 @ k_mask @ adj) + (x1 @ i_mask @ adj @ k_mask @ adj)
    know = (know[:, io : io + ni] > 0).tocsr()
    batch = rec.recommend_batch(list(rec.user_ids[:nu]), k=10)
    idx = {i: k for k, i in enumerate(rec.item_ids)}
    any_path = with_know = total = 0
    for row, r in enumerate(batch):
        for item in r.item_ids:
            j = idx[item]
            total += 1
            any_path += bool(reach[row, j])
            with_know += bool(know[row, j])
    return {"pairs": total, "with_path": round(any_path / total, 4), "with_knowledge_path": round(with_know / total, 4)}


# ------------------------------------------------------------------------------ explain
def part_explain(cache: Path, work: Path, *, reuse: bool = False, pairs: int = 60) -> dict[str, Any]:
    """``explain``'s exact path scoring, one path at a time against paths propagated together.

    The two steps of ``explain`` for (user, top-1 item) pairs of the protocol-A GraphRec: the
    candidate paths (64), then their masked scores, with each path's masked propagation run on
    its own (``chunk=1``: how every path was scored until 2026-12-07) or ``MASK_CHUNK`` paths at
    once. Interleaved per pair, at torch threads 1 and 2, on an idle machine and next to two
    processes that each keep a core busy (a shared server): every small parallel torch step then
    waits for a descheduled thread, so the number of steps, not their size, sets the time.
    """
    import subprocess

    from graph_rec.explore.attribution import MASK_CHUNK

    _, _, rec, _ = _model(cache, work, reuse=reuse)
    rng = np.random.default_rng(0)
    users = list(rec.user_ids)
    picked = [(u, rec.recommend(u, k=1).item_ids[0]) for u in rng.choice(users, pairs, replace=False)]
    view = rec.propagation_view()
    g = rec.data.graph
    nodes = [
        (
            rec._user_idx(rec._snap, [u])[0][0] + g.node_offsets["user"],
            rec._item_idx(rec._snap, [i])[0][0] + g.node_offsets["item"],
        )
        for u, i in picked
    ]
    threads0 = torch.get_num_threads()
    out: dict[str, Any] = {"pairs": pairs, "chunk": MASK_CHUNK, "conditions": []}
    max_diff = 0.0
    for load in ("idle", "two busy processes"):
        spinners = []
        if load != "idle":
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
            time.sleep(1.0)
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                times: dict[int, list[float]] = {1: [], MASK_CHUNK: []}
                for k, (u, i) in enumerate(nodes):
                    scores = {}
                    for chunk in (1, MASK_CHUNK) if k % 2 == 0 else (MASK_CHUNK, 1):
                        t = time.perf_counter()
                        with torch.inference_mode():
                            paths = view.candidate_paths(u, i, max_hops=3, candidates=64)
                            scores[chunk] = view.masked_scores(u, i, paths, chunk=chunk)
                        times[chunk].append(time.perf_counter() - t)
                    max_diff = max(max_diff, float((scores[1] - scores[MASK_CHUNK]).abs().max()))
                row = {"load": load, "threads": threads}
                row.update({f"chunk_{c}": latency_ms(v) for c, v in times.items()})
                row["speedup_p50"] = round(row["chunk_1"]["p50_ms"] / row[f"chunk_{MASK_CHUNK}"]["p50_ms"], 1)
                out["conditions"].append(row)
                print(row, flush=True)
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
            torch.set_num_threads(threads0)
    out["max_abs_score_difference"] = max_diff
    return out


# ------------------------------------------------------------------------------ cold start
def part_cold(cache: Path) -> dict[str, Any]:
    import dataclasses

    from graph_rec.runs import DataSource, FeatureOptions, build_pipeline, encode_features, load_tables
    from kg_builders.split import make_split

    source = DataSource(
        dataset=str(SHARED / "ml-latest-small"),
        kg=str(SHARED / "kg-samples/movie"),
        split="cold_item",
        ratios=(0.8, 0.1, 0.1),
        seed=2026,
    )
    tables = load_tables(source, cache_dir=cache)
    sp = make_split(tables, "cold_item", ratios=[0.8, 0.1, 0.1], seed=2026)
    test_items = set(sp.test["item_id"].astype(str))
    cold_all = set(sp.cold_items)
    # the training world knows nothing of the test items: no catalogue row, no tags, no KG triple
    ie = tables.item_entities
    test_ents = set(ie.loc[ie["item_id"].astype(str).isin(test_items), "entity_id"].astype(str))
    tr = tables.triples
    kg_links: dict[str, list[tuple[str, str]]] = {}
    ent_item = dict(zip(ie["entity_id"].astype(str), ie["item_id"].astype(str), strict=True))
    for h, r, t in zip(tr["head"].astype(str), tr["relation"].astype(str), tr["tail"].astype(str), strict=True):
        if h in test_ents:
            kg_links.setdefault(ent_item[h], []).append((r, t))
    items_tab = tables.items
    restricted = dataclasses.replace(
        tables,
        items=items_tab[~items_tab["item_id"].astype(str).isin(test_items)],
        tag_assignments=tables.tag_assignments[~tables.tag_assignments["item_id"].astype(str).isin(cold_all)],
        item_entities=ie[~ie["item_id"].astype(str).isin(test_items)],
        triples=tr[~tr["head"].astype(str).isin(test_ents) & ~tr["tail"].astype(str).isin(test_ents)],
    )
    # the graph is built from the split's training part only
    train_tables = sp.train_tables(restricted)
    kg, _ = build_pipeline(
        train_tables,
        split="none",
        split_settings={},
        builder_options={
            "weight": "rating",
            "min_rating": None,
            "tags": True,
            "min_tag_count": 1,
            "genres": True,
            "knowledge": True,
            "social": True,
        },
        entities="none",
        progress=False,
    )
    encode_features(FeatureOptions(local_files_only=True), kg, feature_cache=cache / "features")
    if set(kg.node_ids["item"]) & test_items:
        raise RuntimeError("a test item leaked into the training graph")
    rec, fit_s = _fit(kg, sp)

    # add every test item from its catalogue text, genres and KG links
    ids = items_tab["item_id"].astype(str)
    row = items_tab[ids.isin(test_items)].assign(item_id=ids[ids.isin(test_items)]).set_index("item_id")
    known_ents = set(kg.node_ids.get("entity", []))
    genre_of: dict[str, list[str]] = {}
    add_s = []
    for item_id, r in row.iterrows():
        text, genres = _catalogue_text(r)
        ents = [f"genre:{g.lower().replace(' ', '_').replace('-', '_')}" for g in genres]
        genre_of[item_id] = [e for e in ents if e in known_ents]
        links = [(r_.replace(".", "_"), "entity", f"kg:{t}") for r_, t in kg_links.get(item_id, [])]
        links = [x for x in links if x[2] in known_ents]
        t0 = time.perf_counter()
        rec.add_item(item_id, text=text, entities=genre_of[item_id], neighbours=links, on_unknown="skip")
        add_s.append(time.perf_counter() - t0)
    text_only = _fold_text_only(rec, row, test_items)
    # ranking among the test items, per test user
    test = sp.test.assign(user_id=sp.test["user_id"].astype(str), item_id=sp.test["item_id"].astype(str))
    cands = sorted(test_items)
    users = [u for u in test["user_id"].unique() if u in set(rec.user_ids)]
    truth = test.groupby("user_id")["item_id"].apply(set).to_dict()
    pop = _genre_popularity(kg, genre_of, cands)
    gen = np.random.default_rng(2026)
    res: dict[str, list[float]] = {
        "graphrec (add_item: text + genres + KG)": [],
        "graphrec (add_item: text only)": [],
        "popularity by genre": [],
        "random": [],
    }
    ndcg: dict[str, list[float]] = {k: [] for k in res}
    for u in users:
        rel = truth[u]
        lists = {
            "graphrec (add_item: text + genres + KG)": rec.recommend(
                u, k=20, candidates=cands, exclude_seen=False
            ).item_ids,
            "graphrec (add_item: text only)": text_only(u, cands),
            "popularity by genre": [cands[j] for j in np.argsort(-pop, kind="stable")[:20]],
            "random": [cands[j] for j in gen.permutation(len(cands))[:20]],
        }
        for name, lst in lists.items():
            hits = [x in rel for x in lst[:20]]
            res[name].append(sum(hits) / len(rel))
            dcg = sum(h / np.log2(p + 2) for p, h in enumerate(hits))
            idcg = sum(1 / np.log2(p + 2) for p in range(min(len(rel), 20)))
            ndcg[name].append(dcg / idcg)
    return {
        "test_items": len(cands),
        "test_users": len(users),
        "fit_seconds": round(fit_s, 1),
        "add_item": latency_ms(add_s[1:]),
        "results": {
            k: {"recall@20": round(float(np.mean(v)), 4), "ndcg@20": round(float(np.mean(ndcg[k])), 4)}
            for k, v in res.items()
        },
    }


def _fold_text_only(rec: Any, rows: Any, test_items: set[str]) -> Any:
    """Scores of the test items from their text alone (no links): F(x) folded in without neighbours."""
    view = rec.propagation_view()
    reps, ids = [], []
    for item_id, r in rows.iterrows():
        text, _ = _catalogue_text(r)
        x0 = rec._layer0("item", {"text": text})
        reps.append(
            view._norm(
                view.fold_in(x0, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0))
            )
        )
        ids.append(item_id)
    mat = torch.stack(reps)
    pos = {i: k for k, i in enumerate(ids)}

    def rank(user_id: str, cands: list[str]) -> list[str]:
        u = rec._snap.user_repr[rec._snap.user_index[user_id]]
        s = mat[[pos[c] for c in cands]] @ u
        return [cands[j] for j in torch.topk(s, 20).indices.tolist()]

    return rank


def _catalogue_text(r: Any) -> tuple[str, list[str]]:
    """``(text, genres)`` of a catalogue row as the graph's item template renders it without tags:
    ``title (year). Genres: a, b``."""
    import pandas as pd

    genres = [g for g in (r.get("genres") or ()) if g and g != "(no genres listed)"]
    year = r.get("year")
    text = f"{r['title']}" + (f" ({int(year)})" if pd.notna(year) else "")
    if genres:
        text += ". Genres: " + ", ".join(genres)
    return text, genres


def _genre_popularity(kg: Any, genre_of: dict[str, list[str]], cands: list[str]) -> np.ndarray:
    """Each candidate's mean over its genres of the genre's mean training interactions per item."""
    ents = kg.node_ids["entity"]
    inter = kg.edges[("user", "interacted", "item")].edge_index
    item_pop = np.bincount(inter[1], minlength=kg.num_nodes("item")).astype(float)
    hg = kg.edges[("item", "has_genre", "entity")].edge_index
    gsum = np.bincount(hg[1], weights=item_pop[hg[0]], minlength=len(ents))
    gcnt = np.bincount(hg[1], minlength=len(ents))
    gmean = {ents[k]: gsum[k] / gcnt[k] for k in range(len(ents)) if gcnt[k]}
    return np.array([np.mean([gmean.get(g, 0.0) for g in genre_of.get(c, [])] or [0.0]) for c in cands])


# ------------------------------------------------------------------------------ report
def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Measured {res['meta']['date']} on {res['meta']['machine']['cpus']} CPUs, torch threads {res['meta']['torch_threads']}.",
        "",
    ]
    s = res.get("serve")
    if s:
        lines += [
            "| operation | p50 | p99 | other |",
            "|---|---|---|---|",
            f"| `recommend(k=20)`, 9,742 items | {s['recommend_k20_9742_items']['p50_ms']} ms | {s['recommend_k20_9742_items']['p99_ms']} ms | batch {s['batch_users_per_s_9742_items']:,} users/s |",
            f"| `recommend(k=20)`, {s['items_after_add']:,} items | {s['recommend_k20_40k_items']['p50_ms']} ms | {s['recommend_k20_40k_items']['p99_ms']} ms | batch {s['batch_users_per_s_40k_items']:,} users/s |",
            f"| `add_item` (feature vector + links) | {s['add_item_vector']['p50_ms']} ms | {s['add_item_vector']['p99_ms']} ms | {s['add_item_vector']['n']:,} items added |",
            f"| `add_item` (text encoded + links) | {s['add_item_text']['p50_ms']} ms | {s['add_item_text']['p99_ms']} ms | encoder load {s['encoder_load_seconds']} s once |",
            f"| `add_item` (text encoded + links), torch at 1 thread | {s['add_item_text_1_thread']['p50_ms']} ms | {s['add_item_text_1_thread']['p99_ms']} ms | interleaved with the row above |",
            f"| `explain` (user, top-1 item) | {s['explain']['p50_ms']} ms | {s['explain']['p99_ms']} ms | {s['explain']['mean_paths']:.1f} paths on average |",
            f"| `Recommender.load` (a fresh process) | {s['load_seconds'] * 1000:.0f} ms | | training took {s['fit_seconds']} s |",
            "",
            f"Top-10 recommendations with a path of at most 3 hops: {s['top10_paths']['with_path']:.1%}; "
            f"with one through a tag or an entity: {s['top10_paths']['with_knowledge_path']:.1%} "
            f"({s['top10_paths']['pairs']:,} pairs).",
            "",
            "MMR re-ranking on the protocol A test set (full ranking, training and validation items masked):",
            "",
            "| diversity λ | Recall@20 | NDCG@20 | intra-list diversity | coverage | novelty |",
            "|---|---|---|---|---|---|",
        ]
        for m in s["mmr"]:
            lines.append(
                f"| {m['diversity']} | {m['recall@20']:.4f} | {m['ndcg@20']:.4f} | {m['diversity@20']:.4f} | "
                f"{m['coverage@20']:.4f} | {m['novelty@20']:.3f} |"
            )
        lines.append("")
    e = res.get("explain")
    if e:
        c = e["chunk"]
        lines += [
            f"`explain`'s path scoring, one path's masked propagation at a time against {c} at once "
            f"(measured {e['meta']['date']}, commit {e['meta']['git_commit'][:7]}"
            f"{' with this change not yet committed' if e['meta'].get('git_dirty') else ''}; {e['pairs']} (user, top-1 item) "
            "pairs, 64 candidate paths each, interleaved per pair; the same scores to "
            f"{e['max_abs_score_difference']:.1e}):",
            "",
            f"| machine | torch threads | one path at a time p50 / p99 | {c} paths at once p50 / p99 | p50 ratio |",
            "|---|---|---|---|---|",
        ]
        for r in e["conditions"]:
            one, many = r["chunk_1"], r[f"chunk_{c}"]
            lines.append(
                f"| {r['load']} | {r['threads']} | {one['p50_ms']} / {one['p99_ms']} ms | "
                f"{many['p50_ms']} / {many['p99_ms']} ms | {r['speedup_p50']}x |"
            )
        lines.append("")
    c = res.get("cold")
    if c:
        lines += [
            f"Cold items ({c['test_items']} test items never in the training graph, {c['test_users']} users; "
            "each user ranks the test items):",
            "",
            "| model | Recall@20 | NDCG@20 |",
            "|---|---|---|",
        ]
        for k, v in c["results"].items():
            lines.append(f"| {k} | {v['recall@20']:.4f} | {v['ndcg@20']:.4f} |")
        lines += [
            "",
            f"`add_item` per cold item (text encoded + links): p50 {c['add_item']['p50_ms']} ms, p99 {c['add_item']['p99_ms']} ms.",
            "",
        ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", action="append", choices=["serve", "explain", "cold"])
    p.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    p.add_argument("--work", default=str(ROOT / "out" / "bench-api"))
    p.add_argument("--markdown-only", action="store_true")
    p.add_argument(
        "--reuse-model", action="store_true", help="serve: load the model the previous run saved instead of training"
    )
    args = p.parse_args()
    if not (SHARED / "ml-latest-small").is_dir():
        sys.exit(f"needs {SHARED / 'ml-latest-small'}")
    res = json.loads(OUT_JSON.read_text()) if OUT_JSON.is_file() else {}
    if not args.markdown_only:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        for part in args.part or ["serve", "explain", "cold"]:
            t0 = time.perf_counter()
            if part == "serve":
                res["meta"] = run_metadata()
                res[part] = part_serve(Path(args.cache_dir), work, reuse=args.reuse_model, previous=res.get("serve"))
            elif part == "explain":  # reuses the model serve saved in this run
                reuse = args.reuse_model or "serve" in (args.part or ["serve"])
                res[part] = {"meta": run_metadata(), **part_explain(Path(args.cache_dir), work, reuse=reuse)}
            else:
                res["meta"] = run_metadata()
                res[part] = part_cold(Path(args.cache_dir))
            res[part]["seconds"] = round(time.perf_counter() - t0, 1)
            res[part]["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
            OUT_JSON.write_text(json.dumps(res, indent=2))
    OUT_MD.write_text(markdown(res) + "\n")
    print(OUT_MD.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
