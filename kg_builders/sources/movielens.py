"""MovieLens readers: ml-latest(-small), ml-100k (with its official splits), ml-1m, and ml-100k's movie_wiki.csv.

The flavour is detected from the files in the directory:

``ml-latest`` / ``ml-latest-small`` (utf-8 CSV with a header, CSV quoting)
    ``ratings.csv`` ``userId,movieId,rating,timestamp`` (ratings 0.5..5);
    ``movies.csv`` ``movieId,title,genres``: the year is part of the title (``Toy Story (1995)``),
    genres are ``|`` separated and ``(no genres listed)`` means none;
    ``tags.csv`` ``userId,movieId,tag,timestamp`` (optional) -> ``tag_assignments``;
    ``links.csv`` ``movieId,imdbId,tmdbId`` (optional) -> item columns ``imdb_id``, ``tmdb_id``
    (strings, leading zeros kept).
``ml-100k`` (no header)
    ``u.data`` tab separated ``user item rating timestamp`` (ratings 1..5);
    ``u.item`` ``|`` separated ``id|title|release date|video release date|url|<one 0/1 flag per genre>``;
    ``u.genre`` ``name|index`` names the flags (the ``unknown`` genre means none);
    ``u.user`` ``id|age|gender|occupation|zip`` -> ``users``;
    ``u1..u5.base/.test`` and ``ua/ub.base/.test``: the official splits, see
    :func:`load_movielens_100k_split`.
``ml-1m`` (``::`` separated, no header, no quoting)
    ``ratings.dat`` ``UserID::MovieID::Rating::Timestamp`` (ratings 1..5);
    ``movies.dat`` ``MovieID::Title::Genres``; ``users.dat`` ``UserID::Gender::Age::Occupation::Zip-code``.

The ml-100k and ml-1m text files were published in latin-1; they are read as utf-8 when the whole
file decodes as utf-8 (some public copies were re-encoded) and as latin-1 otherwise.

Items get ``item_id``, ``title`` (year removed), ``year`` (``Int64``, ``<NA>`` when the title has none),
``genres`` (a tuple of str), ``raw_title`` (the title exactly as the file writes it), ``text`` (missing:
MovieLens has no item text; :func:`load_movie_wiki` fills it for ml-100k) and, where the files have
them, ``url``, ``imdb_id``, ``tmdb_id``.

Checks (``on_error="raise"`` raises :class:`~kg_builders.errors.DataError` naming file, line and field;
``"skip"`` drops the row and lists it in ``Tables.issues``): ratings finite and within the flavour's
range, no duplicate (user, movie) rating, no duplicate movie or user id (the first row is kept when
skipping), and every rating, tag and link refers to a known movie (and, where a users file exists,
a known user). A (user, movie, tag) written more than once in ``tags.csv`` is one tag assignment:
the copies are removed (not an error), the earliest timestamp kept, and their number logged.

Citation: F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context.
ACM Transactions on Interactive Intelligent Systems 5(4), 19:1-19:19. https://doi.org/10.1145/2827872
"""

from __future__ import annotations

import logging
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from kg_builders.errors import ConfigError, DataError, SchemaError
from kg_builders.sources._reader import (
    Check,
    check_on_error,
    duplicate_rows,
    optional_str,
    plain,
    read_delimited,
    reject_rows,
    repeated_rows,
    year_from_title,
)
from kg_builders.tables import RowIssue, Tables, validate

logger = logging.getLogger(__name__)

#: flavour -> the files that identify it
FLAVOUR_FILES: dict[str, tuple[str, ...]] = {
    "ml-latest": ("ratings.csv", "movies.csv"),
    "ml-100k": ("u.data", "u.item"),
    "ml-1m": ("ratings.dat", "movies.dat"),
}
#: flavour -> (lowest, highest) valid rating
RATING_RANGE: dict[str, tuple[float, float]] = {
    "ml-latest": (0.5, 5.0),
    "ml-100k": (1.0, 5.0),
    "ml-1m": (1.0, 5.0),
}
#: the official ml-100k splits: ``<fold>.base`` (train) and ``<fold>.test``
FOLDS_100K = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")

