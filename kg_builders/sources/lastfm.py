"""Reader for the HetRec 2011 Last.fm data set (``hetrec2011-lastfm-2k``).

Files (tab separated, one header line, no quoting):

``user_artists.dat``  ``userID artistID weight`` (listening count) -> ``interactions`` with
    ``rating = float(weight)`` (must be finite and >= 0); no repeated (user, artist) pair, and every
    artist must be in ``artists.dat``.
``artists.dat``       ``id name url pictureURL`` (utf-8) -> ``items``: item_id, title (the name), url,
    picture_url.
``tags.dat``          ``tagID tagValue`` (latin-1, CRLF).
``user_taggedartists.dat`` ``userID artistID tagID day month year`` (latin-1, CRLF) ->
    ``tag_assignments``: item_id, tag (the tag's text), user_id, timestamp (the date at 00:00 UTC as
    Unix seconds). A tagID missing from ``tags.dat`` is an error; an artist missing from
    ``artists.dat`` is kept (the graph builder drops such rows and counts them). A (user, artist,
    tag) written more than once (a file concatenated with itself) is one assignment: the copies
    are removed, the earliest date kept, and their number logged (the published file has none).
``user_friends.dat``  ``userID friendID`` -> ``social`` (user_id, friend_id).

Citation: Iván Cantador, Peter Brusilovsky and Tsvi Kuflik. 2011. 2nd Workshop on Information
Heterogeneity and Fusion in Recommender Systems (HetRec 2011). In Proceedings of the 5th ACM
Conference on Recommender Systems (RecSys 2011). http://ir.ii.uam.es/hetrec2011 (data: Last.fm,
http://www.last.fm).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kg_builders.errors import DataError
from kg_builders.sources._reader import (
    Check,
    check_on_error,
    duplicate_rows,
    optional_str,
    plain,
    read_delimited,
    reject_rows,
    repeated_rows,
)
from kg_builders.tables import Tables

logger = logging.getLogger(__name__)

SOURCE = "hetrec2011-lastfm-2k"
_EPOCH = pd.Timestamp("1970-01-01")


def load_hetrec_lastfm(path: str | Path, *, on_error: str = "raise") -> Tables:
    """Read the HetRec 2011 Last.fm directory into tables.

    Args:
        path: the unpacked ``hetrec2011-lastfm-2k`` directory.
        on_error: ``"raise"`` (a :class:`~kg_builders.errors.DataError` naming file, line and
            field) or ``"skip"`` (bad rows dropped and listed in ``Tables.issues``).

    Returns:
        Tables with ``interactions`` (user_id, item_id, rating = listening count), ``items``,
        ``tag_assignments`` and ``social``; ``source`` is ``"hetrec2011-lastfm-2k"``.

    Raises:
        DataError: a missing directory or file, or a bad row (see the module docstring).
    """
    check_on_error(on_error)
    d = Path(path)
    if not d.is_dir():
        raise DataError("Last.fm HetRec directory not found", file=d)
    artists, issues = read_delimited(
        d / "artists.dat",
        sep="\t",
        columns=["id", "name", "url", "pictureURL"],
        rename={"id": "item_id", "name": "title", "pictureURL": "picture_url"},
        types={"item_id": "str"},
        encoding="utf-8",
        quoting=False,
        on_error=on_error,
    )
    artists, more = duplicate_rows(artists, ["item_id"], what="artist id", on_error=on_error)
    issues += more
    artists = plain(artists)
    items = pd.DataFrame({"item_id": artists["item_id"]})
    for col in ("title", "url", "picture_url"):
        items[col] = optional_str(artists[col])

    listens, more = read_delimited(
        d / "user_artists.dat",
        sep="\t",
        columns=["userID", "artistID", "weight"],
        rename={"userID": "user_id", "artistID": "item_id", "weight": "rating"},
        types={"user_id": "str", "item_id": "str", "rating": "float"},
        checks=[Check("rating", lambda s: (s < 0).to_numpy(), "a listening count must be >= 0")],
        quoting=False,
        on_error=on_error,
    )
    issues += more
    listens, more = duplicate_rows(listens, ["user_id", "item_id"], what="(user, artist) pair", on_error=on_error)
    issues += more
    unknown = ~listens["item_id"].isin(items["item_id"]).to_numpy()
    listens, more = reject_rows(
        listens,
        unknown,
        field="item_id",
        reason=lambda i: f"artist {listens['item_id'].iloc[i]!r} is not in artists.dat",
        on_error=on_error,
    )
    issues += more
    interactions = plain(listens[["user_id", "item_id", "rating"]])

    tags, more = read_delimited(
        d / "tags.dat",
        sep="\t",
        columns=["tagID", "tagValue"],
        rename={"tagID": "tag_id", "tagValue": "tag"},
        types={"tag_id": "str", "tag": "str"},
        encoding="latin-1",
        quoting=False,
        on_error=on_error,
    )
    issues += more
    tags, more = duplicate_rows(tags, ["tag_id"], what="tag id", on_error=on_error)
    issues += more
    tag_text = dict(zip(tags["tag_id"], tags["tag"], strict=True))

    assigned, more = read_delimited(
        d / "user_taggedartists.dat",
        sep="\t",
        columns=["userID", "artistID", "tagID", "day", "month", "year"],
        rename={"userID": "user_id", "artistID": "item_id", "tagID": "tag_id"},
        types={"user_id": "str", "item_id": "str", "tag_id": "str", "day": "int", "month": "int", "year": "int"},
        checks=[
            Check("month", lambda s: ((s < 1) | (s > 12)).to_numpy(), "month must be within 1..12"),
            Check("day", lambda s: ((s < 1) | (s > 31)).to_numpy(), "day must be within 1..31"),
        ],
        encoding="latin-1",
        quoting=False,
        on_error=on_error,
    )
    issues += more
    unknown = ~assigned["tag_id"].isin(tag_text.keys()).to_numpy()
    assigned, more = reject_rows(
        assigned,
        unknown,
        field="tag_id",
        reason=lambda i: f"tagID {assigned['tag_id'].iloc[i]!r} is not in tags.dat",
        on_error=on_error,
    )
    issues += more
    dates = pd.to_datetime(plain(assigned[["year", "month", "day"]]), errors="coerce")
    assigned, more = reject_rows(
        assigned,
        dates.isna().to_numpy(),
        field="day",
        reason=lambda i: "no such date: {}-{:02d}-{:02d}".format(*assigned[["year", "month", "day"]].iloc[i].tolist()),
        on_error=on_error,
    )
    issues += more
    dates = dates.dropna().reset_index(drop=True)
    assigned = plain(assigned)
    seconds = ((dates - _EPOCH) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
    tag_assignments = pd.DataFrame(
        {
            "item_id": assigned["item_id"],
            "tag": assigned["tag_id"].map(tag_text).astype(object),
            "user_id": assigned["user_id"],
            "timestamp": seconds,
        }
    )
    tag_assignments, repeats = repeated_rows(tag_assignments, ["user_id", "item_id", "tag"], earliest="timestamp")
    if repeats:
        logger.info(
            "%s: %d repeated (user, artist, tag) row(s) counted once, at the earliest date",
            d / "user_taggedartists.dat",
            repeats,
        )
    absent = int((~tag_assignments["item_id"].isin(items["item_id"])).sum())
    if absent:
        logger.info("%s: %d tag assignment(s) on artists absent from artists.dat (kept)", SOURCE, absent)

    friends, more = read_delimited(
        d / "user_friends.dat",
        sep="\t",
        columns=["userID", "friendID"],
        rename={"userID": "user_id", "friendID": "friend_id"},
        types={"user_id": "str", "friend_id": "str"},
        quoting=False,
        on_error=on_error,
    )
    issues += more
    social = plain(friends[["user_id", "friend_id"]])
    logger.info(
        "%s: %d user-artist pairs, %d users, %d artists, %d tag assignments, %d friend rows%s",
        SOURCE,
        len(interactions),
        interactions["user_id"].nunique(),
        len(items),
        len(tag_assignments),
        len(social),
        f", {len(issues)} row(s) skipped" if issues else "",
    )
    return Tables(
        interactions=interactions,
        items=items,
        tag_assignments=tag_assignments,
        social=social,
        source=SOURCE,
        issues=tuple(issues),
    )
