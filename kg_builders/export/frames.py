"""The tables the knowledge stores take: recommendations and explanation paths, checked the same way everywhere.

* recommendations: columns ``user_id, item_id, score, rank, model``;
* explanations: columns ``user_id, item_id, rank, contribution, path`` (``path``: the JSON text of
  ``{"nodes": [[type, id], ...], "relations": [...], "forward": [...], "contribution": x}``).

A bad row is a :class:`~kg_builders.errors.DataError` naming the table, the 1-based row (``line``)
and the column (``field``).
"""

from __future__ import annotations

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
