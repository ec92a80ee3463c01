"""The benchmark suite: graph-rec against the tools a user would pick instead, on one machine, in one run.

Every part is a benchmark script of this folder, run as its own process (so each part's peak
memory is its own and a failing part does not stop the others), in this order:

=========  =======================================================================================
quality    benchmarks/quality.py: protocols A and B, graph-rec, its ablations, its baselines and
           the peers (PyG LightGCN, implicit ALS/BPR), one table per data set
speed      benchmarks/speed.py: time to a validation Recall@20 against PyG's LightGCN; evaluation
           against a bare matrix product + top-k; ``recommend`` latency and batch throughput
scaling    benchmarks/scaling.py: step time, evaluation time and memory at 100k, 1M, 5M
           synthetic power-law interactions, log-log plots and growth exponents
encoding   benchmarks/text_encoding.py: graph-rec's TextEncoder against plain sentence-transformers
neo4j      benchmarks/neo4j_write.py: write_neo4j against the server's raw ``UNWIND`` throughput
           (a private ArcadeDB Bolt server, started and stopped by the script)
scale-out  benchmarks/scale_out.py --part ddp: 1 and 2 CPU ranks (not in ``all``: issue 8's figures)
=========  =======================================================================================

Each part writes its own JSON (date, git commit, library versions, machine, threads, device,
load average) and Markdown into benchmarks/results/; the suite then writes ``suite.json`` (per
part: command, exit status, seconds, load average before and after, and the targets read back
from the part's JSON) and ``suite.md`` (every target: measured, met or the gap), and splices the
Markdown into README.md between ``<!-- results:NAME -->`` markers (benchmarks/readme.py).

    python benchmarks/suite.py                      # every part (about 1.5 h on 2 CPU cores)
    python benchmarks/suite.py --part speed --part scaling
    python benchmarks/suite.py --part quality --quick   # peers only, graph-rec rows from protocols.json
    python benchmarks/suite.py --summary-only       # rewrite suite.md and the README from the JSON

``--quick`` makes the long parts shorter: quality reuses benchmarks/protocols.py's last results for
graph-rec's rows (their date and commit are printed with them), scaling stops at 1M. A GPU run
(``--device cuda`` where a part supports it) is recorded separately: not measured yet (no GPU was
lent to the issues that built the suite).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, ROOT, run_metadata, write_text_atomic  # noqa: E402

Target = dict[str, Any]  # {"part", "what", "target", "measured", "met": bool | None}


def _parts(quick: bool) -> dict[str, list[str]]:
    """Each part's command line (arguments after the Python interpreter)."""
    return {
        "quality": ["benchmarks/quality.py", *(["--reuse-protocols"] if quick else [])],
        "speed": ["benchmarks/speed.py"],
        "scaling": ["benchmarks/scaling.py", *(["--sizes", "100k,1m"] if quick else [])],
        "encoding": ["benchmarks/text_encoding.py"],
        "neo4j": ["benchmarks/neo4j_write.py"],
        "scale-out": ["benchmarks/scale_out.py", "--part", "ddp"],
    }


DEFAULT = ("quality", "speed", "scaling", "encoding", "neo4j")
OUTPUTS = {  # the results each part writes (JSON first)
    "quality": ["quality.json", "quality.md", "quality.png"],
    "speed": ["speed.json", "speed.md", "speed_time_to_target.png"],
    "scaling": ["scaling.json", "scaling.md", "scaling.png"],
    "encoding": ["text_encoding.json", "text_encoding.md"],
    "neo4j": ["neo4j_write.json", "neo4j_write.md"],
    "scale-out": ["scale_out.json", "scale_out.md"],
}


# ------------------------------------------------------------------------------------ targets
def _t(part: str, what: str, target: str, measured: str, met: bool | None) -> Target:
    return {"part": part, "what": what, "target": target, "measured": measured, "met": met}


def targets_quality(p: dict[str, Any]) -> list[Target]:
    from quality import best_classical, table_rows

    out = []
    for name, entry in p.get("datasets", {}).items():
        rows = table_rows(entry)
        best = best_classical(rows)
        ours = next((r for r in rows if r["key"] == "graphrec"), None)
        if best and ours:
            gap = (ours["test"]["recall@20"] / best["test"]["recall@20"] - 1) * 100
            out.append(
                _t(
                    "quality",
                    f"{name}: test Recall@20 against the best classical baseline ({best['model']})",
                    ">= +5%",
                    f"{gap:+.1f}% ({ours['test']['recall@20']:.4f} vs {best['test']['recall@20']:.4f})",
                    gap >= 5,
                )
            )
    return out


