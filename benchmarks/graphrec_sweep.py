"""How GraphRec's quality moves with its settings, under protocol A (issue 4's search for the ML target).

Each variant changes one setting of the protocol's GraphRec (benchmarks/protocols.py: d = 128, two
layers, cosine scores, sampled softmax over 1,024 shared uniform negatives at temperature 0.1,
Adam lr 0.002, batches of 2,048) and is trained and evaluated in the same harness: per-user random
split 80/10/10 with seed 2026 made before the graph, full ranking, training (and at test time
validation) positives masked, early stopping on validation Recall@20. A variant is better only if
its validation Recall@20 is; its test figures are shown so that the reader can see how far
validation and test agree on a 610-user data set.

    python benchmarks/graphrec_sweep.py                       # every variant on ml-latest-small
    python benchmarks/graphrec_sweep.py --variants "reference,d = 256"
    python benchmarks/graphrec_sweep.py --dataset hetrec2011-lastfm-2k

Writes benchmarks/results/graphrec_sweep.json and graphrec_sweep.md; rerunning some variants keeps
the data set's other rows (each row says when it was measured and whether another job ran alongside).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocols  # noqa: E402
from _meta import RESULTS, ROOT, SHARED, join_words, run_metadata, write_text_atomic  # noqa: E402

# label -> (model setting overrides, training setting overrides) on top of the protocol's GraphRec
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "reference": ({}, {}),
    "d = 256": ({"embedding_dim": 256}, {}),
    "1 layer": ({"num_layers": 1}, {}),
    "3 layers": ({"num_layers": 3}, {}),
    "temperature 0.07": ({}, {"temperature": 0.07}),
    "temperature 0.12": ({}, {"temperature": 0.12}),
    "lr 0.004": ({}, {"lr": 0.004}),
    "drop scored edge": ({"drop_scored_edge": True}, {}),
    # regularisers the protocol leaves off (iALS wins with strong regularisation)
    "l2 1e-4": ({}, {"l2": 1e-4}),
    "l2 1e-3": ({}, {"l2": 1e-3}),
    "feature dropout 0.2": ({"feature_dropout": 0.2}, {}),
    "id/text alignment 0.1": ({"align_weight": 0.1}, {}),
    "id/text alignment 0.3": ({"align_weight": 0.3}, {}),
    "3 layers + id/text alignment 0.1": ({"num_layers": 3, "align_weight": 0.1}, {}),
    # D^-a A D^-(1-a) instead of D^-1/2 A D^-1/2 (r-AdjNorm): how much popular nodes send and receive
    "norm exponent 0.3": ({"norm_exponent": 0.3}, {}),
    "norm exponent 0.6": ({"norm_exponent": 0.6}, {}),
}


def settings_of(label: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The full ``(model settings, training settings)`` of a variant; an unknown label lists the valid ones."""
    if label not in VARIANTS:
        raise SystemExit(f"unknown variant {label!r}; valid: {list(VARIANTS)}")
    model, train = VARIANTS[label]
    base_model, base_train = protocols.GRIDS["graphrec"][0]
    return {**base_model, **model}, {**base_train, **train}


def to_markdown(results: dict) -> str:
    """One table per data set of ``{"datasets": {name: entry}}``."""
    return "\n".join(dataset_markdown(name, entry) for name, entry in results["datasets"].items())


