"""Detect a data set's format from the files in a folder, and load it with the right reader."""

from __future__ import annotations

from pathlib import Path

from kg_builders.errors import ConfigError, DataError
from kg_builders.tables import Tables

FORMATS = ("movielens", "hetrec_lastfm", "lightgcn", "mind_news", "generic")


def detect_format(path: str | Path) -> str:
    """The format of the data set in folder ``path`` (one of :data:`FORMATS`).

    Raises:
        DataError: the folder is missing or holds no known layout.
    """
    p = Path(path)
    if not p.is_dir():
        raise DataError("data set folder not found", file=p)
    has = {f.name for f in p.iterdir()}
    if {"ratings.csv", "movies.csv"} <= has or "u.data" in has or "ratings.dat" in has:
        return "movielens"
    if "user_artists.dat" in has:
        return "hetrec_lastfm"
    if ("data1.txt" in has) or ("train.txt" in has and "test.txt" in has):
        return "lightgcn"
    if "news.tsv" in has:
        return "mind_news"
    if any(n.startswith("interactions.") for n in has):
        return "generic"
    raise DataError(
        "no known data set layout (MovieLens ratings.csv/u.data/ratings.dat, HetRec user_artists.dat, "
        f"LightGCN data1.txt or train.txt+test.txt, MIND news.tsv, generic interactions.csv); found {sorted(has)[:12]}",
        file=p,
    )


def load_dataset(path: str | Path, *, format: str | None = None, on_error: str = "raise") -> Tables:
    """Load the data set in folder ``path`` with the reader for its ``format`` (detected if None)."""
    from kg_builders.sources.generic import load_generic
    from kg_builders.sources.lastfm import load_hetrec_lastfm
    from kg_builders.sources.lightgcn import load_lightgcn
    from kg_builders.sources.mind import load_mind_news
    from kg_builders.sources.movielens import load_movielens

    p = Path(path)
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; valid: {list(FORMATS)}")
    if fmt == "movielens":
        return load_movielens(p, on_error=on_error)
    if fmt == "hetrec_lastfm":
        return load_hetrec_lastfm(p, on_error=on_error)
    if fmt == "lightgcn":
        train = p / "data1.txt" if (p / "data1.txt").exists() else p / "train.txt"
        test = p / "test1.txt" if (p / "test1.txt").exists() else p / "test.txt"
        social = next((p / n for n in ("trustnetwork.txt", "social.txt") if (p / n).exists()), None)
        return load_lightgcn(
            train,
            test if test.exists() else None,
            layout=None,  # detected once for both files, which must agree
            social_path=social,
            on_error=on_error,
        )
    if fmt == "mind_news":
        return load_mind_news(p / "news.tsv", on_error=on_error)
    files = {}
    for role in ("interactions", "items", "tags", "triples", "item_entities", "users", "social"):
        for ext in (".csv", ".tsv", ".parquet"):
            if (p / f"{role}{ext}").exists():
                files[role] = f"{role}{ext}"
                break
    return load_generic(p, on_error=on_error, **files)
