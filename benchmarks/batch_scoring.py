"""Batch inference (``graph_rec.inference.score_all``): throughput and peak memory, top-100 for every user.

Two models:

* ``ml-latest-small``: the GraphRec that ``benchmarks/recommender_api.py`` trained on protocol A and
  saved at ``out/bench-api/ml-graphrec`` (610 users x 9,742 items), when that directory exists;
  otherwise a small GraphRec fitted here on the default synthetic world (200 users x 300 items);
  the JSON says which (``models.*.source``).
* ``synthetic-20k``: the synthetic world with 20,000 users and 20,000 items (20 interactions per
  user on average, random 80/10/10 split), GraphRec (embedding_dim 64, 2 layers, batch 8,192)
  trained for 2 epochs (about 2 minutes on 2 shared cores): enough for a throughput and memory measurement, not for quality. Saved at
  ``out/bench-scoring/synthetic-20k`` and reused by ``--reuse-model``.

Each (model, chunk_users) pair runs in a fresh process (so peak RSS is that run's): the model is
loaded with ``Recommender.load``, then ``score_all(k=100, chunk_users=C)`` writes every user's
top 100 (seen items excluded) as zstd Parquet. Recorded: users/s, seconds, rows, output bytes,
the RSS just before scoring, the peak RSS sampled every 5 ms while scoring, the process's
``ru_maxrss``, and the size of one chunk's score matrix (``chunk_users * num_items * 4`` bytes),
which is the bound the memory should follow. The load average is recorded before and after:
the machine has 2 cores shared with other work.

    python benchmarks/batch_scoring.py                  # about 3 minutes on 2 cores
    python benchmarks/batch_scoring.py --reuse-model    # do not retrain the synthetic model

Writes benchmarks/results/batch_scoring.json and batch_scoring.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, ROOT, run_metadata  # noqa: E402

OUT_JSON = RESULTS / "batch_scoring.json"
OUT_MD = RESULTS / "batch_scoring.md"
ML_MODEL = ROOT / "out" / "bench-api" / "ml-graphrec"
WORK = ROOT / "out" / "bench-scoring"
CHUNKS = (1000, 10_000)
K = 100


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------------------ one measurement (child)
def child(model_dir: str, chunk: int, out: str) -> dict[str, Any]:
    import torch

    from graph_rec.inference import score_all
    from graph_rec.recommender import Recommender

    t0 = time.perf_counter()
    rec = Recommender.load(model_dir)
    load_s = time.perf_counter() - t0
    rss_before = _rss_mb()
    peak = [rss_before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        res = score_all(rec, out, k=K, chunk_users=chunk, overwrite=True)
    finally:
        stop.set()
        sampler.join()
    size = sum(p.stat().st_size for p in Path(out).glob("part-*.parquet"))
    num_items = len(rec.item_ids)
    return {
        "chunk_users": chunk,
        "k": K,
        "users": res.users,
        "items": num_items,
        "parts": res.parts,
        "rows": res.rows,
        "seconds": round(res.seconds, 3),
        "users_per_second": round(res.users_per_second, 1),
        "load_seconds": round(load_s, 2),
        "output_mb": round(size / 2**20, 2),
        "rss_before_scoring_mb": round(rss_before, 1),
        "peak_rss_while_scoring_mb": round(peak[0], 1),
        "scoring_rss_growth_mb": round(peak[0] - rss_before, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "chunk_score_matrix_mb": round(min(chunk, res.users) * num_items * 4 / 2**20, 1),
        "torch_threads": torch.get_num_threads(),
    }


def _measure(model_dir: Path, chunk: int, name: str) -> dict[str, Any]:
    out = WORK / f"scores-{name}-{chunk}"
    cmd = [sys.executable, __file__, "--child", str(model_dir), str(chunk), str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ models
def _fit_synthetic(out: Path, *, num_users: int, num_items: int, epochs: int, dim: int) -> dict[str, Any]:
    from graph_rec.recommender import Recommender
    from kg_builders.builders.standard import standard_builders
    from kg_builders.graph import build_graph
    from kg_builders.sources.synthetic import make_synthetic_world
    from kg_builders.split import split_random

    t0 = time.perf_counter()
    tables = make_synthetic_world(
        num_users=num_users, num_items=num_items, interactions_per_user=20, seed=0, with_images=False
    )
    sp = split_random(tables, ratios=(0.8, 0.1, 0.1), seed=2026)
    train = sp.train_tables(tables)
    kg = build_graph(train, standard_builders(train))
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rec = Recommender.fit(
        kg,
        split=sp,
        settings={"embedding_dim": dim, "num_layers": 2, "relation_mode": "none", "score": "cosine"},
        train={
            "epochs": epochs,
            "eval_every": epochs,
            "patience": 5,
            "loss": "softmax",
            "num_negatives": 256,
            "shared_negatives": True,
            "batch_size": 8192,
            "lr": 0.01,
            "seed": 2026,
        },
    )
    fit_s = time.perf_counter() - t0
    rec.save(out, overwrite=True)
    return {
        "users": len(rec.user_ids),
        "items": len(rec.item_ids),
        "train_interactions": int(rec.data.train.nnz),
        "build_seconds": round(build_s, 1),
        "fit_seconds": round(fit_s, 1),
        "epochs": epochs,
    }


def _fit_in_child(out: Path, *, num_users: int, num_items: int, epochs: int, dim: int) -> dict[str, Any]:
    """:func:`_fit_synthetic` in a fresh process: the parent stays small, so a measuring child's
    ``ru_maxrss`` (which on Linux starts from the parent's at fork) is its own."""
    cmd = [sys.executable, __file__, "--fit", str(out), str(num_users), str(num_items), str(epochs), str(dim)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _models(reuse: bool, previous: dict[str, Any]) -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = {}
    if (ML_MODEL / "recommender.json").is_file():
        models["ml-latest-small"] = {
            "path": str(ML_MODEL.relative_to(ROOT)),
            "source": "the protocol-A GraphRec saved by benchmarks/recommender_api.py (out/bench-api/ml-graphrec)",
        }
    else:
        path = WORK / "fallback-synthetic-200"
        info = _fit_in_child(path, num_users=200, num_items=300, epochs=10, dim=64)
        models["synthetic-200 (fallback)"] = {
            "path": str(path.relative_to(ROOT)),
            "source": "out/bench-api/ml-graphrec is absent: a GraphRec fitted here on the default synthetic world",
            **info,
        }
    path = WORK / "synthetic-20k"
    old = previous.get("models", {}).get("synthetic-20k", {})
    if reuse and (path / "recommender.json").is_file() and old:
        models["synthetic-20k"] = {**old, "reused": True}
    else:
        info = _fit_in_child(path, num_users=20_000, num_items=20_000, epochs=2, dim=64)
        models["synthetic-20k"] = {
            "path": str(path.relative_to(ROOT)),
            "source": "synthetic world, 20,000 users x 20,000 items, GraphRec 2 epochs (throughput only)",
            **info,
        }
    return models


# ------------------------------------------------------------------------------ report
def markdown(res: dict[str, Any]) -> str:
    meta = res["meta"]
    lines = [
        f"Measured {meta['date']} on {meta['machine']['cpus']} CPUs (shared; load average "
        f"{res['load_before'][0]:.2f} before, {res['load_after'][0]:.2f} after), torch threads "
        f"{meta['torch_threads']}. `score_all(k={K})`, every user, seen items excluded, zstd Parquet; "
        "each row a fresh process.",
        "",
    ]
    for name, m in res["models"].items():
        lines.append(f"- `{name}`: {m['source']}.")
    lines += [
        "",
        "| model | users x items | chunk_users | users/s | seconds | rows | output | RSS before | "
        "peak RSS scoring | growth | one chunk's scores |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["runs"]:
        lines.append(
            f"| {r['model']} | {r['users']:,} x {r['items']:,} | {r['chunk_users']:,} | {r['users_per_second']:,.0f} | "
            f"{r['seconds']:.2f} | {r['rows']:,} | {r['output_mb']} MB | {r['rss_before_scoring_mb']:.0f} MB | "
            f"{r['peak_rss_while_scoring_mb']:.0f} MB | {r['scoring_rss_growth_mb']:+.0f} MB | "
            f"{r['chunk_score_matrix_mb']:.0f} MB |"
        )
    lines += [
        "",
        "Peak memory of scoring is one chunk's `[chunk_users, num_items]` float32 score matrix "
        "(`chunk_users * num_items * 4` bytes) plus its top-k and the chunk's Arrow table: the growth "
        "follows `chunk_users`, not the number of users.",
    ]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        model_dir, chunk, out = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        print(json.dumps(child(model_dir, chunk, out)))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--fit":
        out, nu, ni, epochs, dim = Path(sys.argv[2]), *map(int, sys.argv[3:7])
        print(json.dumps(_fit_synthetic(out, num_users=nu, num_items=ni, epochs=epochs, dim=dim)))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reuse-model", action="store_true", help="reuse the saved synthetic-20k model")
    p.add_argument("--markdown-only", action="store_true")
    args = p.parse_args()
    previous = json.loads(OUT_JSON.read_text()) if OUT_JSON.is_file() else {}
    if args.markdown_only:
        OUT_MD.write_text(markdown(previous) + "\n")
        print(OUT_MD.read_text())
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res: dict[str, Any] = {"meta": run_metadata(), "load_before": list(os.getloadavg())}
    res["models"] = _models(args.reuse_model, previous)
    runs = []
    for name, m in res["models"].items():
        for chunk in CHUNKS:
            r = _measure(ROOT / m["path"], chunk, name.split(" ")[0])
            runs.append({"model": name, **r, "load_average_1m": round(os.getloadavg()[0], 2)})
            print(json.dumps(runs[-1]), file=sys.stderr)
    res["runs"] = runs
    res["load_after"] = list(os.getloadavg())
    res["seconds"] = round(time.perf_counter() - t0, 1)
    OUT_JSON.write_text(json.dumps(res, indent=2) + "\n")
    OUT_MD.write_text(markdown(res) + "\n")
    print(OUT_MD.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
