"""Scaling (issue 7, point 5): training step time, evaluation time and memory as the work grows.

Graphs: the power-law synthetic worlds of the scale-out benchmark (``scale_out._world``, i.e.
:func:`_scale_world.power_law_world` with seed 0 and 32-d features on items and tags: log-normal
user activity, Zipf-like item popularity, one or two tags per item, per-user random 80/10/10 split
made before the graph) of 100k, 1M and 5M interactions by default. Model: GraphRec as in
``scale_out.MODEL`` (d = 64, 2 layers, learned relation weights, so every step recomputes the
normalised adjacency), ``init_model(..., seed=2026)``.

Each size runs in a fresh process (so the peak resident memory is that size's own) with torch at
``--threads`` threads (default 2), which

1. builds the world, :class:`graph_rec.data.RecData` and the model (``build_seconds``);
2. trains full-graph BPR steps (batch 8,192, one uniform negative per pair, Adam lr 0.005, L2 1e-4 on
   the batch's embeddings, the step of ``scale_out.memory_worker``): one warm-up step, then
   ``--steps`` timed steps; ``step_seconds_median`` is their median;
3. evaluates every validation user by full ranking, ``evaluate(model.scorer(), data, part="valid",
   config=EvalConfig(ks=(20,), beyond_accuracy=False))`` under ``torch.inference_mode()``;
   ``eval_seconds`` is the wall time of both (``model.scorer()`` computes the final embeddings,
   ``embed_seconds`` of it), ``eval_users_per_second`` the validation users over it;
4. records the peak RSS (``ru_maxrss``) after build, after training and after evaluation.

Growth rate: for each cost, the least-squares slope ``a`` of log(cost) on log(interactions)
(:func:`growth_exponent`), stated as "cost ∝ n^a"; ``n`` is the number of distinct user-item pairs
the world has (train + valid + test), within a few per cent of the requested size. The peak RSS
includes the interpreter and libraries (a few hundred MB whatever the size), so its exponent is below
that of the data's own memory when the smallest size is small.

    python benchmarks/scaling.py                                  # 100k, 1m, 5m; 5 steps
    python benchmarks/scaling.py --sizes 100k,1m --steps 3
    python benchmarks/scaling.py --markdown-only                  # rewrite scaling.md from scaling.json

Writes benchmarks/results/scaling.{json,md,png}. A suite can call :func:`run` (the per-size work still
runs in subprocesses) and :func:`write`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, run_metadata  # noqa: E402
from scale_out import MODEL, _launch, _rss_mb, _world  # noqa: E402

from graph_rec.errors import ConfigError  # noqa: E402

DEFAULT_SIZES = ("100k", "1m", "5m")
BATCH_SIZE = 8192
LR = 0.005
L2 = 1e-4
THREADS = 2
MODEL_SEED = 2026
MIN_INTERACTIONS = 1000
TIMEOUT_S = 3600
#: cost key in a row -> its words in the Markdown and the plot
COSTS = {
    "step_seconds_median": ("training step time", "step time (s)"),
    "eval_seconds": ("evaluation time", "evaluation time (s)"),
    "peak_rss_mb_after_eval": ("peak RSS", "peak RSS (MB)"),
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([km]?)")


# ------------------------------------------------------------------------------------ pure helpers
def parse_size(text: str) -> int:
    """``"100k"`` -> 100_000, ``"1m"`` / ``"1M"`` -> 1_000_000, ``"2.5m"``, ``"20000"``; at least 1,000."""
    m = _SIZE.fullmatch(text.strip().lower())
    if m is None:
        raise ConfigError(f"size {text!r} is not a number of interactions such as '100k', '1m' or '20000'")
    value = float(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2)]
    if value != int(value):
        raise ConfigError(f"size {text!r} is not a whole number of interactions")
    if value < MIN_INTERACTIONS:
        raise ConfigError(f"size {text!r} is below the smallest world of {MIN_INTERACTIONS:,} interactions")
    return int(value)


def parse_sizes(text: str) -> list[str]:
    """``"100k, 1M"`` -> ``["100k", "1m"]`` (each checked with :func:`parse_size`)."""
    sizes = [s.strip().lower() for s in text.split(",") if s.strip()]
    if not sizes:
        raise ConfigError(f"no size in {text!r}; give e.g. '100k,1m,5m'")
    for s in sizes:
        parse_size(s)
    return sizes


def power_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """``(a, c)`` of the least-squares line ``log y = a log x + log c``, i.e. ``y ≈ c x^a``.

    Raises:
        ConfigError: fewer than 2 points, lengths that differ, a value that is not positive and finite,
            or every ``x`` equal (no slope).
    """
    if len(xs) != len(ys):
        raise ConfigError(f"growth fit needs as many costs as sizes, got {len(xs)} sizes and {len(ys)} costs")
    if len(xs) < 2:
        raise ConfigError(f"growth fit needs at least 2 points, got {len(xs)}")
    bad = [v for v in (*xs, *ys) if not (isinstance(v, int | float) and math.isfinite(v) and v > 0)]
    if bad:
        raise ConfigError(f"growth fit needs positive finite values, got {bad}")
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    sxx = sum((x - mx) ** 2 for x in lx)
    if sxx == 0:
        raise ConfigError(f"growth fit needs at least 2 different sizes, got {list(xs)}")
    a = sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / sxx
    return a, math.exp(my - a * mx)


def growth_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope ``a`` of ``log ys`` on ``log xs``: the cost grows as ``n^a``."""
    return power_fit(xs, ys)[0]