_NO_GENRES = {"", "(no genres listed)"}
_RATING_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
_INT_TYPES = {"user_id": "str", "item_id": "str", "rating": "float", "timestamp": "int"}


def _not_id(s: pd.Series) -> np.ndarray:
    return (~s.astype(str).str.fullmatch(r"0|[1-9][0-9]*")).to_numpy()


_ID = "MovieLens ids are written in digits without leading zeros (1, not 1.0 or 01)"
#: ids of users and movies: 1, 1.0 and 01 would be three users
_ID_CHECKS = [Check("user_id", _not_id, _ID), Check("item_id", _not_id, _ID)]


def detect_movielens_flavour(path: str | Path) -> str:
    """The MovieLens flavour of a directory: ``"ml-latest"``, ``"ml-100k"`` or ``"ml-1m"``.

    Raises:
        DataError: the directory does not exist, holds none of the flavours' files, or holds the
            files of several flavours.
    """
    d = Path(path)
    if not d.is_dir():
        raise DataError("MovieLens directory not found", file=d)
    found = [name for name, files in FLAVOUR_FILES.items() if all((d / f).is_file() for f in files)]
    if not found:
        expected = "; ".join(f"{name}: {' + '.join(files)}" for name, files in FLAVOUR_FILES.items())
        raise DataError(f"no MovieLens files found; expected one of {expected}", file=d)
    if len(found) > 1:
        raise DataError(f"files of several MovieLens flavours found ({found}); keep one per directory", file=d)
    return found[0]


def load_movielens(path: str | Path, *, on_error: str = "raise") -> Tables:
    """Read a MovieLens directory (ml-latest, ml-latest-small, ml-100k or ml-1m) into tables.

    Args:
        path: the unpacked data set directory.
        on_error: ``"raise"`` or ``"skip"`` (bad rows dropped and listed in ``Tables.issues``).

    Returns:
        Tables with ``interactions`` (user_id, item_id, rating, timestamp), ``items`` and, by
        flavour, ``tag_assignments`` (ml-latest) or ``users`` (ml-100k, ml-1m). ``source`` is the
        directory name when it names a flavour (e.g. ``"ml-latest-small"``), else the flavour.

    Raises:
        DataError: see the module docstring.
    """
    check_on_error(on_error)
    d = Path(path)
    flavour = detect_movielens_flavour(d)
    if flavour == "ml-latest":
        tables = _load_latest(d, on_error)
    elif flavour == "ml-100k":
        items, users, issues = _read_100k_meta(d, on_error)
        inter, more = _read_ratings(d / "u.data", "ml-100k", items, users, on_error)
        tables = Tables(interactions=inter, items=items, users=users, issues=tuple(issues + more))
    else:
        tables = _load_1m(d, on_error)
    source = d.name if d.name.startswith(flavour) else flavour
    _log_counts(source, tables)
    return tables.replace(source=source)


def load_movielens_100k_split(path: str | Path, fold: str = "u1", *, on_error: str = "raise") -> Tables:
    """Read one official ml-100k split: ``<fold>.base`` as train and ``<fold>.test`` as test.

    Args:
        path: the ml-100k directory.
        fold: one of ``u1`` .. ``u5`` (the 5-fold cross-validation splits, 80,000/20,000) or
            ``ua``/``ub`` (10 test ratings per user).
        on_error: ``"raise"`` or ``"skip"``.

    Returns:
        Tables whose ``interactions`` have a ``split`` column (``"train"``/``"test"``), with the
        ml-100k ``items`` and ``users``; ``source`` is ``"ml-100k/<fold>"``.

    Raises:
        ConfigError: an unknown fold.
        DataError: bad rows (as :func:`load_movielens`), or a test rating whose (user, item) pair is
            also a training rating.
    """
    check_on_error(on_error)
    if fold not in FOLDS_100K:
        raise ConfigError(f"unknown ml-100k fold {fold!r}; valid: {list(FOLDS_100K)}")
    d = Path(path)
    if not d.is_dir():
        raise DataError("MovieLens directory not found", file=d)
    items, users, issues = _read_100k_meta(d, on_error)
    train, more = _read_ratings(d / f"{fold}.base", "ml-100k", items, users, on_error, detach=False)
    issues += more
    test, more = _read_ratings(d / f"{fold}.test", "ml-100k", items, users, on_error, detach=False)
    issues += more
    seen = pd.MultiIndex.from_frame(train[["user_id", "item_id"]])
    leak = pd.MultiIndex.from_frame(test[["user_id", "item_id"]]).isin(seen)
    test, more = reject_rows(
        test,
        leak,
        field="item_id",
        reason=lambda i: f"(user {test['user_id'].iloc[i]!r}, item {test['item_id'].iloc[i]!r}) is also in {fold}.base",
        on_error=on_error,
    )
    issues += more
    train = plain(train).assign(split="train")
    test = plain(test).assign(split="test")
    inter = pd.concat([train, test], ignore_index=True)
    source = f"ml-100k/{fold}"
    tables = Tables(interactions=inter, items=items, users=users, source=source, issues=tuple(issues))
    logger.info("%s: %d train + %d test ratings", source, len(train), len(test))
    return tables


