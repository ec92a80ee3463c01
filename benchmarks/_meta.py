"""Run metadata recorded with every benchmark result: date, commit, versions, machine, threads."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"

PACKAGES = ("graph-rec", "torch", "torch-geometric", "numpy", "pandas", "networkx", "rdflib", "spacy", "transformers")


def latency_ms(times: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / mean in milliseconds of per-call ``times`` in seconds, and their count."""
    import numpy as np

    a = np.asarray(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "n": len(a),
    }


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it, so a stopped run leaves a whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def code_changed(porcelain: str) -> bool:
    """Whether ``git status --porcelain`` output lists a change outside ``benchmarks/results/``.

    The benchmarks write their own results there while they run (a part covering two data sets
    has rewritten its file before it records the second), so those files do not make a run's
    code differ from its commit.
    """
    for line in porcelain.splitlines():
        paths = line[3:].split(" -> ")
        if any(not p.strip('"').startswith("benchmarks/results/") for p in paths if p):
            return True
    return False


def run_metadata() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = code_changed(status)
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", True
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = md.version(p)
        except md.PackageNotFoundError:
            versions[p] = None
    import torch

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
    }


def join_words(words: list[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``: a list for a sentence."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
