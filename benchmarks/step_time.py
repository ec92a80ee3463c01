"""GraphRec's training step with the last propagation layer for the batch's rows only, or for every row.

Side by side in one process, on the 1M-interaction synthetic world of ``train_memory.py`` (the
graph of its training part, 384-d unit features on every node): the same batches (2,048 training
pairs and 1,024 shared negatives, drawn by the trainer's own sampler with a fixed seed) go through
``batch_scores`` and the backward pass of the sampled-softmax loss, for

* ``precomputed``: the protocol's GraphRec (features propagated once, id embeddings per step);
* ``general``: the same with learned relation weights (``relation_mode = "weights"``), so every
  step projects every node's features and propagates them,

each with ``Propagation.last_layer_rows`` on (the default) and off. The two settings alternate,
batch by batch, so both see the same load on this shared machine; the first batches are warm-up.
Values and gradients are the same either way (tests/unit/test_graphrec.py); this measures time only.

    python benchmarks/step_time.py [--case synthetic-1m] [--steps 12]

Writes benchmarks/results/step_time.json and step_time.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, run_metadata, write_text_atomic  # noqa: E402
from protocols import GRAPHREC, SOFTMAX  # noqa: E402
from train_memory import CASES, build_world  # noqa: E402

PATHS = {"precomputed": {}, "general": {"relation_mode": "weights"}}
WARMUP = 2


def main() -> int:
    from graph_rec.data import RecData
    from graph_rec.training import TrainConfig, init_model
    from graph_rec.training.losses import softmax_loss
    from graph_rec.training.sampling import epoch_batches, shared_negative_mask

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", default="synthetic-1m", choices=list(CASES))
    p.add_argument("--steps", type=int, default=12, help="timed steps per setting (after warm-up)")
    args = p.parse_args()
    _, kg, sp = build_world(args.case)
    data = RecData(kg, sp)
    cfg = TrainConfig.from_dict(SOFTMAX)
    gen = torch.Generator().manual_seed(2026)
    batches = []
    for users, pos, neg in epoch_batches(data.train, cfg.batch_size, cfg.num_negatives, gen, shared=True):
        batches.append((users, pos, neg, shared_negative_mask(data.train, users, neg)))
        if len(batches) == WARMUP + args.steps:
            break
    rows = []
    load = os.getloadavg()[0]
    for path, extra in PATHS.items():
        model = init_model("graphrec", {**GRAPHREC, **extra}, data, seed=2026)
        assert model.precomputed == (path == "precomputed")
        times: dict[bool, list[float]] = {True: [], False: []}
        nodes = []
        for k, (users, pos, neg, mask) in enumerate(batches):
            for on in (True, False) if k % 2 == 0 else (False, True):
                model.propagation.last_layer_rows = on
                model.zero_grad()
                t0 = time.perf_counter()
                out = model.batch_scores(users, pos, neg)
                loss = softmax_loss(out.pos, out.neg, cfg.temperature, mask)
                loss.backward()
                if k >= WARMUP:
                    times[on].append(time.perf_counter() - t0)
            if k >= WARMUP:
                io = data.graph.node_offsets["item"]
                uo = data.graph.node_offsets["user"]
                nodes.append(torch.unique(torch.cat([users + uo, pos + io, neg + io])).numel())
        ms = {on: statistics.median(t) * 1000 for on, t in times.items()}
        rows.append(
            {
                "path": path,
                "settings": {**GRAPHREC, **extra},
                "step_ms_rows": round(ms[True], 1),
                "step_ms_all_rows": round(ms[False], 1),
                "speedup": round(ms[False] / ms[True], 2),
                "batch_nodes_median": int(statistics.median(nodes)),
                "steps": args.steps,
            }
        )
        print(rows[-1], file=sys.stderr)
    value_grad = time_value_gradient(model.propagation)
    print(value_grad, file=sys.stderr)
    meta = run_metadata()
    payload = {
        "meta": meta,
        "case": args.case,
        "nodes": data.graph.num_nodes,
        "edges": data.graph.num_edges,
        "train_interactions": data.train.nnz,
        "load": [round(load, 2), round(os.getloadavg()[0], 2)],
        "rows": rows,
        "value_gradient": value_grad,
    }
    write_text_atomic(RESULTS / "step_time.json", json.dumps(payload, indent=1))
    write_text_atomic(RESULTS / "step_time.md", to_markdown(payload))
    return 0


def time_value_gradient(prop, reps: int = 5, dim: int = 128) -> dict:
    """The gradient of one product's matrix values, ``<dL/dy_i, x_j>`` for every stored entry, timed
    both ways on this graph's matrix, alternating: ``[nnz, d]`` gathers, and the sampled dense product
    the backward uses (``_sampled_dot``)."""
    from graph_rec.models.propagation import _sampled_dot

    gen = torch.Generator().manual_seed(0)
    grad = torch.randn(prop.num_nodes, dim, generator=gen)
    x = torch.randn(prop.num_nodes, dim, generator=gen)
    ways = {
        "gather": lambda: (grad[prop.row] * x[prop.col]).sum(-1),
        "sampled_addmm": lambda: _sampled_dot(prop.crow, prop.col, grad, x),
    }
    torch.testing.assert_close(ways["gather"](), ways["sampled_addmm"](), rtol=1e-4, atol=1e-4)
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(reps):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ms = {k: round(statistics.median(v) * 1000, 1) for k, v in times.items()}
    return {
        "entries": int(prop.col.numel()),
        "dim": dim,
        "ms": ms,
        "speedup": round(ms["gather"] / ms["sampled_addmm"], 1),
    }


def to_markdown(payload: dict) -> str:
    meta = payload["meta"]
    lines = [
        f"GraphRec training steps (forward and backward of the sampled-softmax loss, batch 2,048, 1,024 shared "
        f"negatives) on {payload['case']} ({payload['train_interactions']:,} training interactions, "
        f"{payload['nodes']:,} nodes, {payload['edges']:,} edges); median of {payload['rows'][0]['steps']} steps "
        f"per setting, the two settings alternating batch by batch in one process. Measured {meta['date']} with "
        f"{meta['torch_threads']} torch threads, load average {payload['load'][0]} at the start and "
        f"{payload['load'][1]} at the end.",
        "",
        "| path | last layer for the batch's rows (ms/step) | last layer for every row (ms/step) | speed-up "
        "| distinct nodes per batch |",
        "|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        lines.append(
            f"| {r['path']} | {r['step_ms_rows']} | {r['step_ms_all_rows']} | {r['speedup']}x | "
            f"{r['batch_nodes_median']:,} of {payload['nodes']:,} |"
        )
    v = payload["value_gradient"]
    lines += [
        "",
        f"The gradient of one product's matrix values (learned relation weights and attention need it; "
        f"{v['entries']:,} entries, d = {v['dim']}, median of 5 alternating runs): "
        f"{v['ms']['sampled_addmm']} ms by `torch.sparse.sampled_addmm`, as the backward computes it, against "
        f"{v['ms']['gather']} ms by gathering both rows of every entry, {v['speedup']}x.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
