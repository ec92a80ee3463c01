"""Seeded splits of the interaction table, made BEFORE any graph exists.

Every function takes the ``interactions`` table (or a :class:`~kg_builders.tables.Tables`) and
returns a :class:`Split`. :meth:`Split.train_tables` gives the tables a graph may be built from:
the training interactions only, and tag assignments of held-out (user, item) pairs removed, so a
validation or test interaction can never become an edge, directly or through a tag.

Protocols:
    * :func:`split_random`: per user, a seeded random share of their interactions per part.
    * :func:`split_temporal`: per user (or globally), the oldest share trains, the newest tests.
    * :func:`split_leave_one_out`: per user, the last interaction tests, the one before validates.
    * :func:`split_cold_item`: a seeded share of ITEMS is held out; their interactions never train.
    * :func:`split_official`: the split a source ships (``split`` column), kept as is.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kg_builders._files import atomic_dir
from kg_builders.errors import ConfigError, DataError, SchemaError
from kg_builders.fragment import plain_value
from kg_builders.tables import Tables

PARTS = ("train", "valid", "test")
#: columns read back as exact strings (no missing-value parsing)
ID_COLUMNS = ("user_id", "item_id")


@dataclass(frozen=True)
class Split:
    """Train / validation / test interaction tables and how they were made.

    Attributes:
        train, valid, test: interaction tables (``valid`` may be empty).
        method: the split function's name; settings: its arguments.
        cold_items: item ids held out of training entirely (cold-item split only).
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    method: str
    settings: dict[str, Any] = field(default_factory=dict)
    cold_items: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        return {p: len(getattr(self, p)) for p in PARTS}

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``train/valid/test.csv`` and ``split.json`` (method, settings, cold items) atomically."""
        with atomic_dir(path, overwrite=overwrite) as tmp:
            for part in PARTS:  # every field quoted: an id holding a bare "\r" reads back as itself
                getattr(self, part).to_csv(tmp / f"{part}.csv", index=False, quoting=csv.QUOTE_ALL)
            meta = {
                "method": self.method,
                "settings": plain_value(self.settings),
                "cold_items": list(self.cold_items),
                "dtypes": {part: {c: str(t) for c, t in getattr(self, part).dtypes.items()} for part in PARTS},
            }
            (tmp / "split.json").write_text(json.dumps(meta, indent=2))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a directory written by :meth:`save` (ids stay the exact strings written).

        Raises:
            DataError: a missing or damaged file (named), or a part without user_id / item_id.
        """
        p = Path(path)
        for name in ("split.json", *(f"{part}.csv" for part in PARTS)):
            if not (p / name).is_file():
                raise DataError(f"{name} is missing from a saved split", file=p)
        meta_file = p / "split.json"
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise DataError(f"not valid JSON ({exc})", file=meta_file) from exc
        if not isinstance(meta, dict) or not isinstance(meta.get("method"), str):
            raise DataError("not a saved split: expected an object with a 'method' string", file=meta_file)
        settings, cold, dtypes = meta.get("settings", {}), meta.get("cold_items", []), meta.get("dtypes", {})
        if not (
            isinstance(settings, dict)
            and isinstance(cold, list)
            and all(isinstance(c, str) for c in cold)
            and isinstance(dtypes, dict)
            and all(isinstance(d, dict) for d in dtypes.values())
        ):
            raise DataError("'settings' and 'dtypes' must be objects, 'cold_items' a list of strings", file=meta_file)
        parts = [_read_part(p / f"{part}.csv", dtypes.get(part)) for part in PARTS]
        return cls(*parts, meta["method"], settings, tuple(cold))

    def held_out_pairs(self) -> pd.MultiIndex:
        """(user_id, item_id) pairs of validation and test."""
        held = pd.concat([self.valid[["user_id", "item_id"]], self.test[["user_id", "item_id"]]])
        return pd.MultiIndex.from_frame(held)

    def train_tables(self, tables: Tables) -> Tables:
        """The tables a graph may be built from: training interactions only.

        Tag assignments made by a user on an item whose (user, item) pair is held out are removed
        (they would reveal the held-out interaction). With a cold-item split, every user's tag on
        a cold item is removed as well (a new item cannot have been tagged by its users yet). A tag
        table without user ids is item metadata and stays whole, as do social edges.
        """
        changes: dict[str, Any] = {"interactions": self.train.drop(columns=["split"], errors="ignore")}
        tags = tables.tag_assignments
        if tags is not None and "user_id" in tags.columns and len(tags):
            held = self.held_out_pairs()
            pairs = pd.MultiIndex.from_frame(tags[["user_id", "item_id"]])
            keep = ~pairs.isin(held)
            if self.cold_items:
                keep &= ~tags["item_id"].isin(self.cold_items).to_numpy()
            changes["tag_assignments"] = tags.loc[keep].reset_index(drop=True)
        return tables.replace(**changes)


