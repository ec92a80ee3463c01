"""Entity extraction on real text: MIND news and the ml-100k Wikipedia summaries, with spaCy's
real ``en_core_web_sm`` model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kg_builders.builders.entities import EntityBuilder, SpacyExtractor
from kg_builders.sources.mind import load_mind_news
from kg_builders.tables import Tables

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MIND = DATA / "mind-small-subset" / "news.tsv"
MOVIE_WIKI = DATA / "ml-100k" / "movie_wiki.csv"


@pytest.fixture(scope="module")
def mind() -> Tables:
    if not MIND.is_file():
        pytest.skip(f"the MIND subset is not at {MIND} (shared data folder absent)")
    return load_mind_news(MIND)


@pytest.fixture(scope="module")
def spacy_extractor() -> SpacyExtractor:
    pytest.importorskip("spacy", reason="spaCy (extra 'spacy') is not installed")
    return SpacyExtractor()


def test_load_mind_news_counts(mind: Tables):
    assert len(mind.items) == 2000
    assert mind.items["item_id"].is_unique
    gold = mind.gold_entities
    assert gold.loc[gold["field"] == "title", "item_id"].nunique() == 1478
    located = gold.dropna(subset=["offset"])
    texts = mind.items.set_index("item_id")
    for row in located.head(200).itertuples():
        text = texts.at[row.item_id, "title" if row.field == "title" else "text"]
        assert text[row.offset : row.offset + len(row.surface)] == row.surface


def test_spacy_finds_people_and_places_in_mind_titles(mind: Tables, spacy_extractor: SpacyExtractor):
    titles = mind.items.set_index("item_id")["title"]
    expected = {
        "N30028": ("Joe Girardi", "PERSON"),  # Why Joe Girardi chose the Phillies, ...
        "N39199": ("Juan Castro", "PERSON"),  # Phillies hire longtime MLB infielder Juan Castro ...
        "N58101": ("Ghazala Hashmi", "PERSON"),  # Democrat Ghazala Hashmi becomes first Muslim woman ...
        "N18382": ("Springfield", "GPE"),  # Detached garage destroyed by fire in Springfield
        "N34700": ("Fort Lauderdale", "GPE"),  # ... grand opening of Fort Lauderdale office | PHOTOS
    }
    texts = [titles[i] for i in expected]
    found = spacy_extractor.extract(texts)
    for (news_id, want), text, mentions in zip(expected.items(), texts, found, strict=True):
        got = {(m.surface, m.entity_type) for m in mentions}
        assert want in got, f"{news_id}: {text!r} gave {got}"
        for m in mentions:
            assert text[m.start : m.end] == m.surface
            assert m.confidence == 1.0
    assert ("Virginia", "GPE") in {(m.surface, m.entity_type) for m in found[2]}


def test_entity_builder_links_movies_through_people(spacy_extractor: SpacyExtractor):
    if not MOVIE_WIKI.is_file():
        pytest.skip(f"{MOVIE_WIKI} is absent (shared data folder absent)")
    wiki = pd.read_csv(MOVIE_WIKI).head(500)  # the first 500 titles keep the test to a few seconds
    items = pd.DataFrame({"item_id": wiki["movie_title"], "text": wiki["wiki_summary"]})
    tables = Tables(
        interactions=pd.DataFrame({"user_id": pd.Series([], dtype=object), "item_id": pd.Series([], dtype=object)}),
        items=items,
    )
    frag = EntityBuilder(spacy_extractor, fields=("text",), entity_types=("PERSON",)).build(tables)

    nodes = frag.nodes["entity"]
    assert set(nodes.attrs["entity_type"]) == {"PERSON"}
    edges = frag.edges[("item", "mentions", "entity")]
    per_person = pd.Series(edges.src).groupby(pd.Series(edges.dst)).nunique()
    assert (per_person >= 3).sum() >= 10, per_person.sort_values().tail(10)
    allen = set(edges.src[edges.dst == "person:woody allen"])
    assert {"Annie Hall (1977)", "Bananas (1971)", "Deconstructing Harry (1997)"} <= allen
    assert nodes.attrs["name"][nodes.ids.index("person:woody allen")] == "Woody Allen"
    assert frag.info["texts"] == 500 and frag.info["extractor_settings"]["model"] == "en_core_web_sm"
    assert any("entity types" in d.reason and d.count > 0 for d in frag.dropped)