def exponents(rows: Sequence[dict]) -> dict[str, float | None]:
    """Growth exponent of each cost of :data:`COSTS` over the rows that ran; ``None`` under 2 sizes."""
    ok = [r for r in rows if "error" not in r]
    out: dict[str, float | None] = {}
    for key in COSTS:
        if len({r["interactions"] for r in ok}) < 2:
            out[key] = None
        else:
            out[key] = round(growth_exponent([r["interactions"] for r in ok], [r[key] for r in ok]), 3)
    return out


# ------------------------------------------------------------------------------------ worker
def _batches(data: Any, generator: Any) -> Iterator[tuple[Any, Any, Any]]:
    """BPR batches of :data:`BATCH_SIZE` with one negative, epoch after epoch (small worlds run out)."""
    from graph_rec.training.sampling import epoch_batches

    if data.train.nnz == 0:
        raise ConfigError("the world has no training pair to train on")
    while True:
        yield from epoch_batches(data.train, BATCH_SIZE, 1, generator)


def train_steps(model: Any, data: Any, steps: int) -> list[float]:
    """One warm-up step, then ``steps`` timed full-graph BPR steps; their seconds."""
    import torch

    from graph_rec.training.losses import bpr_loss

    opt = torch.optim.Adam(model.parameters(), lr=LR)
    batches = _batches(data, torch.Generator().manual_seed(MODEL_SEED))
    times = []
    model.train()
    for _ in range(steps + 1):
        users, pos, neg = next(batches)
        t = time.perf_counter()
        out = model.batch_scores(users, pos, neg)
        loss = bpr_loss(out.pos, out.neg) + L2 * out.reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return times[1:]


def worker(size: str, steps: int, threads: int) -> dict:
    """Measure one size in this process (see the module docstring); the row, JSON-able."""
    import torch

    from graph_rec.eval.evaluator import EvalConfig, evaluate
    from graph_rec.training import init_model

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    data = _world(parse_size(size))
    model = init_model("graphrec", MODEL, data, seed=MODEL_SEED)
    build_s = time.perf_counter() - t0
    rss_build = _rss_mb()
    times = train_steps(model, data, steps)
    rss_train = _rss_mb()
    model.eval()
    t = time.perf_counter()
    with torch.inference_mode():
        scorer = model.scorer()
        embed_s = time.perf_counter() - t
        res = evaluate(scorer, data, part="valid", config=EvalConfig(ks=(20,), beyond_accuracy=False))
    eval_s = time.perf_counter() - t
    rss_eval = _rss_mb()
    return {
        "requested_interactions": parse_size(size),
        "interactions": data.train.nnz + data.valid.nnz + data.test.nnz,
        "train_pairs": data.train.nnz,
        "users": data.num_users,
        "items": data.num_items,
        "nodes": data.graph.num_nodes,
        "edges": data.graph.num_edges,
        "build_seconds": round(build_s, 2),
        "steps": len(times),
        "batch_size": BATCH_SIZE,
        "step_seconds": [round(x, 4) for x in times],
        "step_seconds_median": round(statistics.median(times), 4),
        "embed_seconds": round(embed_s, 3),
        "eval_seconds": round(eval_s, 3),
        "eval_users": res.num_users,
        "eval_users_per_second": round(res.num_users / eval_s, 1),
        "valid_recall@20": round(res.metrics["recall@20"], 4),
        "peak_rss_mb_after_build": round(rss_build, 1),
        "peak_rss_mb_after_training": round(rss_train, 1),
        "peak_rss_mb_after_eval": round(rss_eval, 1),
        "torch_threads": torch.get_num_threads(),
    }


