"""Reader for the LightGCN / KGAT text format of interaction data.

Two layouts exist:

``adjacency`` (LightGCN's gowalla/yelp2018/amazon-book ``train.txt``/``test.txt``, KGAT's data sets)
    one line per user: ``user item item ...`` separated by spaces; a user line with no items is
    allowed (the user still appears in ``users``).
``pairs`` (LightGCN's lastfm ``data1.txt``/``test1.txt``)
    one interaction per line: ``user item [third column]``, tab or space separated; only the first
    two columns are used, as LightGCN-PyTorch's lastfm loader does (the third column of its lastfm
    files is not a rating and is ignored). A line with more than three fields is a bad row.

The train and test files are read in one layout: given, or detected once for both (files whose
detected layouts differ are refused, asking for ``layout=``).

Ids are non-negative integers written in ASCII digits without leading zeros (``01`` is refused, as
``1`` and ``01`` would be two users); they are kept as the raw strings the file writes (no ``-1``
shift). ``trustnetwork.txt`` (``user user`` per line) gives the ``social`` table. Interactions carry
the official split as ``split`` (``"train"`` from the train file, ``"test"`` from the test file). A
repeated (user, item) pair within one file is an error (or skipped); a test pair that is also in the
train file is an error naming the test file's line (or skipped), since it would become a training
edge.

Citation: Xiangnan He, Kuan Deng, Xiang Wang, Yan Li, Yongdong Zhang and Meng Wang. 2020. LightGCN:
Simplifying and Powering Graph Convolution Network for Recommendation. SIGIR 2020.
https://doi.org/10.1145/3397271.3401063 (data files: https://github.com/gusye1234/LightGCN-PyTorch;
KGAT: Wang et al., KDD 2019, https://doi.org/10.1145/3292500.3330989).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kg_builders.errors import ConfigError, DataError
from kg_builders.sources._reader import (
    Check,
    check_on_error,
    decode_file,
    duplicate_rows,
    plain,
    read_delimited,
    reject_rows,
)
from kg_builders.tables import RowIssue, Tables

logger = logging.getLogger(__name__)

LAYOUTS = ("adjacency", "pairs")
SOURCE = "lightgcn"
_NOT_ID = "is not a non-negative integer id in digits without leading zeros (1, not 01)"


def detect_lightgcn_layout(path: str | Path) -> str:
    """Guess the layout of a LightGCN/KGAT interaction file: ``"adjacency"`` or ``"pairs"``.

    ``adjacency`` when lines have different numbers of fields or a line has one or more than three
    (a ``pairs`` line has two or three); ``pairs`` when a user appears on several lines, when a line is
    tab separated, or when every line has exactly two fields (both readings then give the same
    interactions); otherwise ``adjacency`` (one line per user is LightGCN's own layout).

    Raises:
        DataError: the file is missing, empty or not utf-8, or a user appears on several lines
            (a ``pairs`` sign) of a file whose line widths say ``adjacency``: the error names the
            repeated user's line and asks for ``layout=``.
    """
    return _detect(Path(path))[0]


def _detect(path: Path) -> tuple[str, bool]:
    """The detected layout of ``path``, and whether both layouts read it the same (two fields a line)."""
    text = decode_file(path, "utf-8")
    users: set[str] = set()
    widths: set[int] = set()
    tabbed = False
    repeat: tuple[int, str] | None = None  # the first line naming a user a second time
    for number, line in enumerate(text.split("\n"), start=1):  # the line numbers read_delimited gives
        fields = line.split()
        if not fields:
            continue
        if fields[0] in users and repeat is None:
            repeat = (number, fields[0])
        users.add(fields[0])
        widths.add(len(fields))
        tabbed = tabbed or "\t" in line.strip()
    if widths == {2}:
        return "pairs", True
    if len(widths) > 1 or not widths <= {2, 3}:  # a 'pairs' line has two or three fields
        if repeat is not None:
            raise DataError(
                f"user {repeat[1]!r} is on an earlier line too (one interaction per line: 'pairs'), but the "
                "lines have different numbers of fields, or one, or more than three (one user per line: "
                "'adjacency'); pass layout='adjacency' or layout='pairs'",
                file=path,
                line=repeat[0],
                field="user_id",
            )
        return "adjacency", False
    if repeat is not None or tabbed:
        return "pairs", False
    return "adjacency", False


def _detect_all(paths: list[Path]) -> str:
    """One layout for all ``paths``: the first's that tells (two fields a line fit both); a different one is refused."""
    detected = [(p, *_detect(p)) for p in paths]
    telling = [(p, layout) for p, layout, either in detected if not either]
    if not telling:  # two fields on every line of every file: both readings give the same rows
        used = "pairs"
    else:
        first, used = telling[0]
        for p, layout in telling[1:]:
            if layout != used:
                raise DataError(
                    f"this file looks like the {layout!r} layout but {first} looks like {used!r}; both are "
                    "read in one layout: pass layout='adjacency' or layout='pairs'",
                    file=p,
                )
    logger.info("%s: detected the %r layout", ", ".join(str(p) for p in paths), used)
    return used


def load_lightgcn(
    train_path: str | Path,
    test_path: str | Path | None = None,
    *,
    layout: str | None = None,
    social_path: str | Path | None = None,
    on_error: str = "raise",
) -> Tables:
    """Read LightGCN/KGAT train (and test) files, and optionally a trust network.

    Args:
        train_path: the training interactions.
        test_path: the test interactions (the official split), if any.
        layout: ``"adjacency"`` or ``"pairs"``, used for the train and the test file; ``None``
            detects it once for both with :func:`detect_lightgcn_layout` (logged): files whose
            detected layouts differ are refused (a file of two fields a line fits either layout).
        social_path: ``user user`` lines (e.g. ``trustnetwork.txt``) -> ``social``.
        on_error: ``"raise"`` (a :class:`~kg_builders.errors.DataError` naming file, line and
            field) or ``"skip"`` (bad rows dropped and listed in ``Tables.issues``).

    Returns:
        Tables with ``interactions`` (user_id, item_id, split), ``users`` (every user named in the
        interaction files, including users with no items) and ``social`` when given; ``source`` is
        ``"lightgcn"``.

    Raises:
        ConfigError: an unknown layout or on_error.
        DataError: a missing or empty file, a bad row (an id that is not a non-negative integer
            in plain digits, a repeated pair in one file, a test pair also in the train file, a
            ``pairs`` line of more than three fields), or, with ``layout=None``, files whose layout
            is ambiguous or differs between train and test.
    """
    check_on_error(on_error)
    if layout is not None and layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS} or None (detect), got {layout!r}")
    files = [(split, Path(path)) for split, path in (("train", train_path), ("test", test_path)) if path is not None]
    used = layout or _detect_all([path for _, path in files])
    issues: list[RowIssue] = []
    parts = []
    users: list[str] = []
    for split, path in files:
        frame, file_users, more = _read_interactions(path, used, on_error)
        issues += more
        if split == "test" and parts:  # a test pair that also trains would be a graph edge: refused, as ml-100k's
            train = parts[0]
            both = pd.MultiIndex.from_frame(frame[["user_id", "item_id"]]).isin(
                pd.MultiIndex.from_frame(train[["user_id", "item_id"]])
            )
            frame, more = reject_rows(
                frame,
                both,
                field="item_id",
                reason=lambda i, f=frame: (
                    f"(user {f['user_id'].iloc[i]!r}, item {f['item_id'].iloc[i]!r}) is also in {Path(train_path).name}"
                ),
                on_error=on_error,
            )
            issues += more
        users += file_users
        parts.append(plain(frame).assign(split=split))
    interactions = pd.concat(parts, ignore_index=True)
    social = None
    if social_path is not None:
        friends, more = read_delimited(
            social_path,
            sep=None,
            header=False,
            columns=["user_id", "friend_id"],
            min_fields=2,
            types={"user_id": "str", "friend_id": "str"},
            checks=[Check("user_id", _bad_id, _NOT_ID), Check("friend_id", _bad_id, _NOT_ID)],
            on_error=on_error,
        )
        issues += more
        social = plain(friends[["user_id", "friend_id"]])
    user_table = pd.DataFrame({"user_id": pd.Series(_natural_unique(users), dtype=object)})
    logger.info(
        "%s: %d interactions (%s), %d users, %d items%s",
        SOURCE,
        len(interactions),
        ", ".join(f"{k} {v}" for k, v in interactions["split"].value_counts(sort=False).items()),
        len(user_table),
        interactions["item_id"].nunique(),
        f", {len(social)} social rows" if social is not None else "",
    )
    return Tables(
        interactions=interactions,
        users=user_table,
        social=social,
        source=SOURCE,
        issues=tuple(issues),
    )


