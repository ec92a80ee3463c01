"""Typed tables: what every source reader returns and every builder reads.

All ids are raw external strings. Each table is a :class:`pandas.DataFrame` with the columns
listed in :data:`SCHEMAS`; optional columns may be absent. :func:`validate` checks a table
against its schema and raises :class:`~kg_builders.errors.SchemaError` naming what is wrong.

Tables
------
``interactions``   user_id, item_id [, rating float, timestamp int (none missing), split in {train, valid, test}]
``items``          item_id (unique) [, title, year, genres (tuple of str), text, url]
``users``          user_id (unique) [, any attribute columns]
``tag_assignments`` item_id, tag [, user_id, timestamp]
``triples``        head, relation, tail (entity ids as strings)
``item_entities``  item_id, entity_id: which knowledge-graph entity an item is
``social``         user_id, friend_id
``gold_entities``  item_id, field, surface, entity_type [, wikidata_id, offset]
``images``         item_id, image (a numpy array [H, W, C] uint8)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kg_builders.errors import DataError, SchemaError


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its kind (``str``, ``float``, ``int``, ``object``) and whether it is required."""

    kind: str
    required: bool = False


SCHEMAS: dict[str, dict[str, ColumnSpec]] = {
    "interactions": {
        "user_id": ColumnSpec("str", True),
        "item_id": ColumnSpec("str", True),
        "rating": ColumnSpec("float"),
        "timestamp": ColumnSpec("int"),
        "split": ColumnSpec("str"),
    },
    "items": {
        "item_id": ColumnSpec("str", True),
        "title": ColumnSpec("str"),
        "year": ColumnSpec("int"),
        "genres": ColumnSpec("object"),
        "text": ColumnSpec("str"),
        "url": ColumnSpec("str"),
    },
    "users": {"user_id": ColumnSpec("str", True)},
    "tag_assignments": {
        "item_id": ColumnSpec("str", True),
        "tag": ColumnSpec("str", True),
        "user_id": ColumnSpec("str"),
        "timestamp": ColumnSpec("int"),
    },
    "triples": {
        "head": ColumnSpec("str", True),
        "relation": ColumnSpec("str", True),
        "tail": ColumnSpec("str", True),
    },
    "item_entities": {"item_id": ColumnSpec("str", True), "entity_id": ColumnSpec("str", True)},
    "social": {"user_id": ColumnSpec("str", True), "friend_id": ColumnSpec("str", True)},
    "gold_entities": {
        "item_id": ColumnSpec("str", True),
        "field": ColumnSpec("str", True),
        "surface": ColumnSpec("str", True),
        "entity_type": ColumnSpec("str", True),
        "wikidata_id": ColumnSpec("str"),
        "offset": ColumnSpec("int"),
    },
    "images": {"item_id": ColumnSpec("str", True), "image": ColumnSpec("object", True)},
}

#: tables whose first column is a unique key
UNIQUE_KEYS = {"items": "item_id", "users": "user_id"}
SPLIT_VALUES = ("train", "valid", "test")


@dataclass(frozen=True)
class RowIssue:
    """A bad input row that was skipped because the caller chose ``on_error="skip"``."""

    file: str
    line: int | None
    field: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def validate(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Check ``df`` against the schema of table ``name``; return it unchanged.

    Raises:
        SchemaError: an unknown table name, a missing required column, a wrong dtype, or a
            duplicated unique key.
        DataError: an interaction without a timestamp (``<NA>`` in a nullable integer column),
            naming its row, user and item.
    """
    if name not in SCHEMAS:
        raise SchemaError(f"unknown table {name!r}; valid: {sorted(SCHEMAS)}")
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"table {name!r} must be a pandas DataFrame, got {type(df).__name__}")
    schema = SCHEMAS[name]
    missing = [c for c, spec in schema.items() if spec.required and c not in df.columns]
    if missing:
        raise SchemaError(f"table {name!r} is missing column(s) {missing}; it has {list(df.columns)}")
    for col, spec in schema.items():
        if col not in df.columns or len(df) == 0:
            continue
        s = df[col]
        if spec.kind == "float" and not pd.api.types.is_float_dtype(s):
            raise SchemaError(f"table {name!r} column {col!r} must be float, got {s.dtype}")
        if spec.kind == "int" and not pd.api.types.is_integer_dtype(s):
            raise SchemaError(f"table {name!r} column {col!r} must be integer, got {s.dtype}")
        if spec.kind == "str" and not pd.api.types.is_string_dtype(s):
            raise SchemaError(f"table {name!r} column {col!r} must hold strings, got {s.dtype}")
        if spec.kind == "str" and spec.required and s.isna().any():
            raise SchemaError(f"table {name!r} column {col!r} has missing values")
    if name == "interactions" and "timestamp" in df.columns and len(df) and df["timestamp"].isna().any():
        pos = int(df["timestamp"].isna().to_numpy().argmax())
        row = df.iloc[pos]
        raise DataError(
            f"interaction at row {pos} (user {row['user_id']!r}, item {row['item_id']!r}) has no timestamp; "
            "give every interaction one, or drop the column",
            field="timestamp",
        )
    if name == "interactions" and "split" in df.columns:
        bad = set(df["split"].unique()) - set(SPLIT_VALUES)
        if bad:
            raise SchemaError(f"interactions 'split' values must be in {SPLIT_VALUES}; got {sorted(bad)}")
    key = UNIQUE_KEYS.get(name)
    if key is not None and df[key].duplicated().any():
        dup = df.loc[df[key].duplicated(), key].head(5).tolist()
        raise SchemaError(f"table {name!r} has duplicate {key}(s): {dup}")
    return df


@dataclass(frozen=True)
class Tables:
    """Everything a source produced, as typed tables with raw string ids.

    Only ``interactions`` is required. ``issues`` lists rows skipped by a reader that was asked to
    skip bad rows; ``source`` names where the tables came from (for reports).
    """

    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    tag_assignments: pd.DataFrame | None = None
    triples: pd.DataFrame | None = None
    item_entities: pd.DataFrame | None = None
    social: pd.DataFrame | None = None
    gold_entities: pd.DataFrame | None = None
    images: pd.DataFrame | None = None
    source: str = "unknown"
    issues: tuple[RowIssue, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in SCHEMAS:
            df = getattr(self, name)
            if df is not None:
                validate(name, df)

    def replace(self, **changes: Any) -> Tables:
        """A copy with some tables replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def counts(self) -> dict[str, int]:
        """Row count per non-empty table."""
        return {n: len(getattr(self, n)) for n in SCHEMAS if getattr(self, n) is not None}