# ------------------------------------------------------------------------------------ driver
def _launch_size(size: str, steps: int, threads: int, timeout: int) -> dict:
    """:func:`worker` in a fresh interpreter; its JSON line, or ``{"error": ...}``."""
    args = ["worker", size, str(steps), str(threads)]
    return _launch(args, ranks=1, threads=threads, timeout=timeout, script=Path(__file__))


def run(sizes: list[str], steps: int, *, threads: int = THREADS, timeout: int = TIMEOUT_S) -> dict:
    """Measure every size, each in its own subprocess, in order; the payload written by :func:`write`."""
    sizes = [s.strip().lower() for s in sizes]
    for s in sizes:
        parse_size(s)
    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    meta, load = run_metadata(), os.getloadavg()
    rows = []
    for s in sizes:
        start_load = os.getloadavg()[0]
        rows.append(
            {"size": s, "load_average_1m_at_start": round(start_load, 2), **_launch_size(s, steps, threads, timeout)}
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "step_seconds"}), file=sys.stderr)
    return {
        "meta": meta,
        "load": list(load),
        "protocol": {
            "model": "graphrec",
            "model_config": MODEL,
            "model_seed": MODEL_SEED,
            "world": "scale_out._world: power_law_world(n, seed=0, feature_dim=32)",
            "batch_size": BATCH_SIZE,
            "optimizer": f"Adam lr {LR}",
            "loss": f"BPR, 1 negative, L2 {L2}",
            "warmup_steps": 1,
            "steps": steps,
            "torch_threads": threads,
            "eval": "full ranking, every validation user, EvalConfig(ks=(20,), beyond_accuracy=False)",
        },
        "rows": rows,
        "exponents": exponents(rows),
    }


def _cell(x: float) -> str:
    return f"{x:,.3g}" if x < 100 else f"{x:,.0f}"


