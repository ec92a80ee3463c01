"""Quality part of the benchmark suite: graph-rec, its ablations, its baselines and the peers, one table per data set.

Protocol A (benchmarks/protocols.py): ml-latest-small (with the MKR movie KG) and
hetrec2011-lastfm-2k; every interaction a positive; per-user random split 80/10/10 with seed 2026,
made before the graph is built; full ranking over every item with training (and, for test,
validation) positives masked; each model's setting chosen on validation Recall@20, its test
metrics reported. Protocol B (Last.fm, random 8:1:1 per user, full ranking, @10) is the same split
read at @10, next to RecBole-GNN's published LightGCN.

Rows come from two runners that share the split and the evaluator
(:func:`graph_rec.eval.evaluator.evaluate`, beyond-accuracy metrics by item text features):

* graph-rec's models, ablations and in-harness baselines: ``benchmarks/protocols.py`` (run here as a
  subprocess, or, with ``--reuse-protocols``, read from its last results; their date and commit are
  printed with the table);
* the peers (benchmarks/peers.py): PyTorch Geometric's ``LightGCN`` trained as its example trains it,
  ``implicit``'s ALS and BPR, each validated on our validation split with early stopping and a grid,
  then tested. RecBole is not run: :data:`peers.RECBOLE_STATUS` says why.

    python benchmarks/quality.py                                  # both data sets, everything
    python benchmarks/quality.py --dataset ml-latest-small --reuse-protocols
    python benchmarks/quality.py --reuse-protocols --peers implicit_als   # one peer again, others kept

Writes benchmarks/results/quality.json and quality.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, ROOT, SHARED, run_metadata, write_text_atomic  # noqa: E402

KS = (10, 20)
PEER_LABELS = {"pyg_lightgcn": "PyG LightGCN", "implicit_als": "implicit ALS", "implicit_bpr": "implicit BPR"}
CLASSICAL = ("popularity", "itemknn", "ease", "als", "mf", "lightgcn", "implicit_als", "implicit_bpr", "pyg_lightgcn")


def run_peers(
    dataset: str, *, pyg_budget: float, cache: Path, peers: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """Fit ``peers`` (default: every peer) on ``dataset``'s protocol-A split; validation picks the setting.

    Each row carries its own run metadata and load average, so a partial rerun can keep the others.
    """
    import torch
    from peers import GRIDS, PEERS, select
    from protocols import prepare

    from graph_rec.data import RecData
    from graph_rec.eval.evaluator import EvalConfig, evaluate

    kg, sp, _ = prepare(dataset, cache)
    data = RecData(kg, sp)
    text = kg.features.get("item", {}).get("text")
    feats = None if text is None else torch.as_tensor(text)
    rows = []
    for peer in peers or PEERS:
        load = list(os.getloadavg())
        options: dict[str, Any] = {}
        if peer == "pyg_lightgcn":
            options["time_budget_s"] = pyg_budget
        best, grid = select(
            peer, data, grid=GRIDS[peer], eval_config=EvalConfig(ks=KS, beyond_accuracy=False), **options
        )
        with torch.inference_mode():
            test = evaluate(
                best.scorer, data, part="test", config=EvalConfig(ks=KS, beyond_accuracy=True), item_features=feats
            ).metrics
        row = {"model": peer, "result": best.to_dict(), "grid": grid, "test": test}
        row |= {"meta": run_metadata(), "load": load}
        print(
            f"{dataset} {peer}: valid {best.best_valid['recall@20']:.4f} test {test['recall@20']:.4f}", file=sys.stderr
        )
        rows.append(row)
    return rows


def run_protocols(dataset: str) -> None:
    """Run benchmarks/protocols.py for ``dataset`` in a fresh process (it updates protocols.json)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "protocols.py"), "--dataset", dataset]
    subprocess.run(cmd, cwd=ROOT, check=True)


