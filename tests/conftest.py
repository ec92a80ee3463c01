"""Shared fixtures: tiny hand-made tables, and the path of the real data sets."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from kg_builders.tables import Tables

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(name: str) -> Path:
    """A folder of ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data set {name!r} not available at {path} (only on development machines and CI)")
    return path


def in_process(capsys: pytest.CaptureFixture, *args: str) -> SimpleNamespace:
    """``graph-rec ARGS`` through ``graph_rec.cli.main`` in this process: what a subprocess would give
    (exit status, stdout, stderr) without the seconds a new interpreter spends importing torch."""
    from graph_rec.cli import main

    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> Path:
    """One download/feature cache for the whole session: real-data graphs are encoded once."""
    return tmp_path_factory.mktemp("graph-rec-cache")


@pytest.fixture
def tiny_tables() -> Tables:
    """3 users, 4 items, ratings with timestamps, tags, triples, social edges."""
    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u2", "u3", "u3", "u3", "u3"],
            "item_id": ["i1", "i2", "i3", "i1", "i4", "i2", "i3", "i4", "i1"],
            "rating": [5.0, 3.0, 4.0, 2.0, 5.0, 4.0, 1.0, 3.0, 4.0],
            "timestamp": [10, 20, 30, 5, 15, 1, 2, 3, 4],
        }
    )
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4", "i5"],
            "title": ["Alpha", "Beta", "Gamma", "Delta", "Epsilon"],
            "year": pd.array([1990, 1991, None, 1993, 1994], dtype="Int64"),
            "genres": [("Drama", "Comedy"), ("Drama",), (), ("Sci-Fi",), ("(no genres listed)",)],
        }
    )
    tags = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u3", "u3"],
            "item_id": ["i1", "i3", "i4", "i3", "i2"],
            "tag": ["Funny", "funny ", "dark", "Dark", "  "],
        }
    )
    triples = pd.DataFrame(
        {
            "head": ["e1", "e2", "e1", "e9"],
            "relation": ["film.director", "film.director", "film.genre", "film.director"],
            "tail": ["p1", "p1", "e2", "p2"],
        }
    )
    ie = pd.DataFrame({"item_id": ["i1", "i2"], "entity_id": ["e1", "e2"]})
    social = pd.DataFrame({"user_id": ["u1", "u2", "u2", "u3"], "friend_id": ["u2", "u1", "u2", "u9"]})
    return Tables(
        interactions=inter,
        items=items,
        tag_assignments=tags,
        triples=triples,
        item_entities=ie,
        social=social,
        source="tiny",
    )
