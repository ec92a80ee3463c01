"""Quality of GraphRec, its ablations and the baselines, in one harness (issue 4's protocols).

Protocol A: ml-latest-small (with the MKR movie KG joined) and hetrec2011-lastfm-2k; every
interaction is a positive; per-user random split 80/10/10 with seed 2026, made BEFORE the graph is
built; full ranking over every item of the graph with training (and, for test, validation)
positives masked; Recall/NDCG/Precision/Hit/MRR @10 and @20. Each model's settings are picked on
validation Recall@20 (a small grid per model, listed in the JSON), and the chosen run's test
metrics are reported.

Protocol B: hetrec2011-lastfm-2k, random 8:1:1 split per user (seed 2026), full ranking, @10:
compared with RecBole-GNN's published LightGCN (Recall@10 0.2064, NDCG@10 0.1972). RecBole's
random split shuffles each user's interactions the same way; its filtering and seed differ.

    python benchmarks/protocols.py                        # both data sets, every model
    python benchmarks/protocols.py --dataset ml-latest-small --models graphrec,ease

Writes benchmarks/results/protocols.json and protocols.md (and a training-curve PNG per data set).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, ROOT, SHARED, run_metadata, write_text_atomic  # noqa: E402

DATASETS = {
    "ml-latest-small": {"path": "ml-latest-small", "kg": "kg-samples/movie"},
    "hetrec2011-lastfm-2k": {"path": "hetrec2011-lastfm-2k", "kg": None},
}

TRAIN = {"epochs": 400, "eval_every": 5, "patience": 3, "seed": 2026}
GRAPHREC = {"embedding_dim": 128, "num_layers": 2, "relation_mode": "none", "score": "cosine"}
SOFTMAX = {
    "loss": "softmax",
    "num_negatives": 1024,
    "shared_negatives": True,
    "temperature": 0.1,
    "batch_size": 2048,
    "lr": 0.002,
    "l2": 0.0,
}

# model -> list of (model settings, train settings) candidates; picked on validation recall@20
GRIDS: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {
    "popularity": [({}, {})],
    "itemknn": [({"k": k, "shrink": 10.0}, {}) for k in (50, 200)],
    "ease": [({"l2": l2}, {}) for l2 in (50.0, 100.0, 250.0, 500.0, 1000.0)],
    # iALS around the optimum implicit's ALS finds with a 50-point grid (benchmarks/peers.py), same
    # parametrisation: ml-latest-small 512 / 20 / 5, Last.fm 512 / 100 / 40. Validation picks
    # 512 / 20 / 5 and 1024 / 50 / 20 here; 2048 / 50 / 20, tried once on Last.fm, scores lower
    # (0.2958 against 0.2962), so neither choice is limited by this grid's edge
    "als": [
        ({"factors": f, "regularization": reg, "alpha": a}, {})
        for f in (256, 512, 1024)
        for reg, a in (
            (10.0, 2.5),
            (20.0, 5.0),
            (20.0, 10.0),
            (50.0, 10.0),
            (50.0, 20.0),
            (100.0, 20.0),
            (100.0, 40.0),
            (200.0, 40.0),
            (200.0, 80.0),
        )
    ],
    "mf": [
        ({"embedding_dim": 128}, SOFTMAX),
        ({"embedding_dim": 128}, {"loss": "bpr", "batch_size": 2048, "lr": 0.005}),
    ],
    "lightgcn": [({"embedding_dim": 128, "num_layers": 2}, SOFTMAX)],
    "graphrec": [(GRAPHREC, SOFTMAX)],
}

# ablations of graphrec: data views (what the model sees), same model and training settings
ABLATIONS = {
    "graphrec": {},
    "graphrec - text features": {"features": []},
    "graphrec - knowledge graph": {"node_types": [], "relations": ["interacted"]},
    "graphrec - tags": {"node_types": ["entity"]},
    "graphrec - entities": {"node_types": ["tag"]},
    # ids only over the user-item graph, GraphRec's training (cosine scores, sampled softmax):
    # what remains of GraphRec's lead over the id-only LightGCN once all the knowledge is gone
    "graphrec - text features - knowledge graph": {"features": [], "node_types": [], "relations": ["interacted"]},
}

# The views above only take nodes and edges out of propagation: the node texts, built from the whole
# training graph, still name each item's genres and tags and each user's (node_text.py). These
# ablations take the knowledge out of the data before the graph and its texts are built (graph
# options of the run config, and item columns dropped from the catalogue: MovieLens's genres are
# an item column that the texts read directly), so it is gone from both: same model, training
# settings and split.
GRAPH_ABLATIONS: dict[str, dict[str, Any]] = {
    "graphrec - tags (graph and texts)": {"graph": {"tags": False}},
    "graphrec - entities (graph and texts)": {"graph": {"genres": False, "knowledge": False}, "drop_items": ["genres"]},
    "graphrec - knowledge graph (graph and texts)": {
        "graph": {"tags": False, "genres": False, "knowledge": False, "social": False},
        "drop_items": ["genres"],
    },
}


def prepare(
    name: str, cache: Path, seed: int = 2026, graph: dict | None = None, drop_items: Sequence[str] = ()
) -> tuple[Any, Any, float]:
    """``(graph, split, seconds)`` of data set ``name`` under protocol A (``seed``: the split's seed;
    ``graph``: builder options of the run config, e.g. ``{"tags": False}``; ``drop_items``: item
    columns removed from the catalogue before anything is built)."""
    from graph_rec.runs import RunConfig, load_tables
    from graph_rec.runs import prepare as prepare_run

    spec = DATASETS[name]
    data = {"dataset": str(SHARED / spec["path"]), "split": "random", "ratios": [0.8, 0.1, 0.1], "seed": seed}
    if spec["kg"]:
        data["kg"] = str(SHARED / spec["kg"])
    features = {"encoder": "all-MiniLM-L6-v2", "local_files_only": True}
    config = RunConfig.from_dict({"data": data, "graph": graph or {}, "features": features})
    t0 = time.perf_counter()
    tables = without_item_columns(load_tables(config.data, cache_dir=cache), drop_items) if drop_items else None
    kg, sp = prepare_run(config, cache_dir=cache, tables=tables)
    return kg, sp, time.perf_counter() - t0


def without_item_columns(tables: Any, columns: Sequence[str]) -> Any:
    """``tables`` with ``columns`` of the item catalogue removed (those it has)."""
    if tables.items is None:
        return tables
    return dataclasses.replace(tables, items=tables.items.drop(columns=list(columns), errors="ignore"))


@functools.cache
def _code_meta() -> dict:
    """The checkout's commit when this process first asked: the code it runs, whatever is committed later."""
    return run_metadata()


