"""Scale-out measurements (issue 8): data-parallel throughput and the memory of sampled training.

Graphs: :func:`_scale_world.power_law_world` (power-law users and items, one or two tags per item,
32-d random features on items and tags, per-user random 80/10/10 split with seed 0 made before the
graph). Model: GraphRec, d = 64, 2 layers, learned relation weights (``relation_mode="weights"``,
the default: every step recomputes the normalised adjacency), BPR with one negative, Adam.

``--part ddp``: training throughput (training pairs per second over the first epoch, validation
excluded) on one graph with one process and with 2 gloo ranks started by ``torchrun``, for
full-graph and neighbour-sampled training; ``batch_size`` is the global batch, so both launches
take the same steps. Each launch is a fresh process group.

``--part quality``: on a graph where both paths fit (ml-latest-small with the MKR KG, protocol A
of ``protocols.py``: per-user random 80/10/10 with seed 2026, full ranking, settings of the
protocol's GraphRec), full-graph against neighbour-sampled training, trained and evaluated the same
way in this run; test metrics of the best validation epoch.

``--part memory``: peak resident memory (``ru_maxrss``) of one process per case: after building
the graph and model, after ``--steps`` training steps (median step time), and after computing the
validation embeddings (``model.embed()`` for full-graph, the layer-wise batched
``layerwise_embed`` for sampled).

    python benchmarks/scale_out.py --part ddp
    python benchmarks/scale_out.py --part quality
    python benchmarks/scale_out.py --part memory --memory-cases full-1m,full-5m,sampled-20m

Writes benchmarks/results/scale_out.{json,md} (a part's earlier rows are replaced, others kept).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, ROOT, run_metadata  # noqa: E402

MODEL = {"embedding_dim": 64, "num_layers": 2, "relation_mode": "weights"}
FANOUTS = [10, 10]
DDP_INTERACTIONS = 250_000
DDP_TRAIN = {"batch_size": 4096, "lr": 0.005, "epochs": 2, "eval_every": 2, "patience": 5, "seed": 2026}
MEMORY_CASES = {
    "full-1m": ("full", 1_000_000),
    "full-5m": ("full", 5_000_000),
    "full-10m": ("full", 10_000_000),
    "sampled-1m": ("neighbour", 1_000_000),
    "sampled-5m": ("neighbour", 5_000_000),
    "sampled-20m": ("neighbour", 20_000_000),
}
DDP_CASES = [  # (name, sampling, ranks, threads per rank)
    ("full, 1 process x 2 threads", "full", 1, 2),
    ("full, 1 process x 1 thread", "full", 1, 1),
    ("full, 2 ranks x 1 thread", "full", 2, 1),
    ("sampled, 1 process x 2 threads", "neighbour", 1, 2),
    ("sampled, 1 process x 1 thread", "neighbour", 1, 1),
    ("sampled, 2 ranks x 1 thread", "neighbour", 2, 1),
]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _world(n: int) -> Any:
    from _scale_world import power_law_world

    from graph_rec.data import RecData

    kg, sp = power_law_world(n, seed=0, feature_dim=32)
    return RecData(kg, sp)


# ------------------------------------------------------------------------------------ workers
def ddp_worker(sampling: str) -> None:
    """One rank (or the single process) of a throughput case; rank 0 prints a JSON line."""
    import torch

    from graph_rec.distributed import from_env
    from graph_rec.eval.evaluator import EvalConfig
    from graph_rec.training import TrainConfig, fit, init_model

    dist = from_env("cpu")
    try:
        t0 = time.perf_counter()
        data = _world(DDP_INTERACTIONS)
        model = init_model("graphrec", MODEL, data, seed=2026)
        build_s = time.perf_counter() - t0
        cfg = TrainConfig(**DDP_TRAIN, sampling=sampling, num_neighbours=tuple(FANOUTS))
        res = fit(model, data, cfg, eval_config=EvalConfig(ks=(20,), beyond_accuracy=False), dist=dist)
        epoch1 = res.history[0]["seconds"]
        rss = dist.all_gather_object(_rss_mb())
        if dist.is_main:
            print(
                json.dumps(
                    {
                        "train_pairs": data.train.nnz,
                        "nodes": data.graph.num_nodes,
                        "edges": data.graph.num_edges,
                        "steps_per_epoch": -(-data.train.nnz // cfg.batch_size),
                        "build_seconds": round(build_s, 2),
                        "epoch1_seconds": round(epoch1, 2),
                        "pairs_per_second": round(data.train.nnz / epoch1, 1),
                        "valid_recall@20_after_2_epochs": round(res.history[1]["valid"]["recall@20"], 4),
                        "peak_rss_mb_per_rank": [round(r, 1) for r in rss],
                        "torch_threads": torch.get_num_threads(),
                        "world_size": dist.world_size,
                    }
                )
            )
    finally:
        dist.close()


def memory_worker(sampling: str, n: int, steps: int) -> None:
    """Build, train ``steps`` steps and embed every node in this process; print a JSON line."""
    import torch

    from graph_rec.training import init_model
    from graph_rec.training.losses import bpr_loss
    from graph_rec.training.sampled import NeighbourSampler, layerwise_embed, sampled_batch_scores
    from graph_rec.training.sampling import epoch_batches

    t0 = time.perf_counter()
    data = _world(n)
    model = init_model("graphrec", MODEL, data, seed=2026)
    build_s = time.perf_counter() - t0
    rss_build = _rss_mb()
    opt = torch.optim.Adam(model.parameters(), lr=0.005)
    gen = torch.Generator().manual_seed(2026)
    sampler = (
        NeighbourSampler.from_propagation(model.propagation, FANOUTS, generator=torch.Generator().manual_seed(1))
        if sampling == "neighbour"
        else None
    )
    times = []
    model.train()
    for i, (users, pos, neg) in enumerate(epoch_batches(data.train, 8192, 1, gen)):
        if i == steps:
            break
        t = time.perf_counter()
        out = (
            model.batch_scores(users, pos, neg)
            if sampler is None
            else sampled_batch_scores(model, sampler, users, pos, neg)
        )
        loss = bpr_loss(out.pos, out.neg) + 1e-4 * out.reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    rss_train = _rss_mb()
    model.eval()
    t = time.perf_counter()
    with torch.inference_mode():
        users_e, items_e = model.embed() if sampler is None else layerwise_embed(model, batch_size=65536)
    embed_s = time.perf_counter() - t
    print(
        json.dumps(
            {
                "sampling": sampling,
                "interactions": n,
                "train_pairs": data.train.nnz,
                "nodes": data.graph.num_nodes,
                "edges": data.graph.num_edges,
                "build_seconds": round(build_s, 1),
                "steps": len(times),
                "batch_size": 8192,
                "step_seconds_median": round(statistics.median(times[1:] or times), 3),
                "embed_seconds": round(embed_s, 2),
                "peak_rss_mb_after_build": round(rss_build, 1),
                "peak_rss_mb_after_training": round(rss_train, 1),
                "peak_rss_mb_after_embedding": round(_rss_mb(), 1),
                "embedding_shapes": [list(users_e.shape), list(items_e.shape)],
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def run_quality(fanouts: list[int]) -> list[dict]:
    from protocols import GRIDS, prepare, run_one

    kg, sp, _ = prepare("ml-latest-small", ROOT / "data" / "cache")
    settings, train = GRIDS["graphrec"][0]
    rows = []
    for label, extra in (
        ("full-graph", {}),
        ("neighbour-sampled", {"sampling": "neighbour", "num_neighbours": fanouts}),
    ):
        r = run_one(kg, sp, "graphrec", settings, {**train, **extra}, {}, (10, 20))
        row = {
            "case": label,
            "valid": {k: r["valid"][k] for k in ("recall@20", "ndcg@20")},
            "test": {k: r["test"][k] for k in ("recall@20", "ndcg@20")},
            "best_epoch": r["best_epoch"],
            "seconds": r["seconds"],
            "seconds_to_best": r["seconds_to_best"],
            "train": r["train"],
        }
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


# ------------------------------------------------------------------------------------ driver
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(args: list[str], *, ranks: int, threads: int, timeout: int, script: Path | None = None) -> dict:
    """``script`` (default this file) with ``args`` in fresh processes (``torchrun`` for ``ranks`` > 1).

    Returns the JSON of the last line its (rank 0's) stdout printed, or ``{"error", "stderr_tail"}``.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = str(threads)
    me = [str((script or Path(__file__)).resolve()), *args]
    if ranks == 1:
        cmd = [sys.executable, *me]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "1",
            "--nproc-per-node",
            str(ranks),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            *me,
        ]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        tail = e.stderr or b""
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return {"error": f"timed out after {timeout} s", "stderr_tail": tail[-1500:]}
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}", "stderr_tail": p.stderr[-1500:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_ddp() -> list[dict]:
    rows = []
    for name, sampling, ranks, threads in DDP_CASES:
        r = _launch(["worker-ddp", sampling], ranks=ranks, threads=threads, timeout=1200)
        rows.append({"case": name, "sampling": sampling, "ranks": ranks, "threads_per_rank": threads, **r})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def run_memory(cases: list[str], steps: int) -> list[dict]:
    rows = []
    for name in cases:
        sampling, n = MEMORY_CASES[name]
        r = _launch(["worker-memory", sampling, str(n), str(steps)], ranks=1, threads=2, timeout=3000)
        rows.append({"case": name, **r})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def _measured(part: dict) -> str:
    meta = part["meta"]
    load = f", load average {part['load'][0]:.1f} at the start" if part.get("load") else ""
    return (
        f"Measured {meta['date'][:16].replace('T', ' ')} UTC on {meta['machine']['cpus']} CPU cores, no GPU "
        f"(commit {meta['git_commit'][:8]}{load})."
    )