def run(
    datasets: list[str],
    *,
    reuse_protocols: bool = False,
    pyg_budget: float = 300.0,
    peers: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Run the quality part for ``datasets``; returns (and saves) the payload.

    With ``peers``, only those peers are rerun; the data set's other peer rows are kept as they were
    (each with its own run metadata).
    """
    from peers import PEERS
    from protocols import DATASETS

    if peers is not None:
        unknown = sorted(set(peers) - set(PEERS))
        if unknown or not peers:
            raise SystemExit(f"unknown peers {unknown}; peers: {list(PEERS)}")

    path = RESULTS / "quality.json"
    payload = json.loads(path.read_text()) if path.is_file() else {"datasets": {}}
    for name in datasets:
        if name not in DATASETS:
            raise SystemExit(f"unknown data set {name!r}; choices: {list(DATASETS)}")
        if not (SHARED / DATASETS[name]["path"]).is_dir():
            print(f"skip {name}: {SHARED / DATASETS[name]['path']} is absent", file=sys.stderr)
            continue
        old = payload["datasets"].get(name, {})
        if peers is not None and not old:  # checked before any fit
            raise SystemExit(f"{path} has no {name!r}: run every peer for it first (without --peers)")
        load = list(os.getloadavg())
        if not reuse_protocols and peers is None:  # a peers-only rerun reads graph-rec's rows
            run_protocols(name)
        proto = json.loads((RESULTS / "protocols.json").read_text())
        if name not in proto.get("datasets", {}):
            raise SystemExit(f"{RESULTS / 'protocols.json'} has no {name!r}: run without --reuse-protocols")
        rows = run_peers(name, pyg_budget=pyg_budget, cache=ROOT / "data" / "cache", peers=peers)
        if peers is not None:
            rows = merge_peer_rows(old, rows)
        payload["datasets"][name] = {
            "meta": run_metadata(),
            "load": load,
            "protocols_meta": proto["meta"],
            "protocols_reused": reuse_protocols or peers is not None,
            "protocol": proto["datasets"][name],
            "peers": rows,
        }
        write_text_atomic(path, json.dumps(payload, indent=1))
    return payload


def merge_peer_rows(entry: dict[str, Any], rerun: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``entry``'s peer rows with those of ``rerun`` replaced (or added), in :data:`peers.PEERS` order.

    A kept row without its own metadata (written before rows carried it) gets the entry's.
    """
    from peers import PEERS

    by_peer = {r["model"]: {"meta": entry["meta"], "load": entry["load"]} | r for r in entry.get("peers", [])}
    by_peer |= {r["model"]: r for r in rerun}
    return [by_peer[p] for p in PEERS if p in by_peer]


def refresh_protocols(payload: dict[str, Any], proto: dict[str, Any], datasets: list[str]) -> dict[str, Any]:
    """Re-read graph-rec's rows of ``datasets`` from ``proto`` (protocols.json) into ``payload``, peers kept.

    For a rerun of graph-rec's own models (a wider baseline grid, a new setting) that leaves the
    peers' runs as they are; the entry then says its graph-rec rows were read, with their date.
    """
    for name in datasets:
        if name not in payload["datasets"]:
            raise SystemExit(f"{RESULTS / 'quality.json'} has no {name!r}: run the quality part for it first")
        if name not in proto.get("datasets", {}):
            raise SystemExit(f"{RESULTS / 'protocols.json'} has no {name!r}: run benchmarks/protocols.py for it")
        entry = payload["datasets"][name]
        entry.update(protocols_meta=proto["meta"], protocols_reused=True, protocol=proto["datasets"][name])
    return payload


def table_rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model of a data set's entry: kind, label, valid R@20, test metrics, seconds to best."""
    from protocols import ordered_runs

    rows = []
    for m, r in ordered_runs(entry["protocol"]["runs"]):
        kind = "graph-rec" if m == "graphrec" else ("ablation" if m.startswith("graphrec") else "baseline (ours)")
        rows.append(
            {
                "kind": kind,
                "model": m,
                "key": m,
                "valid": r["valid"]["recall@20"],
                "test": r["test"],
                "seconds_to_best": r["seconds_to_best"],
            }
        )
    for p in entry.get("peers", []):
        res = p["result"]
        rows.append(
            {
                "kind": "peer",
                "model": PEER_LABELS.get(p["model"], p["model"]),
                "key": p["model"],
                "valid": res["best_valid"]["recall@20"],
                "test": p["test"],
                "seconds_to_best": res["seconds_to_best"],
            }
        )
    return rows


def best_classical(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The classical baseline (ours or a peer) with the best validation Recall@20."""
    cands = [r for r in rows if r["key"] in CLASSICAL]
    return max(cands, key=lambda r: r["valid"]) if cands else None


def _when(meta: dict[str, Any]) -> str:
    return f"{meta['date'][:16].replace('T', ' ')} UTC, commit {meta['git_commit'][:8]}"


def _rows_measured(entry: dict[str, Any]) -> str:
    """Which graph-rec rows carry their own measurement date (rows rerun since 2026-12-07) and which are older."""
    runs = entry["protocol"].get("runs", {})
    dated = {m: r["measured"] for m, r in runs.items() if "measured" in r}
    if not dated:
        return "rows measured at earlier commits (git log of benchmarks/results/protocols.json)"
    first = min(d["date"] for d in dated.values())
    older = len(runs) - len(dated)
    return f"{_names(sorted(dated))} rerun from {first[:16].replace('T', ' ')} UTC" + (
        f", the other {older} row{'s' * (older != 1)} measured earlier (2026-12-03 to 2026-12-07, git log of "
        "protocols.json)"
        if older
        else ""
    )


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _peer_runs(entry: dict[str, Any]) -> str:
    """When the peers ran, on how many CPUs: one clause per run (rows rerun alone carry their own metadata)."""
    runs: dict[tuple[str, str], list[str]] = {}
    loads: dict[tuple[str, str], float] = {}
    cpus = set()
    for r in entry.get("peers", []):
        meta, load = r.get("meta", entry["meta"]), r.get("load", entry["load"])
        key = (meta["date"], meta["git_commit"])
        runs.setdefault(key, []).append(PEER_LABELS.get(r["model"], r["model"]))
        loads.setdefault(key, load[0])
        cpus.add(meta["machine"]["cpus"])
    if not runs:
        return f"No peer run ({_when(entry['meta'])})"
    on = f" on {_names([str(c) for c in sorted(cpus)])} CPUs"
    if len(runs) == 1:
        (key,) = runs
        return f"Peers run {_when({'date': key[0], 'git_commit': key[1]})} (load {loads[key]:.1f}){on}"
    return (
        "Peers run"
        + on
        + ": "
        + "; ".join(
            f"{_names(names)} {_when({'date': k[0], 'git_commit': k[1]})} (load {loads[k]:.1f})"
            for k, names in sorted(runs.items())
        )
    )


def to_markdown(payload: dict[str, Any]) -> str:
    from peers import RECBOLE_STATUS
    from protocols import RECBOLE_LIGHTGCN_LASTFM

    lines = ["# Quality: graph-rec, its ablations, its baselines and the peers", ""]
    for name, entry in payload["datasets"].items():
        rows = table_rows(entry)
        best = best_classical(rows)
        ref = best["test"]["recall@20"] if best else None
        lines += [
            f"**{name}**, protocol A (per-user random 80/10/10, seed 2026, full ranking over "
            f"{entry['protocol'].get('num_items', 'all')} items, training and validation positives masked; test "
            f"metrics of the setting chosen on validation Recall@20 from each model's grid; GraphRec and its "
            f"ablations run the protocol's one setting, other settings are in the sweep). {_peer_runs(entry)}; "
            f"graph-rec rows {'read from' if entry['protocols_reused'] else 'run in'} benchmarks/protocols.py "
            f"(file written {_when(entry['protocols_meta'])}; {_rows_measured(entry)}).",
            "",
            "| kind | model | valid R@20 | Recall@20 | NDCG@20 | Recall@10 | NDCG@10 | coverage@20 | novelty@20 "
            "| vs best classical (R@20) | s to best |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            t = r["test"]
            rel = f"{(t['recall@20'] / ref - 1) * 100:+.1f}%" if ref else ""
            name_cell = f"**{r['model']}**" if r["kind"] == "graph-rec" else r["model"]
            lines.append(
                f"| {r['kind']} | {name_cell} | {r['valid']:.4f} | {t['recall@20']:.4f} | {t['ndcg@20']:.4f} | "
                f"{t['recall@10']:.4f} | {t['ndcg@10']:.4f} | {t.get('coverage@20', float('nan')):.3f} | "
                f"{t.get('novelty@20', float('nan')):.2f} | {rel} | {r['seconds_to_best']:.1f} |"
            )
        if best:
            ours = next((r for r in rows if r["key"] == "graphrec"), None)
            gap = (ours["test"]["recall@20"] / ref - 1) * 100 if ours else float("nan")
            lines += [
                "",
                f"Best classical baseline by validation: **{best['model']}** (test Recall@20 {ref:.4f}); graph-rec "
                f"{gap:+.1f}% (target: +5%, {'met' if gap >= 5 else 'not met'}).",
            ]
        if name == "hetrec2011-lastfm-2k":
            keys = ("recall@10", "ndcg@10", "mrr@10", "hit@10")
            lines += [
                "",
                "Protocol B (the same random 8:1:1 per-user split read at @10) against RecBole-GNN's published "
                "LightGCN (its own split seed and filtering, so indicative):",
                "",
                "| model | Recall@10 | NDCG@10 | MRR@10 | Hit@10 |",
                "|---|---|---|---|---|",
                "| LightGCN, RecBole-GNN (published) | "
                + " | ".join(f"{RECBOLE_LIGHTGCN_LASTFM[k]:.4f}" for k in keys)
                + " |",
            ]
            for r in rows:
                if r["kind"] != "ablation":
                    lines.append(f"| {r['model']} | " + " | ".join(f"{r['test'][k]:.4f}" for k in keys) + " |")
        lines.append("")
    lines += [f"RecBole: {RECBOLE_STATUS}", ""]
    return "\n".join(lines)


def plot(payload: dict[str, Any], path: Path) -> None:
    """One horizontal bar chart of test Recall@20 per data set, graph-rec highlighted, the best classical marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = list(payload["datasets"].items())
    fig, axes = plt.subplots(1, len(entries), figsize=(6.5 * len(entries), 4.8), squeeze=False)
    colours = {"graph-rec": "tab:red", "ablation": "tab:orange", "baseline (ours)": "tab:blue", "peer": "tab:green"}
    for ax, (name, entry) in zip(axes[0], entries, strict=True):
        rows = sorted(table_rows(entry), key=lambda r: r["test"]["recall@20"])
        ax.barh(
            [r["model"] for r in rows],
            [r["test"]["recall@20"] for r in rows],
            color=[colours[r["kind"]] for r in rows],
        )
        best = best_classical(rows)
        if best:
            ax.axvline(best["test"]["recall@20"], color="grey", linestyle="--", linewidth=1)
            ax.axvline(best["test"]["recall@20"] * 1.05, color="tab:red", linestyle=":", linewidth=1)
        ax.set_title(f"{name}: test Recall@20 (protocol A)")
        ax.set_xlabel("dashed: best classical by validation; dotted: +5%")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    fig.legend(handles, list(colours), loc="lower center", ncol=len(colours))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main() -> int:
    from protocols import DATASETS

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", action="append", choices=list(DATASETS))
    p.add_argument("--reuse-protocols", action="store_true", help="read graph-rec's rows from protocols.json")
    p.add_argument("--pyg-budget", type=float, default=300.0, help="PyG LightGCN's time budget per setting (s)")
    p.add_argument("--markdown-only", action="store_true", help="rewrite quality.md from quality.json")
    p.add_argument(
        "--peers",
        help="comma-separated peers to rerun (e.g. implicit_als); the data set's other peer rows are kept",
    )
    p.add_argument(
        "--refresh-protocols",
        action="store_true",
        help="re-read graph-rec's rows from protocols.json into quality.json without rerunning the peers",
    )
    args = p.parse_args()
    if args.refresh_protocols:
        path = RESULTS / "quality.json"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run the quality part first")
        payload = json.loads(path.read_text())
        proto = json.loads((RESULTS / "protocols.json").read_text())
        refresh_protocols(payload, proto, args.dataset or list(payload["datasets"]))
        write_text_atomic(path, json.dumps(payload, indent=1))
    elif not args.markdown_only:
        peers = tuple(args.peers.split(",")) if args.peers else None
        run(
            args.dataset or list(DATASETS),
            reuse_protocols=args.reuse_protocols,
            pyg_budget=args.pyg_budget,
            peers=peers,
        )
    path = RESULTS / "quality.json"
    if path.is_file():
        payload = json.loads(path.read_text())
        write_text_atomic(RESULTS / "quality.md", to_markdown(payload))
        plot(payload, RESULTS / "quality.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