def _read_part(file: Path, dtypes: dict[str, str] | None) -> pd.DataFrame:
    """One part written by :meth:`Split.save`, with the column dtypes saved in ``split.json``.

    Ids are read as exact strings (an id ``"NA"``, ``"null"`` or ``""`` stays that id). In the
    other columns an empty field is missing, the only missing value ``to_csv`` writes. A split
    saved without ``dtypes`` gets the dtypes pandas infers.
    """
    try:
        columns = pd.read_csv(file, nrows=0).columns.tolist()
        frame = pd.read_csv(
            file,
            dtype=dict.fromkeys(ID_COLUMNS, str),
            keep_default_na=False,
            na_values={c: [""] for c in columns if c not in ID_COLUMNS},
        )
    except ValueError as exc:  # pandas' ParserError and EmptyDataError, UnicodeDecodeError
        raise DataError(f"unreadable saved split part ({exc})", file=file) from exc
    missing = [c for c in ID_COLUMNS if c not in columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; the file has {columns}", file=file)
    if not isinstance(frame.index, pd.RangeIndex):  # pandas turns the extra leading fields into an index
        raise DataError("the first row has more fields than the header", file=file)
    if dtypes is None:
        return frame
    if list(dtypes) != columns:
        raise DataError(f"columns {columns} differ from those saved in split.json {list(dtypes)}", file=file)
    try:
        return frame.astype(dtypes)
    except (TypeError, ValueError) as exc:
        raise DataError(f"values do not fit the dtypes saved in split.json ({exc})", file=file) from exc


def _interactions(data: Tables | pd.DataFrame) -> pd.DataFrame:
    df = data.interactions if isinstance(data, Tables) else data
    for c in ("user_id", "item_id"):
        if c not in df.columns:
            raise SchemaError(f"interactions need a {c!r} column; have {list(df.columns)}")
    return df


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """``(train, valid, test)`` shares from three, or two (``(train, test)``); a ConfigError otherwise."""
    if isinstance(ratios, str | bytes) or not all(
        isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool) for x in ratios
    ):
        raise ConfigError(f"ratios must be numbers, (train, valid, test) or (train, test); got {ratios!r}")
    r = tuple(float(x) for x in ratios)
    if len(r) == 2:
        r = (r[0], 0.0, r[1])
    if len(r) != 3 or any(x < 0 or not np.isfinite(x) for x in r) or r[0] <= 0:
        raise ConfigError(
            f"ratios must be (train, valid, test) or (train, test), non-negative, train > 0; got {ratios}"
        )
    s = sum(r)
    if abs(s - 1.0) > 1e-6:
        raise ConfigError(f"ratios must sum to 1, got {ratios} (sum {s})")
    return r  # type: ignore[return-value]


