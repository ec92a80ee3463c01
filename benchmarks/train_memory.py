"""Peak memory and step time of GraphRec training on a 1M-interaction graph (issue 4 target: < 3 GB).

One process per case (so ``ru_maxrss`` is that case's alone): the synthetic world with 20k users,
20k items and 1M interactions (plus tags, KG triples and social links), split per user 80/10/10
(seed 2026), the graph built from the training part, every node given a 384-d feature vector
(random unit vectors of the default text encoder's size: encoding 40k+ texts would take many
minutes here and does not change the memory of training), then GraphRec trained for
``--epochs`` epochs (default 3) with the protocol-A settings and validated once, after the last
(full ranking). Each epoch's training seconds are recorded, the validated last one excluded, and one
validation pass is timed on its own, with the load average at the case's start and end: on this
shared machine a busy neighbour shows up there.

    python benchmarks/train_memory.py            # writes benchmarks/results/train_memory.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, run_metadata, write_text_atomic  # noqa: E402

CASES = {
    "synthetic-1m": {"num_users": 20_000, "num_items": 20_000, "interactions_per_user": 50},
    "synthetic-100k": {"num_users": 4_000, "num_items": 5_000, "interactions_per_user": 25},
}


def build_world(name: str) -> tuple:
    """``(tables, training graph with 384-d unit features on every node, split)`` of a case."""
    import numpy as np

    from kg_builders.builders.standard import standard_builders
    from kg_builders.graph import build_graph
    from kg_builders.sources.synthetic import make_synthetic_world
    from kg_builders.split import split_random

    tables = make_synthetic_world(**CASES[name], seed=0, with_images=False)
    sp = split_random(tables, ratios=(0.8, 0.1, 0.1), seed=2026)
    train = sp.train_tables(tables)
    kg = build_graph(train, standard_builders(train))
    rng = np.random.default_rng(0)
    for t in kg.node_types:
        x = rng.normal(size=(kg.num_nodes(t), 384)).astype(np.float32)
        kg.set_features(t, "text", x / np.linalg.norm(x, axis=1, keepdims=True))
    return tables, kg, sp


def run_case(name: str, epochs: int) -> dict:
    import torch

    from graph_rec.data import RecData
    from graph_rec.eval.evaluator import EvalConfig, evaluate
    from graph_rec.training import TrainConfig, fit, init_model

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from protocols import GRAPHREC, SOFTMAX

    t0 = time.perf_counter()
    tables, kg, sp = build_world(name)
    build_s = time.perf_counter() - t0
    rss_graph = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data = RecData(kg, sp)
    model = init_model("graphrec", GRAPHREC, data, seed=2026)
    cfg = TrainConfig.from_dict({**SOFTMAX, "epochs": epochs, "eval_every": epochs, "patience": 1})
    ev = EvalConfig(ks=(20,), beyond_accuracy=False)
    load = os.getloadavg()[0]
    t1 = time.perf_counter()
    result = fit(model, data, cfg, eval_config=ev)  # validated once, after the last epoch
    train_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    with torch.inference_mode():
        evaluate(model.scorer(), data, part="valid", config=ev)
    valid_s = time.perf_counter() - t2
    ends = [h["seconds"] for h in result.history]
    epoch_s = [b - a for a, b in zip([0.0, *ends[:-1]], ends, strict=True)][:-1]  # epochs without validation
    steps = -(-data.train.nnz // cfg.batch_size) * epochs
    return {
        "case": name,
        "interactions": int(len(tables.interactions)),
        "train_interactions": data.train.nnz,
        "nodes": data.graph.num_nodes,
        "edges": data.graph.num_edges,
        "build_seconds": round(build_s, 1),
        "train_seconds": round(train_s, 1),
        "epochs": epochs,
        "seconds_per_epoch_incl_validation": round(train_s / epochs, 1),
        "train_seconds_per_epoch": [round(x, 1) for x in epoch_s],  # every epoch but the validated last
        "validation_seconds": round(valid_s, 1),
        "load": [round(load, 2), round(os.getloadavg()[0], 2)],  # 1-minute load average at start and end
        "steps": steps,
        "valid_recall@20": round(result.best_valid["recall@20"], 4),
        "peak_rss_mb_after_build": round(rss_graph, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", action="append", choices=list(CASES))
    p.add_argument("--epochs", type=int, default=3, help="epochs to train (the last one is validated)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.epochs)))
        return 0
    rows = []
    for name in args.case or ["synthetic-1m"]:
        out = subprocess.run(
            [sys.executable, __file__, "--child", name, "--epochs", str(args.epochs)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = run_metadata()
    write_text_atomic(RESULTS / "train_memory.json", json.dumps({"meta": meta, "cases": rows}, indent=1))
    lines = [
        "GraphRec training (protocol-A settings: d=128, 2 layers, cosine, sampled softmax with 1,024 shared "
        "negatives, batch 2,048) on synthetic worlds with 384-d features on every node; one process per case.",
        "",
        f"Measured {meta['date']} with {meta['torch_threads']} torch threads; "
        "training seconds per epoch exclude validation (one full-ranking pass over the validation users, "
        "timed on its own).",
        "",
        "| case | interactions | nodes | edges | build (s) | training s/epoch | validation (s) | peak RSS (MB) "
        "| load average (start, end) | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = "< 3,072 MB" if r["case"] == "synthetic-1m" else ""
        lines.append(
            f"| {r['case']} | {r['interactions']:,} | {r['nodes']:,} | {r['edges']:,} | {r['build_seconds']} | "
            f"{', '.join(map(str, r['train_seconds_per_epoch']))} | {r['validation_seconds']} | "
            f"{r['peak_rss_mb']:,.0f} | {r['load'][0]}, {r['load'][1]} | {target} |"
        )
    write_text_atomic(RESULTS / "train_memory.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