def to_markdown(payload: dict) -> str:
    """``scaling.md`` from a payload of :func:`run`."""
    meta, proto = payload["meta"], payload["protocol"]
    cfg = proto["model_config"]
    load = f", load average {payload['load'][0]:.1f} at the start" if payload.get("load") else ""
    dirty = " with uncommitted changes" if meta.get("git_dirty") else ""
    threads = f"{proto['torch_threads']} thread" + ("s" if proto["torch_threads"] != 1 else "")
    lines = [
        "# Scaling: cost as the work grows",
        "",
        f"GraphRec (d={cfg['embedding_dim']}, {cfg['num_layers']} layers, relation mode {cfg['relation_mode']}) on "
        "power-law synthetic graphs (`benchmarks/_scale_world.py`, 32-d item and tag features, per-user 80/10/10 "
        f"split), one fresh process per size with torch at {threads}: median of "
        f"{proto['steps']} full-graph BPR steps (batch {proto['batch_size']:,}, Adam) after {proto['warmup_steps']} "
        "warm-up step, full-ranking evaluation of every validation user (embeddings included), peak RSS "
        f"(`ru_maxrss`); measured {meta['date'][:16].replace('T', ' ')} UTC on {meta['machine']['cpus']} CPU cores "
        f"({meta['machine']['processor']}), no GPU, commit {meta['git_commit'][:8]}{dirty}{load}.",
        "",
        "| size | interactions | nodes | edges | build (s) | step (s, median) | evaluation (s) | users/s | "
        "peak RSS after build (MB) | after training | after evaluation |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        if "error" in r:
            lines.append(f"| {r['size']} | failed: {r['error']} | | | | | | | | | |")
            continue
        lines.append(
            f"| {r['size']} | {r['interactions']:,} | {r['nodes']:,} | {r['edges']:,} | {r['build_seconds']} | "
            f"{r['step_seconds_median']} | {r['eval_seconds']} ({r['eval_users']:,} users) | "
            f"{r['eval_users_per_second']:,.0f} | {r['peak_rss_mb_after_build']:,.0f} | "
            f"{r['peak_rss_mb_after_training']:,.0f} | {r['peak_rss_mb_after_eval']:,.0f} |"
        )
    ok = [r for r in payload["rows"] if "error" not in r]
    lines += [
        "",
        f"Growth rate, the least-squares slope of log(cost) on log(interactions n) over {len(ok)} "
        + ("size:" if len(ok) == 1 else "sizes:"),
        "",
    ]
    for key, (words, _) in COSTS.items():
        a = payload["exponents"].get(key)
        lines.append(f"- {words} ∝ n^{a:.2f}" if a is not None else f"- {words}: not fitted (fewer than 2 sizes ran)")
    lines += [
        "",
        "The peak RSS includes the interpreter and libraries, a fixed few hundred MB, so its exponent understates "
        "the growth of the data's own memory when the smallest size is small.",
    ]
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: Path) -> bool:
    """Three log-log panels (step time, evaluation time, peak RSS against interactions) with the fitted
    lines; ``False`` (and a message) when matplotlib is not installed or fewer than 2 sizes ran."""
    ok = [r for r in payload["rows"] if "error" not in r]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        print(f"{path.name} not written: matplotlib is not installed", file=sys.stderr)
        return False
    if not ok:
        print(f"{path.name} not written: no size ran", file=sys.stderr)
        return False
    xs = [r["interactions"] for r in ok]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (key, (words, label)) in zip(axes, COSTS.items(), strict=True):
        ys = [r[key] for r in ok]
        ax.loglog(xs, ys, "o", color="C0")
        for x, y, r in zip(xs, ys, ok, strict=True):
            ax.annotate(r["size"], (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8)
        title = words
        if len(set(xs)) >= 2:
            a, c = power_fit(xs, ys)
            line = [min(xs), max(xs)]
            ax.loglog(line, [c * x**a for x in line], "--", color="C1", label=f"∝ n^{a:.2f}")
            ax.legend()
            title = f"{words} ∝ n^{a:.2f}"
        ax.set_title(title)
        ax.set_xlabel("interactions n")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a decade overlap
    fig.suptitle(
        f"GraphRec scaling, torch threads {payload['protocol']['torch_threads']}, commit {payload['meta']['git_commit'][:8]}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write(payload: dict, results: Path = RESULTS) -> None:
    """``scaling.json``, ``scaling.md`` and ``scaling.png`` into ``results``."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "scaling.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    (results / "scaling.md").write_text(to_markdown(payload))
    plot(payload, results / "scaling.png")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        print(json.dumps(worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=",".join(DEFAULT_SIZES), help="interactions per world, e.g. 100k,1m,5m")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per size (after 1 warm-up step)")
    p.add_argument("--threads", type=int, default=THREADS, help="torch threads of each size's process")
    p.add_argument("--timeout", type=int, default=TIMEOUT_S, help="seconds allowed to each size's process")
    p.add_argument("--markdown-only", action="store_true", help="rewrite scaling.md from scaling.json")
    args = p.parse_args()
    if args.markdown_only:
        payload = json.loads((RESULTS / "scaling.json").read_text())
        (RESULTS / "scaling.md").write_text(to_markdown(payload))
    else:
        payload = run(parse_sizes(args.sizes), args.steps, threads=args.threads, timeout=args.timeout)
        write(payload)
    print((RESULTS / "scaling.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
