"""MIND news articles (Wu et al., "MIND: A Large-scale Dataset for News Recommendation", ACL 2020).

``news.tsv`` is tab separated without a header, one article per line::

    news_id  category  subcategory  title  abstract  url  title_entities  abstract_entities

The two entity columns are JSON lists of linked Wikidata entities, each
``{"Label", "Type", "WikidataId", "Confidence", "OccurrenceOffsets", "SurfaceForms"}``, where
``OccurrenceOffsets[i]`` is the character offset of ``SurfaceForms[i]`` in the title or abstract.
They are a gold standard for entity extraction: :func:`load_mind_news` returns them as the
``gold_entities`` table, one row per occurrence. ``Type`` is MIND's one-letter code (``P`` person,
``G`` geographic place, ``O`` organisation, ``L`` location, ``U``/``C``/``N``/... other Wikidata
classes) and is kept as given.

User behaviours (``behaviors.tsv``) are not read here: the returned ``interactions`` table is
empty but typed, because :class:`~kg_builders.tables.Tables` requires one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kg_builders.errors import DataError
from kg_builders.sources._reader import check_on_error, duplicate_rows, read_delimited
from kg_builders.tables import RowIssue, Tables

logger = logging.getLogger(__name__)

NEWS_COLUMNS = (
    "news_id",
    "category",
    "subcategory",
    "title",
    "abstract",
    "url",
    "title_entities",
    "abstract_entities",
)
#: entity column -> the ``field`` value of its rows in ``gold_entities`` and the text column it indexes
_ENTITY_COLUMNS = {"title_entities": ("title", "title"), "abstract_entities": ("abstract", "abstract")}
_GOLD_COLUMNS = ("item_id", "field", "surface", "entity_type", "wikidata_id", "offset", "label", "confidence")


def _parse_entities(raw: str) -> list[dict[str, Any]]:
    """Parse one entity column into occurrence dicts; raise ``ValueError`` with the reason."""
    raw = raw.strip()
    if not raw:
        return []
    value = json.loads(raw)
    if not isinstance(value, list):
        raise ValueError(f"expected a JSON list of entities, got {type(value).__name__}")
    out: list[dict[str, Any]] = []
    for k, ent in enumerate(value):
        if not isinstance(ent, dict):
            raise ValueError(f"entity {k} is a {type(ent).__name__}, not an object")
        missing = [key for key in ("Type", "OccurrenceOffsets", "SurfaceForms") if key not in ent]
        if missing:
            raise ValueError(f"entity {k} lacks key(s) {missing}")
        offsets, surfaces = ent["OccurrenceOffsets"], ent["SurfaceForms"]
        if not isinstance(offsets, list) or not isinstance(surfaces, list) or len(offsets) != len(surfaces):
            raise ValueError(f"entity {k}: OccurrenceOffsets and SurfaceForms must be lists of equal length")
        label = str(ent.get("Label") or "")
        confidence = ent.get("Confidence")  # absent or null: not given
        if confidence is None:
            confidence = np.nan
        elif isinstance(confidence, bool) or not isinstance(confidence, int | float | str):
            raise ValueError(f"entity {k}: Confidence {confidence!r} is not a number")
        if not offsets:
            # linked to the text as a whole but not located in it: one row, surface = label, no offset
            if not label:
                raise ValueError(f"entity {k} has neither occurrences nor a Label")
            offsets, surfaces = [None], [label]
        for off, surface in zip(offsets, surfaces, strict=True):
            if off is not None and (isinstance(off, bool) or not isinstance(off, int) or off < 0):
                raise ValueError(f"entity {k}: offset {off!r} is not a non-negative integer")
            if not isinstance(surface, str) or not surface:
                raise ValueError(f"entity {k}: surface form {surface!r} is not a non-empty string")
            out.append(
                {
                    "surface": surface,
                    "entity_type": str(ent["Type"]),
                    "wikidata_id": str(ent.get("WikidataId") or ""),
                    "offset": off,
                    "label": label,
                    "confidence": float(confidence),
                }
            )
    return out


def load_mind_news(path: str | Path, *, on_error: str = "raise") -> Tables:
    """Read a MIND ``news.tsv`` into items and gold entity mentions.

    Titles contain double quotes, so the file is split on tabs only (no CSV quoting).

    Args:
        path: the ``news.tsv`` file, or a folder that holds one.
        on_error: ``"raise"``: a malformed row (wrong field count, empty id, duplicate id, an
            entity column that is not valid JSON or not MIND's entity structure) raises
            :class:`~kg_builders.errors.DataError` naming the file, line and field;
            ``"skip"``: the row is left out and listed in ``Tables.issues``.

    Returns:
        Tables with ``items`` (item_id = news id, title, text = abstract, genres = (category,
        subcategory), url), ``gold_entities`` (item_id, field ``"title"``/``"abstract"``, surface,
        entity_type, wikidata_id, offset, plus label and confidence: one row per occurrence; an
        entity that MIND links to the text without locating it gives one row with surface = its
        label and offset ``<NA>``),
        and an empty ``interactions`` table (user_id, item_id as strings).
    """
    check_on_error(on_error)
    p = Path(path)
    if p.is_dir():
        p = p / "news.tsv"
    frame, issues = read_delimited(
        p,
        sep="\t",
        columns=NEWS_COLUMNS,
        header=False,
        quoting=False,
        types={"news_id": "str"},
        on_error=on_error,
    )
    frame, dup_issues = duplicate_rows(frame, ["news_id"], what="news id", on_error=on_error)
    issues.extend(dup_issues)
    lines = frame.attrs["lines"]

    keep = np.ones(len(frame), dtype=bool)
    gold: list[dict[str, Any]] = []
    mismatched = 0
    for i, row in enumerate(frame.itertuples(index=False)):
        row_gold: list[dict[str, Any]] = []
        failed = False
        for col, (field_name, text_col) in _ENTITY_COLUMNS.items():
            try:
                occurrences = _parse_entities(getattr(row, col))
            except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError; deep nesting recurses
                reason = f"invalid entity list: {exc}"
                if on_error == "raise":
                    raise DataError(reason, file=p, line=int(lines[i]), field=col) from exc
                issues.append(RowIssue(str(p), int(lines[i]), col, reason))
                failed = True
                break
            text = getattr(row, text_col)
            for occ in occurrences:
                off = occ["offset"]
                if off is not None and text[off : off + len(occ["surface"])] != occ["surface"]:
                    mismatched += 1
                row_gold.append({"item_id": row.news_id, "field": field_name, **occ})
        if failed:
            keep[i] = False
            continue
        gold.extend(row_gold)
    if mismatched:
        logger.warning("%s: %d gold entity offsets do not point at their surface form", p, mismatched)
    frame = frame.loc[keep].reset_index(drop=True)

    items = pd.DataFrame(
        {
            "item_id": frame["news_id"].astype(object),
            "title": frame["title"].astype(object),
            "text": frame["abstract"].astype(object),
            "genres": pd.Series(
                list(zip(frame["category"], frame["subcategory"], strict=True)), index=frame.index, dtype=object
            ),
            "url": frame["url"].astype(object),
        }
    )
    gold_df = pd.DataFrame(gold, columns=list(_GOLD_COLUMNS))
    gold_df = gold_df.astype(
        {
            "item_id": object,
            "field": object,
            "surface": object,
            "entity_type": object,
            "wikidata_id": object,
            "offset": "Int64",
            "label": object,
            "confidence": "float64",
        }
    )
    interactions = pd.DataFrame({"user_id": pd.Series([], dtype=object), "item_id": pd.Series([], dtype=object)})
    logger.info(
        "%s: %d articles, %d gold entity occurrences, %d rows skipped", p, len(items), len(gold_df), len(issues)
    )
    return Tables(
        interactions=interactions,
        items=items,
        gold_entities=gold_df,
        source=f"mind:{p.name}",
        issues=tuple(issues),
    )