def run_one(
    kg: Any,
    sp: Any,
    model: str,
    settings: dict,
    train: dict,
    view: dict,
    ks: tuple[int, ...],
    *,
    keep_per_user: bool = False,
    item_text: Any = None,
) -> dict:
    """Train (or fit) ``model`` with early stopping on validation and evaluate it on test.

    Diversity is measured in ``item_text`` (the protocol graph's item text features; default:
    ``kg``'s own), so that every row of a table measures it in one space.

    With ``keep_per_user`` the result also holds ``"test_result"``, the test
    :class:`~graph_rec.eval.EvalResult` with its per-user values (not JSON-able: pop it before saving).
    """
    from graph_rec.data import DataConfig, RecData
    from graph_rec.eval.evaluator import EvalConfig, evaluate
    from graph_rec.training import TrainConfig, fit, init_model

    load = os.getloadavg()[0]  # 1-minute load average at the start (and below, at the end) of this run
    data = RecData(kg, sp, config=DataConfig.from_dict(view))
    cfg = TrainConfig.from_dict({**TRAIN, **train})
    ev = EvalConfig(ks=ks, beyond_accuracy=False)
    m = init_model(model, settings, data, seed=cfg.seed)
    result = fit(m, data, cfg, eval_config=ev)
    with torch.inference_mode():
        text = kg.features.get("item", {}).get("text") if item_text is None else item_text
        feats = None if text is None else torch.as_tensor(text)
        test = evaluate(
            m.scorer(),
            data,
            part="test",
            config=EvalConfig(ks=ks, beyond_accuracy=True),
            item_features=feats,
            keep_per_user=keep_per_user,
        )
    extra = {"test_result": test} if keep_per_user else {}
    meta = run_metadata()
    return extra | {
        # rows of one file differ; the code is the checkout's at this process's start (what it loaded)
        "measured": {"date": meta["date"], **{k: _code_meta()[k] for k in ("git_commit", "git_dirty")}},
        "model": model,
        "settings": settings,
        "train": cfg.to_dict() if m.trainable else {"seed": cfg.seed},  # the seed still sets iALS's start
        "view": view,
        "valid": result.best_valid,
        "test": test.metrics,
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 1),
        "seconds_to_best": round(result.seconds_to_best, 1),
        "load": [round(load, 2), round(os.getloadavg()[0], 2)],
        "history": [
            {k: v for k, v in h.items() if k in ("epoch", "loss", "seconds")}
            | ({"valid_recall@20": h["valid"].get("recall@20")} if "valid" in h else {})
            for h in result.history
        ],
    }