def _read_interactions(path: Path, layout: str, on_error: str) -> tuple[pd.DataFrame, list[str], list[RowIssue]]:
    """(user_id, item_id) rows of one file, the users it names, and skipped rows."""
    if layout == "pairs":
        frame, issues = read_delimited(
            path,
            sep=None,
            header=False,
            columns=["user_id", "item_id"],
            min_fields=2,
            types={"user_id": "str", "item_id": "str"},
            checks=[Check("user_id", _bad_id, _NOT_ID), Check("item_id", _bad_id, _NOT_ID)],
            on_error=on_error,
        )
        extra = frame["_rest"].map(len).to_numpy()
        frame, more = reject_rows(  # the third column is ignored; more would be silently dropped
            frame,
            extra > 1,
            field=None,
            reason=lambda i: (
                f"expected 2 or 3 fields in the 'pairs' layout (user item [third column]), found {2 + extra[i]}; "
                "one user per line is layout='adjacency'"
            ),
            on_error=on_error,
        )
        issues += more
        users = frame["user_id"].tolist()
    else:
        lines, issues = read_delimited(
            path,
            sep=None,
            header=False,
            columns=["user_id"],
            min_fields=1,
            types={"user_id": "str"},
            checks=[Check("user_id", _bad_id, _NOT_ID)],
            on_error=on_error,
        )
        users = lines["user_id"].tolist()
        counts = lines["_rest"].map(len).to_numpy()
        frame = pd.DataFrame(
            {
                "user_id": pd.Series(np.repeat(lines["user_id"].to_numpy(dtype=object), counts), dtype=object),
                "item_id": pd.Series([i for rest in lines["_rest"] for i in rest], dtype=object),
            }
        )
        frame.attrs["lines"] = np.repeat(lines.attrs["lines"], counts)
        frame.attrs["file"] = lines.attrs["file"]
        bad = _bad_id(frame["item_id"])
        frame, more = reject_rows(
            frame,
            bad,
            field="item_id",
            reason=lambda i: f"{frame['item_id'].iloc[i]!r} {_NOT_ID}",
            on_error=on_error,
        )
        issues += more
    frame, more = duplicate_rows(frame, ["user_id", "item_id"], what="(user, item) pair", on_error=on_error)
    issues += more
    out = frame[["user_id", "item_id"]]
    out.attrs = dict(frame.attrs)  # the line numbers, for the train/test overlap check
    return out, users, issues


def _bad_id(s: pd.Series) -> np.ndarray:
    """Not ASCII digits without leading zeros: ``1`` and ``01`` would be two users."""
    return (~s.astype(str).str.fullmatch(r"0|[1-9][0-9]*")).to_numpy()


def _natural_unique(ids: list[str]) -> list[str]:
    """Unique ids, ordered by their integer value (ids are checked to be digits)."""
    return sorted(set(ids), key=lambda s: (int(s), s))
