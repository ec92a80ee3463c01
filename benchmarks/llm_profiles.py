"""Do language-model profiles make better item text features? SmolLM2-135M profiles on MovieLens.

LLMRec / RLMRec embed a profile that an LLM writes for each item. This measures whether that helps
with the small local model that loads offline here (SmolLM2-135M-Instruct, Q4_1 GGUF, through
:class:`~kg_builders.builders.llm_profiles.ProfileWriter`), on a seeded sample of
``ml-latest-small`` items (``--items``, default 150; items without genres are left out).

Texts per item, each encoded with :class:`~kg_builders.builders.text_encoder.TextEncoder`
(all-MiniLM-L6-v2, mean pooling, L2-normalised):

- ``plain``: ``"Title (Year) | Genre1, Genre2"``, the usual item text;
- ``profile``: the profile SmolLM2 writes from the plain text (greedy, ``--max-new-tokens``, default 32, with the
movie prompt :data:`ITEM_TEMPLATE`);
- ``plain + profile (text)``: ``"<plain> | <profile>"`` encoded as one text;
- ``plain + profile (vectors)``: the two vectors concatenated and scaled by ``1/sqrt(2)`` (cosine
  = the mean of the two cosines).

With ``--title-only`` (default on) the same is repeated with the genres hidden: ``"Title (Year)"``
and a profile written from that alone, which asks whether the model *adds* knowledge about the
titles (the plain text above names the genres, so its score is partly by construction).

Score: for each item, its ``k`` nearest neighbours by cosine among the sample (itself excluded);
the mean number of genres a neighbour shares with it, averaged over items. Random: the mean over
all other sampled items (the exact expectation for ``k`` uniformly random neighbours). Paired
differences between variants get a 95% bootstrap interval over items (seeded).

Generation is bounded by ``--budget-s`` seconds in all (default 540): profiles are generated in
chunks and, when the budget runs out, the experiment is evaluated on the items that have a
profile (the number is reported). Profiles are cached under ``data/cache/llm_profiles`` (git-ignored),
so a second run only encodes.

    python benchmarks/llm_profiles.py [--items 150] [--k 10] [--seed 0] [--max-new-tokens 32] [--budget-s 540]

Writes benchmarks/results/llm_profiles.json and llm_profiles.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, ROOT, SHARED, run_metadata  # noqa: E402

from graph_rec.eval.stats import paired_bootstrap  # noqa: E402
from kg_builders._files import atomic_file  # noqa: E402
from kg_builders.builders.llm_profiles import ProfileWriter  # noqa: E402
from kg_builders.builders.text_encoder import TextEncoder  # noqa: E402
from kg_builders.sources.movielens import load_movielens  # noqa: E402

logger = logging.getLogger("benchmarks.llm_profiles")

#: a short, movie-specific prompt (the prompt is re-read for every profile: its length costs time)
ITEM_TEMPLATE = "Describe the movie {text} in one sentence: its story, mood and audience."


def sample_items(data: Path, *, n: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of ``n`` items with at least one genre: id, title, year, genres."""
    items = load_movielens(data).items
    items = items[items["genres"].map(len) > 0].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(items), size=min(n, len(items)), replace=False))
    out = []
    for r in rows:
        row = items.iloc[int(r)]
        year = None if pd.isna(row["year"]) else int(row["year"])
        out.append({"item_id": row["item_id"], "title": row["title"], "year": year, "genres": tuple(row["genres"])})
    return out


def title_year(item: dict[str, Any]) -> str:
    return f"{item['title']} ({item['year']})" if item["year"] is not None else item["title"]


def plain_text(item: dict[str, Any]) -> str:
    return f"{title_year(item)} | {', '.join(item['genres'])}"


