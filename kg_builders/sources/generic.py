"""Reader for your own data: one CSV, TSV or Parquet file per table, with documented column names.

Files
-----
Each table is one file; its format comes from the suffix:

- ``.csv``: comma separated, utf-8, a header line, standard CSV quoting (``"a, b"``; ``""`` for a quote).
- ``.tsv``: the same with tabs.
- ``.parquet``: read with pyarrow (``pip install 'graph-rec[parquet]'``).

Relative paths are resolved against ``directory``. Column names are those below; a column not listed
is kept as it is (useful for user attributes). Ids are read as strings (an integer id column in a
Parquet file becomes strings, ``7`` -> ``"7"``; a float id column is refused).

Schema
------
=================  ========================================================================
table (argument)   columns (required in **bold**)
=================  ========================================================================
interactions       **user_id**, **item_id**, rating (float), timestamp (integer, e.g. Unix
                   seconds), split (``train``/``valid``/``test``: a split you made yourself)
items              **item_id** (unique), title, year (integer; may be empty), genres (``|``
                   separated in CSV/TSV, a list of strings in Parquet), text, url
tags               **item_id**, **tag**, user_id, timestamp (integer)
triples            **head**, **relation**, **tail** (entity ids or IRIs)
item_entities      **item_id**, **entity_id**: which triple entity each item is
users              **user_id** (unique), any attribute columns
social             **user_id**, **friend_id**
=================  ========================================================================

Example ``interactions.csv``::

    user_id,item_id,rating,timestamp
    alice,m1,4.5,1700000000
    bob,m1,3.0,1700000100

Checks
------
A required value may not be empty; rating must be a finite number; timestamp a 64-bit integer; split one
of train/valid/test; item_id (items) and user_id (users) unique; a (user_id, item_id[, split]) pair
appears once in interactions (aggregate repeated events first); an item has one entity in
item_entities; every interaction's item is in items (when items are given). With
``on_error="raise"`` a bad row raises :class:`~kg_builders.errors.DataError` naming the file, the
line (CSV/TSV: the line in the file; Parquet: the row index + 1) and the column; with
``on_error="skip"`` it is dropped and listed in ``Tables.issues``. Repeated triples are removed and
counted in the log, and so are repeated tag assignments: a (user_id, item_id, tag) written twice is one
assignment, kept with the earliest timestamp (rows without a user_id are all kept, since two of them may
be two people's).

Citation: when you publish results on your own data, cite the data's own source; this reader adds
nothing to cite.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from kg_builders._optional import require
from kg_builders.errors import ConfigError, DataError
from kg_builders.sources._reader import (
    INT64_MAX,
    INT64_MIN,
    check_on_error,
    duplicate_rows,
    out_of_range,
    plain,
    read_delimited,
    reject_rows,
    repeated_rows,
)
from kg_builders.sources.kg_triples import one_entity_per_item
from kg_builders.tables import SCHEMAS, SPLIT_VALUES, RowIssue, Tables

logger = logging.getLogger(__name__)

SOURCE = "generic"
#: file suffix -> separator (``None``: Parquet)
SUFFIXES: dict[str, str | None] = {".csv": ",", ".tsv": "\t", ".parquet": None}
#: argument name -> table name in :data:`~kg_builders.tables.SCHEMAS`
ARGUMENT_TABLES = {
    "interactions": "interactions",
    "items": "items",
    "tags": "tag_assignments",
    "triples": "triples",
    "item_entities": "item_entities",
    "users": "users",
    "social": "social",
}
#: optional integer columns that may be empty in some rows (``Int64`` with ``<NA>``)
NULLABLE_INTS = {("items", "year")}

_Reason = Callable[[int], str]


def load_generic(
    directory: str | Path | None = None,
    *,
    interactions: str | Path,
    items: str | Path | None = None,
    tags: str | Path | None = None,
    triples: str | Path | None = None,
    item_entities: str | Path | None = None,
    users: str | Path | None = None,
    social: str | Path | None = None,
    on_error: str = "raise",
) -> Tables:
    """Read your own tables from CSV, TSV or Parquet files (the schema is in the module docstring).

    Args:
        directory: the folder relative paths are resolved against (default: the working directory).
        interactions: the interactions file (required).
        items: items file.
        tags: tag assignments file.
        triples: knowledge-graph triples file.
        item_entities: item-to-entity file.
        users: users file.
        social: user-user file.
        on_error: ``"raise"`` (a :class:`~kg_builders.errors.DataError` naming file, line and
            column) or ``"skip"`` (bad rows dropped and listed in ``Tables.issues``).

    Returns:
        Tables with the given tables; ``source`` is ``"generic"``.

    Raises:
        ConfigError: an unsupported file suffix or on_error.
        DataError: a missing or empty file, a missing column, or a bad row.
        MissingDependencyError: a Parquet file without pyarrow installed.
    """
    check_on_error(on_error)
    base = Path(directory) if directory is not None else None
    if base is not None and not base.is_dir():
        raise DataError("directory not found", file=base)
    given = {
        "interactions": interactions,
        "items": items,
        "tags": tags,
        "triples": triples,
        "item_entities": item_entities,
        "users": users,
        "social": social,
    }
    issues: list[RowIssue] = []
    frames: dict[str, pd.DataFrame] = {}
    for arg, value in given.items():
        if value is None:
            continue
        path = Path(value)
        if base is not None and not path.is_absolute():
            path = base / path
        frame, more = _read_table(path, ARGUMENT_TABLES[arg], on_error)
        issues += more
        frames[arg] = frame
    inter = frames["interactions"]
    if "items" in frames:
        known = frames["items"]["item_id"]
        inter, more = reject_rows(
            inter,
            ~inter["item_id"].isin(known).to_numpy(),
            field="item_id",
            reason=lambda i: f"item_id {inter['item_id'].iloc[i]!r} is not in the items file",
            on_error=on_error,
        )
        issues += more
        frames["interactions"] = inter
    tables = Tables(
        **{ARGUMENT_TABLES[arg]: plain(frame) for arg, frame in frames.items()},
        source=SOURCE,
        issues=tuple(issues),
    )
    logger.info(
        "%s: %s%s",
        SOURCE,
        ", ".join(f"{n} {c}" for n, c in tables.counts().items()),
        f", {len(issues)} row(s) skipped" if issues else "",
    )
    return tables


def _read_table(path: Path, name: str, on_error: str) -> tuple[pd.DataFrame, list[RowIssue]]:
    """One table: read, convert and check; the frame keeps the reader's line numbers in ``attrs``."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{path}: unsupported file type {suffix!r}; use one of {sorted(SUFFIXES)}")
    schema = SCHEMAS[name]
    required = [c for c, spec in schema.items() if spec.required]
    sep = SUFFIXES[suffix]
    if sep is None:
        frame = _read_parquet(path, required)
        issues: list[RowIssue] = []
    else:
        frame, issues = read_delimited(path, sep=sep, columns=required, on_error=on_error)
    text_file = sep is not None
    for col, spec in schema.items():
        if col not in frame.columns:
            continue
        raw = frame[col]
        values, bad, reason = _convert(raw, name, col, spec.kind, spec.required, text_file)
        frame = frame.assign(**{col: values})
        frame, more = reject_rows(frame, bad, field=col, reason=reason, on_error=on_error)
        issues += more
    key = {"items": ["item_id"], "users": ["user_id"]}.get(name)
    if name == "interactions":  # one pair in two parts (train and test) would leak: a duplicate too
        key = ["user_id", "item_id"]
    if key is not None:
        frame, more = duplicate_rows(frame, key, what=f"{', '.join(key)}", on_error=on_error)
        issues += more
    if name == "tag_assignments" and "user_id" in frame.columns:
        frame, repeats = repeated_rows(frame, ["user_id", "item_id", "tag"], earliest="timestamp")
        if repeats:
            logger.info("%s: %d repeated (user_id, item_id, tag) row(s) counted once", path, repeats)
    if name == "triples":
        dup = frame.duplicated(subset=["head", "relation", "tail"]).to_numpy()
        if dup.any():
            logger.info("%s: removed %d duplicate triple(s)", path, int(dup.sum()))
            frame, _ = reject_rows(frame, dup, field=None, reason="duplicate triple", on_error="skip")
    if name == "item_entities":
        frame, issues = one_entity_per_item(frame, path, issues, on_error)
    return frame, issues


