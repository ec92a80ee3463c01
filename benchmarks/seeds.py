"""Is protocol A's gap real? GraphRec against the baselines over several split seeds, with intervals.

Protocol A (benchmarks/protocols.py) is one split (seed 2026) of 610 (ml-latest-small) or 1,892
(Last.fm) users, where a difference of 1-2% in mean Recall@20 can be noise. Here the split is
redrawn with other seeds (per-user random 80/10/10, made before the graph is built, full ranking,
training and validation positives masked at test time) and each model is trained with the
settings protocol A chose for it on validation at seed 2026 (early stopping on each split's own
validation). For every seed, the best classical baseline is the one with the highest validation
Recall@20 on that split; each comparison is a paired bootstrap over users
(:func:`graph_rec.eval.stats.paired_bootstrap`, 2,000 resamples, 95% percentile intervals), and
the pooled row resamples users with all their seeds together (a user's rows are not independent).

    python benchmarks/seeds.py                                   # ml-latest-small, seeds 2026,1,2
    python benchmarks/seeds.py --dataset hetrec2011-lastfm-2k --seeds 2026,1,2

Each trained model's per-user test metrics are kept in data/cache/seeds/ (so a stopped run goes
on where it stopped); writes benchmarks/results/seeds.json and seeds.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocols  # noqa: E402
from _meta import RESULTS, ROOT, SHARED, join_words, run_metadata, write_text_atomic  # noqa: E402

from graph_rec.eval.stats import paired_bootstrap  # noqa: E402

#: protocol A's row labels compared here: GraphRec, its ids-only ablation and the two strongest baselines.
LABELS = ("graphrec", "graphrec - text features - knowledge graph", "als", "ease")
IDS_ONLY = LABELS[1]
BASELINES = ("als", "ease")
METRICS = ("recall@20", "ndcg@20")
BOOTSTRAP = {"rounds": 2000, "level": 0.95, "seed": 0}


def chosen_settings(dataset: str, label: str) -> dict[str, Any]:
    """``{"model", "settings", "train", "view"}`` of protocol A's recorded row ``label`` (chosen on validation)."""
    path = RESULTS / "protocols.json"
    runs = json.loads(path.read_text())["datasets"].get(dataset, {}).get("runs", {}) if path.is_file() else {}
    if label not in runs:
        raise SystemExit(f"{path} has no row {label!r} for {dataset}: run benchmarks/protocols.py first")
    r = runs[label]
    return {"model": r["model"], "settings": r["settings"], "train": r["train"], "view": r.get("view", {})}


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def run_cached(dataset: str, seed: int, label: str, kg: Any, sp: Any, cache: Path) -> dict[str, Any]:
    """One model on one split: from the cache when it holds this label's settings, else trained now."""
    from graph_rec.data import DataConfig, RecData, data_digest

    # the settings, the split and graph (their SHA-256) and the code: a cached result of another
    # split, graph or evaluator is not reused
    spec = chosen_settings(dataset, label) | {
        "data_sha256": data_digest(RecData(kg, sp, config=DataConfig())),
        "git_commit": run_metadata()["git_commit"],
    }
    path = cache / "seeds" / dataset / str(seed) / f"{_slug(label)}.json"
    if path.is_file():
        rec = json.loads(path.read_text())
        if rec["spec"] == spec:
            return rec
    t0 = time.perf_counter()
    r = protocols.run_one(
        kg, sp, spec["model"], spec["settings"], spec["train"], spec["view"], (10, 20), keep_per_user=True
    )
    test = r.pop("test_result")
    user_ids = kg.node_ids["user"]
    rec = {
        "spec": spec,
        "valid": r["valid"],
        "test": r["test"],
        "best_epoch": r["best_epoch"],
        "seconds": round(time.perf_counter() - t0, 1),
        "seconds_to_best": r["seconds_to_best"],
        "meta": run_metadata(),
        "per_user": {
            "user_id": [str(user_ids[int(u)]) for u in test.per_user["user_idx"]],
            **{m: test.per_user[m].tolist() for m in METRICS},
        },
    }
    write_text_atomic(path, json.dumps(rec))
    return rec


def paired(a: dict, b: dict, metric: str) -> tuple[list[float], list[float], list[str]]:
    """Two runs' per-user ``metric`` matched by user id (the same split evaluates the same users)."""
    ua, ub = a["per_user"], b["per_user"]
    if sorted(ua["user_id"]) != sorted(ub["user_id"]):
        raise SystemExit("two runs on one split evaluated different users: the cache is stale, delete it")
    pos = {u: i for i, u in enumerate(ub["user_id"])}
    order = [pos[u] for u in ua["user_id"]]
    return ua[metric], [ub[metric][i] for i in order], ua["user_id"]