def neighbour_genres(vectors: np.ndarray, genres: list[frozenset], *, k: int) -> np.ndarray:
    """Per item: the mean number of genres shared with its ``k`` nearest neighbours by cosine ``[n]``."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nn = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.array([np.mean([len(genres[i] & genres[j]) for j in nn[i]]) for i in range(len(genres))])


def random_genres(genres: list[frozenset]) -> np.ndarray:
    """Per item: the mean number of genres shared with every other item (random neighbours' expectation)."""
    n = len(genres)
    return np.array([np.mean([len(genres[i] & genres[j]) for j in range(n) if j != i]) for i in range(n)])


def generate_bounded(
    writer: ProfileWriter, texts: list[str], *, cache: Path, deadline: float, chunk: int
) -> tuple[list[str | None], dict[str, Any]]:
    """Profiles for ``texts`` in chunks until ``deadline`` (``time.perf_counter()``); ``None`` past it."""
    out: list[str | None] = [None] * len(texts)
    hits = generated = corrupt = 0
    t0 = time.perf_counter()
    for s in range(0, len(texts), chunk):
        if time.perf_counter() > deadline:
            logger.warning("generation budget spent after %d of %d profiles", s, len(texts))
            break
        part, stats = writer.write_with_stats(texts[s : s + chunk], kind="item", cache_dir=cache)
        out[s : s + chunk] = part
        hits, generated, corrupt = hits + stats.hits, generated + stats.generated, corrupt + stats.corrupt
        logger.info("profiles %d/%d (%d generated so far)", min(s + chunk, len(texts)), len(texts), generated)
    seconds = time.perf_counter() - t0
    info = {
        "requested": len(texts),
        "written": sum(p is not None for p in out),
        "cache_hits": hits,
        "generated": generated,
        "corrupt_cache_files": corrupt,
        "seconds": round(seconds, 1),
    }
    return out, info


def evaluate(
    encoder: TextEncoder, texts: dict[str, list[str]], genres: list[frozenset], *, k: int, seed: int
) -> dict[str, Any]:
    """Neighbour-genre scores of each text variant (and the vector concatenation) vs random."""
    vecs = {name: encoder.encode(t).vectors for name, t in texts.items()}
    names = list(texts)
    base, prof = names[0], names[1]
    vecs[f"{base} + {prof} (vectors)"] = np.concatenate([vecs[base], vecs[prof]], axis=1) / np.sqrt(2.0)
    rand = random_genres(genres)
    per_item = {name: neighbour_genres(v, genres, k=k) for name, v in vecs.items()}
    rows = []
    for name, scores in per_item.items():
        diff = scores - per_item[base]
        rows.append(
            {
                "variant": name,
                "shared_genres_at_k": round(float(scores.mean()), 4),
                "random": round(float(rand.mean()), 4),
                "lift_over_random": round(float(scores.mean() / rand.mean()), 3),
                f"minus_{base}": round(float(diff.mean()), 4),
                f"minus_{base}_ci95": [
                    round(x, 4) for x in paired_bootstrap(per_item[base], scores, seed=seed).difference_ci
                ],
            }
        )
    return {"items": len(genres), "baseline": base, "rows": rows}


def run(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.perf_counter()
    items = sample_items(args.data, n=args.items, seed=args.seed)
    writer = ProfileWriter.smollm2(
        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, item_template=ITEM_TEMPLATE
    )
    encoder = TextEncoder()
    deadline = time.perf_counter() + args.budget_s
    cache = Path(args.cache)
    loadavg_before = os.getloadavg()

    experiments = []
    plans = [("with genres", plain_text, "plain")]
    if args.title_only:
        plans.append(("title only", title_year, "title (year)"))
    examples = []
    for label, make, base in plans:
        inputs = [make(it) for it in items]
        profiles, gen = generate_bounded(writer, inputs, cache=cache, deadline=deadline, chunk=args.batch_size)
        keep = [i for i, p in enumerate(profiles) if p]
        if len(keep) < 2 * args.k:
            logger.warning("%s: only %d profiles within the budget; not evaluated", label, len(keep))
            experiments.append({"experiment": label, "generation": gen, "evaluated": False})
            continue
        genres = [frozenset(items[i]["genres"]) for i in keep]
        texts = {
            base: [inputs[i] for i in keep],
            "profile": [profiles[i] for i in keep],
            f"{base} + profile (text)": [f"{inputs[i]} | {profiles[i]}" for i in keep],
        }
        res = evaluate(encoder, texts, genres, k=args.k, seed=args.seed)
        experiments.append({"experiment": label, "generation": gen, "evaluated": True, **res})
        examples += [{"experiment": label, "input": inputs[i], "profile": profiles[i]} for i in keep[:5]]
    return {
        "benchmark": "llm_profiles",
        "meta": run_metadata(),
        "loadavg_before": loadavg_before,
        "loadavg_after": os.getloadavg(),
        "seconds": round(time.perf_counter() - t_start, 1),
        "data": "ml-latest-small",
        "sample": {
            "items": len(items),
            "seed": args.seed,
            "rule": "uniform without replacement among items with genres",
        },
        # the model folder as its package name, not this machine's path
        "generator": {"fingerprint": writer.fingerprint(), **writer.settings(), "model": Path(writer.model).name},
        "encoder": {"fingerprint": encoder.fingerprint(), **encoder.settings()},
        "k": args.k,
        "budget_s": args.budget_s,
        "experiments": experiments,
        "examples": examples,
    }


def verdict(exp: dict[str, Any]) -> str:
    rows = {r["variant"]: r for r in exp["rows"]}
    base = exp["baseline"]
    key = f"minus_{base}"
    best = max(exp["rows"], key=lambda r: r["shared_genres_at_k"])
    parts = [f"best: `{best['variant']}` ({best['shared_genres_at_k']:.3f} shared genres at k)"]
    for name, r in rows.items():
        if name == base:
            continue
        lo, hi = r[f"{key}_ci95"]
        if lo > 0:
            word = "better than"
        elif hi < 0:
            word = "worse than"
        else:
            word = "not distinguishable from"
        parts.append(f"`{name}` is {word} `{base}` ({r[key]:+.3f}, 95% CI {lo:+.3f} to {hi:+.3f})")
    return "; ".join(parts) + "."


def to_markdown(doc: dict[str, Any]) -> str:
    m = doc["meta"]
    g = doc["generator"]
    lines = [
        "# LLM-written item profiles as text features (SmolLM2-135M on ml-latest-small)",
        "",
        f"{m['date']} on {m['machine']['platform']} ({m['machine']['cpus']} CPUs, torch threads {m['torch_threads']}, "
        f"load average before {doc['loadavg_before'][0]:.1f}); commit {m['git_commit'][:12]}"
        f"{' (dirty)' if m['git_dirty'] else ''}; total {doc['seconds']:.0f} s.",
        "",
        f"Generator: SmolLM2-135M-Instruct `{g['gguf_file']}` (greedy, max_new_tokens {g['max_new_tokens']}, "
        f"batch {g['batch_size']}); item prompt: `{g['item_template']!r}`. Encoder: `{doc['encoder']['model']}` "
        f"({doc['encoder']['pooling']} pooling, L2-normalised).",
        "",
        f"Sample: {doc['sample']['items']} items (seed {doc['sample']['seed']}, {doc['sample']['rule']}); "
        f"k = {doc['k']} nearest neighbours by cosine within the sample. Score: mean number of genres a "
        "neighbour shares with the item; random = the mean over all other sampled items. The CI is a 95% "
        "bootstrap interval (items resampled) of the per-item difference to the baseline text.",
        "",
    ]
    for exp in doc["experiments"]:
        gen = exp["generation"]
        lines += [
            f"## {exp['experiment']}",
            "",
            f"Profiles: {gen['written']}/{gen['requested']} ({gen['generated']} generated, {gen['cache_hits']} "
            f"from the cache, {gen['seconds']:.0f} s).",
            "",
        ]
        if not exp["evaluated"]:
            lines += ["Not evaluated: too few profiles within the time budget.", ""]
            continue
        base = exp["baseline"]
        lines += [
            f"| text | shared genres @{doc['k']} | random | lift | minus `{base}` (95% CI) |",
            "|---|---:|---:|---:|---|",
        ]
        for r in exp["rows"]:
            lo, hi = r[f"minus_{base}_ci95"]
            lines.append(
                f"| {r['variant']} | {r['shared_genres_at_k']:.3f} | {r['random']:.3f} | {r['lift_over_random']:.2f} | "
                f"{r[f'minus_{base}']:+.3f} ({lo:+.3f}, {hi:+.3f}) |"
            )
        lines += ["", f"Verdict ({exp['items']} items): {verdict(exp)}", ""]
    lines += ["## Examples", ""]
    for ex in doc["examples"]:
        lines.append(f"- ({ex['experiment']}) `{ex['input']}` -> {ex['profile']}")
    lines += [
        "",
        "Notes:",
        "",
        "- The plain text names the genres, so its neighbour-genre score is partly by construction; the "
        "title-only experiment hides them and asks whether the language model adds what it knows about titles.",
        "- A 135M-parameter model knows little about specific films; hosted LLMs (as in LLMRec / RLMRec) "
        "may behave differently. This measures the offline model only.",
        "- Generation stops at the time budget; a later run finds the profiles written so far in the cache "
        "and continues, so 'from the cache' counts profiles written by an earlier, bounded run with the same "
        "model, settings and prompt.",
        "- Timings were taken on a 2-core machine shared with other jobs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=SHARED / "ml-latest-small")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--cache", type=Path, default=ROOT / "data" / "cache" / "llm_profiles")
    p.add_argument("--items", type=int, default=150)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--budget-s", type=float, default=540.0, help="seconds for generation, all experiments together")
    p.add_argument("--title-only", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (args.data / "movies.csv").is_file():
        logger.error("ml-latest-small not found at %s", args.data)
        return 2
    doc = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / "llm_profiles.json", "w") as fh:
        json.dump(doc, fh, indent=2)
    with atomic_file(args.out / "llm_profiles.md", "w") as fh:
        fh.write(to_markdown(doc))
    logger.info("wrote %s", args.out / "llm_profiles.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