def targets_speed(p: dict[str, Any]) -> list[Target]:
    out = []
    t = p.get("time")
    if t:
        pyg = t["runs"]["pyg_lightgcn"]
        for name, r in t["ratios"].items():
            run = t["runs"][name]
            if r["wall"] is None:
                measured = (
                    f"not reached (best {run['best_valid']['recall@20']:.4f})"
                    if run["reached"] is None
                    else "PyG did not reach it"
                )
            else:
                measured = (
                    f"{r['wall']:.1f}x ({pyg['reached']['seconds']:.1f} s vs {run['reached']['seconds']:.1f} s; "
                    f"{r['train_only']:.1f}x without validation)"
                )
            what = f"time to validation Recall@20 {t['target']:.4f}: PyG LightGCN over graph-rec {name}"
            out.append(_t("speed", what, f">= {r['goal']:g}x", measured, r["met"]))
    e = p.get("eval")
    if e:
        out.append(
            _t(
                "speed",
                f"full-ranking evaluate() of {e['users']:,} users over {e['items']:,} items against matmul + top-k",
                f"<= {e['goal']:g}x",
                f"{e['ratio']:.2f}x ({e['median_seconds']['evaluate'] * 1000:.0f} ms vs "
                f"{e['median_seconds']['floor'] * 1000:.0f} ms)",
                e["met"],
            )
        )
    r = p.get("recommend")
    if r:
        lat, batch = r["latency"], r["batch"]
        measured = f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms"
        if batch:
            best = max(batch.values(), key=lambda b: b["users_per_s"])
            measured += f"; batch {best['users_per_s']:,.0f} users/s"
        out.append(
            _t("speed", f"recommend(k={r['k']}), {r['items']:,} items, seen excluded", "measured", measured, None)
        )
    return out


def targets_scaling(p: dict[str, Any]) -> list[Target]:
    from scaling import COSTS

    sizes = ", ".join(f"{r['interactions']:,}" for r in p.get("rows", []) if "error" not in r)
    out = []
    for key, a in p.get("exponents", {}).items():
        if a is not None:
            what = f"{COSTS[key][0] if key in COSTS else key} as interactions n grow ({sizes})"
            out.append(_t("scaling", what, "stated", f"n^{a:.2f}", None))
    return out


def targets_encoding(p: dict[str, Any]) -> list[Target]:
    th = p.get("throughput", {})
    if "ratio_ours_over_st" not in th:
        return []
    r = th["ratio_ours_over_st"]
    rss = {x["impl"]: x["peak_rss_mb"] for x in p.get("peak_rss", [])}
    return [
        _t(
            "encoding",
            "TextEncoder texts/s over plain sentence-transformers (same model, same vectors)",
            f">= {th.get('target_ratio', 0.9)}x",
            f"{r:.2f}x ({th['texts_per_second']['ours']:.0f} vs {th['texts_per_second']['sentence_transformers']:.0f} "
            f"texts/s), peak RSS {rss['ours']:.0f} vs {rss['st']:.0f} MB",
            r >= th.get("target_ratio", 0.9),
        )
    ]


def targets_neo4j(p: dict[str, Any]) -> list[Target]:
    r = p.get("ratios", {})
    if "write_neo4j_vs_raw_merge" not in r:
        return []
    w = p["write_neo4j"]
    return [
        _t(
            "neo4j",
            "write_neo4j relationships/s over the server's raw UNWIND ... MERGE (and ... CREATE)",
            ">= 1x",
            f"{r['write_neo4j_vs_raw_merge']:.2f}x ({r['write_neo4j_vs_raw_create']:.2f}x over CREATE); "
            f"{w['relationships_per_s']:,.0f} rel/s",
            r["write_neo4j_vs_raw_merge"] >= 1,
        )
    ]


def targets_scale_out(p: dict[str, Any]) -> list[Target]:
    rows = {r["case"]: r for r in p.get("ddp", {}).get("rows", []) if "pairs_per_second" in r}
    out = []
    for sampling in ("full", "sampled"):
        one, two = rows.get(f"{sampling}, 1 process x 2 threads"), rows.get(f"{sampling}, 2 ranks x 1 thread")
        if one and two:
            r = two["pairs_per_second"] / one["pairs_per_second"]
            out.append(
                _t(
                    "scale-out",
                    f"{sampling}: 2 gloo ranks x 1 thread against 1 process x 2 threads, pairs/s",
                    "measured",
                    f"{r:.2f}x ({two['pairs_per_second']:,.0f} vs {one['pairs_per_second']:,.0f})",
                    None,
                )
            )
    return out