def main() -> int:  # noqa: C901 - one loop over data sets, models and ablations
    _code_meta()  # the commit this process runs, before anything can be committed meanwhile
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", action="append", choices=list(DATASETS))
    p.add_argument("--models", default=",".join(GRIDS))
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument(
        "--ablations",
        help="comma-separated ablation labels to run (e.g. 'graphrec - tags'); with --models none, only these",
    )
    p.add_argument("--ease-l2", help="comma-separated EASE l2 grid (default 50,100,250,500,1000)")
    p.add_argument("--markdown-only", action="store_true", help="rewrite protocols.md from protocols.json")
    p.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    args = p.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    if args.markdown_only:
        write_text_atomic(RESULTS / "protocols.md", to_markdown(json.loads((RESULTS / "protocols.json").read_text())))
        return 0
    if args.ease_l2:
        GRIDS["ease"] = [({"l2": float(v)}, {}) for v in args.ease_l2.split(",")]
    results: dict[str, Any] = {}  # this run's data sets; save() keeps the others in the file
    for name in args.dataset or list(DATASETS):
        if not (SHARED / DATASETS[name]["path"]).is_dir():
            print(f"skip {name}: {SHARED / DATASETS[name]['path']} is absent", file=sys.stderr)
            continue
        kg, sp, prep = prepare(name, Path(args.cache_dir))
        out_json = RESULTS / "protocols.json"
        before = json.loads(out_json.read_text()).get("datasets", {}) if out_json.is_file() else {}
        entry = results.setdefault(name, before.get(name, {}))  # a partial rerun keeps the other models
        entry["prepare_seconds"] = round(prep, 1)
        entry["split"] = sp.counts()
        entry["num_items"] = len(kg.node_ids["item"])
        runs = entry.setdefault("runs", {})
        models = [] if args.models == "none" else args.models.split(",")
        for model in models:
            cands = []
            for settings, train in GRIDS[model]:
                r = run_one(kg, sp, model, settings, train, {}, (10, 20))
                print(
                    f"{name} {model} {settings} valid {r['valid']['recall@20']:.4f} test {r['test']['recall@20']:.4f}",
                    file=sys.stderr,
                )
                cands.append(r)
            best = max(cands, key=lambda r: r["valid"]["recall@20"])
            best["grid"] = [
                {"settings": c["settings"], "train": c["train"], "valid_recall@20": c["valid"]["recall@20"]}
                for c in cands
            ]
            runs[model] = best
            save(results)
        if ("graphrec" in models or args.ablations) and not args.no_ablations:
            settings, train = ablation_settings(runs)
            node_types = set(kg.node_types) - {"user", "item"}
            for label, view in ABLATIONS.items():
                if label == "graphrec" or (args.ablations and label not in args.ablations.split(",")):
                    continue
                if "node_types" in view and view["node_types"] and not set(view["node_types"]) <= node_types:
                    view = {**view, "node_types": sorted(set(view["node_types"]) & node_types)}
                dropped = node_types - set(view.get("node_types", node_types))
                if "node_types" in view and view["node_types"] != [] and not dropped:
                    continue  # the data set has no such node type
                r = run_one(kg, sp, "graphrec", settings, train, view, (10, 20))
                print(f"{name} {label} test {r['test']['recall@20']:.4f}", file=sys.stderr)
                runs[label] = r
                save(results)
            for label, options in GRAPH_ABLATIONS.items():
                if args.ablations and label not in args.ablations.split(","):
                    continue
                kg_a, sp_a, _ = prepare(
                    name, Path(args.cache_dir), graph=options["graph"], drop_items=options.get("drop_items", ())
                )
                if set(kg_a.node_types) == set(kg.node_types):
                    continue  # the data set has none of this knowledge
                assert sp_a.counts() == sp.counts(), "the ablation's split must be the protocol's"
                assert kg_a.node_ids["item"] == kg.node_ids["item"], "the ablation's catalogue must be the protocol's"
                # diversity in the protocol's item texts (the ablated texts are another space)
                item_text = kg.features.get("item", {}).get("text")
                r = run_one(kg_a, sp_a, "graphrec", settings, train, {}, (10, 20), item_text=item_text)
                r["diversity_in"] = "protocol item texts"
                r["graph"] = options | {"node_types": kg_a.node_types}
                r["item_attrs"] = sorted(kg_a.node_attrs.get("item", {}))
                print(f"{name} {label} test {r['test']['recall@20']:.4f}", file=sys.stderr)
                runs[label] = r
                save(results)
        results[name] = entry
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        entry["peak_rss_mb"] = round(peak, 1)
        save(results)
    return 0