def summarise(runs: dict[int, dict[str, dict]]) -> dict[str, Any]:
    """Per seed and pooled: each model's test metrics and the paired comparisons."""
    seeds: dict[str, Any] = {}
    pooled: dict[str, dict[str, list]] = {}
    for seed, by_label in runs.items():
        base = max((b for b in BASELINES if b in by_label), key=lambda b: by_label[b]["valid"]["recall@20"])
        comps = {}
        for key, ref in (("graphrec vs best baseline", base), (f"graphrec vs {IDS_ONLY}", IDS_ONLY)):
            if "graphrec" not in by_label or ref not in by_label:
                continue
            comps[key] = {}
            for metric in METRICS:
                a, b, users = paired(by_label[ref], by_label["graphrec"], metric)
                comps[key][metric] = paired_bootstrap(a, b, **BOOTSTRAP).to_dict() | {"baseline": ref}
                acc = pooled.setdefault(f"{key} {metric}", {"a": [], "b": [], "clusters": []})
                acc["a"] += a
                acc["b"] += b
                acc["clusters"] += users
        seeds[str(seed)] = {
            "best_baseline": base,
            "models": {
                label: {
                    "valid_recall@20": r["valid"]["recall@20"],
                    **{f"test_{m}": r["test"][m] for m in METRICS},
                    "best_epoch": r["best_epoch"],
                }
                for label, r in by_label.items()
            },
            "comparisons": comps,
        }
    out = {}
    for key, acc in pooled.items():
        ids = {u: i for i, u in enumerate(sorted(set(acc["clusters"])))}
        clusters = [ids[u] for u in acc["clusters"]]
        out[key] = paired_bootstrap(acc["a"], acc["b"], clusters=clusters, **BOOTSTRAP).to_dict()
    return {"seeds": seeds, "pooled": out}


def to_markdown(results: dict) -> str:
    lines = []
    for name, entry in results["datasets"].items():
        s = entry["summary"]
        seeds = list(s["seeds"])
        runs = entry.get("runs_meta", [entry["meta"]])
        dates = sorted({m["date"][:10] for m in runs})
        commits = sorted({m["git_commit"][:7] for m in runs})
        lines += [
            f"**{name}**, protocol A with the split redrawn (per-user random 80/10/10, split seeds "
            f"{', '.join(seeds)}; full ranking; each model with the settings protocol A chose on validation "
            f"at seed 2026; trained {join_words(dates)} on {entry['meta']['machine']['cpus']} CPU cores, "
            f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}). Test Recall@20 per split; "
            "relative differences with 95% paired bootstrap intervals over users.",
            "",
            "| split seed | graphrec | ids only | als | ease | best baseline (by valid) | graphrec vs it | "
            "graphrec vs ids only |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for seed, row in s["seeds"].items():
            m = row["models"]
            cells = [f"{m[label]['test_recall@20']:.4f}" if label in m else "-" for label in LABELS]
            comp = [
                _rel(row["comparisons"].get(k, {}).get("recall@20"))
                for k in ("graphrec vs best baseline", f"graphrec vs {IDS_ONLY}")
            ]
            lines.append(f"| {seed} | {' | '.join(cells)} | {row['best_baseline']} | {comp[0]} | {comp[1]} |")
        if s["pooled"]:
            n = len(seeds)
            lines += [
                "",
                f"Pooled over the {n} split{'s' if n > 1 else ''} (each user resampled with all its splits):",
                "",
                "| comparison | metric | graphrec | reference | relative [95% interval] | p | users |",
                "|---|---|---|---|---|---|---|",
            ]
            for key, c in s["pooled"].items():
                comparison, metric = key.rsplit(" ", 1)
                comparison = comparison.replace(IDS_ONLY, "ids only")
                lines.append(
                    f"| {comparison} | {metric} | {c['mean_b']:.4f} | {c['mean_a']:.4f} | {_rel(c)} | "
                    f"{c['p_value']:.3f} | {c['clusters']} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def _rel(c: dict | None) -> str:
    if not c:
        return "-"
    lo, hi = c["relative_ci"]
    return f"{c['relative'] * 100:+.1f}% [{lo * 100:+.1f}, {hi * 100:+.1f}]"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-latest-small", choices=list(protocols.DATASETS))
    p.add_argument("--seeds", default="2026,1,2", help="comma-separated split seeds")
    p.add_argument("--models", default=",".join(LABELS), help=f"comma-separated, from {list(LABELS)}")
    p.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    p.add_argument("--markdown-only", action="store_true", help="rewrite seeds.md from seeds.json")
    args = p.parse_args()
    if args.markdown_only:
        write_text_atomic(RESULTS / "seeds.md", to_markdown(json.loads((RESULTS / "seeds.json").read_text())))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    labels = args.models.split(",")
    bad = [lab for lab in labels if lab not in LABELS]
    if bad:
        raise SystemExit(f"unknown model label(s) {bad}; valid: {list(LABELS)}")
    for label in labels:  # every label checked before the hour of training
        chosen_settings(args.dataset, label)
    if not (SHARED / protocols.DATASETS[args.dataset]["path"]).is_dir():
        print(f"skip: {SHARED / protocols.DATASETS[args.dataset]['path']} is absent", file=sys.stderr)
        return 0
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    cache = Path(args.cache_dir)
    runs: dict[int, dict[str, dict]] = {}
    path = RESULTS / "seeds.json"
    for seed in seeds:
        kg, sp, _ = protocols.prepare(args.dataset, cache, seed=seed)
        runs[seed] = {}
        for label in labels:
            r = run_cached(args.dataset, seed, label, kg, sp, cache)
            runs[seed][label] = r
            print(
                f"seed {seed} {label}: valid {r['valid']['recall@20']:.4f} test {r['test']['recall@20']:.4f}",
                file=sys.stderr,
            )
        results = json.loads(path.read_text()) if path.is_file() else {"datasets": {}}
        results["protocol"] = __doc__.split("\n\n")[1]
        results["datasets"][args.dataset] = {
            "meta": run_metadata(),
            "runs_meta": [r["meta"] for by_label in runs.values() for r in by_label.values()],
            "summary": summarise(runs),
        }
        write_text_atomic(path, json.dumps(results, indent=1))
        write_text_atomic(RESULTS / "seeds.md", to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
