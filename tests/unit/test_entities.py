"""Entity extraction: the gazetteer, name normalisation, EntityBuilder, the MIND reader and the
transformers plumbing (a tiny randomly initialised model built offline)."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kg_builders.builders.entities import (
    EntityBuilder,
    EntityExtractor,
    GazetteerExtractor,
    Mention,
    SpacyExtractor,
    TransformersExtractor,
    entity_id,
    normalise_entity_name,
)
from kg_builders.errors import ConfigError, DataError, MissingDependencyError, SchemaError
from kg_builders.fragment import GraphFragment, NodeBlock
from kg_builders.graph import build_graph
from kg_builders.sources.mind import load_mind_news
from kg_builders.tables import Tables


def _spans(mentions: list[Mention]) -> list[tuple[str, str, int, int, float]]:
    return [(m.surface, m.entity_type, m.start, m.end, m.confidence) for m in mentions]


def _empty_interactions() -> pd.DataFrame:
    return pd.DataFrame({"user_id": pd.Series([], dtype=object), "item_id": pd.Series([], dtype=object)})


# ------------------------------------------------------------------------------ gazetteer
def test_gazetteer_longest_match_first_and_no_overlap():
    g = GazetteerExtractor({"New York": "GPE", "New York City": "GPE", "York": "GPE", "City Hall": "FAC"})
    text = "New York City Hall and New York"
    (found,) = g.extract([text])
    assert _spans(found) == [("New York City", "GPE", 0, 13, 1.0), ("New York", "GPE", 23, 31, 1.0)]
    for m in found:
        assert text[m.start : m.end] == m.surface


def test_gazetteer_word_boundaries():
    g = GazetteerExtractor({"Paris": "GPE", "Ann": "PERSON"})
    text = "Parisian Annals; (Paris) and Paris's Ann-Marie, Anne"
    (found,) = g.extract([text])
    assert [(m.surface, m.start) for m in found] == [("Paris", 18), ("Paris", 29), ("Ann", 37)]


def test_gazetteer_case_handling_and_confidences():
    names = [("Apple", "ORG"), ("Tom Hanks", "PERSON")]
    text = "apple hired TOM HANKS; Apple and Tom   Hanks"
    (caseless,) = GazetteerExtractor(names).extract([text])
    assert _spans(caseless) == [
        ("apple", "ORG", 0, 5, 0.9),
        ("TOM HANKS", "PERSON", 12, 21, 0.9),
        ("Apple", "ORG", 23, 28, 1.0),
        ("Tom   Hanks", "PERSON", 33, 44, 1.0),  # whitespace differences still match exactly
    ]
    (strict,) = GazetteerExtractor(names, case_sensitive=True).extract([text])
    assert _spans(strict) == [("Apple", "ORG", 23, 28, 1.0), ("Tom   Hanks", "PERSON", 33, 44, 1.0)]


def test_gazetteer_case_sensitive_falls_back_to_a_shorter_exact_name():
    g = GazetteerExtractor({"Bank of America": "ORG", "Bank": "ORG"}, case_sensitive=True)
    assert _spans(g.extract(["Bank of america"])[0]) == [("Bank", "ORG", 0, 4, 1.0)]


def test_gazetteer_matches_composed_and_decomposed_accents():
    nfc, nfd = "Café Society", unicodedata.normalize("NFD", "Café Society")
    assert len(nfd) == len(nfc) + 1
    start = len("Woody Allen's ")
    for name, written in ((nfc, nfd), (nfd, nfc)):
        text = f"Woody Allen's {written} (2016)"
        for case_sensitive in (False, True):
            (found,) = GazetteerExtractor({name: "film"}, case_sensitive=case_sensitive).extract([text])
            assert _spans(found) == [(written, "film", start, start + len(written), 1.0)]  # offsets into the text
        assert GazetteerExtractor({"Cafe Society": "film"}).extract([text]) == [[]]  # the accent still counts
    assert GazetteerExtractor([(nfc, "film"), (nfd, "film")]).settings()["num_names"] == 1


def test_gazetteer_min_length_conflicts_and_settings():
    g = GazetteerExtractor([("US", "GPE"), ("Obama", "PERSON"), ("Obama", "ORG"), ("Texas", "GPE")], min_length=3)
    s = g.settings()
    assert (s["num_names"], s["names_too_short"], s["names_with_conflicting_types"]) == (2, 1, 1)
    assert _spans(g.extract(["US and Obama"])[0]) == [("Obama", "PERSON", 7, 12, 1.0)]
    assert g.extract([]) == []
    assert g.extract(["", "   "]) == [[], []]
    assert isinstance(g, EntityExtractor)


def test_gazetteer_rejects_bad_input():
    with pytest.raises(ConfigError, match="min_length"):
        GazetteerExtractor({"Paris": "GPE"}, min_length=0)
    with pytest.raises(ConfigError, match="pair"):
        GazetteerExtractor([("Paris", "GPE", "extra")])
    with pytest.raises(ConfigError, match="sequence of texts"):
        GazetteerExtractor({"Paris": "GPE"}).extract("Paris")
    with pytest.raises(ConfigError, match="text 1"):
        GazetteerExtractor({"Paris": "GPE"}).extract(["Paris", None])


def test_gazetteer_from_list(tmp_path: Path):
    path = tmp_path / "names.tsv"
    path.write_text('name\ttype\nNew York\tGPE\n"Tom" Hanks\tPERSON\n', encoding="utf-8")
    g = GazetteerExtractor.from_list(path)
    assert g.num_names == 2
    assert _spans(g.extract(['"Tom" Hanks in new york'])[0]) == [
        ('"Tom" Hanks', "PERSON", 0, 11, 1.0),
        ("new york", "GPE", 15, 23, 0.9),
    ]
    bad = tmp_path / "bad.tsv"
    bad.write_text("Paris\tGPE\nBerlin\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        GazetteerExtractor.from_list(bad)
    assert err.value.line == 2


def test_gazetteer_from_triples_types_from_relations():
    triples = pd.DataFrame(
        {
            "head": ["m1", "m1", "m2", "m2"],
            "relation": ["film.film.director", "film.film.star", "film.film.director", "film.film.genre"],
            "tail": ["p1", "p2", "p1", "g1"],
        }
    )
    names = pd.DataFrame(
        {
            "entity_id": ["m1", "p1", "p2", "g1", "x9"],
            "name": ["Jaws", "Steven Spielberg", "Roy Scheider", "Thriller", "Not In Graph"],
        }
    )
    g = GazetteerExtractor.from_triples(triples, names, default_type="movie")
    (found,) = g.extract(["Jaws, a thriller by Steven Spielberg with Roy Scheider. Not In Graph."])
    assert [(m.surface, m.entity_type) for m in found] == [
        ("Jaws", "movie"),
        ("thriller", "genre"),
        ("Steven Spielberg", "director"),
        ("Roy Scheider", "star"),
    ]
    typed = names.assign(entity_type=["WORK", "PERSON", "PERSON", "GENRE", "X"])
    g2 = GazetteerExtractor.from_triples(triples, typed)
    assert [m.entity_type for m in g2.extract(["Steven Spielberg"])[0]] == ["PERSON"]
    with pytest.raises(SchemaError, match="entity_id"):
        GazetteerExtractor.from_triples(triples, names.rename(columns={"entity_id": "id"}))


# -------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Tom   Hanks ", "tom hanks"),
        ("Tom Hanks's", "tom hanks"),
        ("\u201cTom Hanks\u2019s\u201d", "tom hanks"),
        ("(NASA)", "nasa"),
        ("\ufb01nance", "finance"),  # NFKC: the ligature becomes two letters
        ("Stra\u00dfe", "strasse"),  # casefold, not lower
        ("U.S.", "u.s"),
        ("Hans'", "hans"),
        ("--", ""),
    ],
)
def test_normalise_entity_name(raw: str, expected: str):
    assert normalise_entity_name(raw) == expected


def test_entity_id():
    assert entity_id("Tom Hanks's", "PERSON") == "person:tom hanks"
    assert entity_id("tom  hanks", "person") == entity_id("Tom Hanks", "PERSON")


def test_mention_checks_its_span_and_confidence():
    with pytest.raises(DataError, match="span"):
        Mention("x", "T", 3, 2, 1.0)
    with pytest.raises(DataError, match="confidence"):
        Mention("x", "T", 0, 1, 1.5)


# -------------------------------------------------------------------------------- builder
def _tables() -> Tables:
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3", "i4"],
            "title": ["Tom Hanks meets tom hanks", "tom hanks in Paris", "", "Lost in paris"],
            "text": ["Tom Hanks's new film", None, "Paris, Texas", np.nan],
        },
        dtype="string",
    )
    return Tables(interactions=_empty_interactions(), items=items)


def _names() -> GazetteerExtractor:
    return GazetteerExtractor({"Tom Hanks": "PERSON", "Paris": "GPE", "Texas": "GPE"})


def test_entity_builder_merges_mentions_across_items():
    tables = _tables()
    before = tables.items.copy(deep=True)
    frag = EntityBuilder(_names()).build(tables)
    pd.testing.assert_frame_equal(tables.items, before)

    nodes = frag.nodes["entity"]
    assert set(frag.nodes) == {"entity"}
    assert nodes.ids == ["person:tom hanks", "gpe:paris", "gpe:texas"]
    # "Tom Hanks" and "tom hanks" are both written twice: the tie goes to the first seen
    assert nodes.attrs["name"] == ["Tom Hanks", "Paris", "Texas"]
    assert nodes.attrs["entity_type"] == ["PERSON", "GPE", "GPE"]
    assert nodes.attrs["source"] == ["extracted"] * 3

    block = frag.edges[("item", "mentions", "entity")]
    got = {
        (s, d): (float(w), float(c))
        for s, d, w, c in zip(block.src, block.dst, block.weight, block.attrs["count"], strict=True)
    }
    assert got == {
        ("i1", "person:tom hanks"): (1.0, 3.0),
        ("i2", "person:tom hanks"): (pytest.approx(0.9), 1.0),
        ("i2", "gpe:paris"): (1.0, 1.0),
        ("i3", "gpe:paris"): (1.0, 1.0),
        ("i3", "gpe:texas"): (1.0, 1.0),
        ("i4", "gpe:paris"): (pytest.approx(0.9), 1.0),
    }
    assert block.weight.dtype == np.float32 and block.attrs["count"].dtype == np.float32

    assert [(d.reason.split(" (")[0], d.count) for d in frag.dropped] == [("item texts missing or blank", 3)]
    assert frag.info["extractor"] == "gazetteer"
    assert frag.info["extractor_settings"]["num_names"] == 3
    assert (frag.info["texts"], frag.info["texts_missing_or_blank"], frag.info["mentions"]) == (5, 3, 8)


def test_entity_builder_min_confidence_and_types_are_counted():
    frag = EntityBuilder(_names(), min_confidence=0.95, entity_types=["PERSON"]).build(_tables())
    reasons = {d.reason: d for d in frag.dropped}
    low = next(d for r, d in reasons.items() if "confidence below 0.95" in r)
    excluded = next(d for r, d in reasons.items() if "entity types" in r)
    assert (low.count, sorted(low.examples)) == (2, ["tom hanks", "tom hanks"])
    assert (excluded.count, excluded.examples) == (4, ["GPE"])
    block = frag.edges[("item", "mentions", "entity")]
    assert list(zip(block.src, block.dst, block.attrs["count"].tolist(), strict=True)) == [
        ("i1", "person:tom hanks", 2.0)
    ]
    assert frag.info["mentions_kept"] == 2


def test_entity_builder_fields_relation_and_errors():
    frag = EntityBuilder(_names(), fields=("text",), relation="refers_to").build(_tables())
    assert list(frag.edges) == [("item", "refers_to", "entity")]
    assert EntityBuilder(_names(), fields=["title"]).fields == ("title",)
    with pytest.raises(SchemaError, match="abstract"):
        EntityBuilder(_names(), fields=("abstract",)).build(_tables())
    with pytest.raises(SchemaError, match="items table"):
        EntityBuilder(_names()).build(Tables(interactions=_empty_interactions()))
    with pytest.raises(ConfigError, match="min_confidence"):
        EntityBuilder(_names(), min_confidence=1.5)
    with pytest.raises(ConfigError, match="extractor"):
        EntityBuilder(object())
    with pytest.raises(SchemaError, match="snake_case"):
        EntityBuilder(_names(), relation="Mentions")


class _ItemNodes:
    """Declares the item nodes (as the interactions builder would)."""

    def build(self, tables: Tables) -> GraphFragment:
        return GraphFragment(nodes={"item": NodeBlock(tables.items["item_id"].tolist())})


def test_entity_builder_in_build_graph_records_the_extractor():
    kg = build_graph(_tables(), [_ItemNodes(), EntityBuilder(_names(), min_confidence=0.95)])
    assert kg.num_nodes("entity") == 3
    assert kg.num_edges(("item", "mentions", "entity")) == 4
    entry = kg.recipe[1]
    assert entry["builder"] == "EntityBuilder"
    assert entry["settings"]["min_confidence"] == 0.95
    assert entry["info"]["extractor_settings"]["num_names"] == 3
    assert any("confidence below" in d["reason"] and d["count"] == 3 for d in kg.report.dropped)


def test_entity_builder_refuses_a_field_that_is_not_text():
    """Numbers and lists were counted as "missing or blank" texts and silently skipped."""
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2"],
            "title": ["Paris", None],
            "year": pd.array([1990, None], dtype="Int64"),
            "genres": [("Paris",), None],
        }
    )
    tables = Tables(interactions=_empty_interactions(), items=items)
    for field, shown in (("year", "1990"), ("genres", "('Paris',)")):
        with pytest.raises(DataError, match=r"item 'i1'.*is not text") as err:
            EntityBuilder(_names(), fields=("title", field)).build(tables)
        assert err.value.field == field and shown in str(err.value)
    frag = EntityBuilder(_names(), fields=("title",)).build(tables)  # a missing title is still counted
    assert [(d.reason.split(" (")[0], d.count) for d in frag.dropped] == [("item texts missing or blank", 1)]


def test_spacy_extractor_bad_model_is_a_clear_error(tmp_path: Path):
    """A relative or dotted model name raised a raw ImportError from find_spec; a folder that holds
    no pipeline, spaCy's raw OSError."""
    pytest.importorskip("spacy", reason="spaCy (extra 'spacy') is not installed")
    for name in ("./no-such-model", "no_such.model", str(tmp_path / "absent")):
        with pytest.raises(MissingDependencyError, match="neither an installed package.*nor a model directory"):
            SpacyExtractor(name).extract(["Tom Hanks in Paris"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="cannot load spaCy model"):
        SpacyExtractor(tmp_path / "empty").extract(["Tom Hanks in Paris"])


def test_spacy_extractor_checks_settings():
    with pytest.raises(ConfigError, match="batch_size"):
        SpacyExtractor(batch_size=0)
    with pytest.raises(ConfigError, match="labels"):
        SpacyExtractor(labels="PERSON")
    for bad in (0, -5, True, 1.5, "100000"):
        with pytest.raises(ConfigError, match="max_chars"):
            SpacyExtractor(max_chars=bad)
    assert SpacyExtractor().extract([]) == []  # no model is loaded for no text


# spaCy: long texts are read in pieces
RULER_NAMES = {"Tom Hanks": "PERSON", "Spielberg": "PERSON", "Dr. Smith": "PERSON", "Paris": "GPE"}


def _ruler_pipeline(path: Path) -> Path:
    """A spaCy pipeline saved to ``path`` whose ``ner`` is an entity ruler over :data:`RULER_NAMES`.

    A ruler finds its names whatever the context, so a text read in pieces must give exactly the
    mentions of the whole text, unless a piece boundary cuts a name; no statistical model is needed.
    """
    spacy = pytest.importorskip("spacy", reason="spaCy (extra 'spacy') is not installed")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler", name="ner")
    ruler.add_patterns([{"label": label, "pattern": name} for name, label in RULER_NAMES.items()])
    nlp.to_disk(path)
    return path


def _ruler_mentions(text: str) -> list[tuple[str, str, int, int, float]]:
    """Every occurrence of a :data:`RULER_NAMES` name in ``text``: what the ruler finds reading it whole."""
    pattern = "|".join(re.escape(n) for n in RULER_NAMES)
    return [(m.group(), RULER_NAMES[m.group()], m.start(), m.end(), 1.0) for m in re.finditer(pattern, text)]


def test_spacy_extractor_reads_a_text_longer_than_spacy_max_length(tmp_path: Path):
    """A text over spaCy's ``nlp.max_length`` (1,000,000 characters) raised spaCy's raw E088 and
    aborted the whole build; it is now read in pieces of at most ``max_chars`` (100,000) characters,
    split at whitespace, with the mentions' offsets into the whole text."""
    path = _ruler_pipeline(tmp_path / "nlp")
    paragraph = "Tom Hanks met Spielberg in Paris.\n\n"
    # "Spielberg" straddles character 100,000, the end of the first piece: a cut at the limit would
    # leave "Spiel" and "berg"; the split is at the whitespace before it
    head = " " * 99_995 + "Spielberg and Tom Hanks"
    text = head + ("\n" + " " * 9_000 + paragraph) * 110
    assert len(text) > 1_000_000 and text.index("Spielberg") < 100_000 < text.index("Spielberg") + len("Spielberg")
    texts = ["Paris, said Tom Hanks", text, ""]
    expected = [_ruler_mentions(t) for t in texts]
    assert len(expected[1]) == 2 + 110 * 3

    found = SpacyExtractor(path).extract(texts)
    assert [_spans(ms) for ms in found] == expected
    for t, ms in zip(texts, found, strict=True):
        assert all(t[m.start : m.end] == m.surface for m in ms)
    # a max_chars above the pipeline's nlp.max_length is capped at it, not handed to spaCy
    assert [_spans(ms) for ms in SpacyExtractor(path, max_chars=5_000_000).extract(texts)] == expected


def test_spacy_extractor_splits_long_texts_at_breaks_and_batches_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Pieces end at a paragraph break, else a line break, else ". ", else any whitespace; only a
    window without whitespace is cut hard. Each case below has a name that a cut at the last
    whitespace (or at the limit) would split."""
    spacy = pytest.importorskip("spacy", reason="spaCy (extra 'spacy') is not installed")
    path = _ruler_pipeline(tmp_path / "nlp")
    max_chars = 60
    texts = [
        # ". " in the second half of the window wins over the space inside "Tom Hanks" (55)
        "Paris " * 7 + "was nice. Tom Hanks came back to Paris. " + "Paris " * 9,
        # a paragraph break wins over the ". " inside "Dr. Smith" (the last one before 60)
        "Paris " * 6 + "is far.\n\nThen came Dr. Smith, then Tom Hanks. " * 3,
        # a line break wins over the space inside "Tom Hanks"
        "Paris " * 7 + "and more\nThen Tom Hanks came to Paris, and Paris again and again",
        # only whitespace: the split is before "Spielberg", which straddles the limit
        "word " * 11 + "Spielberg and Tom Hanks " * 4,
        "Paris",  # short texts around the long ones keep their place
        "",
        # no whitespace for 200 characters: hard cuts, never inside a letter's combining mark
        "e\u0301" * 100 + " Paris",
        "x" * 200 + " Paris and Tom Hanks",
    ]
    calls: list[list[str]] = []
    original = spacy.language.Language.pipe

    def recording_pipe(self, pieces, **kwargs):
        pieces = list(pieces)
        calls.append(pieces)
        return original(self, pieces, **kwargs)

    ex = SpacyExtractor(path, max_chars=max_chars, batch_size=3)
    ex.extract(["Paris"])  # loads the pipeline (the ruler runs nlp.pipe on its patterns as it loads)
    monkeypatch.setattr(spacy.language.Language, "pipe", recording_pipe)
    found = ex.extract(texts)

    assert [_spans(ms) for ms in found] == [_ruler_mentions(t) for t in texts]  # as if read whole
    assert all(found[i] for i in (0, 1, 2, 3, 4, 6, 7))
    for t, ms in zip(texts, found, strict=True):
        assert all(t[m.start : m.end] == m.surface for m in ms)
    pieces = [p for call in calls for p in call]
    assert "".join(pieces) == "".join(texts)  # in order, nothing lost or repeated
    assert len(pieces) > len(texts)
    # a batch holds at most batch_size pieces and at most max_chars characters
    assert all(len(call) <= 3 and sum(map(len, call)) <= max_chars for call in calls)
    assert all(not unicodedata.category(p[:1]).startswith("M") for p in pieces if p)
    assert ex.settings()["max_chars"] == max_chars and "max_chars=60" in repr(ex)


# ------------------------------------------------------------------------------ MIND reader
def _news_line(news_id: str, title: str, abstract: str, title_ents: str, abstract_ents: str) -> str:
    return "\t".join([news_id, "news", "newsus", title, abstract, f"https://x/{news_id}", title_ents, abstract_ents])


def _ent(label: str, etype: str, offsets: list[int], surfaces: list[str]) -> dict:
    return {
        "Label": label,
        "Type": etype,
        "WikidataId": "Q1",
        "Confidence": 0.99,
        "OccurrenceOffsets": offsets,
        "SurfaceForms": surfaces,
    }


def test_load_mind_news(tmp_path: Path):
    rows = [
        _news_line(
            "N1",
            'Trump says "hi" to Trump',
            "In Paris.",
            json.dumps([_ent("Donald Trump", "P", [0, 19], ["Trump", "Trump"])]),
            json.dumps([_ent("Paris", "G", [3], ["Paris"]), _ent("France", "G", [], [])]),
        ),
        _news_line("N2", "Nothing here", "", "[]", "[]"),
    ]
    (tmp_path / "news.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    tables = load_mind_news(tmp_path)  # a folder holding news.tsv
    assert tables.items["item_id"].tolist() == ["N1", "N2"]
    assert tables.items["title"].iloc[0] == 'Trump says "hi" to Trump'
    assert tables.items["text"].tolist() == ["In Paris.", ""]
    assert tables.items["genres"].iloc[0] == ("news", "newsus")
    gold = tables.gold_entities
    assert gold[["field", "surface", "entity_type"]].values.tolist() == [
        ["title", "Trump", "P"],
        ["title", "Trump", "P"],
        ["abstract", "Paris", "G"],
        ["abstract", "France", "G"],
    ]
    assert gold["offset"].tolist()[:3] == [0, 19, 3] and pd.isna(gold["offset"].iloc[3])
    assert str(gold["offset"].dtype) == "Int64"
    assert len(tables.interactions) == 0 and list(tables.interactions.columns) == ["user_id", "item_id"]


def test_load_mind_news_bad_json(tmp_path: Path):
    rows = [
        _news_line("N1", "A", "B", "[]", "[]"),
        _news_line("N2", "C", "D", '[{"Label": "x"', "[]"),
        _news_line("N3", "E", "F", "[]", json.dumps([_ent("x", "P", [0, 1], ["E"])])),
    ]
    path = tmp_path / "news.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_mind_news(path)
    assert (err.value.file, err.value.line, err.value.field) == (str(path), 2, "title_entities")
    tables = load_mind_news(path, on_error="skip")
    assert tables.items["item_id"].tolist() == ["N1"]
    assert [(i.line, i.field) for i in tables.issues] == [(2, "title_entities"), (3, "abstract_entities")]
    assert "equal length" in tables.issues[1].reason


def test_load_mind_news_deeply_nested_json(tmp_path: Path):
    """Nesting past the recursion limit escaped as RecursionError."""
    path = tmp_path / "news.tsv"
    rows = [_news_line("N1", "A", "B", "[" * 100_000, "[]"), _news_line("N2", "C", "D", "[]", "[]")]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="invalid entity list") as err:
        load_mind_news(path)
    assert (err.value.file, err.value.line, err.value.field) == (str(path), 1, "title_entities")
    tables = load_mind_news(path, on_error="skip")
    assert tables.items["item_id"].tolist() == ["N2"] and [i.line for i in tables.issues] == [1]


# --------------------------------------------------------------------------- transformers
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
WORDS = ["alice", "bob", "met", "in", "paris", "london", "the", "and"]


def _tiny_model(path: Path, *, favour: str | None, arch: str = "bert") -> Path:
    """A 2-layer BERT (or RoBERTa) with hidden size 32 and a word-level tokenizer, saved to ``path``.

    ``favour``: a label whose classifier bias is raised so every word gets it (``None``: the
    random initialisation decides). Both have 64 position embeddings and a tokenizer saved
    without a length limit; RoBERTa numbers positions from ``padding_idx + 1``, so it holds 63 tokens.
    """
    torch = pytest.importorskip("torch", reason="the transformers extractor needs torch")
    transformers = pytest.importorskip("transformers", reason="the transformers extractor needs transformers")
    tokenizers = pytest.importorskip("tokenizers", reason="building a tokenizer offline needs tokenizers")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {t: i for i, t in enumerate(specials + WORDS)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = tokenizers.normalizers.Lowercase()
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    config_class, model_class = {
        "bert": (transformers.BertConfig, transformers.BertForTokenClassification),
        "roberta": (transformers.RobertaConfig, transformers.RobertaForTokenClassification),
    }[arch]
    config = config_class(
        vocab_size=len(vocab),
        pad_token_id=vocab["[PAD]"],
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = model_class(config)
    if favour is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.zero_()
            model.classifier.bias[LABELS.index(favour)] = 6.0
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def test_transformers_extractor_spans_types_and_scores(tmp_path: Path):
    path = _tiny_model(tmp_path / "per", favour="B-PER")
    ex = TransformersExtractor(path, local_files_only=True, batch_size=2)
    texts = ["Alice met Bob in  Paris", "", "Zork and alice"]
    out = ex.extract(texts)
    # every word is B-PER, so each word is its own PER entity; "Zork" is out of vocabulary
    assert [[(m.surface, m.start, m.end) for m in ms] for ms in out] == [
        [("Alice", 0, 5), ("met", 6, 9), ("Bob", 10, 13), ("in", 14, 16), ("Paris", 18, 23)],
        [],
        [("Zork", 0, 4), ("and", 5, 8), ("alice", 9, 14)],
    ]
    for text, ms in zip(texts, out, strict=True):
        for m in ms:
            assert m.entity_type == "PER"
            assert text[m.start : m.end] == m.surface
            assert 0.9 < m.confidence <= 1.0
    assert ex.settings()["model"] == str(path) and ex.settings()["aggregation_strategy"] == "simple"
    # a text three times longer than the 64 positions of the model is read in windows, not cut
    long_text = " ".join(WORDS * 20)
    (long_found,) = ex.extract([long_text])
    assert [m.surface for m in long_found] == long_text.split()
    assert all(long_text[m.start : m.end] == m.surface for m in long_found)


def test_transformers_extractor_long_text_on_a_model_with_offset_positions(tmp_path: Path):
    """RoBERTa-style models number positions from ``padding_idx + 1``: 64 position embeddings hold
    63 tokens. With a tokenizer saved without its limit, the windows were 64 tokens long and every
    text longer than the model raised torch's raw "index 64 is out of bounds"."""
    path = _tiny_model(tmp_path / "roberta", favour="B-PER", arch="roberta")
    ex = TransformersExtractor(path, local_files_only=True, batch_size=2)
    long_text = " ".join(WORDS * 20)  # 160 words, 162 tokens
    texts = ["alice met bob", long_text, " ".join(WORDS * 8)]  # 64 words: 66 tokens, just over 63
    found = ex.extract(texts)
    for text, ms in zip(texts, found, strict=True):
        assert [m.surface for m in ms] == text.split()
        assert all(text[m.start : m.end] == m.surface and m.entity_type == "PER" for m in ms)


def test_transformers_extractor_random_model_plumbing(tmp_path: Path):
    path = _tiny_model(tmp_path / "rand", favour=None)
    ex = TransformersExtractor(str(path), local_files_only=True)
    texts = ["alice and bob met in london", "paris the london and alice bob", "bob"]
    out = ex.extract(texts)
    assert len(out) == 3
    assert sum(len(ms) for ms in out) > 0
    for text, ms in zip(texts, out, strict=True):
        for m in ms:
            assert 0 <= m.start < m.end <= len(text)
            assert text[m.start : m.end] == m.surface
            assert m.entity_type in {"PER", "LOC"}
            assert 0.0 <= m.confidence <= 1.0
    frag = EntityBuilder(ex, fields=("title",)).build(
        Tables(interactions=_empty_interactions(), items=pd.DataFrame({"item_id": ["a", "b"], "title": texts[:2]}))
    )
    assert frag.info["extractor"] == f"transformers:{path}"
    assert frag.info["extractor_settings"]["local_files_only"] is True


def test_transformers_extractor_rejects_bad_settings(tmp_path: Path):
    with pytest.raises(ConfigError, match="aggregation_strategy"):
        TransformersExtractor("x", aggregation_strategy="none")
    with pytest.raises(ConfigError, match="batch_size"):
        TransformersExtractor("x", batch_size=0)
    with pytest.raises(ConfigError, match="cannot load"):
        TransformersExtractor(tmp_path / "no-model-here", local_files_only=True).extract(["some text"])


def test_model_folders_under_home_are_found_with_a_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The encoders expand ``~``; the extractors looked ``~/ner`` up as a hub id."""
    monkeypatch.setenv("HOME", str(tmp_path))
    _tiny_model(tmp_path / "ner", favour="B-PER")
    by_tilde = TransformersExtractor("~/ner", local_files_only=True)
    assert by_tilde.model == str(tmp_path / "ner")
    assert by_tilde.extract(["Alice met Bob"]) == TransformersExtractor(
        tmp_path / "ner", local_files_only=True
    ).extract(["Alice met Bob"])
    (tmp_path / "nlp").mkdir()
    assert SpacyExtractor("~/nlp").model == str(tmp_path / "nlp")
    assert SpacyExtractor("~/not-there").model == "~/not-there"  # (then a package name, as given)