TARGETS: dict[str, Callable[[dict[str, Any]], list[Target]]] = {
    "quality": targets_quality,
    "speed": targets_speed,
    "scaling": targets_scaling,
    "encoding": targets_encoding,
    "neo4j": targets_neo4j,
    "scale-out": targets_scale_out,
}


def read_targets(part: str, results: Path = RESULTS) -> tuple[list[Target], str | None]:
    """The targets of ``part`` read from its JSON, and when that JSON was measured (None if absent)."""
    path = results / OUTPUTS[part][0]
    if not path.is_file():
        return [], None
    payload = json.loads(path.read_text())
    when = _measured_at(payload)
    try:
        return TARGETS[part](payload), when
    except (KeyError, TypeError, ValueError) as e:  # a results file of another layout: say so, go on
        what = f"{path.name} could not be read ({type(e).__name__}: {e})"
        return [_t(part, what, "", "", None)], when


def _measured_at(payload: dict[str, Any]) -> str | None:
    metas = [payload.get("meta")] + [v.get("meta") for v in payload.values() if isinstance(v, dict)]
    for entry in payload.get("datasets", {}).values():  # (the protocol rows are refreshed on their own)
        if isinstance(entry, dict):
            metas += [entry.get("meta"), entry.get("protocols_meta")]
    dates = sorted(m["date"] for m in metas if isinstance(m, dict) and "date" in m)
    return dates[-1][:16].replace("T", " ") + " UTC" if dates else None


# ------------------------------------------------------------------------------------ running
def run_part(part: str, quick: bool) -> dict[str, Any]:
    cmd = [sys.executable, *_parts(quick)[part]]
    load = list(os.getloadavg())
    t0 = time.perf_counter()
    print(f"suite: {part}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    p = subprocess.run(cmd, cwd=ROOT)
    return {
        "command": " ".join(["python", *cmd[1:]]),
        "returncode": p.returncode,
        "seconds": round(time.perf_counter() - t0, 1),
        "load_before": load,
        "load_after": list(os.getloadavg()),
        "outputs": [f"benchmarks/results/{o}" for o in OUTPUTS[part]],
    }


def summary_markdown(suite: dict[str, Any], results: Path = RESULTS) -> str:
    lines = [
        "# Benchmark suite: targets",
        "",
        "Every target of the suite, read back from each part's results (each part's own file gives the "
        "protocol, machine, commit and every sample). `met`: yes / **no** / - (a measurement with no target).",
        "",
        "| part | what | target | measured | met | measured at |",
        "|---|---|---|---|---|---|",
    ]
    for part in OUTPUTS:
        targets, when = read_targets(part, results)
        for t in targets:
            met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
            lines.append(f"| {part} | {t['what']} | {t['target']} | {t['measured']} | {met} | {when} |")
    runs = suite.get("parts", {})
    if runs:
        lines += ["", "Last suite run of each part:", "", "| part | command | exit | seconds | load before |"]
        lines.append("|---|---|---|---|---|")
        for part, r in runs.items():
            lines.append(
                f"| {part} | `{r['command']}` | {r['returncode']} | {r['seconds']:.0f} | {r['load_before'][0]:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", action="append", choices=[*OUTPUTS, "all"], help="repeatable; default: all")
    p.add_argument("--quick", action="store_true", help="shorter long parts (see the module docstring)")
    p.add_argument("--summary-only", action="store_true", help="rewrite suite.md and the README only")
    p.add_argument("--no-readme", action="store_true", help="do not splice the results into README.md")
    args = p.parse_args()
    parts = list(DEFAULT) if not args.part or "all" in args.part else args.part
    path = RESULTS / "suite.json"
    suite = json.loads(path.read_text()) if path.is_file() else {}
    failed = []
    if not args.summary_only:
        for part in parts:
            r = run_part(part, args.quick)
            suite.setdefault("parts", {})[part] = r
            suite["meta"] = run_metadata()
            if r["returncode"] != 0:
                failed.append(part)
            write_text_atomic(path, json.dumps(suite, indent=1))
    for part in OUTPUTS:
        targets, when = read_targets(part)
        suite.setdefault("targets", {})[part] = {"measured_at": when, "targets": targets}
    write_text_atomic(path, json.dumps(suite, indent=1))
    write_text_atomic(RESULTS / "suite.md", summary_markdown(suite))
    if not args.no_readme:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme.py")], cwd=ROOT, check=True)
    if failed:
        print(f"suite: failed parts: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
