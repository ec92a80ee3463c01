"""Does scoring by a user's sessions (several interests) instead of one user vector lift a factor model?

A side study of issue 4's quality target, in the protocols' harness (protocol A: per-user random
80/10/10 with seed 2026, made before the graph; full ranking, training and, at test time,
validation positives masked). Time-local EASE (benchmarks/hybrid.py) showed that on
ml-latest-small two items one user rated minutes apart say much more about each other than two
rated a year apart. A factor model scores with one vector per user; this study asks whether one
vector per *session* recovers that signal before GraphRec is given session-level readouts.

It fits the protocol's iALS (the settings protocol A chose on validation, read from
benchmarks/results/protocols.json), cuts each user's training interactions into sessions at gaps
longer than ``gap``, folds each session in as a user of its own with the fixed item factors (iALS's
exact normal equations: ``(Y^T Y + (alpha - 1) sum_{j in s} y_j y_j^T + lambda I) p_s = alpha sum_{j
in s} y_j``, solved by Cholesky), and ranks with

* ``sessions``: ``tau logsumexp_s (p_s . y_i / tau)`` over the user's sessions (a soft maximum: an
  item scores by the session it fits best);
* ``als + sessions``: ``z(s_als) + beta z(s_sessions)``, ``z`` each user's scores standardised.

``gap``, ``tau`` and ``beta`` are chosen on validation Recall@20; test is reported. Data sets with
timestamps only (ml-latest-small; Last.fm's listening counts have none).

    python benchmarks/sessions.py

Writes benchmarks/results/sessions.json and sessions.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import protocols  # noqa: E402
from _meta import RESULTS, ROOT, SHARED, run_metadata, write_text_atomic  # noqa: E402
from hybrid import standardise  # noqa: E402

GAPS = (3600, 86400)  # seconds: a new session after an hour, after a day without an interaction
TAUS = (0.05, 0.1, 0.2, 0.5)
BETAS = (0.5, 1.0, 2.0)
CHUNK = 100  # sessions solved at once: CHUNK x d x d floats


def session_ids(users: np.ndarray, times: np.ndarray, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """``(order, session)``: the interactions sorted by user then time, and each one's session number
    (a new session at a new user or after more than ``gap`` seconds)."""
    order = np.lexsort((times, users))
    u, t = users[order], times[order]
    new = np.r_[True, (u[1:] != u[:-1]) | (t[1:] - t[:-1] > gap)]
    return order, np.cumsum(new) - 1


def fold_in(
    items: torch.Tensor, session: torch.Tensor, num_sessions: int, y: torch.Tensor, *, reg: float, alpha: float
) -> torch.Tensor:
    """Each session's iALS factors ``[num_sessions, d]`` against fixed item factors ``y``, solved exactly."""
    d = y.shape[1]
    gram = y.t() @ y + reg * torch.eye(d, dtype=y.dtype)
    out = torch.zeros(num_sessions, d, dtype=y.dtype)
    for a in range(0, num_sessions, CHUNK):
        b = min(a + CHUNK, num_sessions)
        mask = (session >= a) & (session < b)
        local, yi = session[mask] - a, y[items[mask]]
        lhs = gram.expand(b - a, d, d).clone()
        lhs.index_add_(0, local, (alpha - 1.0) * yi[:, :, None] * yi[:, None, :])
        rhs = torch.zeros(b - a, d, dtype=y.dtype).index_add_(0, local, alpha * yi)
        out[a:b] = torch.cholesky_solve(rhs[:, :, None], torch.linalg.cholesky(lhs))[:, :, 0]
    return out


def soft_max_over_sessions(scores: torch.Tensor, owner: torch.Tensor, num_users: int, tau: float) -> torch.Tensor:
    """``[num_users, num_items]``: ``tau logsumexp`` of ``scores / tau`` over each user's sessions' rows."""
    z = scores / tau
    top = torch.full((num_users, z.shape[1]), -torch.inf).scatter_reduce(
        0, owner[:, None].expand_as(z), z, "amax", include_self=True
    )
    total = torch.zeros_like(top).index_add_(0, owner, torch.exp(z - top[owner]))
    return tau * (top + total.log())