def load_movie_wiki(path: str | Path, items: pd.DataFrame, *, on_error: str = "raise") -> pd.DataFrame:
    """Join ml-100k's ``movie_wiki.csv`` (``movie_title,wiki_summary``) to the items by title.

    A title matches when it equals the item's title as ``u.item`` writes it (``raw_title``, or
    ``"<title> (<year>)"`` when the items have no ``raw_title``). Items left over are matched on a
    normalised title: a trailing ``", The"``/``", A"``/``", An"`` moved to the front, whitespace
    collapsed, casefolded, and every non-ASCII character compared as one wildcard (so
    ``Misérables`` matches the ``Mis\\ufffdrables`` of a copy that lost its latin-1 characters). A
    normalised title shared by wiki rows with different summaries matches nothing. The match
    count is logged.

    Args:
        path: the ``movie_wiki.csv`` file.
        items: the ml-100k items (``load_movielens(...).items``).
        on_error: ``"raise"`` or ``"skip"``: bad wiki rows (an empty field, a repeated title) are
            dropped and logged as a warning (this function returns only the items).

    Returns:
        A copy of ``items`` whose ``text`` column holds the summary where matched (missing elsewhere;
        existing text of unmatched items is kept).

    Raises:
        DataError: a malformed file.
        SchemaError: ``items`` is not an items table or has neither ``raw_title`` nor ``title``.
    """
    check_on_error(on_error)
    validate("items", items)
    if "raw_title" in items.columns:
        keys = items["raw_title"].astype(object)
    elif "title" in items.columns:
        year = items["year"] if "year" in items.columns else pd.Series(pd.NA, index=items.index, dtype="Int64")
        keys = pd.Series(
            [t if pd.isna(y) else f"{t} ({y})" for t, y in zip(items["title"], year, strict=True)],
            index=items.index,
            dtype=object,
        )
    else:
        raise SchemaError(
            f"items need a 'raw_title' or 'title' column to match movie_wiki titles; have {list(items.columns)}"
        )
    wiki, issues = read_delimited(
        path,
        sep=",",
        columns=["movie_title", "wiki_summary"],
        types={"movie_title": "str", "wiki_summary": "str"},
        on_error=on_error,
    )
    wiki, more = duplicate_rows(wiki, ["movie_title"], what="movie_title", on_error=on_error)
    issues += more
    if issues:
        logger.warning("%s: skipped %d bad row(s), first: %s", path, len(issues), issues[0].reason)
    exact = dict(zip(wiki["movie_title"], wiki["wiki_summary"], strict=True))
    by_norm: dict[str, str] = {}
    ambiguous: set[str] = set()
    for title, summary in exact.items():
        k = _title_key(title)
        if k in by_norm and by_norm[k] != summary:
            ambiguous.add(k)
        by_norm.setdefault(k, summary)
    for k in ambiguous:
        del by_norm[k]
    texts: list[object] = []
    n_exact = n_norm = 0
    used: set[str] = set()
    for key in keys:
        if isinstance(key, str) and key in exact:
            texts.append(exact[key])
            used.add(_title_key(key))
            n_exact += 1
            continue
        k = _title_key(key) if isinstance(key, str) else None
        if k is not None and k in by_norm:
            texts.append(by_norm[k])
            used.add(k)
            n_norm += 1
        else:
            texts.append(None)
    found = pd.Series(texts, index=items.index, dtype="str")
    out = items.copy()
    if "text" in out.columns:
        found = found.where(found.notna(), out["text"].astype("str"))
    out["text"] = found
    unmatched = sum(1 for t in exact if _title_key(t) not in used)
    logger.info(
        "%s: text for %d of %d items (%d exact, %d normalised title matches); %d of %d wiki rows matched no item%s",
        path,
        n_exact + n_norm,
        len(items),
        n_exact,
        n_norm,
        unmatched,
        len(exact),
        f"; {len(ambiguous)} ambiguous normalised title(s)" if ambiguous else "",
    )
    return out