def _rank_in_group(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For keys sorted so that groups are contiguous: each row's 0-based rank in its group, and the group size."""
    codes, _ = pd.factorize(sorted_keys)
    size = np.bincount(codes)[codes]
    starts = np.r_[0, np.flatnonzero(np.diff(codes)) + 1]
    rank = np.arange(len(sorted_keys)) - np.repeat(starts, np.diff(np.r_[starts, len(sorted_keys)]))
    return rank, size


def _assign_by_rank(rank: np.ndarray, size: np.ndarray, ratios: tuple[float, float, float]) -> np.ndarray:
    """Part per row from its 0-based rank within its user and the user's size.

    A user with n interactions gets round(n * test) test rows and round(n * valid) validation
    rows, but always keeps at least one training row.
    """
    n_test = np.floor(size * ratios[2] + 0.5).astype(np.int64)
    n_valid = np.floor(size * ratios[1] + 0.5).astype(np.int64)
    over = np.maximum(n_test + n_valid - (size - 1), 0)
    cut_v = np.minimum(over, n_valid)
    n_valid -= cut_v
    n_test -= over - cut_v
    n_train = size - n_valid - n_test
    part = np.zeros(len(rank), dtype=np.int8)
    part[rank >= n_train] = 1
    part[rank >= n_train + n_valid] = 2
    return part


def _make(
    df: pd.DataFrame, part: np.ndarray, method: str, settings: dict[str, Any], cold: tuple[str, ...] = ()
) -> Split:
    out = [df.loc[part == i].reset_index(drop=True) for i in range(3)]
    return Split(out[0], out[1], out[2], method, settings, cold)


def _by_pair(df: pd.DataFrame, parts_of: Callable[[pd.DataFrame], np.ndarray]) -> np.ndarray:
    """``parts_of`` over the distinct (user, item) pairs, every repeat of a pair sent to its pair's part.

    Repeated pairs (a user who played a track twice) are one interaction to hold out: split row by
    row, one copy could train while the other tests, and the held-out pair would be a graph edge.
    A pair stands where its earliest row stands (its first timestamp, else its first row), so a
    table without repeats is split exactly as it was.
    """
    pair = df.groupby(["user_id", "item_id"], sort=False, dropna=False).ngroup().to_numpy()
    if len(df) == 0 or pair.max() + 1 == len(df):
        return parts_of(df)
    order = np.arange(len(df))
    if "timestamp" in df.columns:
        order = np.lexsort((order, df["timestamp"].to_numpy()))
    order = order[np.argsort(pair[order], kind="stable")]  # pairs together, earliest first
    first = order[np.r_[True, np.diff(pair[order]) != 0]]
    first = np.sort(first)  # the pairs in the table's own order
    part_of_pair = np.empty(pair.max() + 1, dtype=np.int8)
    part_of_pair[pair[first]] = parts_of(df.iloc[first].reset_index(drop=True))
    return part_of_pair[pair]


def split_random(data: Tables | pd.DataFrame, *, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Per-user random split: each user's interactions are shuffled with ``seed`` and cut by ``ratios``.

    A user with ``n`` interactions gets ``round(n * test)`` test and ``round(n * valid)`` validation
    interactions (halves round up) and always keeps one training interaction, taken from
    validation first: with ``(0.8, 0.1, 0.1)`` a user with fewer than 5 interactions keeps them
    all in training and is never evaluated, and users 5 to 14 get one of each. Repeats of a
    (user, item) pair go to one part together (:func:`_by_pair`).
    """
    df = _interactions(data)
    r = check_ratios(ratios)

    def parts_of(d: pd.DataFrame) -> np.ndarray:
        key = np.random.default_rng(seed).random(len(d))
        users = d["user_id"].to_numpy()
        order = np.lexsort((key, users))
        rank, size = _rank_in_group(users[order])
        part = np.empty(len(d), dtype=np.int8)
        part[order] = _assign_by_rank(rank, size, r)
        return part

    return _make(df, _by_pair(df, parts_of), "random", {"ratios": list(r), "seed": seed})


def split_temporal(
    data: Tables | pd.DataFrame, *, ratios: Sequence[float] = (0.8, 0.1, 0.1), per_user: bool = True
) -> Split:
    """Temporal split: oldest interactions train, newest test (per user, or by a global cut-off).

    Ties in time are broken by the table's row order, so the split is deterministic. Per user, the
    shares round as in :func:`split_random` (a user with fewer than 5 interactions under
    ``(0.8, 0.1, 0.1)`` only trains); the global cut applies the same rule to the whole table, so a
    user whose interactions all come after it has none in training. Repeats of a (user, item) pair
    go to the part of their earliest row.
    """
    df = _interactions(data)
    if "timestamp" not in df.columns:
        raise SchemaError("a temporal split needs a 'timestamp' column in interactions")
    r = check_ratios(ratios)

    def parts_of(d: pd.DataFrame) -> np.ndarray:
        ts = d["timestamp"].to_numpy()
        part = np.empty(len(d), dtype=np.int8)
        if per_user:
            users = d["user_id"].to_numpy()
            order = np.lexsort((np.arange(len(d)), ts, users))
            rank, size = _rank_in_group(users[order])
        else:  # one cut-off for everyone: the same rule as one user's, over all rows
            order = np.lexsort((np.arange(len(d)), ts))
            rank, size = np.arange(len(d)), np.full(len(d), len(d))
        part[order] = _assign_by_rank(rank, size, r)
        return part

    return _make(df, _by_pair(df, parts_of), "temporal", {"ratios": list(r), "per_user": per_user})


def split_leave_one_out(data: Tables | pd.DataFrame, *, valid: bool = True, seed: int = 0) -> Split:
    """Per user: the latest interaction tests, the one before validates (if ``valid``).

    Without timestamps the held-out interactions are chosen at random with ``seed``. Users with
    too few interactions keep them all in training (one at least always trains). Repeats of a
    (user, item) pair count as one interaction, at its earliest time.
    """
    df = _interactions(data)

    def parts_of(d: pd.DataFrame) -> np.ndarray:
        users = d["user_id"].to_numpy()
        timed = "timestamp" in d.columns
        key = d["timestamp"].to_numpy() if timed else np.random.default_rng(seed).random(len(d))
        order = np.lexsort((np.arange(len(d)), key, users))
        rank, size = _rank_in_group(users[order])
        from_end = size - 1 - rank
        p = np.zeros(len(order), dtype=np.int8)
        p[(from_end == 0) & (size >= 2)] = 2
        if valid:
            p[(from_end == 1) & (size >= 3)] = 1
        part = np.empty(len(d), dtype=np.int8)
        part[order] = p
        return part

    return _make(
        df,
        _by_pair(df, parts_of),
        "leave_one_out",
        {"valid": valid, "seed": seed, "by": "timestamp" if "timestamp" in df.columns else "random"},
    )


def split_cold_item(data: Tables | pd.DataFrame, *, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Hold out whole ITEMS: a seeded share of items goes to validation / test with all their interactions.

    Items are drawn uniformly among those with interactions. Held-out items never appear in the
    training interactions (they stay in the item catalogue, so their text can still be encoded).
    """
    df = _interactions(data)
    r = check_ratios(ratios)
    items = pd.unique(df["item_id"])
    rng = np.random.default_rng(seed)
    perm = items[rng.permutation(len(items))]
    n = len(items)
    n_test = int(round(n * r[2]))
    n_valid = int(round(n * r[1]))
    if n_test + n_valid >= n:  # train > 0 asks for training items: keep one at least
        n_test, n_valid = min(n_test, n - 1), max(0, min(n_valid, n - 1 - min(n_test, n - 1)))
    item_part = dict.fromkeys(perm[:n_test].tolist(), 2)
    item_part.update(dict.fromkeys(perm[n_test : n_test + n_valid].tolist(), 1))
    part = df["item_id"].map(item_part).fillna(0).to_numpy(dtype=np.int8)
    cold = tuple(sorted(str(i) for i in perm[: n_test + n_valid]))
    return _make(df, part, "cold_item", {"ratios": list(r), "seed": seed}, cold)


def split_official(data: Tables | pd.DataFrame) -> Split:
    """The split a source ships, from the ``split`` column (train / valid / test), kept as is.

    Raises:
        DataError: a row whose label is not train / valid / test (missing included).
    """
    df = _interactions(data)
    if "split" not in df.columns:
        raise SchemaError("this source ships no official split (no 'split' column in interactions)")
    part = df["split"].map({name: i for i, name in enumerate(PARTS)})
    unknown = part.isna().to_numpy()
    if unknown.any():
        labels = sorted({repr(v) for v in df.loc[unknown, "split"]})
        raise DataError(
            f"{int(unknown.sum())} row(s) have a split label outside {PARTS}: {', '.join(labels[:10])} "
            f"(first at row index {df.index[unknown][0]!r})",
            field="split",
        )
    twice = (df.groupby(["user_id", "item_id"], sort=False)["split"].transform("nunique") > 1).to_numpy()
    if twice.any():
        first = df.loc[twice].iloc[0]
        raise DataError(
            f"{int(twice.sum())} row(s) put one (user, item) pair in two parts (first: user {first['user_id']!r}, "
            f"item {first['item_id']!r}): a held-out pair that also trains would be a graph edge",
            field="split",
        )
    return _make(df, part.to_numpy(dtype=np.int8), "official", {})


SPLITS = {
    "random": split_random,
    "temporal": split_temporal,
    "leave_one_out": split_leave_one_out,
    "cold_item": split_cold_item,
    "official": split_official,
}


def make_split(data: Tables | pd.DataFrame, method: str, **settings: Any) -> Split:
    """Dispatch by name (``random``, ``temporal``, ``leave_one_out``, ``cold_item``, ``official``)."""
    if method not in SPLITS:
        raise ConfigError(f"unknown split {method!r}; valid: {sorted(SPLITS)}")
    try:
        return SPLITS[method](data, **settings)
    except TypeError as exc:
        raise ConfigError(f"bad settings for split {method!r}: {exc}") from exc


__all__ = [
    "PARTS",
    "SPLITS",
    "Split",
    "make_split",
    "split_cold_item",
    "split_leave_one_out",
    "split_official",
    "split_random",
    "split_temporal",
]
