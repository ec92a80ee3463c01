"""The tables the knowledge stores take: recommendations and explanation paths, checked the same way everywhere.

* recommendations: columns ``user_id, item_id, score, rank, model``;
* explanations: columns ``user_id, item_id, rank, contribution, path`` (``path``: the JSON text of
  ``{"nodes": [[type, id], ...], "relations": [...], "forward": [...], "contribution": x}``).

A bad row is a :class:`~kg_builders.errors.DataError` naming the table, the 1-based row (``line``)
and the column (``field``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kg_builders.errors import ConfigError, DataError, SchemaError

RECOMMENDATION_COLUMNS = ("user_id", "item_id", "score", "rank", "model")
EXPLANATION_COLUMNS = ("user_id", "item_id", "rank", "contribution", "path")


def check_frame(frame: Any, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """``frame`` with a fresh 0-based index; a ConfigError if it is no DataFrame, a SchemaError naming missing columns."""
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{what} lack column(s) {missing}; expected {list(columns)}")
    return frame.reset_index(drop=True)


def bad_rows(what: str, column: str, mask: Any, why: str) -> DataError:
    """A DataError at the first bad row of ``mask`` (1-based ``line``), counting them all."""
    rows = mask[mask].index.tolist()
    return DataError(f"{what}: {len(rows)} row(s) with {why}", line=rows[0] + 1, field=column)


def id_column(what: str, df: pd.DataFrame, column: str) -> list[str]:
    """The column as string ids; a missing id is a DataError."""
    col = df[column]
    if col.isna().any():
        raise bad_rows(what, column, col.isna(), "a missing id")
    return col.astype(str).tolist()


def number_column(what: str, df: pd.DataFrame, column: str, *, allow_missing: bool = False) -> list[float | None]:
    """The column as floats; with ``allow_missing``, a missing value (None, NaN) is ``None``."""
    values = pd.to_numeric(df[column], errors="coerce")
    missing = df[column].isna()
    bad = values.isna() & ~missing if allow_missing else values.isna()
    if bad.any():
        raise bad_rows(what, column, bad, f"a {'non-numeric' if allow_missing else 'missing or non-numeric'} {column}")
    return [None if m else float(v) for v, m in zip(values.tolist(), missing.tolist(), strict=True)]


def rank_column(what: str, df: pd.DataFrame) -> list[int]:
    """The ``rank`` column as positive integers."""
    values = pd.to_numeric(df["rank"], errors="coerce")
    bad = values.isna() | (values < 1) | (values != values.round())
    if bad.any():
        raise bad_rows(what, "rank", bad, "a rank that is not a positive integer")
    return [int(v) for v in values.tolist()]


def is_missing(v: Any) -> bool:
    """None, NaN or pandas' NA."""
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


@dataclass(frozen=True)
class RecommendationRow:
    """One checked row of a recommendations table."""

    user_id: str
    item_id: str
    score: float
    rank: int
    model: str


@dataclass(frozen=True)
class ExplanationRow:
    """One checked row of an explanations table, its path parsed (``text`` is the JSON as given)."""

    user_id: str
    item_id: str
    rank: int
    contribution: float | None
    text: str
    node_types: list[str]
    node_ids: list[str]
    relations: list[str]
    forward: list[bool]


def read_recommendations(frame: Any, check_ids: Callable[[str, list[str]], None]) -> list[RecommendationRow]:
    """The rows of a recommendations table, checked.

    Args:
        frame: a DataFrame with :data:`RECOMMENDATION_COLUMNS`.
        check_ids: ``check_ids(node_type, ids)`` raises for node types or ids the store does not have.

    Raises:
        SchemaError: missing columns. DataError: a bad value, or the same (user, item, model) twice
        (``line`` is the 1-based row).
    """
    df = check_frame(frame, RECOMMENDATION_COLUMNS, "recommendations")
    users = id_column("recommendations", df, "user_id")
    items = id_column("recommendations", df, "item_id")
    check_ids("user", users)
    check_ids("item", items)
    scores = number_column("recommendations", df, "score")
    ranks = rank_column("recommendations", df)
    models = ["" if is_missing(m) else str(m) for m in df["model"].tolist()]
    out: list[RecommendationRow] = []
    seen: set[tuple[str, str, str]] = set()
    for line, (u, i, s, k, m) in enumerate(zip(users, items, scores, ranks, models, strict=True), start=1):
        if (u, i, m) in seen:
            raise DataError(f"recommendation of item {i!r} to user {u!r} by model {m!r} given twice", line=line)
        seen.add((u, i, m))
        out.append(RecommendationRow(u, i, float(s), k, m))
    return out


def read_explanations(frame: Any, check_ids: Callable[[str, list[str]], None]) -> list[ExplanationRow]:
    """The rows of an explanations table, checked, with their paths parsed.

    Args:
        frame: a DataFrame with :data:`EXPLANATION_COLUMNS`.
        check_ids: ``check_ids(node_type, ids)`` raises for node types or ids the store does not have
            (called for the users, the items and every node on a path).

    Raises:
        SchemaError: missing columns. DataError: a bad value, a path that is not the JSON of a path,
        or the same (user, item, rank) twice (``line`` is the 1-based row).
    """
    df = check_frame(frame, EXPLANATION_COLUMNS, "explanations")
    users = id_column("explanations", df, "user_id")
    items = id_column("explanations", df, "item_id")
    check_ids("user", users)
    check_ids("item", items)
    ranks = rank_column("explanations", df)
    contributions = number_column("explanations", df, "contribution", allow_missing=True)
    out: list[ExplanationRow] = []
    seen: set[tuple[str, str, int]] = set()
    on_paths: dict[str, list[str]] = {}
    rows = zip(users, items, ranks, contributions, df["path"].tolist(), strict=True)
    for line, (u, i, rank, contribution, text) in enumerate(rows, start=1):
        try:
            path = json.loads(text)
            # as strict as Path.from_dict, which the Neo4j store reads the stored text with
            if any(not isinstance(n, list) or len(n) != 2 for n in path["nodes"]):
                raise ValueError("each node must be [type, id]")
            c = path.get("contribution")
            if c is not None and (isinstance(c, bool) or not isinstance(c, int | float)):
                raise ValueError(f"its 'contribution' must be a number, got {c!r}")
            node_types = [str(n[0]) for n in path["nodes"]]
            node_ids = [str(n[1]) for n in path["nodes"]]
            relations = [str(r) for r in path["relations"]]
            forward = [bool(f) for f in path["forward"]]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise DataError(
                f"explanation of ({u!r}, {i!r}): path is not the JSON text of Path.to_dict() ({exc})",
                line=line,
                field="path",
            ) from exc
        if len(node_types) < 2 or len(relations) != len(node_types) - 1 or len(forward) != len(relations):
            raise DataError(
                f"explanation of ({u!r}, {i!r}): a path needs n >= 2 nodes, n - 1 relations and n - 1 directions",
                line=line,
                field="path",
            )
        if (u, i, rank) in seen:
            raise DataError(f"explanation rank {rank} of user {u!r}, item {i!r} given twice", line=line)
        seen.add((u, i, rank))
        for t, node_id in zip(node_types, node_ids, strict=True):
            on_paths.setdefault(t, []).append(node_id)
        out.append(ExplanationRow(u, i, rank, contribution, text, node_types, node_ids, relations, forward))
    for t, ids in on_paths.items():
        check_ids(t, ids)
    return out