# --- flavours ---------------------------------------------------------------------------------


def _load_latest(d: Path, on_error: str) -> Tables:
    movies, issues = read_delimited(
        d / "movies.csv",
        sep=",",
        columns=["movieId", "title", "genres"],
        rename={"movieId": "item_id"},
        types={"item_id": "str", "title": "str"},
        checks=_ID_CHECKS[1:],
        on_error=on_error,
    )
    movies, more = duplicate_rows(movies, ["item_id"], what="movieId", on_error=on_error)
    issues += more
    items = _items(movies, movies["genres"].map(_split_genres))
    if (d / "links.csv").is_file():
        links, more = read_delimited(
            d / "links.csv",
            sep=",",
            columns=["movieId", "imdbId", "tmdbId"],
            rename={"movieId": "item_id", "imdbId": "imdb_id", "tmdbId": "tmdb_id"},
            types={"item_id": "str"},
            on_error=on_error,
        )
        issues += more
        links, more = duplicate_rows(links, ["item_id"], what="movieId", on_error=on_error)
        issues += more
        links, more = _known(links, "item_id", items["item_id"], "movies.csv", on_error)
        issues += more
        links = plain(links)
        extra = pd.DataFrame({"item_id": links["item_id"]})
        for col in ("imdb_id", "tmdb_id"):
            extra[col] = optional_str(links[col])
        items = items.merge(extra, on="item_id", how="left")
        for col in ("imdb_id", "tmdb_id"):
            items[col] = items[col].astype("str")
    inter, more = _read_ratings(d / "ratings.csv", "ml-latest", items, None, on_error)
    issues += more
    tags = None
    if (d / "tags.csv").is_file():
        tags, more = read_delimited(
            d / "tags.csv",
            sep=",",
            columns=["userId", "movieId", "tag", "timestamp"],
            rename={"userId": "user_id", "movieId": "item_id"},
            types={"user_id": "str", "item_id": "str", "tag": "str", "timestamp": "int"},
            checks=_ID_CHECKS,
            on_error=on_error,
        )
        issues += more
        tags, more = _known(tags, "item_id", items["item_id"], "movies.csv", on_error)
        issues += more
        tags, repeats = repeated_rows(tags, ["user_id", "item_id", "tag"], earliest="timestamp")
        if repeats:
            logger.info(
                "%s: %d repeated (user, movie, tag) row(s) counted once, at the earliest time", d / "tags.csv", repeats
            )
        tags = plain(tags[["item_id", "tag", "user_id", "timestamp"]])
    return Tables(interactions=inter, items=items, tag_assignments=tags, issues=tuple(issues))


