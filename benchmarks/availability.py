"""Does hiding items that did not exist yet change GraphRec's gap? An availability mask under protocol A.

A side study of issue 4's quality target. MovieLens spans 1996-2018 and protocol A's split is
random per user, so a user active in 1999 is ranked against films first rated in 2015. This study
trains GraphRec, iALS and EASE with the settings protocol A chose on validation (seed 2026, the
protocol's own split: per-user random 80/10/10 made before the graph, full ranking, training and at
test time validation positives masked) and ranks each again with one more mask: items whose first
rating is later than the user's last training interaction are left out. Two dates of an item's
first rating are tried:

* ``training dates``: the earliest of its training interactions (items with none are never
  available): what a system knows;
* ``all dates (oracle)``: the earliest of all its interactions, held-out ones included: as if
  every film's release date were known, an upper bound on what such a mask can give.

The question is whether GraphRec gains more from it than the baselines do (an earlier side
experiment suggested a large gain for GraphRec alone); a mask that helps every model alike does
not move the comparison.

    python benchmarks/availability.py

Writes benchmarks/results/availability.json and availability.md (ml-latest-small only: Last.fm's
listening counts have no timestamps).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocols  # noqa: E402
from _meta import RESULTS, ROOT, SHARED, run_metadata, write_text_atomic  # noqa: E402
from seeds import chosen_settings  # noqa: E402

DATASET = "ml-latest-small"
LABELS = ("graphrec", "als", "ease")
MASKS = ("none", "training dates", "all dates (oracle)")
KS = (10, 20)


def availability(
    first_items: np.ndarray,
    first_times: np.ndarray,
    last_users: np.ndarray,
    last_times: np.ndarray,
    num_users: int,
    num_items: int,
) -> torch.Tensor:
    """``(num_users, num_items)`` bool: item ``i`` was first rated no later than user ``u``'s last interaction.

    ``first_*`` are the interactions that date the items, ``last_*`` those that date the users. An
    item with no dated interaction is never available; a user with none has nothing available.
    """
    first = np.full(num_items, np.inf)
    np.minimum.at(first, first_items, first_times.astype(np.float64))
    last = np.full(num_users, -np.inf)
    np.maximum.at(last, last_users, last_times.astype(np.float64))
    return torch.as_tensor(first[None, :] <= last[:, None])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    p.add_argument("--markdown-only", action="store_true", help="rewrite availability.md from availability.json")
    args = p.parse_args()
    out = RESULTS / "availability.json"
    if args.markdown_only:
        write_text_atomic(RESULTS / "availability.md", to_markdown(json.loads(out.read_text())))
        return 0
    specs = {label: chosen_settings(DATASET, label) for label in LABELS}
    if not (SHARED / protocols.DATASETS[DATASET]["path"]).is_dir():
        print(f"skip: {SHARED / protocols.DATASETS[DATASET]['path']} is absent", file=sys.stderr)
        return 0
    results = {"protocol": __doc__.split("\n\n")[1], "dataset": DATASET, **run_dataset(specs, Path(args.cache_dir))}
    results["meta"] = run_metadata()
    write_text_atomic(out, json.dumps(results, indent=1))
    write_text_atomic(RESULTS / "availability.md", to_markdown(results))
    return 0


def run_dataset(specs: dict[str, dict[str, Any]], cache: Path) -> dict[str, Any]:
    from graph_rec.data import DataConfig, RecData
    from graph_rec.eval.evaluator import EvalConfig, evaluate
    from graph_rec.models.base import Scorer
    from graph_rec.training import TrainConfig, fit, init_model

    t0 = time.perf_counter()
    kg, sp, _ = protocols.prepare(DATASET, cache)
    base = RecData(kg, sp)
    uidx = {u: k for k, u in enumerate(base.user_ids)}
    iidx = {i: k for k, i in enumerate(base.item_ids)}

    def cols(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return df.user_id.map(uidx).to_numpy(), df.item_id.map(iidx).to_numpy(), df.timestamp.to_numpy()

    tu, ti, tt = cols(sp.train)
    _, ai, at = cols(pd.concat([sp.train, sp.valid, sp.test]))
    nu, ni = base.num_users, base.num_items
    masks = {
        "training dates": availability(ti, tt, tu, tt, nu, ni),
        "all dates (oracle)": availability(ai, at, tu, tt, nu, ni),
    }
    ev = EvalConfig(ks=KS, beyond_accuracy=False)
    rows: dict[str, dict[str, Any]] = {}
    for label, spec in specs.items():
        data = RecData(kg, sp, config=DataConfig.from_dict(spec["view"]))
        cfg = TrainConfig.from_dict({**protocols.TRAIN, **spec["train"]})
        model = init_model(spec["model"], spec["settings"], data, seed=cfg.seed)
        fit(model, data, cfg, eval_config=ev)
        rows[label] = {}
        with torch.inference_mode():
            scorer = model.scorer()
            for name in MASKS:
                fn = scorer if name == "none" else _masked(scorer, masks[name])
                rows[label][name] = {
                    part: evaluate(Scorer(fn), data, part=part, config=ev).metrics for part in ("valid", "test")
                }
        print(
            f"{label}: " + ", ".join(f"{m} {rows[label][m]['test']['recall@20']:.4f}" for m in MASKS), file=sys.stderr
        )
    return {
        "split": sp.counts(),
        "available_fraction": {k: round(float(m.float().mean()), 4) for k, m in masks.items()},
        "settings": specs,
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _masked(scorer: Any, mask: torch.Tensor) -> Any:
    def fn(users: torch.Tensor) -> torch.Tensor:
        s = scorer(users)
        # -inf, as the evaluator's own masks: an unavailable item is never listed, even for a user
        # with fewer than k available items (the lowest finite score would count it as shown)
        return s.masked_fill(~mask[users].to(s.device), float("-inf"))

    return fn


def to_markdown(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    frac = results["available_fraction"]
    lines = [
        f"**{results['dataset']}**, protocol A (per-user random 80/10/10, seed 2026, full ranking; each model with "
        f"the settings protocol A chose on validation), ranked again without the items first rated after the "
        f"user's last training interaction (available user-item pairs: {frac['training dates']:.1%} by training "
        f"dates, {frac['all dates (oracle)']:.1%} by all dates). Measured {meta.get('date', '?')} on "
        f"{meta.get('machine', {}).get('cpus', '?')} CPU cores, commit {str(meta.get('git_commit', '?'))[:7]}, "
        f"{results['seconds']:.0f} s.",
        "",
        "| model | mask | valid R@20 | test R@20 | test NDCG@20 | change from no mask (test R@20) |",
        "|---|---|---|---|---|---|",
    ]
    for label, by_mask in results["rows"].items():
        plain = by_mask["none"]["test"]["recall@20"]
        for name, r in by_mask.items():
            r20 = r["test"]["recall@20"]
            lines.append(
                f"| {label} | {name} | {r['valid']['recall@20']:.4f} | {r20:.4f} | {r['test']['ndcg@20']:.4f} | "
                f"{(r20 / plain - 1) * 100:+.1f}% |"
            )
    lines += ["", "GraphRec against iALS (test Recall@20) under each mask:", ""]
    for name in MASKS:
        g = results["rows"]["graphrec"][name]["test"]["recall@20"]
        a = results["rows"]["als"][name]["test"]["recall@20"]
        lines.append(f"- {name}: {g:.4f} against {a:.4f}, {(g / a - 1) * 100:+.1f}%")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
