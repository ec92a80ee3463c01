"""Does a full-rank item-item component close GraphRec's gap? Score blends under protocol A.

A side study of issue 4's quality target, in the protocols' harness (protocol A: per-user random
80/10/10 with seed 2026, made before the graph; full ranking, training and, at test time,
validation positives masked). It trains the protocol's GraphRec once and fits item-item models on
the same training interactions, then ranks with

* ``graphrec``: the protocol's GraphRec alone;
* ``ease``: EASE on the co-occurrence counts ``X^T X`` (l2 chosen on validation);
* ``ease, time-local``: EASE on co-occurrences weighted by how close in time one user's two
  interactions were, ``G_ij = sum_u exp(-|t_ui - t_uj| / tau)`` (``tau`` and l2 chosen on
  validation; data sets with timestamps only);
* ``item-item adjacency``: the user's degree-normalised history propagated over the symmetric-
  normalised item-item co-occurrence graph, ``r_u D^-1/2 G D^-1/2`` (GF-CF's linear filter), for
  both Gram matrices;
* ``graphrec + X``: ``z(s_graphrec) + beta z(s_X)`` with ``z`` each user's scores standardised over
  the items, ``beta`` chosen on validation.

Every choice is made on validation Recall@20 and test metrics are reported for it. The blends are
not part of GraphRec: they ask whether what GraphRec lacks is the pair-specific signal that a
full-rank item-item matrix carries.

    python benchmarks/hybrid.py [--dataset ml-latest-small] [--dataset hetrec2011-lastfm-2k]

Writes benchmarks/results/hybrid.json and hybrid.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocols  # noqa: E402
from _meta import RESULTS, ROOT, SHARED, run_metadata, write_text_atomic  # noqa: E402

TAUS = (3600.0, 86400.0)  # seconds: one hour, one day
L2S = (50.0, 100.0, 250.0)
BETAS = (0.25, 0.5, 1.0, 2.0)
KS = (10, 20)


def time_local_gram(
    users: np.ndarray, items: np.ndarray, times: np.ndarray, num_items: int, tau: float
) -> torch.Tensor:
    """``G_ij = sum_u exp(-|t_ui - t_uj| / tau)`` over each user's training interactions, float64."""
    gram = torch.zeros(num_items, num_items, dtype=torch.float64)
    order = np.argsort(users, kind="stable")
    u, i, t = users[order], items[order], times[order].astype(np.float64)
    bounds = np.flatnonzero(np.diff(u)) + 1
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(u)], strict=True):
        it = torch.as_tensor(i[a:b])
        tt = torch.as_tensor(t[a:b])
        w = torch.exp(-(tt[:, None] - tt[None, :]).abs() / tau)
        gram.index_put_((it[:, None].expand(-1, it.numel()), it[None, :].expand(it.numel(), -1)), w, accumulate=True)
    return gram


def adjacency_filter(gram: torch.Tensor) -> torch.Tensor:
    """``D^-1/2 G D^-1/2`` with a zero diagonal, float32 (``D`` = diag of ``G``, the item's weight with itself)."""
    inv = gram.diagonal().clamp_min(1e-12).rsqrt()
    a = (gram * inv[:, None] * inv[None, :]).float()
    a.diagonal().zero_()
    return a


def standardise(s: torch.Tensor) -> torch.Tensor:
    """Each row's scores less their mean, over their standard deviation."""
    return (s - s.mean(1, keepdim=True)) / (s.std(1, keepdim=True) + 1e-9)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", action="append", choices=list(protocols.DATASETS))
    p.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    p.add_argument("--markdown-only", action="store_true", help="rewrite hybrid.md from hybrid.json")
    args = p.parse_args()
    out = RESULTS / "hybrid.json"
    results = json.loads(out.read_text()) if out.is_file() else {"datasets": {}}
    if not args.markdown_only:
        for name in args.dataset or list(protocols.DATASETS):
            if not (SHARED / protocols.DATASETS[name]["path"]).is_dir():
                print(f"skip {name}: {SHARED / protocols.DATASETS[name]['path']} is absent", file=sys.stderr)
                continue
            results["datasets"][name] = {**run_dataset(name, Path(args.cache_dir)), "meta": run_metadata()}
            write_text_atomic(out, json.dumps(results, indent=2))
    write_text_atomic(RESULTS / "hybrid.md", to_markdown(results))
    return 0