def _read_100k_meta(d: Path, on_error: str) -> tuple[pd.DataFrame, pd.DataFrame | None, list[RowIssue]]:
    """Items (u.item with u.genre) and users (u.user, when present) of ml-100k."""
    genre_file = d / "u.genre"
    genres, issues = read_delimited(
        genre_file,
        sep="|",
        header=False,
        columns=["genre", "index"],
        types={"genre": "str", "index": "int"},
        encoding=_text_encoding(genre_file),
        quoting=False,
        on_error="raise",
    )
    order = genres["index"].to_numpy()
    if sorted(order.tolist()) != list(range(len(genres))):
        raise DataError(f"genre indices must be 0..{len(genres) - 1} once each, got {order.tolist()}", file=genre_file)
    names = genres.sort_values("index")["genre"].tolist()
    flags = [f"g{i}" for i in range(len(names))]
    item_file = d / "u.item"
    movies, more = read_delimited(
        item_file,
        sep="|",
        header=False,
        columns=["item_id", "title", "release_date", "video_release_date", "url", *flags],
        types={"item_id": "str", "title": "str"},
        checks=[Check(f, _not_flag, f"genre flag ({names[i]}) must be 0 or 1") for i, f in enumerate(flags)],
        encoding=_text_encoding(item_file),
        quoting=False,
        on_error=on_error,
    )
    issues += more
    movies, more = duplicate_rows(movies, ["item_id"], what="movie id", on_error=on_error)
    issues += more
    named = [(i, n) for i, n in enumerate(names) if n.casefold() != "unknown"]
    marks = np.zeros((len(movies), len(names)), dtype=bool)
    for i, f in enumerate(flags):
        marks[:, i] = movies[f].str.strip().to_numpy() == "1"
    genre_tuples = pd.Series([tuple(n for i, n in named if row[i]) for row in marks], dtype=object)
    items = _items(movies, genre_tuples, year_from_release=True)
    items["url"] = optional_str(plain(movies)["url"])
    users = None
    if (d / "u.user").is_file():
        users, more = _read_users(
            d / "u.user", sep="|", columns=["user_id", "age", "gender", "occupation", "zip_code"], on_error=on_error
        )
        issues += more
    return items, users, issues


def _load_1m(d: Path, on_error: str) -> Tables:
    movie_file = d / "movies.dat"
    movies, issues = read_delimited(
        movie_file,
        sep="::",
        header=False,
        columns=["item_id", "title", "genres"],
        types={"item_id": "str", "title": "str"},
        encoding=_text_encoding(movie_file),
        on_error=on_error,
    )
    movies, more = duplicate_rows(movies, ["item_id"], what="MovieID", on_error=on_error)
    issues += more
    items = _items(movies, movies["genres"].map(_split_genres))
    users = None
    if (d / "users.dat").is_file():
        users, more = _read_users(
            d / "users.dat", sep="::", columns=["user_id", "gender", "age", "occupation", "zip_code"], on_error=on_error
        )
        issues += more
    inter, more = _read_ratings(d / "ratings.dat", "ml-1m", items, users, on_error)
    issues += more
    return Tables(interactions=inter, items=items, users=users, issues=tuple(issues))


# --- pieces -----------------------------------------------------------------------------------


def _read_ratings(
    file: Path,
    flavour: str,
    items: pd.DataFrame,
    users: pd.DataFrame | None,
    on_error: str,
    *,
    detach: bool = True,
) -> tuple[pd.DataFrame, list[RowIssue]]:
    """Ratings of any flavour, checked: range, duplicates, known movies (and users)."""
    lo, hi = RATING_RANGE[flavour]
    in_range = Check("rating", lambda s: ((s < lo) | (s > hi)).to_numpy(), f"rating must be within {lo}..{hi}")
    if flavour == "ml-latest":
        frame, issues = read_delimited(
            file,
            sep=",",
            columns=["userId", "movieId", "rating", "timestamp"],
            rename={"userId": "user_id", "movieId": "item_id"},
            types=_INT_TYPES,
            checks=[in_range, *_ID_CHECKS],
            on_error=on_error,
        )
    else:
        frame, issues = read_delimited(
            file,
            sep="\t" if flavour == "ml-100k" else "::",
            header=False,
            columns=_RATING_COLUMNS,
            types=_INT_TYPES,
            checks=[in_range, *_ID_CHECKS],
            quoting=False,
            on_error=on_error,
        )
    frame, more = duplicate_rows(frame, ["user_id", "item_id"], what="rating of (user, movie)", on_error=on_error)
    issues += more
    frame, more = _known(frame, "item_id", items["item_id"], "the movies file", on_error)
    issues += more
    if users is not None:
        frame, more = _known(frame, "user_id", users["user_id"], "the users file", on_error)
        issues += more
    frame = frame[_RATING_COLUMNS]
    return (plain(frame) if detach else frame), issues