def ablation_settings(runs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``(model settings, training settings)`` the ablations reuse: those chosen on validation
    for GraphRec (in this run or recorded in the file), else the first of its grid."""
    chosen = runs.get("graphrec")
    if chosen is None:
        return GRIDS["graphrec"][0]
    return chosen["settings"], chosen["train"]


def save(results: dict) -> None:
    """Write this run's data sets; entries of other data sets already in the file are kept."""
    path = RESULTS / "protocols.json"
    merged = json.loads(path.read_text()).get("datasets", {}) if path.is_file() else {}
    merged.update(results)
    payload = {"meta": run_metadata(), "protocol": __doc__.split("\n\n")[1:3], "datasets": merged}
    write_text_atomic(path, json.dumps(payload, indent=1))  # other benchmarks read it while this one runs
    write_text_atomic(RESULTS / "protocols.md", to_markdown(payload))


BASELINES = ("popularity", "itemknn", "ease", "als", "mf", "lightgcn")
RECBOLE_LIGHTGCN_LASTFM = {"recall@10": 0.2064, "ndcg@10": 0.1972, "mrr@10": 0.3559, "hit@10": 0.6322}


def ordered_runs(runs: dict[str, Any]) -> list[tuple[str, Any]]:
    """Baselines in :data:`BASELINES` order, then GraphRec, then its ablations (as run), then anything else."""

    def rank(item: tuple[int, tuple[str, Any]]) -> tuple[int, int]:
        pos, (m, _) = item
        if m in BASELINES:
            return (0, BASELINES.index(m))
        return (1, 0) if m == "graphrec" else (2 if m.startswith("graphrec") else 3, pos)

    return [mr for _, mr in sorted(enumerate(runs.items()), key=rank)]


def to_markdown(payload: dict) -> str:
    lines = []
    for name, entry in payload["datasets"].items():
        runs = entry.get("runs", {})
        base = {m: r for m, r in runs.items() if m in BASELINES}
        best_name = max(base, key=lambda m: base[m]["valid"]["recall@20"]) if base else None
        best = base[best_name]["test"]["recall@20"] if best_name else None
        lines += [
            f"**{name}**, protocol A (per-user random 80/10/10, seed 2026, full ranking over "
            f"{entry.get('num_items', 'all')} items; test metrics of the setting chosen on validation Recall@20 from each model's grid, GraphRec and "
            "its ablations at the protocol's one setting (others: benchmarks/graphrec_sweep.py); "
            f"split {entry.get('split')})",
            "",
            "| model | valid R@20 | Recall@20 | NDCG@20 | Recall@10 | NDCG@10 | MRR@10 | Hit@10 | coverage@20 "
            "| diversity@20 | novelty@20 | vs best baseline (R@20) | time to best (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        other_space = False
        for m, r in ordered_runs(runs):
            t = r["test"]
            rel = f"{(t['recall@20'] / best - 1) * 100:+.1f}%" if best else ""
            div = f"{t.get('diversity@20', float('nan')):.3f}"
            if "graph" in r and "diversity_in" not in r:  # measured in the ablated texts: not this column's space
                div, other_space = f"({div})†", True
            lines.append(
                f"| {m} | {r['valid']['recall@20']:.4f} | {t['recall@20']:.4f} | {t['ndcg@20']:.4f} | "
                f"{t['recall@10']:.4f} | {t['ndcg@10']:.4f} | {t['mrr@10']:.4f} | {t['hit@10']:.4f} | "
                f"{t.get('coverage@20', float('nan')):.3f} | {div} | "
                f"{t.get('novelty@20', float('nan')):.2f} | {rel} | {r['seconds_to_best']} |"
            )
        if best_name:
            lines.append(f"\nBest baseline by validation: **{best_name}** (test Recall@20 {best:.4f}).")
        if other_space:
            lines.append(
                "\n† diversity measured in the ablated graph's own item texts (before 2026-12-07), another space "
                "than the other rows': not comparable with them; a rerun measures it in the protocol's texts."
            )
        if name == "hetrec2011-lastfm-2k" and runs:
            lines += [
                "",
                "Protocol B (Last.fm HetRec-2k, random 8:1:1 per user, full ranking, @10) against RecBole-GNN's "
                "published LightGCN (its own split seed and filtering, so the comparison is indicative):",
                "",
                "| model | Recall@10 | NDCG@10 | MRR@10 | Hit@10 |",
                "|---|---|---|---|---|",
                "| LightGCN, RecBole-GNN (published) | "
                + " | ".join(f"{RECBOLE_LIGHTGCN_LASTFM[k]:.4f}" for k in ("recall@10", "ndcg@10", "mrr@10", "hit@10"))
                + " |",
            ]
            for m in ("lightgcn", "ease", "als", "graphrec"):
                if m in runs:
                    t = runs[m]["test"]
                    lines.append(
                        f"| {m} (this harness) | "
                        + " | ".join(f"{t[k]:.4f}" for k in ("recall@10", "ndcg@10", "mrr@10", "hit@10"))
                        + " |"
                    )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
