"""Source readers on the real data sets in ../shared/data: exact published counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg_builders.sources import (
    load_hetrec_lastfm,
    load_kg_triples,
    load_lightgcn,
    load_movie_wiki,
    load_movielens,
    load_movielens_100k_split,
)
from kg_builders.tables import validate

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = pytest.mark.integration


def data(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"real data set {name!r} not available at {path} (only on development machines and CI)")
    return path


def test_ml_latest_small() -> None:
    t = load_movielens(data("ml-latest-small"))
    assert t.source == "ml-latest-small" and t.issues == ()
    assert len(t.interactions) == 100_836
    assert t.interactions["user_id"].nunique() == 610
    assert len(t.items) == 9_742
    assert len(t.tag_assignments) == 3_683
    assert t.interactions["rating"].between(0.5, 5.0).all()
    toy = t.items.set_index("item_id").loc["1"]
    assert (toy["title"], toy["year"], toy["imdb_id"]) == ("Toy Story", 1995, "0114709")
    assert int((t.items["genres"].map(len) == 0).sum()) == 34  # "(no genres listed)"


def test_ml_100k_and_movie_wiki() -> None:
    d = data("ml-100k")
    t = load_movielens(d)
    assert t.source == "ml-100k" and t.issues == ()
    assert len(t.interactions) == 100_000
    assert t.interactions["user_id"].nunique() == 943 and len(t.users) == 943
    assert len(t.items) == 1_682
    items = load_movie_wiki(d / "movie_wiki.csv", t.items)
    validate("items", items)
    # 1,535 exact title matches + 6 whose accented letters this copy of u.item lost (U+FFFD)
    assert int(items["text"].notna().sum()) == 1_541
    shawshank = items.set_index("raw_title").loc["Shawshank Redemption, The (1994)", "text"]
    assert shawshank.startswith("The Shawshank Redemption is a 1994")


def test_ml_100k_official_split_u1() -> None:
    t = load_movielens_100k_split(data("ml-100k"), "u1")
    counts = t.interactions["split"].value_counts().to_dict()
    assert counts == {"train": 80_000, "test": 20_000}
    assert t.issues == ()


def test_hetrec_lastfm() -> None:
    t = load_hetrec_lastfm(data("hetrec2011-lastfm-2k"))
    assert t.issues == ()
    assert len(t.interactions) == 92_834
    assert t.interactions["user_id"].nunique() == 1_892
    assert len(t.items) == 17_632
    assert len(t.tag_assignments) == 186_478
    assert len(t.social) == 25_434
    assert int((~t.tag_assignments["item_id"].isin(t.items["item_id"])).sum()) == 1_538  # kept for the builder
    assert "rock français" in set(t.tag_assignments["tag"])  # latin-1 decoded


def test_lightgcn_lastfm() -> None:
    d = data("lightgcn-lastfm")
    t = load_lightgcn(d / "data1.txt", d / "test1.txt", layout="pairs", social_path=d / "trustnetwork.txt")
    counts = t.interactions["split"].value_counts().to_dict()
    assert counts == {"train": 42_135, "test": 10_533}
    assert t.interactions["item_id"].nunique() == 4_489
    assert len(t.social) == 25_434
    assert (
        load_lightgcn(d / "data1.txt").interactions["user_id"].nunique()
        == t.interactions.query("split == 'train'")["user_id"].nunique()
    )


def test_kg_samples_movie() -> None:
    d = data("kg-samples") / "movie"
    triples, item_entities = load_kg_triples(d / "kg.txt", d / "item_index2entity_id.txt")
    assert len(triples) == 20_782
    assert len(item_entities) == 2_347 and item_entities["item_id"].is_unique
    ml = data("ml-latest-small")
    movies = load_movielens(ml).items["item_id"]
    assert int(item_entities["item_id"].isin(movies).sum()) == 1_855