def _read_users(file: Path, *, sep: str, columns: list[str], on_error: str) -> tuple[pd.DataFrame, list[RowIssue]]:
    users, issues = read_delimited(
        file,
        sep=sep,
        header=False,
        columns=columns,
        types={"user_id": "str", "age": "int", "gender": "str", "occupation": "str", "zip_code": "str"},
        encoding=_text_encoding(file),
        quoting=False,
        on_error=on_error,
    )
    users, more = duplicate_rows(users, ["user_id"], what="user id", on_error=on_error)
    return plain(users[["user_id", "age", "gender", "occupation", "zip_code"]]), issues + more


def _items(movies: pd.DataFrame, genres: pd.Series, *, year_from_release: bool = False) -> pd.DataFrame:
    """The items table from a read movies frame (title with year, genres as tuples).

    With ``year_from_release``, a title without a year takes it from the ``release_date`` column
    (``01-Jan-1995``).
    """
    movies = plain(movies)
    raw = movies["title"].astype(object)
    title, year = year_from_title(raw.str.strip())
    if year_from_release:
        dates = movies["release_date"].astype(str).str.extract(r"(\d{4})\s*$")[0]
        year = year.fillna(pd.to_numeric(dates, errors="coerce").astype("Int64"))
    return pd.DataFrame(
        {
            "item_id": movies["item_id"],
            "title": title.astype(object),
            "year": year.astype("Int64"),
            "genres": genres.reset_index(drop=True).astype(object),
            "raw_title": raw,
            "text": pd.Series([None] * len(movies), dtype="str"),
        }
    )


def _known(
    frame: pd.DataFrame, col: str, known: pd.Series, what: str, on_error: str
) -> tuple[pd.DataFrame, list[RowIssue]]:
    unknown = ~frame[col].isin(known).to_numpy()
    return reject_rows(
        frame,
        unknown,
        field=col,
        reason=lambda i: f"{col} {frame[col].iloc[i]!r} is not in {what}",
        on_error=on_error,
    )


def _split_genres(value: object) -> tuple[str, ...]:
    text = str(value).strip()
    if text in _NO_GENRES:
        return ()
    return tuple(g.strip() for g in text.split("|") if g.strip())


def _not_flag(s: pd.Series) -> np.ndarray:
    return (~s.astype(str).str.strip().isin(["0", "1"])).to_numpy()


def _text_encoding(file: Path) -> str:
    """utf-8 when the file decodes as utf-8, else latin-1 (how the older MovieLens files were published)."""
    if not file.is_file():
        return "utf-8"  # read_delimited reports the missing file
    try:
        file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        logger.debug("%s is not utf-8; reading it as latin-1", file)
        return "latin-1"
    return "utf-8"


_ARTICLE = re.compile(r"^(?P<body>.*?),\s+(?P<art>the|a|an)(?P<year>\s*\(\d{4}\))?$", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def _title_key(title: str) -> str:
    """A normalised title: trailing article moved to the front, whitespace collapsed, casefolded,
    non-ASCII characters as ``?`` (so accents and U+FFFD replacement characters compare equal)."""
    t = _SPACE.sub(" ", unicodedata.normalize("NFC", title)).strip()
    m = _ARTICLE.match(t)
    if m:
        t = f"{m['art']} {m['body']}{m['year'] or ''}"
    return "".join(c if c.isascii() else "?" for c in t).casefold()


def _log_counts(source: str, tables: Tables) -> None:
    inter = tables.interactions
    logger.info(
        "%s: %d ratings, %d users, %d items%s",
        source,
        len(inter),
        inter["user_id"].nunique(),
        0 if tables.items is None else len(tables.items),
        f", {len(tables.issues)} row(s) skipped" if tables.issues else "",
    )