def _read_parquet(path: Path, required: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("file not found", file=path)
    pq = require("pyarrow.parquet")
    pa = require("pyarrow")
    try:
        # (an integer column with a null stays Python ints, not floats: ids stay "7", big values exact)
        frame = pq.read_table(path).to_pandas(integer_object_nulls=True)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"not a readable Parquet file: {exc}", file=path) from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; the file has {list(frame.columns)}", file=path)
    if frame.empty:
        raise DataError("file has no rows", file=path)
    frame = frame.reset_index(drop=True)
    frame.attrs["lines"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    frame.attrs["file"] = str(path)
    return frame


def _convert(
    raw: pd.Series, table: str, col: str, kind: str, required: bool, text_file: bool
) -> tuple[pd.Series, np.ndarray, _Reason]:
    """``(values, bad mask, reason(i))`` for one column; bad rows keep a placeholder value."""
    values = raw.astype(object).to_numpy()
    n = len(values)
    bad = np.zeros(n, dtype=bool)
    why = [""] * n

    def fail(i: int, reason: str) -> None:
        bad[i] = True
        why[i] = reason

    if kind == "str":
        out: list[object] = []
        for i, v in enumerate(values):
            s = _as_text(v)
            if s is None:
                fail(i, f"{v!r} is not a string")
            elif s == "" and required:
                fail(i, "empty value")
            elif col == "split" and s not in SPLIT_VALUES:
                fail(i, f"{s!r} is not one of {SPLIT_VALUES}")
            out.append(s if s else None)
        series = pd.Series(out, dtype=object if required else "str")
    elif kind in ("float", "int"):
        nullable = (table, col) in NULLABLE_INTS
        out = []
        for i, v in enumerate(values):
            x = _as_number(v, integer=kind == "int")
            if x is None:
                if nullable and _is_empty(v):
                    out.append(None)
                    continue
                fail(i, f"{v!r} is not a finite {'integer' if kind == 'int' else 'number'}")
                out.append(0)
            elif kind == "int" and not float(x).is_integer():
                fail(i, f"{v!r} is not an integer")
                out.append(0)
            elif kind == "int" and not INT64_MIN <= int(x) <= INT64_MAX:
                fail(i, out_of_range(v))
                out.append(0)
            else:
                out.append(int(x) if kind == "int" else float(x))
        dtype = "Int64" if nullable else ("int64" if kind == "int" else "float64")
        series = pd.Series(out, dtype=dtype)
    else:  # "object": genres
        out = []
        for i, v in enumerate(values):
            g = _as_genres(v, text_file)
            if g is None:
                fail(i, f"{v!r} is not a list of genres")
                g = ()
            out.append(g)
        series = pd.Series(out, dtype=object)
    return series, bad, lambda i: why[i]


def _is_empty(v: object) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip() == ""
    return v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _as_text(v: object) -> str | None:
    """A stripped string ("" for empty), or None when ``v`` is no text and no integer."""
    if isinstance(v, str):
        return v.strip()
    if _is_empty(v):
        return ""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return str(int(v))
    return None


_INT_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)


def _as_number(v: object, *, integer: bool = False) -> float | int | None:
    """A finite number, or None. Text must be a plain ASCII literal (an integer one for ``integer``):
    Python's own syntax (``4_5`` for 45, full-width digits, ``1.7e9`` for a timestamp) is refused."""
    if isinstance(v, bool):
        return None
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        x = float(v)
    elif isinstance(v, str):
        text = v.strip()
        if _INT_TEXT.fullmatch(text):
            return int(text)
        if integer or not _FLOAT_TEXT.fullmatch(text):
            return None
        x = float(text)
    else:
        return None
    return x if math.isfinite(x) else None


def _as_genres(v: object, text_file: bool) -> tuple[str, ...] | None:
    if isinstance(v, str):
        return tuple(g.strip() for g in v.split("|") if g.strip())
    if _is_empty(v):
        return ()
    if not text_file and isinstance(v, list | tuple | np.ndarray):
        items = [_as_text(g) for g in v]
        if any(g is None for g in items):
            return None
        return tuple(g for g in items if g)
    return None