def to_markdown(payload: dict) -> str:
    lines = [
        "Synthetic cases: GraphRec d=64, 2 layers, learned relation weights, BPR, Adam, on power-law graphs "
        "(`benchmarks/_scale_world.py`: 32-d features on items and tags, per-user 80/10/10 split).",
        "",
    ]
    ddp = payload.get("ddp", {}).get("rows")
    if ddp:
        base = {r["sampling"]: r for r in ddp if r["ranks"] == 1 and r["threads_per_rank"] == 2 and "error" not in r}
        first = next(r for r in ddp if "error" not in r)
        lines += [
            f"**Data-parallel throughput** on {first['train_pairs']:,} training pairs ({first['nodes']:,} nodes, "
            f"{first['edges']:,} edges), global batch {DDP_TRAIN['batch_size']:,}, "
            f"fan-outs {FANOUTS} when sampled; first epoch, validation excluded:",
            "",
            _measured(payload["ddp"]),
            "",
            "| case | pairs/s | vs 1 process x 2 threads | epoch (s) | peak RSS per rank (MB) | valid R@20 after 2 epochs |",
            "|---|---|---|---|---|---|",
        ]
        for r in ddp:
            if "error" in r:
                lines.append(f"| {r['case']} | failed: {r['error']} | | | | |")
                continue
            ref = base.get(r["sampling"])
            ratio = f"{r['pairs_per_second'] / ref['pairs_per_second']:.2f}x" if ref else ""
            rss = ", ".join(f"{x:,.0f}" for x in r["peak_rss_mb_per_rank"])
            lines.append(
                f"| {r['case']} | {r['pairs_per_second']:,.0f} | {ratio} | {r['epoch1_seconds']} | {rss} | "
                f"{r['valid_recall@20_after_2_epochs']} |"
            )
        lines.append("")
    quality = payload.get("quality", {}).get("rows")
    if quality:
        fan = next((r["train"].get("num_neighbours") for r in quality if r["case"] != "full-graph"), None)
        lines += [
            "**Sampled against full-graph training** where both fit: ml-latest-small + MKR KG, protocol A "
            "(per-user random 80/10/10, seed 2026, full ranking), the protocol's GraphRec settings, "
            f"neighbour fan-outs {fan}; test metrics at the best validation epoch. " + _measured(payload["quality"]),
            "",
            "| training | valid R@20 | test R@20 | test NDCG@20 | best epoch | seconds to best | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in quality:
            lines.append(
                f"| {r['case']} | {r['valid']['recall@20']:.4f} | {r['test']['recall@20']:.4f} | "
                f"{r['test']['ndcg@20']:.4f} | {r['best_epoch']} | {r['seconds_to_best']} | {r['seconds']} |"
            )
        lines.append("")
    mem = payload.get("memory", {}).get("rows")
    if mem:
        lines += [
            "**Peak memory**, one process per case (2 threads), batch 8,192; full-graph validation embeddings "
            "with `model.embed()`, sampled with the layer-wise batched `layerwise_embed`. "
            + _measured(payload["memory"]),
            "",
            "| case | train pairs | nodes | edges | build (s) | step (s, median) | embed (s) | "
            "peak RSS after build (MB) | after training | after embedding |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in mem:
            if "error" in r:
                lines.append(f"| {r['case']} | failed: {r['error']} | | | | | | | | |")
                continue
            lines.append(
                f"| {r['case']} | {r['train_pairs']:,} | {r['nodes']:,} | {r['edges']:,} | {r['build_seconds']} | "
                f"{r['step_seconds_median']} | {r['embed_seconds']} | {r['peak_rss_mb_after_build']:,.0f} | "
                f"{r['peak_rss_mb_after_training']:,.0f} | {r['peak_rss_mb_after_embedding']:,.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker-ddp":
        ddp_worker(sys.argv[2])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "worker-memory":
        memory_worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["ddp", "quality", "memory", "all"], default="all")
    p.add_argument("--fanouts", default="20,10", help="neighbour fan-outs of the quality comparison")
    p.add_argument("--memory-cases", default="full-1m,full-5m,sampled-1m,sampled-5m,sampled-20m")
    p.add_argument("--steps", type=int, default=8, help="training steps per memory case")
    p.add_argument("--markdown-only", action="store_true", help="rewrite scale_out.md from scale_out.json")
    args = p.parse_args()
    path = RESULTS / "scale_out.json"
    if args.markdown_only:
        args.part = "none"
    cases = [c.strip() for c in args.memory_cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in MEMORY_CASES]
    if unknown:
        raise SystemExit(f"unknown memory case(s) {unknown}; known: {sorted(MEMORY_CASES)}")
    parts = {
        "ddp": run_ddp,
        "quality": lambda: run_quality([int(x) for x in args.fanouts.split(",")]),
        "memory": lambda: run_memory(cases, args.steps),
    }
    for name, run in parts.items():
        if args.part in (name, "all"):
            meta, load = run_metadata(), os.getloadavg()
            rows = run()
            # re-read: another part may have been written meanwhile; each part keeps its own metadata
            payload = json.loads(path.read_text()) if path.is_file() else {}
            payload[name] = {"meta": meta, "load": list(load), "rows": rows}
            RESULTS.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(payload, indent=1))
    payload = json.loads(path.read_text())
    (RESULTS / "scale_out.md").write_text(to_markdown(payload))
    print((RESULTS / "scale_out.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
