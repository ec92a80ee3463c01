"""Entity extraction on real text: MIND news and the ml-100k Wikipedia summaries, with spaCy's
real ``en_core_web_sm`` model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kg_builders.builders.entities import DEFAULT_SPACY_LABELS, EntityBuilder, SpacyExtractor
from kg_builders.errors import MissingDependencyError
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
    extractor = SpacyExtractor()
    try:
        extractor.settings()  # finds the model's package
    except MissingDependencyError as exc:
        pytest.skip(f"spaCy's en_core_web_sm is not installed: {exc}")
    return extractor


PARAGRAPHS = [
    "Tom Hanks starred in Forrest Gump, which Robert Zemeckis directed for Paramount Pictures.",
    "Steven Spielberg grew up in Phoenix, Arizona, and later founded DreamWorks with David Geffen.",
    "The Louvre in Paris lent three paintings to the Metropolitan Museum of Art in New York.",
    "Angela Merkel met Emmanuel Macron in Berlin to discuss the budget of the European Union.",
    "Microsoft bought a studio in Seattle, and Satya Nadella announced the deal in London.",
]


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


def test_spacy_reads_a_text_over_a_million_characters_as_if_whole(spacy_extractor: SpacyExtractor):
    """A text over spaCy's ``nlp.max_length`` (1,000,000 characters) raised spaCy's raw E088 and aborted
    the build. It is read in pieces of at most 100,000 characters, and the mentions are those of spaCy
    reading it whole. (Whitespace runs keep the text cheap: spaCy makes each run one token.)"""
    spacy = pytest.importorskip("spacy")
    # "Spielberg" straddles character 100,000, the end of the first piece: the split is before it
    text = " " * 99_995 + "Spielberg directed Jaws for Universal Pictures in California."
    for paragraph in PARAGRAPHS * 2:
        text += "\n" + " " * 95_000 + paragraph
    assert len(text) > 1_000_000

    found = spacy_extractor.extract(["Tom Hanks in Paris", text])
    assert [(m.surface, m.entity_type) for m in found[0]] == [("Tom Hanks", "PERSON"), ("Paris", "GPE")]
    got = [(m.surface, m.entity_type, m.start, m.end) for m in found[1]]
    assert all(text[start:end] == surface for surface, _, start, end in got)
    whole = spacy.load(spacy_extractor.settings()["package"])
    whole.max_length = 2 * len(text)  # safe here: the whitespace runs are few tokens
    keep = set(DEFAULT_SPACY_LABELS)
    expected = [(e.text, e.label_, e.start_char, e.end_char) for e in whole(text).ents if e.label_ in keep]
    assert got == expected
    assert got[0] == ("Spielberg", "PERSON", 99_995, 100_004)
    assert {("Angela Merkel", "PERSON"), ("Seattle", "GPE")} <= {(s, t) for s, t, _, _ in got}


def test_spacy_long_text_in_pieces_gives_the_mentions_of_the_pieces(spacy_extractor: SpacyExtractor):
    """With ``max_chars=100`` each paragraph (85 to 93 characters) and its break is one piece: the
    mentions are those of the paragraphs read one by one, with offsets into the whole text."""
    text = "\n\n".join(PARAGRAPHS)
    pieces, starts, start = [], [], 0
    for paragraph in PARAGRAPHS:
        piece = text[start : start + len(paragraph) + 2]  # the paragraph and its "\n\n"
        assert piece.strip() == paragraph
        pieces.append(piece)
        starts.append(start)
        start += len(piece)
    by_piece = spacy_extractor.extract(pieces)
    expected = [
        (m.surface, m.entity_type, offset + m.start, offset + m.end)
        for offset, mentions in zip(starts, by_piece, strict=True)
        for m in mentions
    ]
    assert {("Tom Hanks", "PERSON"), ("Paris", "GPE"), ("Microsoft", "ORG")} <= {(s, t) for s, t, _, _ in expected}

    small = SpacyExtractor(max_chars=100, batch_size=2)
    short, long_found, last = small.extract(["Berlin", text, PARAGRAPHS[-1]])
    assert [(m.surface, m.entity_type, m.start, m.end) for m in long_found] == expected
    assert all(text[m.start : m.end] == m.surface for m in long_found)
    assert [(m.surface, m.entity_type) for m in short] == [("Berlin", "GPE")]
    assert [(m.surface, m.start) for m in last] == [(m.surface, m.start) for m in by_piece[-1]]