def run_dataset(name: str, cache: Path) -> dict[str, Any]:
    from graph_rec.data import RecData
    from graph_rec.eval.evaluator import EvalConfig, evaluate
    from graph_rec.models.base import Scorer
    from graph_rec.training import TrainConfig, fit, init_model

    proto = json.loads((RESULTS / "protocols.json").read_text())["datasets"][name]["runs"]["als"]
    settings = proto["settings"]
    t0 = time.perf_counter()
    kg, sp, _ = protocols.prepare(name, cache)
    data = RecData(kg, sp)
    nu = data.num_users
    ev = EvalConfig(ks=(10, 20), beyond_accuracy=False)

    def metrics(scores: torch.Tensor) -> tuple[dict, dict]:
        s = Scorer(lambda us: scores[us].clone())
        return evaluate(s, data, part="valid", config=ev).metrics, evaluate(s, data, part="test", config=ev).metrics

    als = init_model("als", settings, data, seed=protocols.TRAIN["seed"])
    fit(als, data, TrainConfig.from_dict({**protocols.TRAIN}), eval_config=ev)
    y = als.item_factors
    base = als.user_factors @ y.t()
    valid, test = metrics(base)
    rows: dict[str, Any] = {"als": {"settings": settings, "valid": valid, "test": test}}
    print(f"{name} als valid {valid['recall@20']:.4f} test {test['recall@20']:.4f}", file=sys.stderr)

    tr = sp.train
    uidx = {u: k for k, u in enumerate(data.user_ids)}
    iidx = {i: k for k, i in enumerate(data.item_ids)}
    users, items = tr.user_id.map(uidx).to_numpy(), tr.item_id.map(iidx).to_numpy()
    times = tr.timestamp.to_numpy().astype(np.int64)
    z_base = standardise(base)
    alone, blends = [], []
    for gap in GAPS:
        order, session = session_ids(users, times, gap)
        ns = int(session[-1]) + 1
        owner = torch.zeros(ns, dtype=torch.long)
        owner[torch.as_tensor(session)] = torch.as_tensor(users[order])
        p = fold_in(
            torch.as_tensor(items[order]),
            torch.as_tensor(session),
            ns,
            y,
            reg=settings["regularization"],
            alpha=settings["alpha"],
        )
        per_session = p @ y.t()
        print(f"{name} gap {gap} s: {ns} sessions", file=sys.stderr)
        for tau in TAUS:
            scores = soft_max_over_sessions(per_session, owner, nu, tau)
            sett = {"gap_seconds": gap, "sessions": ns, "tau": tau}
            valid, test = metrics(scores)
            alone.append({"settings": sett, "valid": valid, "test": test})
            z = standardise(scores)
            for beta in BETAS:
                valid, test = metrics(z_base + beta * z)
                blends.append({"settings": {**sett, "beta": beta}, "valid": valid, "test": test})
            print(f"{name} gap {gap} tau {tau}: valid {alone[-1]['valid']['recall@20']:.4f}", file=sys.stderr)
        del per_session
    for label, cands in (("sessions", alone), ("als + sessions", blends)):
        best = max(cands, key=lambda c: c["valid"]["recall@20"])
        rows[label] = {
            **best,
            "grid": [{"settings": c["settings"], "valid_recall@20": c["valid"]["recall@20"]} for c in cands],
        }
    return {
        "protocol": "A: per-user random 80/10/10, seed 2026, full ranking; gap, tau and beta chosen on validation",
        "split": sp.counts(),
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def to_markdown(results: dict[str, Any]) -> str:
    lines = [
        "Protocol A (per-user random 80/10/10, seed 2026, full ranking); the protocol's iALS, and each user "
        "scored by the soft maximum over their training sessions' folded-in factors; gap, tau and beta chosen "
        "on validation Recall@20, test reported. A side study, not the protocol's table.",
        "",
    ]
    for name, entry in results["datasets"].items():
        meta = entry.get("meta", {})
        best = entry["rows"]["als"]["test"]["recall@20"]
        lines += [
            f"**{name}** (measured {meta.get('date', '?')} on {meta.get('machine', {}).get('cpus', '?')} CPU "
            f"cores, commit {str(meta.get('git_commit', '?'))[:7]}, {entry['seconds']:.0f} s)",
            "",
            "| scorer | chosen settings | valid R@20 | test R@20 | test NDCG@20 | vs als (test R@20) |",
            "|---|---|---|---|---|---|",
        ]
        for label, row in entry["rows"].items():
            r20 = row["test"]["recall@20"]
            settings = ", ".join(f"{k} {v:g}" for k, v in row["settings"].items())
            lines.append(
                f"| {label} | {settings} | {row['valid']['recall@20']:.4f} | {r20:.4f} | "
                f"{row['test']['ndcg@20']:.4f} | {(r20 / best - 1) * 100:+.1f}% |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    p.add_argument("--markdown-only", action="store_true", help="rewrite sessions.md from sessions.json")
    args = p.parse_args()
    out = RESULTS / "sessions.json"
    results = json.loads(out.read_text()) if out.is_file() else {"datasets": {}}
    name = "ml-latest-small"
    if not args.markdown_only:
        if not (SHARED / protocols.DATASETS[name]["path"]).is_dir():
            print(f"skip {name}: {SHARED / protocols.DATASETS[name]['path']} is absent", file=sys.stderr)
        else:
            results["datasets"][name] = {**run_dataset(name, Path(args.cache_dir)), "meta": run_metadata()}
            write_text_atomic(out, json.dumps(results, indent=2))
    write_text_atomic(RESULTS / "sessions.md", to_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
