"""One reader for delimited text files, with errors that name the file, line and field.

Every source goes through :func:`read_delimited`, so every source reports bad input the same
way: a :class:`~kg_builders.errors.DataError` (``on_error="raise"``, the default) or a counted
:class:`~kg_builders.tables.RowIssue` per skipped row (``on_error="skip"``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kg_builders.errors import ConfigError, DataError
from kg_builders.tables import RowIssue

ON_ERROR = ("raise", "skip")
#: the bounds of the readers' integer columns (int64)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def out_of_range(value: object) -> str:
    """The reason given for an integer that does not fit the readers' int64 columns."""
    return f"{value!r} is out of range (integers must fit in 64 bits)"


@dataclass(frozen=True)
class Check:
    """A per-column check: ``bad(series) -> bool mask`` with the reason shown for a bad value."""

    column: str
    bad: Callable[[pd.Series], np.ndarray]
    reason: str


def check_on_error(on_error: str) -> str:
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    return on_error


def decode_file(path: str | Path, encoding: str) -> str:
    """Read ``path`` as text in ``encoding``; CRLF and CR become LF.

    Raises:
        DataError: the file is missing, empty, or does not decode (names the line).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", file=p)
    raw = p.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"bytes {raw[exc.start : exc.end]!r} are not valid {encoding}; pass the file's encoding "
            "(e.g. encoding='latin-1')",
            file=p,
            line=line,
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DataError("file is empty", file=p)
    return text


def sep_label(sep: str | None) -> str:
    """How a separator is named in messages: ``'\\t'`` for a tab, ``whitespace`` for ``None``."""
    return "whitespace" if sep is None else repr(sep)


def _split_rows(text: str, sep: str | None, quoting: bool, path: Path) -> list[tuple[int, list[str]]]:
    """Split text into (line number, fields), skipping blank lines. Python-level, exact line numbers.

    ``sep=None`` splits on runs of whitespace (no quoting).

    Raises:
        DataError: a quote that is never closed (the rest of the file would be one field), named
            by the line of the row it opens in; raised under ``on_error="skip"`` too.
    """
    rows: list[tuple[int, list[str]]] = []
    if sep is None:
        for i, line in enumerate(text.split("\n"), start=1):
            fields = line.split()
            if fields:
                rows.append((i, fields))
        return rows
    if quoting and len(sep) == 1:
        at_end = False

        def lines() -> Iterator[str]:
            nonlocal at_end
            yield from io.StringIO(text)
            at_end = True  # the reader asked for more: only inside quotes does a row then follow

        reader = csv.reader(lines(), delimiter=sep)
        start = 1
        unclosed = "a quote opened in the row starting on this line is never closed"
        skip = "; fix the file: this cannot be skipped with on_error='skip'"
        try:
            for fields in reader:
                if at_end:
                    raise DataError(f"{unclosed}: it runs to the end of the file{skip}", file=path, line=start)
                if fields and any(f != "" for f in fields):
                    rows.append((start, fields))
                start = reader.line_num + 1
        except csv.Error as exc:  # a quoted field longer than csv.field_size_limit()
            raise DataError(f"{unclosed}? ({exc}){skip}", file=path, line=start) from exc
        return rows
    for i, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            rows.append((i, line.split(sep)))
    return rows


def read_delimited(
    path: str | Path,
    *,
    sep: str | None,
    columns: Sequence[str] | None = None,
    header: bool = True,
    rename: Mapping[str, str] | None = None,
    types: Mapping[str, str] | None = None,
    checks: Sequence[Check] = (),
    encoding: str = "utf-8",
    quoting: bool = True,
    min_fields: int | None = None,
    on_error: str = "raise",
) -> tuple[pd.DataFrame, list[RowIssue]]:
    """Read a delimited file into a DataFrame with typed columns.

    Args:
        path: the file.
        sep: the field separator (may be several characters, e.g. ``"::"``); ``None`` splits on
            runs of whitespace (spaces and tabs; no quoting).
        columns: the expected column names. With ``header=True`` these must all appear in the
            header (extra header columns are kept); with ``header=False`` they name the fields.
        header: whether the first non-blank line is a header.
        rename: header name -> output column name (e.g. ``{"userId": "user_id"}``).
        types: output column -> ``"str"``, ``"float"`` or ``"int"`` (others stay strings).
        checks: extra value checks, applied after type conversion.
        encoding: text encoding of the file.
        quoting: honour CSV double quotes (single-character separators only).
        min_fields: with ``header=False``, rows may have more fields than ``columns`` (kept as
            ``_rest``, a list) as long as they have at least this many.
        on_error: ``"raise"`` (a :class:`DataError` naming file, line and field) or ``"skip"``
            (the row is dropped and returned as a :class:`RowIssue`).

    Returns:
        ``(frame, issues)``; ``frame`` has a fresh RangeIndex.
    """
    check_on_error(on_error)
    p = Path(path)
    text = decode_file(p, encoding)
    rows = _split_rows(text, sep, quoting, p)
    issues: list[RowIssue] = []

    def bad(line: int | None, field: str | None, reason: str) -> None:
        if on_error == "raise":
            raise DataError(reason, file=p, line=line, field=field)
        issues.append(RowIssue(str(p), line, field, reason))

    if header:
        if not rows:
            raise DataError("file has no header line", file=p)
        head_line, head = rows[0]
        head = [h.strip() for h in head]
        twice = next((h for i, h in enumerate(head) if h in head[:i]), None)
        if twice is not None:
            raise DataError(f"column {twice!r} appears twice", file=p, line=head_line)
        rows = rows[1:]
        if columns is not None:
            missing = [c for c in columns if c not in head]
            if missing:
                hint = ""
                for other in ("\t", ",", ";", "|", "::"):
                    if other != sep and len(head) == 1 and other in head[0]:
                        hint = f"; the header contains {other!r}: wrong delimiter? (expected {sep_label(sep)})"
                raise DataError(f"missing column(s) {missing}; header has {head}{hint}", file=p, line=head_line)
        names = head
    else:
        if columns is None:
            raise ConfigError("read_delimited needs columns when header=False")
        names = list(columns)
    if not rows:
        raise DataError("file has a header but no data rows" if header else "file has no rows", file=p)

    width = len(names)
    keep_rest = not header and min_fields is not None
    good_lines: list[int] = []
    good: list[list[str]] = []
    rest: list[list[str]] = []
    for line, fields in rows:
        n = len(fields)
        if keep_rest:
            if n < min_fields:  # type: ignore[operator]
                bad(line, None, f"expected at least {min_fields} fields separated by {sep_label(sep)}, found {n}")
                continue
            base = fields[:width] + [""] * max(0, width - n)
            rest.append(fields[width:])
        else:
            if n != width:
                hint = ""
                if n == 1 and sep is not None and sep not in fields[0]:
                    hint = f" (wrong delimiter? expected {sep!r})"
                bad(line, None, f"expected {width} fields separated by {sep_label(sep)}, found {n}{hint}")
                continue
            base = fields
        if header and [f.strip() for f in fields] == head:
            bad(line, None, "the header line is repeated here (two files concatenated?)")
            continue
        good_lines.append(line)
        good.append(base)
    frame = pd.DataFrame(good, columns=names, dtype=object) if good else pd.DataFrame(columns=names, dtype=object)
    if keep_rest:
        frame["_rest"] = pd.Series(rest, dtype=object)
    lines = np.asarray(good_lines, dtype=np.int64)
    if rename:
        target = [dict(rename).get(c, c) for c in frame.columns]
        twice = next((c for i, c in enumerate(target) if c in target[:i]), None)
        if twice is not None:  # e.g. an item_id column next to the movieId that becomes item_id
            both = [c for c, t in zip(frame.columns, target, strict=True) if t == twice]
            raise DataError(f"columns {both} would both be {twice!r}", file=p, line=head_line if header else None)
        frame = frame.rename(columns=dict(rename))
    keep = np.ones(len(frame), dtype=bool)
    for col, kind in (types or {}).items():
        if col not in frame.columns:
            continue
        raw = frame[col].astype(str).str.strip()
        if kind == "str":
            empty = (raw == "").to_numpy()
            for i in np.flatnonzero(empty & keep):
                bad(int(lines[i]), col, "empty value")
            keep &= ~empty
            frame[col] = raw
        elif kind in ("float", "int"):
            num = pd.to_numeric(raw, errors="coerce")
            nonnum = num.isna().to_numpy()
            nan_literal = raw.str.lower().isin(["nan", "inf", "-inf", "infinity"]).to_numpy()
            infinite = np.isinf(num.to_numpy(dtype=float, na_value=np.nan))
            failed = nonnum | nan_literal | infinite
            huge = np.zeros(len(num), dtype=bool)
            if kind == "int":
                values = num.fillna(0).to_numpy(dtype=float)
                failed |= ~failed & (np.mod(values, 1) != 0)
                if num.dtype.kind == "u":  # pandas' exact dtype for values above int64
                    huge = (num > INT64_MAX).to_numpy()
                elif num.dtype.kind == "f":  # rounded, so 2**63 itself counts as out of range
                    huge = ~failed & (np.abs(values) >= 2.0**63)
                failed |= huge
                failed |= ~raw.str.fullmatch(r"[+-]?[0-9]+").to_numpy(dtype=bool)  # not 5.0 or 9.6e8
                if num.dtype.kind == "f":  # a bad value made the column floats, which round values above 2**53
                    num = pd.to_numeric(raw.where(~failed, "0"))
            for i in np.flatnonzero(failed & keep):
                what = "integer" if kind == "int" else "number"
                bad(
                    int(lines[i]),
                    col,
                    out_of_range(raw.iloc[i]) if huge[i] else f"{raw.iloc[i]!r} is not a finite {what}",
                )
            keep &= ~failed
            frame[col] = num
        else:
            raise ConfigError(f"unknown column type {kind!r} for {col!r}")
    for chk in checks:
        if chk.column not in frame.columns:
            continue
        mask = np.asarray(chk.bad(frame[chk.column]), dtype=bool)
        for i in np.flatnonzero(mask & keep):
            bad(int(lines[i]), chk.column, f"{frame[chk.column].iloc[i]!r}: {chk.reason}")
        keep &= ~mask
    frame = frame.loc[keep].reset_index(drop=True)
    lines = lines[keep]
    for col, kind in (types or {}).items():
        if col in frame.columns:
            if kind == "float":
                frame[col] = frame[col].astype("float64")
            elif kind == "int":
                frame[col] = frame[col].astype("int64")
            else:
                frame[col] = frame[col].astype(object)
    frame.attrs["lines"] = lines
    frame.attrs["file"] = str(p)
    return frame, issues


def duplicate_rows(
    frame: pd.DataFrame, key: Sequence[str], *, what: str, on_error: str, file: str | None = None
) -> tuple[pd.DataFrame, list[RowIssue]]:
    """Reject (or skip, keeping the first) rows whose ``key`` repeats an earlier row.

    Uses the line numbers :func:`read_delimited` stored in ``frame.attrs``.
    """
    dup = frame.duplicated(subset=list(key), keep="first").to_numpy()
    if not dup.any():
        return frame, []
    lines = frame.attrs.get("lines")
    src = file or frame.attrs.get("file")
    issues = []
    for i in np.flatnonzero(dup):
        line = int(lines[i]) if lines is not None else None
        vals = ", ".join(f"{k}={frame[k].iloc[i]!r}" for k in key)
        reason = f"duplicate {what} ({vals})"
        if on_error == "raise":
            raise DataError(reason, file=src, line=line, field=key[0])
        issues.append(RowIssue(str(src), line, key[0], reason))
    out = frame.loc[~dup].reset_index(drop=True)
    out.attrs = dict(frame.attrs)
    if lines is not None:
        out.attrs["lines"] = lines[~dup]
    return out, issues


def repeated_rows(frame: pd.DataFrame, key: Sequence[str], *, earliest: str | None = None) -> tuple[pd.DataFrame, int]:
    """Keep one row per ``key``: for facts that hold once however often a file writes them.

    A tag a user put on an item is such a fact: written twice (a file concatenated with itself, an
    export that repeats rows), it is still one assignment, so the copies are removed rather than
    rejected as bad rows, and the caller logs how many. The row kept is the first in the file; it
    gets the smallest ``earliest`` value (a timestamp) of its copies. Rows with a missing key value
    are all kept (two tags by unknown users may be two people's). Like :func:`duplicate_rows`, the
    line numbers in ``frame.attrs`` stay aligned.

    Returns:
        ``(frame, number of rows removed)``.
    """
    cols = list(key)
    known = frame[cols].notna().all(axis=1).to_numpy()
    dup = frame.duplicated(subset=cols, keep="first").to_numpy() & known
    if not dup.any():
        return frame, 0
    out = frame.copy()
    if earliest is not None and earliest in frame.columns:
        first = frame.loc[known].groupby(cols, sort=False)[earliest].transform("min")
        out.loc[known, earliest] = first.astype(frame[earliest].dtype)
    out = out.loc[~dup].reset_index(drop=True)
    out.attrs = dict(frame.attrs)
    lines = frame.attrs.get("lines")
    if lines is not None:
        out.attrs["lines"] = lines[~dup]
    return out, int(dup.sum())


def reject_rows(
    frame: pd.DataFrame,
    bad: np.ndarray | pd.Series,
    *,
    field: str | None,
    reason: str | Callable[[int], str],
    on_error: str,
    file: str | None = None,
) -> tuple[pd.DataFrame, list[RowIssue]]:
    """Reject (or skip) the rows of ``frame`` where ``bad`` is true.

    Like :func:`duplicate_rows`, this uses the line numbers :func:`read_delimited` stored in
    ``frame.attrs`` (kept aligned in the returned frame).

    Args:
        frame: a frame from :func:`read_delimited` (or one carrying the same ``attrs``).
        bad: boolean mask ``[len(frame)]``.
        field: the column named in the error.
        reason: the message, or ``reason(i) -> str`` for row position ``i``.
        on_error: ``"raise"`` or ``"skip"``.
        file: the file named in the error (default: ``frame.attrs["file"]``).
    """
    check_on_error(on_error)
    mask = np.asarray(bad, dtype=bool)
    if mask.shape != (len(frame),):
        raise ValueError(f"bad mask has shape {mask.shape}, expected ({len(frame)},)")
    if not mask.any():
        return frame, []
    lines = frame.attrs.get("lines")
    src = file or frame.attrs.get("file")
    issues = []
    for i in np.flatnonzero(mask):
        line = int(lines[i]) if lines is not None else None
        why = reason(int(i)) if callable(reason) else reason
        if on_error == "raise":
            raise DataError(why, file=src, line=line, field=field)
        issues.append(RowIssue(str(src), line, field, why))
    out = frame.loc[~mask].reset_index(drop=True)
    out.attrs = dict(frame.attrs)
    if lines is not None:
        out.attrs["lines"] = lines[~mask]
    return out, issues


def year_from_title(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Split ``"Toy Story (1995)"`` into ``("Toy Story", 1995)``; a title without a year keeps ``<NA>``."""
    m = titles.str.extract(r"^(?P<t>.*?)\s*\((?P<y>\d{4})(?:[-–]\d{0,4})?\)\s*$")
    clean = m["t"].where(m["t"].notna(), titles.str.strip())
    year = pd.to_numeric(m["y"], errors="coerce").astype("Int64")
    return clean, year


_WS = re.compile(r"\s+")


def normalise_space(s: str) -> str:
    return _WS.sub(" ", s).strip()


def plain(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` without the line numbers :func:`read_delimited` keeps in ``attrs``.

    pandas compares ``attrs`` when it merges or concatenates frames and cannot compare arrays, so
    a frame leaves a reader through this function.
    """
    out = frame.reset_index(drop=True)
    out.attrs = {}
    return out


def optional_str(values: pd.Series) -> pd.Series:
    """Strip strings; an empty value becomes missing. Returns pandas' ``str`` dtype (missing as NaN)."""
    out = values.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
    return out.where(out != "", None).astype("str")
