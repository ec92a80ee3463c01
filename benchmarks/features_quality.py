"""Do the text features mean something? Nearest neighbours by text cosine vs random nodes.

For each data set the graph is built as the CLI builds it (random 8:1:1 split per user, seed 0;
the standard builders, with tags and genres, from the training tables only), and every node gets
text features from :class:`~kg_builders.builders.text_features.TextFeatureBuilder` with the
default encoder (all-MiniLM-L6-v2, mean pooling, L2-normalised, max 256 tokens).

Protocol, per (data set, node type, label):

- candidates: the nodes of the type with a feature (mask True) and a non-empty label set;
- queries: ``--queries`` candidates drawn without replacement (``numpy.random.default_rng(seed)``);
- text neighbours: the ``k`` other candidates with the highest cosine similarity to the query;
- random neighbours: ``k`` other candidates drawn uniformly without replacement (same generator);
- score: the mean over the ``k`` neighbours of ``|labels(query) & labels(neighbour)|``, averaged
  over queries; the margin is text minus random, with a 95% interval (1.96 standard errors of
  the per-query differences). Jaccard overlap and the share of neighbours with at least one
  shared label are reported too.

Labels: ML items: their MovieLens genres; Last.fm items: the tags of their training tag
assignments (``tagged_with`` edges); users: the items of their training interactions.

Variants: ``default`` encodes the default templates (an item's text lists its genres and top
tags, so genre overlap is partly by construction); ``title only`` encodes just ``{title}`` (plus
the year on MovieLens), hiding genres and tags, so a margin there comes from what the language
model knows about the titles.

    python benchmarks/features_quality.py [--queries 1000] [--k 10] [--seed 0] [--cache DIR]

Writes benchmarks/results/features_quality.json and features_quality.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, ROOT, SHARED, run_metadata  # noqa: E402

from kg_builders._files import atomic_file  # noqa: E402
from kg_builders.builders.node_text import NodeTextTemplates  # noqa: E402
from kg_builders.builders.standard import standard_builders  # noqa: E402
from kg_builders.builders.text_encoder import TextEncoder  # noqa: E402
from kg_builders.builders.text_features import TextFeatureBuilder  # noqa: E402
from kg_builders.graph import KnowledgeGraph, build_graph  # noqa: E402
from kg_builders.sources import load_hetrec_lastfm, load_movielens  # noqa: E402
from kg_builders.split import split_random  # noqa: E402

logger = logging.getLogger("benchmarks.features_quality")

TITLE_ONLY = {
    "ml-latest-small": NodeTextTemplates(item="{title}[ ({year})]"),
    "hetrec2011-lastfm-2k": NodeTextTemplates(item="{title}"),
}


def neighbour_overlap(
    vectors: np.ndarray, labels: list[frozenset], *, queries: int, k: int, seed: int
) -> dict[str, Any]:
    """Shared labels of each query's ``k`` nearest neighbours by cosine vs ``k`` random candidates.

    Args:
        vectors: ``[n, dim]`` L2-normalised rows of the candidates.
        labels: one label set per candidate.
        queries: how many queries (at most ``n``).
        k: neighbours per query.
        seed: seeds the query draw and the random neighbours.
    """
    n = len(labels)
    rng = np.random.default_rng(seed)
    q = np.sort(rng.choice(n, size=min(queries, n), replace=False))
    sims = vectors[q] @ vectors.T  # [Q, n]
    sims[np.arange(len(q)), q] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    rand = np.empty((len(q), k), np.int64)
    for row, i in enumerate(q):
        pick = rng.choice(n - 1, size=k, replace=False)
        rand[row] = pick + (pick >= i)  # skip the query itself

    def stats(nbrs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        shared = np.array([[len(labels[i] & labels[j]) for j in row] for i, row in zip(q, nbrs, strict=True)], float)
        union = np.array([[len(labels[i] | labels[j]) for j in row] for i, row in zip(q, nbrs, strict=True)], float)
        return shared.mean(1), (shared / union).mean(1), (shared > 0).mean(1)

    t_sh, t_j, t_hit = stats(top)
    r_sh, r_j, r_hit = stats(rand)
    diff = t_sh - r_sh
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return {
        "candidates": n,
        "queries": len(q),
        "k": k,
        "mean_labels_per_candidate": round(float(np.mean([len(s) for s in labels])), 3),
        "text_shared": round(float(t_sh.mean()), 4),
        "random_shared": round(float(r_sh.mean()), 4),
        "margin": round(float(diff.mean()), 4),
        "margin_ci95": [round(float(diff.mean() - half), 4), round(float(diff.mean() + half), 4)],
        "ratio": round(float(t_sh.mean() / r_sh.mean()), 3) if r_sh.mean() > 0 else None,
        "text_jaccard": round(float(t_j.mean()), 4),
        "random_jaccard": round(float(r_j.mean()), 4),
        "text_any_shared": round(float(t_hit.mean()), 4),
        "random_any_shared": round(float(r_hit.mean()), 4),
    }


def item_genres(kg: KnowledgeGraph) -> list[frozenset]:
    return [frozenset(g or ()) for g in kg.node_attrs["item"].get("genres", [None] * kg.num_nodes("item"))]


def edge_sets(kg: KnowledgeGraph, etype: tuple[str, str, str]) -> list[frozenset]:
    out: list[set] = [set() for _ in range(kg.num_nodes(etype[0]))]
    if etype in kg.edges:
        src, dst = kg.edges[etype].edge_index
        for a, b in zip(src.tolist(), dst.tolist(), strict=True):
            out[a].add(b)
    return [frozenset(s) for s in out]


def evaluate(
    kg: KnowledgeGraph, node_type: str, slot: str, labels: list[frozenset], *, queries: int, k: int, seed: int
) -> dict[str, Any]:
    mask = kg.feature_masks[node_type][slot] & np.array([len(s) > 0 for s in labels])
    rows = np.flatnonzero(mask)
    return neighbour_overlap(
        kg.features[node_type][slot][rows], [labels[i] for i in rows], queries=queries, k=k, seed=seed
    )


def build(name: str) -> KnowledgeGraph:
    path = SHARED / name
    tables = load_movielens(path) if name == "ml-latest-small" else load_hetrec_lastfm(path)
    train = split_random(tables, ratios=(0.8, 0.1, 0.1), seed=0).train_tables(tables)
    return build_graph(train, standard_builders(train))


def run(args: argparse.Namespace) -> dict[str, Any]:
    encoder = TextEncoder(model=args.encoder)
    results: list[dict[str, Any]] = []
    encoding: list[dict[str, Any]] = []
    datasets = [d for d in ("ml-latest-small", "hetrec2011-lastfm-2k") if (SHARED / d).is_dir()]
    if not datasets:
        raise SystemExit(f"no data under {SHARED}")
    for name in datasets:
        t0 = time.perf_counter()
        kg = build(name)
        logger.info("%s: %r built in %.1f s", name, kg, time.perf_counter() - t0)
        item_labels = (
            ("genres", item_genres(kg))
            if name == "ml-latest-small"
            else ("tags", edge_sets(kg, ("item", "tagged_with", "tag")))
        )
        user_labels = ("training items", edge_sets(kg, ("user", "interacted", "item")))
        for variant, templates, slot, types in (
            ("default", NodeTextTemplates(), "text", ("user", "item", "tag", "entity")),
            ("title only", TITLE_ONLY[name], "title_only", ("item",)),
        ):
            builder = TextFeatureBuilder(
                encoder=encoder, templates=templates, node_types=types, slot=slot, cache_dir=args.cache
            )
            rep = builder.build(kg, progress=args.progress)
            encoding.append(
                {
                    "dataset": name,
                    "variant": variant,
                    "template_id": rep.template_id,
                    "seconds": rep.seconds,
                    "node_types": {t: r.__dict__ for t, r in rep.node_types.items()},
                }
            )
            targets = [("item", *item_labels)] + ([("user", *user_labels)] if "user" in types else [])
            for node_type, label_name, labels in targets:
                res = evaluate(kg, node_type, slot, labels, queries=args.queries, k=args.k, seed=args.seed)
                results.append(
                    {
                        "dataset": name,
                        "variant": variant,
                        "item_template": templates.item,
                        "node_type": node_type,
                        "labels": label_name,
                        **res,
                    }
                )
                logger.info("%s %s %s/%s: %s", name, variant, node_type, label_name, res)
    return {
        "benchmark": "features_quality",
        "meta": run_metadata(),
        "encoder": {"model": args.encoder, "fingerprint": encoder.fingerprint(), **encoder.settings()},
        "protocol": {
            "split": "random 8:1:1 per user, seed 0; graph from the training tables with the standard builders",
            "queries": args.queries,
            "k": args.k,
            "seed": args.seed,
            "similarity": "cosine of the L2-normalised text features (dot product)",
            "score": "mean |labels(query) & labels(neighbour)| over the k neighbours, averaged over queries",
            "random": "k other candidates drawn uniformly without replacement per query",
            "margin_ci95": "text - random, +- 1.96 standard errors of the per-query differences",
        },
        "results": results,
        "encoding": encoding,
    }


def to_markdown(doc: dict[str, Any]) -> str:
    m = doc["meta"]
    lines = [
        "# Text features: do nearest neighbours share genres / tags?",
        "",
        f"{m['date']} on {m['machine']['platform']} ({m['machine']['cpus']} CPUs, torch threads "
        f"{m['torch_threads']}); encoder `{doc['encoder']['model']}` (pooling {doc['encoder']['pooling']}, "
        f"max_length {doc['encoder']['max_length']}); commit {m['git_commit'][:12]}{' (dirty)' if m['git_dirty'] else ''}.",
        "",
        f"{doc['protocol']['queries']} random query nodes (seed {doc['protocol']['seed']}), k = {doc['protocol']['k']}. "
        "Score: mean number of labels a neighbour shares with the query.",
        "",
        "| data set | text variant | nodes | labels | candidates | text@k | random@k | margin (95% CI) | ratio "
        "| Jaccard text / random | share with >= 1 shared: text / random |",
        "|---|---|---|---|---:|---:|---:|---|---:|---|---|",
    ]
    for r in doc["results"]:
        lo, hi = r["margin_ci95"]
        lines.append(
            f"| {r['dataset']} | {r['variant']} | {r['node_type']} | {r['labels']} | {r['candidates']:,} | "
            f"{r['text_shared']:.3f} | {r['random_shared']:.3f} | {r['margin']:+.3f} ({lo:+.3f}, {hi:+.3f}) | "
            f"{r['ratio']} | {r['text_jaccard']:.3f} / {r['random_jaccard']:.3f} | "
            f"{r['text_any_shared']:.3f} / {r['random_any_shared']:.3f} |"
        )
    lines += ["", "Item templates:", ""]
    seen = set()
    for r in doc["results"]:
        key = (r["dataset"], r["variant"])
        if key not in seen:
            seen.add(key)
            lines.append(f"- {r['dataset']}, {r['variant']}: `{r['item_template']}`")
    lines += ["", "Encoding (cache hits / misses; seconds include the cache look-up):", ""]
    for e in doc["encoding"]:
        per = ", ".join(
            f"{t} {v['encoded']:,} ({v['cache_hits']:,}/{v['cache_misses']:,}, {v['seconds']:.1f} s)"
            for t, v in e["node_types"].items()
        )
        lines.append(f"- {e['dataset']}, {e['variant']}: {per}")
    lines += [
        "",
        "Protocol:",
        "",
        *[f"- {k}: {v}" for k, v in doc["protocol"].items()],
        "",
        "Notes:",
        "",
        "- The default item text names the genres (and the top tags), so part of the default margin is by "
        "construction; the title-only rows hide them and measure what the encoder knows about titles alone.",
        "- Users are compared by the items of their training interactions; their profile text lists their "
        "top genres, tags and titles, built from the training graph only.",
        "- Timings were taken on a machine shared with other jobs.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder", default="all-MiniLM-L6-v2")
    p.add_argument("--cache", default=str(ROOT / "data" / "cache" / "features"), help="feature cache folder")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--progress", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    doc = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "features_quality.json", "w") as fh:
        json.dump(doc, fh, indent=2)
    with atomic_file(out / "features_quality.md", "w") as fh:
        fh.write(to_markdown(doc))
    sys.stdout.write(to_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
