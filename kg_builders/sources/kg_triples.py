"""Reader for knowledge-graph triple files as published with KGAT, KGCN and MKR.

``kg.txt`` / ``kg_final.txt``
    one triple per line, ``head relation tail``, tab separated (MKR, KGCN) or space separated
    (KGAT). Exactly three fields per line; ids are kept as the raw strings. Repeated triples are
    removed and counted in the log.
``item_index2entity_id.txt``
    ``item entity`` per line: which entity of the graph an item is (MovieLens movieIds, ISBNs for
    Book-Crossing, ...). An item mapped to two different entities is an error (or skipped, keeping
    the first); a repeated identical line is dropped and counted.

Citation: Hongwei Wang, Fuzheng Zhang, Miao Zhao, Wenjie Li, Xing Xie and Minyi Guo. 2019.
Multi-Task Feature Learning for Knowledge Graph Enhanced Recommendation (MKR). WWW 2019.
https://doi.org/10.1145/3308558.3313411 (files: https://github.com/hwwang55/MKR; KGCN: Wang et al.,
WWW 2019; KGAT: Wang et al., KDD 2019).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from kg_builders.errors import ConfigError
from kg_builders.sources._reader import (
    check_on_error,
    decode_file,
    plain,
    read_delimited,
    reject_rows,
)
from kg_builders.tables import RowIssue, Tables, validate

logger = logging.getLogger(__name__)


def load_kg_triples(
    kg_path: str | Path,
    item_map_path: str | Path | None = None,
    *,
    sep: str | None = None,
    on_error: str = "raise",
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Read a triple file and, optionally, the item-to-entity map published with it.

    Args:
        kg_path: ``head relation tail`` per line.
        item_map_path: ``item entity`` per line (``item_index2entity_id.txt``).
        sep: the field separator; ``None`` uses a tab when the file's first line has one, else
            runs of whitespace. The same rule applies to each file separately.
        on_error: ``"raise"`` (a :class:`~kg_builders.errors.DataError` naming file, line and
            field) or ``"skip"``: bad lines are dropped and logged as a warning (this function
            returns tables, not :class:`~kg_builders.tables.Tables`, so there is no ``issues``).

    Returns:
        ``(triples, item_entities)``: ``triples`` with columns head, relation, tail (str);
        ``item_entities`` with item_id, entity_id (str), or ``None`` without ``item_map_path``.

    Raises:
        DataError: a missing or empty file, a line without exactly 3 (triples) or 2 (map) fields,
            an empty field, or an item mapped to two entities.
    """
    triples, item_entities, issues = _read_kg(kg_path, item_map_path, sep=sep, on_error=on_error)
    if issues:
        logger.warning(
            "skipped %d bad line(s); first: %s line %s: %s",
            len(issues),
            issues[0].file,
            issues[0].line,
            issues[0].reason,
        )
    return triples, item_entities


def _read_kg(
    kg_path: str | Path, item_map_path: str | Path | None, *, sep: str | None, on_error: str
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[RowIssue]]:
    """:func:`load_kg_triples`, with the lines it skipped."""
    check_on_error(on_error)
    if sep is not None and (not isinstance(sep, str) or not sep):
        raise ConfigError(f"sep must be a non-empty string or None (auto), got {sep!r}")
    issues: list[RowIssue] = []
    frame, more = read_delimited(
        kg_path,
        sep=sep if sep is not None else _guess_sep(kg_path),
        header=False,
        columns=["head", "relation", "tail"],
        types={"head": "str", "relation": "str", "tail": "str"},
        quoting=False,
        on_error=on_error,
    )
    issues += more
    dup = frame.duplicated().to_numpy()
    triples = plain(frame.loc[~dup])
    if dup.any():
        logger.info("%s: removed %d duplicate triple(s)", kg_path, int(dup.sum()))
    validate("triples", triples)
    logger.info(
        "%s: %d triples, %d relations, %d entities",
        kg_path,
        len(triples),
        triples["relation"].nunique(),
        pd.concat([triples["head"], triples["tail"]]).nunique(),
    )
    item_entities = None
    if item_map_path is not None:
        item_entities, more = _read_item_map(Path(item_map_path), sep, on_error)
        issues += more
        entities = set(triples["head"]) | set(triples["tail"])
        absent = int((~item_entities["entity_id"].isin(entities)).sum())
        logger.info(
            "%s: %d items mapped to %d entities (%d entities not in the triples)",
            item_map_path,
            len(item_entities),
            item_entities["entity_id"].nunique(),
            absent,
        )
    return triples, item_entities, issues


def _read_item_map(path: Path, sep: str | None, on_error: str) -> tuple[pd.DataFrame, list[RowIssue]]:
    frame, issues = read_delimited(
        path,
        sep=sep if sep is not None else _guess_sep(path),
        header=False,
        columns=["item_id", "entity_id"],
        types={"item_id": "str", "entity_id": "str"},
        quoting=False,
        on_error=on_error,
    )
    frame, issues = one_entity_per_item(frame, path, issues, on_error)
    out = plain(frame[["item_id", "entity_id"]])
    validate("item_entities", out)
    return out, issues


def join_kg_folder(tables: Tables, path: str | Path, *, on_error: str = "raise") -> Tables:
    """``tables`` with the knowledge graph of a KGAT/KGCN/MKR folder joined.

    The folder holds ``kg.txt`` (triples) and ``item_index2entity_id.txt`` (the item map).
    """
    folder = Path(path)
    triples, item_entities, issues = _read_kg(
        folder / "kg.txt", folder / "item_index2entity_id.txt", sep=None, on_error=on_error
    )
    return tables.replace(
        triples=triples,
        item_entities=item_entities,
        source=f"{tables.source}+kg:{folder.name}",
        issues=tuple(tables.issues) + tuple(issues),  # the skipped lines reach the build report
    )


def one_entity_per_item(
    frame: pd.DataFrame, path: str | Path, issues: list[RowIssue], on_error: str
) -> tuple[pd.DataFrame, list[RowIssue]]:
    """Drop identical repeated (item, entity) rows; an item mapped to a second entity is bad input.

    Identical repeats are harmless: they are dropped (line numbers stay aligned) and logged, not
    reported as issues. Used by this reader and by the generic reader's ``item_entities``.
    """
    same = frame.duplicated(subset=["item_id", "entity_id"]).to_numpy()
    if same.any():
        logger.info("%s: removed %d repeated line(s)", path, int(same.sum()))
    frame, _ = reject_rows(frame, same, field=None, reason="repeated line", on_error="skip")
    twice = frame.duplicated(subset=["item_id"], keep="first").to_numpy()
    first = dict(zip(frame["item_id"][::-1], frame["entity_id"][::-1], strict=True))
    frame, more = reject_rows(
        frame,
        twice,
        field="entity_id",
        reason=lambda i: (
            f"item {frame['item_id'].iloc[i]!r} is mapped to {frame['entity_id'].iloc[i]!r} here and to "
            f"{first[frame['item_id'].iloc[i]]!r} earlier"
        ),
        on_error=on_error,
    )
    return frame, issues + more


def _guess_sep(path: str | Path) -> str | None:
    """A tab when the first non-blank line holds one, else ``None`` (runs of whitespace)."""
    text = decode_file(path, "utf-8")
    for line in text.split("\n"):
        if line.strip():
            return "\t" if "\t" in line else None
    return None