def dataset_markdown(name: str, payload: dict) -> str:
    ref = payload["runs"].get("reference")
    metas = [r.get("meta", payload["meta"]) for r in payload["runs"].values()] or [payload["meta"]]
    dates = sorted({m["date"][:10] for m in metas})
    cpus = sorted({str(m["machine"]["cpus"]) for m in metas})
    shared = any(r.get("shared_machine", payload.get("shared_machine")) for r in payload["runs"].values())
    lines = [
        f"GraphRec on **{name}**, protocol A (per-user random 80/10/10, seed 2026, full ranking), "
        "one setting changed per row; the reference is the protocol's GraphRec. Measured "
        f"{join_words(dates)} on {' or '.join(cpus)} CPU cores"
        + ("; rows marked * ran next to another job, so their seconds are indicative" if shared else "")
        + ".",
        "",
        "| variant | valid R@20 | vs reference (valid) | test R@20 | test NDCG@20 | best epoch | time to best (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in payload["runs"].items():
        rel = f"{(r['valid'] / ref['valid'] - 1) * 100:+.1f}%" if ref else ""
        star = " *" if r.get("shared_machine", payload.get("shared_machine")) else ""
        lines.append(
            f"| {label} | {r['valid']:.4f} | {rel} | {r['test']:.4f} | {r['test_ndcg']:.4f} | "
            f"{r['best_epoch']} | {r['seconds_to_best']}{star} |"
        )
    if ref:
        best = max(payload["runs"], key=lambda k: payload["runs"][k]["valid"])
        lines.append(f"\nBest by validation: **{best}** (test Recall@20 {payload['runs'][best]['test']:.4f}).")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-latest-small", choices=list(protocols.DATASETS))
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {list(VARIANTS)}")
    p.add_argument("--shared-machine", action="store_true", help="say in the table that another job ran alongside")
    p.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    args = p.parse_args()
    labels = args.variants.split(",")
    chosen = {label: settings_of(label) for label in labels}  # every label checked before the hour of training
    if not (SHARED / protocols.DATASETS[args.dataset]["path"]).is_dir():
        print(f"skip: {SHARED / protocols.DATASETS[args.dataset]['path']} is absent", file=sys.stderr)
        return 0
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    kg, sp, _ = protocols.prepare(args.dataset, Path(args.cache_dir))
    path = RESULTS / "graphrec_sweep.json"
    before = json.loads(path.read_text())["datasets"].get(args.dataset, {}) if path.is_file() else {}
    meta = run_metadata()
    payload: dict[str, Any] = {
        "meta": meta,
        "protocol": __doc__.split("\n\n")[1],
        "runs": earlier_rows(before),  # a partial rerun keeps the other variants' rows
    }
    for label, (model, train) in chosen.items():
        t0, load_start = time.perf_counter(), list(os.getloadavg())
        r = protocols.run_one(kg, sp, "graphrec", model, train, {}, (10, 20))
        payload["runs"][label] = {
            "settings": model,
            "train": r["train"],
            "valid": r["valid"]["recall@20"],
            "test": r["test"]["recall@20"],
            "test_ndcg": r["test"]["ndcg@20"],
            "best_epoch": r["best_epoch"],
            "seconds_to_best": r["seconds_to_best"],
            "seconds": round(time.perf_counter() - t0, 1),
            "meta": meta,
            "shared_machine": args.shared_machine,
            "load_average": [*load_start, *os.getloadavg()],
        }
        print(f"{label}: valid {r['valid']['recall@20']:.4f} test {r['test']['recall@20']:.4f}", file=sys.stderr)
        write(args.dataset, payload)
    return 0


def earlier_rows(entry: dict) -> dict[str, dict]:
    """The rows of a data set's recorded entry that still describe their variant, each carrying its
    own run's metadata (date, commit, versions, machine), machine state and load averages.

    A row whose label is no longer a variant, or whose settings are no longer the variant's (the
    protocol's GraphRec changed since), is dropped with a warning: it must be rerun.
    """
    rows = {}
    for label, r in entry.get("runs", {}).items():
        meta = r.get("meta", entry["meta"])
        if label not in VARIANTS or not _same_settings(r, *settings_of(label)):
            print(f"dropping the recorded row {label!r} ({meta['date']}): not the variant's settings", file=sys.stderr)
            continue
        rows[label] = {
            **r,
            "meta": meta,
            "shared_machine": bool(r.get("shared_machine", entry.get("shared_machine"))),
            "load_average": r.get(
                "load_average", [*entry.get("load_average_start", []), *entry.get("load_average_end", [])]
            ),
        }
    return rows


def _same_settings(row: dict, model: dict[str, Any], train: dict[str, Any]) -> bool:
    """``row`` was trained with ``model`` settings and (among its full training settings) ``train``'s."""
    return row.get("settings") == model and all(row.get("train", {}).get(k) == v for k, v in train.items())


def write(dataset: str, payload: dict) -> None:
    """Record ``dataset``'s entry; the other data sets' entries already in the file are kept."""
    path = RESULTS / "graphrec_sweep.json"
    results = json.loads(path.read_text()) if path.is_file() else {"datasets": {}}
    results["datasets"][dataset] = payload
    write_text_atomic(path, json.dumps(results, indent=1))
    write_text_atomic(RESULTS / "graphrec_sweep.md", to_markdown(results))


if __name__ == "__main__":
    sys.exit(main())