def run_dataset(name: str, cache: Path) -> dict[str, Any]:  # noqa: C901 - one pass over the candidate scorers
    from graph_rec.data import RecData
    from graph_rec.eval.evaluator import EvalConfig, evaluate
    from graph_rec.models.base import Scorer
    from graph_rec.models.baselines import cooccurrence_gram, ease_weights
    from graph_rec.training import TrainConfig, fit, init_model

    kg, sp, _ = protocols.prepare(name, cache)
    data = RecData(kg, sp)
    nu, ni = data.num_users, data.num_items
    ev = EvalConfig(ks=KS, beyond_accuracy=False)

    def metrics(scores: Callable[[torch.Tensor], torch.Tensor]) -> tuple[dict, dict]:
        s = Scorer(scores)
        return evaluate(s, data, part="valid", config=ev).metrics, evaluate(s, data, part="test", config=ev).metrics

    def all_users(fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return torch.cat([fn(torch.arange(a, min(a + 512, nu))) for a in range(0, nu, 512)])

    t0 = time.perf_counter()
    cfg = TrainConfig.from_dict({**protocols.TRAIN, **protocols.SOFTMAX})
    model = init_model("graphrec", protocols.GRAPHREC, data, seed=cfg.seed)
    fit(model, data, cfg, eval_config=ev)
    with torch.inference_mode():
        graphrec = all_users(model.scorer())
    rows: dict[str, dict[str, Any]] = {}
    valid, test = metrics(lambda us: graphrec[us].clone())
    rows["graphrec"] = {"settings": {}, "valid": valid, "test": test}
    print(f"{name} graphrec valid {valid['recall@20']:.4f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    x = torch.zeros(nu, ni)
    x[data.train.users(), data.train.indices] = 1.0
    history = x / x.sum(1, keepdim=True).clamp_min(1).sqrt()
    grams: dict[str, tuple[Callable[[], torch.Tensor], list[dict[str, Any]]]] = {
        "ease": (lambda: cooccurrence_gram(data.train, torch.device("cpu")), [{}]),
    }
    tr = sp.train
    if "timestamp" in tr.columns:
        uidx = {u: k for k, u in enumerate(data.user_ids)}
        iidx = {i: k for k, i in enumerate(data.item_ids)}
        u, i, t = tr.user_id.map(uidx).to_numpy(), tr.item_id.map(iidx).to_numpy(), tr.timestamp.to_numpy()
        for tau in TAUS:
            grams[f"ease, time-local tau {tau:g} s"] = (
                lambda tau=tau: time_local_gram(u, i, t, ni, tau),
                [{"tau_seconds": tau}],
            )
    candidates: dict[str, list[dict[str, Any]]] = {}
    for label, (make, (extra,)) in grams.items():
        gram = make()
        family = "ease" if label == "ease" else "ease, time-local"
        adj = adjacency_filter(gram)
        lf = history @ adj
        del adj
        valid, test = metrics(lambda us, lf=lf: lf[us].clone())
        filt = "item-item adjacency" + ("" if label == "ease" else ", time-local")
        candidates.setdefault(filt, []).append({"settings": extra, "valid": valid, "test": test, "scores": lf})
        for l2 in L2S:
            b = ease_weights(gram.clone(), l2)
            scores = x @ b.float()
            del b
            valid, test = metrics(lambda us, s=scores: s[us].clone())
            candidates.setdefault(family, []).append(
                {"settings": {**extra, "l2": l2}, "valid": valid, "test": test, "scores": scores}
            )
            print(f"{name} {label} l2 {l2:g} valid {valid['recall@20']:.4f}", file=sys.stderr)
        del gram
    z_graphrec = standardise(graphrec)
    for family, cands in candidates.items():
        best = max(cands, key=lambda c: c["valid"]["recall@20"])
        rows[family] = {k: best[k] for k in ("settings", "valid", "test")}
        rows[family]["grid"] = [{"settings": c["settings"], "valid_recall@20": c["valid"]["recall@20"]} for c in cands]
        z_other = standardise(best["scores"])
        blends = []
        for beta in BETAS:
            valid, test = metrics(lambda us, beta=beta, z_other=z_other: z_graphrec[us] + beta * z_other[us])
            blends.append({"settings": {**best["settings"], "beta": beta}, "valid": valid, "test": test})
        bb = max(blends, key=lambda c: c["valid"]["recall@20"])
        rows[f"graphrec + {family}"] = {
            **bb,
            "grid": [{"settings": c["settings"], "valid_recall@20": c["valid"]["recall@20"]} for c in blends],
        }
        print(f"{name} graphrec + {family} valid {bb['valid']['recall@20']:.4f}", file=sys.stderr)
    proto = json.loads((RESULTS / "protocols.json").read_text())["datasets"].get(name, {}).get("runs", {})
    reference = {m: proto[m]["test"]["recall@20"] for m in ("als", "ease", "graphrec") if m in proto}
    return {
        "protocol": "A: per-user random 80/10/10, seed 2026, full ranking; settings and beta chosen on validation",
        "split": sp.counts(),
        "num_items": ni,
        "rows": rows,
        "protocols_test_recall@20": reference,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def to_markdown(results: dict[str, Any]) -> str:
    lines = [
        "Protocol A (per-user random 80/10/10, seed 2026, full ranking); every setting and blend weight chosen "
        "on validation Recall@20, test reported. z(s): each user's scores standardised over the items. A side "
        "study, not the protocol's table.",
        "",
    ]
    for name, entry in results["datasets"].items():
        ref = entry["protocols_test_recall@20"]
        best = ref.get("als")
        meta = entry.get("meta", {})
        lines += [
            f"**{name}** (best classical baseline of the protocol: als, test Recall@20 {best:.4f}; measured "
            f"{meta.get('date', '?')} on {meta.get('machine', {}).get('cpus', '?')} CPU cores, commit "
            f"{str(meta.get('git_commit', '?'))[:7]}, {entry['seconds']:.0f} s)",
            "",
            "| scorer | chosen settings | valid R@20 | test R@20 | test NDCG@20 | vs als (test R@20) |",
            "|---|---|---|---|---|---|",
        ]
        for label, row in entry["rows"].items():
            r20 = row["test"]["recall@20"]
            vs = f"{(r20 / best - 1) * 100:+.1f}%" if best else "-"
            settings = ", ".join(f"{k} {v:g}" for k, v in row["settings"].items()) or "-"
            lines.append(
                f"| {label} | {settings} | {row['valid']['recall@20']:.4f} | {r20:.4f} | "
                f"{row['test']['ndcg@20']:.4f} | {vs} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
