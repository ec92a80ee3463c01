"""TextFeatureBuilder with a tiny deterministic stand-in encoder: slots, masks, report, recipe, cache.

The real encoder (all-MiniLM-L6-v2) is exercised in tests/integration/test_text_features_real.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from kg_builders.builders.node_text import NodeTextTemplates, node_texts
from kg_builders.builders.standard import standard_builders
from kg_builders.builders.text_encoder import EncodeResult
from kg_builders.builders.text_features import TextFeatureBuilder
from kg_builders.errors import ConfigError, SchemaError
from kg_builders.graph import KnowledgeGraph, build_graph


@dataclass(frozen=True, kw_only=True)
class HashEncoder:
    """Vectors from a hash of the text (same text, same vector); records every text it encodes."""

    dim: int = 8
    max_chars: int = 40
    on_bad_text: str = "raise"
    rows: int | None = None  # return this many rows instead of one per text (to test the check)
    seen: list[str] = field(default_factory=list, compare=False)

    def fingerprint(self) -> str:
        return f"hash-encoder-{self.dim}"

    def settings(self) -> dict:
        return {"dim": self.dim, "max_chars": self.max_chars}

    def encode(self, texts, *, progress: bool = False) -> EncodeResult:
        self.seen.extend(texts)
        n = len(texts) if self.rows is None else self.rows
        vecs = np.zeros((n, self.dim), np.float32)
        for i, t in enumerate(texts[:n]):
            raw = np.frombuffer(hashlib.sha256(t.encode()).digest()[: self.dim], np.uint8).astype(np.float32)
            vecs[i] = raw / np.linalg.norm(raw)
        cut = np.array([len(t) > self.max_chars for t in texts[:n]], bool)
        return EncodeResult(
            vectors=vecs, mask=np.ones(n, bool), truncated_mask=cut, truncated=int(cut.sum()), skipped=0, seconds=0.0
        )


@pytest.fixture
def graph(tiny_tables) -> KnowledgeGraph:
    extra = pd.DataFrame({"user_id": ["u2"], "item_id": ["i9"], "rating": [4.0], "timestamp": [40]})
    tables = tiny_tables.replace(interactions=pd.concat([tiny_tables.interactions, extra], ignore_index=True))
    return build_graph(tables, standard_builders(tables))  # i9 has no catalogue entry: an empty text


def test_every_node_type_gets_a_slot_and_empty_texts_are_masked(graph) -> None:
    enc = HashEncoder()
    report = TextFeatureBuilder(encoder=enc).build(graph)
    texts = node_texts(graph)
    i9 = graph.index("item", "i9")
    assert texts["item"][i9] == ""
    for t in ("user", "item", "tag", "entity"):
        x, m = graph.features[t]["text"], graph.feature_masks[t]["text"]
        assert x.shape == (graph.num_nodes(t), 8) and x.dtype == np.float32 and m.dtype == bool
        r = report.node_types[t]
        assert r.count == graph.num_nodes(t) and r.encoded == int(m.sum()) == r.count - r.empty
        np.testing.assert_allclose(np.linalg.norm(x[m], axis=1), 1.0, rtol=1e-5)
    assert not graph.feature_masks["item"]["text"][i9] and not graph.features["item"]["text"][i9].any()
    assert report.node_types["item"].empty == 1 and report.total("empty") == 1
    assert "" not in enc.seen and len(enc.seen) == report.total("encoded")
    assert report.node_types["item"].truncated == sum(len(x) > 40 for x in texts["item"])
    # the vector of a node is the encoding of its text
    j = graph.index("item", "i1")
    np.testing.assert_array_equal(
        graph.features["item"]["text"][j], HashEncoder().encode([texts["item"][j]]).vectors[0]
    )
    assert "text features 'text' [8-d]" in report.to_text() and report.to_dict()["dim"] == 8


def test_recipe_entry_is_replaced_not_duplicated_and_survives_save(graph, tmp_path) -> None:
    n_before = len(graph.recipe)
    builder = TextFeatureBuilder(encoder=HashEncoder(), templates=NodeTextTemplates(item_tags=2))
    builder.build(graph)
    builder.build(graph)
    TextFeatureBuilder(encoder=HashEncoder(), slot="text_short", node_types=("item",)).build(graph)
    entries = [r for r in graph.recipe if r["builder"] == "TextFeatureBuilder"]
    assert len(graph.recipe) == n_before + 2 and [e["info"]["slot"] for e in entries] == ["text", "text_short"]
    e = entries[0]
    assert e["info"]["template_id"] == NodeTextTemplates(item_tags=2).template_id()
    assert e["info"]["encoder_fingerprint"] == "hash-encoder-8" and e["info"]["dim"] == 8
    assert e["settings"]["encoder"] == {"builder": "HashEncoder", "settings": {"dim": 8, "max_chars": 40}}
    assert e["settings"]["templates"]["settings"]["item_tags"] == 2
    assert set(graph.features["item"]) == {"text", "text_short"} and "text_short" not in graph.features["user"]
    back = KnowledgeGraph.load(graph.save(tmp_path / "g"))
    assert back.equals(graph, check_report=True)


def test_cache_serves_a_rebuild_and_a_template_change_misses(graph, tmp_path) -> None:
    first_enc = HashEncoder()
    first = TextFeatureBuilder(encoder=first_enc, cache_dir=tmp_path / "cache").build(graph)
    assert first.total("cache_misses") == first.total("encoded") and first.total("cache_hits") == 0
    vectors = {t: graph.features[t]["text"].copy() for t in graph.node_types}
    again_enc = HashEncoder()
    again = TextFeatureBuilder(encoder=again_enc, cache_dir=tmp_path / "cache").build(graph)
    assert again.total("cache_hits") == first.total("encoded") and again.total("cache_misses") == 0
    assert again_enc.seen == []  # nothing encoded
    for t, v in vectors.items():
        np.testing.assert_array_equal(graph.features[t]["text"], v)
    changed = TextFeatureBuilder(
        encoder=HashEncoder(), templates=NodeTextTemplates(tag="tag: {text}"), cache_dir=tmp_path / "cache"
    ).build(graph)
    assert changed.node_types["tag"].cache_misses == graph.num_nodes("tag")  # new template id: new keys


def test_absent_node_types_are_reported(graph) -> None:
    kg = KnowledgeGraph({"user": graph.node_ids["user"], "item": graph.node_ids["item"]}, {})
    report = TextFeatureBuilder(encoder=HashEncoder()).build(kg)
    assert report.absent == ["tag", "entity"] and set(kg.features) == {"user", "item"}
    # no interactions: users have nothing to say, and are masked
    assert report.node_types["user"].empty == kg.num_nodes("user") and not kg.feature_masks["user"]["text"].any()


def test_bad_settings_and_a_misbehaving_encoder(graph) -> None:
    with pytest.raises(ConfigError, match="node_types"):
        TextFeatureBuilder(encoder=HashEncoder(), node_types=("item", "news"))
    with pytest.raises(ConfigError, match="node_types"):
        TextFeatureBuilder(encoder=HashEncoder(), node_types=("item", "item"))
    with pytest.raises(SchemaError, match="snake_case"):
        TextFeatureBuilder(encoder=HashEncoder(), slot="Text/1")
    with pytest.raises(ConfigError, match="encode"):
        TextFeatureBuilder(encoder=object())
    with pytest.raises(ConfigError, match="templates"):
        TextFeatureBuilder(encoder=HashEncoder(), templates={"item": "{title}"})
    with pytest.raises(SchemaError, match="returned vectors"):
        TextFeatureBuilder(encoder=HashEncoder(rows=1), node_types=("item",)).build(graph)
    with pytest.raises(SchemaError, match="KnowledgeGraph"):
        TextFeatureBuilder(encoder=HashEncoder()).build({"user": []})


def test_a_text_the_encoder_refuses_is_named_by_its_node(tiny_tables) -> None:
    """The encoder sees only the non-empty texts: its index pointed at another node."""
    from kg_builders.builders.text_encoder import TextEncoder
    from kg_builders.errors import DataError

    items = tiny_tables.items.copy()
    k = items.index[items["item_id"] == "i5"][0]
    items.loc[k, "title"], items.loc[k, "year"] = "\ufeff", pd.NA
    items.at[k, "genres"] = ()
    extra = pd.DataFrame({"user_id": ["u2"], "item_id": ["i9"], "rating": [4.0], "timestamp": [40]})
    tables = tiny_tables.replace(
        items=items, interactions=pd.concat([tiny_tables.interactions, extra], ignore_index=True)
    )
    g = build_graph(tables, standard_builders(tables))  # i9: no text at all; i5: a byte-order mark only
    assert node_texts(g, node_types=["item"])["item"][g.index("item", "i5")] == "\ufeff"
    encoder = TextEncoder(local_files_only=True, device="cpu")
    with pytest.raises(DataError, match=r"field 'text': the text of item 'i5' is empty \(nothing in it") as err:
        TextFeatureBuilder(encoder=encoder, node_types=("item",)).build(g)
    assert err.value.field == "text"
