from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kg_builders.builders.attributes import ItemAttributeBuilder
from kg_builders.builders.interactions import InteractionBuilder
from kg_builders.builders.knowledge import KnowledgeBuilder
from kg_builders.builders.social import SocialBuilder
from kg_builders.builders.tags import TagBuilder
from kg_builders.errors import CheckpointError, ConfigError, DataError, SchemaError, UnknownIdError
from kg_builders.graph import EdgeStore, KnowledgeGraph, build_graph


def _edges(kg: KnowledgeGraph, et: tuple[str, str, str]) -> dict[tuple[str, str], float]:
    e = kg.edges[et]
    s, _, d = et
    return {
        (kg.node_ids[s][a], kg.node_ids[d][b]): float(w)
        for (a, b), w in zip(e.edge_index.T, e.edge_weight, strict=True)
    }


@pytest.fixture
def tiny_graph(tiny_tables) -> KnowledgeGraph:
    return build_graph(
        tiny_tables,
        [
            InteractionBuilder(),
            TagBuilder(),
            ItemAttributeBuilder(),
            KnowledgeBuilder(),
            SocialBuilder(),
        ],
    )


def test_nodes_and_id_maps(tiny_graph) -> None:
    kg = tiny_graph
    assert kg.node_ids["user"] == ["u1", "u2", "u3"]
    assert kg.node_ids["item"] == ["i1", "i2", "i3", "i4", "i5"]  # catalogue order; i5 has no interaction
    assert kg.index("item", "i3") == 2
    np.testing.assert_array_equal(kg.index("user", ["u3", "u1"]), [2, 0])
    with pytest.raises(UnknownIdError) as err:
        kg.index("item", ["i1", "nope", "zz"])
    assert err.value.ids == ["nope", "zz"] and "nope" in str(err.value)
    assert kg.node_attrs["item"]["title"][0] == "Alpha"
    assert kg.node_attrs["item"]["year"][2] is None
    assert kg.node_attrs["item"]["genres"][0] == ["Drama", "Comedy"]


def test_interaction_edges_weights_and_timestamps(tiny_graph) -> None:
    e = _edges(tiny_graph, ("user", "interacted", "item"))
    assert len(e) == 9 and e[("u1", "i1")] == 5.0 and e[("u2", "i1")] == 2.0
    ts = tiny_graph.edges[("user", "interacted", "item")].attrs["timestamp"]
    assert ts.dtype == np.int64 and sorted(ts.tolist()) == [1, 2, 3, 4, 5, 10, 15, 20, 30]


def test_interaction_weights_modes(tiny_tables) -> None:
    dup = tiny_tables.replace(
        interactions=pd.concat(
            [tiny_tables.interactions, tiny_tables.interactions.iloc[:1].assign(timestamp=99, rating=1.0)]
        )
    )
    kg = build_graph(dup, [InteractionBuilder(weight="count")])
    assert _edges(kg, ("user", "interacted", "item"))[("u1", "i1")] == 2.0
    assert any("repeated" in d["reason"] for d in kg.report.dropped)
    kg = build_graph(dup, [InteractionBuilder(weight="rating")])
    assert _edges(kg, ("user", "interacted", "item"))[("u1", "i1")] == 1.0  # the latest rating
    kg = build_graph(dup, [InteractionBuilder(weight="log_count")])
    assert _edges(kg, ("user", "interacted", "item"))[("u1", "i1")] == pytest.approx(1 + np.log(2))
    kg = build_graph(tiny_tables, [InteractionBuilder(min_rating=4.0, weight="binary")])
    e = _edges(kg, ("user", "interacted", "item"))
    assert set(e.values()) == {1.0} and len(e) == 5
    with pytest.raises(ConfigError, match="weight must be one of"):
        InteractionBuilder(weight="stars")


def test_tags_are_normalised_and_counted(tiny_graph) -> None:
    kg = tiny_graph
    assert kg.node_ids["tag"] == ["funny", "dark"]
    assert kg.node_attrs["tag"]["count"] == [2, 2]
    assert kg.node_attrs["tag"]["text"][0] in {"Funny", "funny"}
    it = _edges(kg, ("item", "tagged_with", "tag"))
    assert it == {("i1", "funny"): 1.0, ("i3", "funny"): 1.0, ("i4", "dark"): 1.0, ("i3", "dark"): 1.0}
    assert any("empty tags" in d["reason"] and d["count"] == 1 for d in kg.report.dropped)


def test_tag_min_count(tiny_tables) -> None:
    tags = pd.concat(
        [tiny_tables.tag_assignments, pd.DataFrame({"user_id": ["u2"], "item_id": ["i2"], "tag": ["FUNNY"]})]
    )
    kg = build_graph(tiny_tables.replace(tag_assignments=tags), [InteractionBuilder(), TagBuilder(min_count=3)])
    assert kg.node_ids["tag"] == ["funny"]


def test_genre_entities(tiny_graph) -> None:
    kg = tiny_graph
    genre_ids = [i for i in kg.node_ids["entity"] if i.startswith("genre:")]
    assert genre_ids == ["genre:drama", "genre:comedy", "genre:sci-fi"]  # "(no genres listed)" ignored
    e = _edges(kg, ("item", "has_genre", "entity"))
    assert set(e) == {("i1", "genre:drama"), ("i1", "genre:comedy"), ("i2", "genre:drama"), ("i4", "genre:sci-fi")}


def test_knowledge_triples(tiny_tables) -> None:
    with pytest.raises(SchemaError, match="needs a triples table"):
        build_graph(tiny_tables.replace(triples=None), [InteractionBuilder(), KnowledgeBuilder()])
    kg = build_graph(tiny_tables, [InteractionBuilder(), KnowledgeBuilder()])
    assert _edges(kg, ("item", "film_director", "entity")) == {("i1", "kg:p1"): 1.0, ("i2", "kg:p1"): 1.0}
    assert _edges(kg, ("item", "film_genre", "item")) == {("i1", "i2"): 1.0}  # both endpoints are items
    assert _edges(kg, ("entity", "film_director", "entity")) == {("kg:e9", "kg:p2"): 1.0}
    rel = next(r for r in kg.recipe if r["builder"] == "KnowledgeBuilder")
    assert rel["info"]["relations"]["film_director"] == "film.director"


def test_knowledge_items_sharing_an_entity_all_get_its_links(tiny_tables) -> None:
    ie = pd.DataFrame({"item_id": ["i1", "i2", "i3", "i3"], "entity_id": ["e1", "e1", "e2", "e2"]})
    triples = pd.DataFrame({"head": ["e1", "e1"], "relation": ["film.director", "film.sequel"], "tail": ["p1", "e2"]})
    fragment = KnowledgeBuilder().build(tiny_tables.replace(item_entities=ie, triples=triples))
    edges = {k: set(zip(v.src, v.dst, strict=True)) for k, v in fragment.edges.items()}
    assert edges == {
        ("item", "film_director", "entity"): {("i1", "kg:p1"), ("i2", "kg:p1")},
        ("item", "film_sequel", "item"): {("i1", "i3"), ("i2", "i3")},
    }
    assert fragment.info["items_linked"] == 3 and fragment.dropped == []  # a repeated mapping row is no duplicate


def test_knowledge_unknown_items(tiny_tables) -> None:
    ie = pd.DataFrame({"item_id": ["i1", "i99"], "entity_id": ["e1", "e9"]})
    ie.attrs.update(file="map.txt", lines=np.array([1, 2]))
    t = tiny_tables.replace(item_entities=ie)
    with pytest.raises(DataError, match=r"map.txt, line 2, field 'item_id': item 'i99' is not in the data set"):
        build_graph(t, [InteractionBuilder(), KnowledgeBuilder()])
    kg = build_graph(t, [InteractionBuilder(), KnowledgeBuilder(unknown_items="drop")])
    # e9 was i99's entity: its triple is gone; e2 is no item's entity here, so it is a plain entity
    assert _edges(kg, ("entity", "film_director", "entity")) == {("kg:e2", "kg:p1"): 1.0}
    reasons = {d["reason"]: d["count"] for d in kg.report.dropped}
    assert reasons["item-entity links to items not in the data set"] == 1
    assert reasons["triples touching an item not in the data set"] == 1


def test_social_edges_dedup_and_unknown_users(tiny_graph) -> None:
    e = _edges(tiny_graph, ("user", "friend_of", "user"))
    assert e == {("u1", "u2"): 1.0}  # (u2, u1) is the same pair; u2-u2 a loop; u9 has no node
    reasons = [d["reason"] for d in tiny_graph.report.dropped]
    assert "self-loops" in reasons and "duplicate pairs" in reasons
    assert any("not a node of the graph" in r for r in reasons)


def test_builders_do_not_mutate_tables(tiny_tables) -> None:
    before = {
        n: getattr(tiny_tables, n).copy(deep=True) for n in ("interactions", "items", "tag_assignments", "triples")
    }
    build_graph(
        tiny_tables, [InteractionBuilder(min_rating=3), TagBuilder(), ItemAttributeBuilder(), KnowledgeBuilder()]
    )
    for n, df in before.items():
        pd.testing.assert_frame_equal(getattr(tiny_tables, n), df)


def test_report_and_recipe(tiny_graph) -> None:
    r = tiny_graph.report
    assert r.nodes == {"user": 3, "item": 5, "tag": 2, "entity": 6}
    assert r.edges["user__interacted__item"] == 9
    assert r.input_rows["interactions"] == 9
    assert [x["builder"] for x in tiny_graph.recipe] == [
        "InteractionBuilder",
        "TagBuilder",
        "ItemAttributeBuilder",
        "KnowledgeBuilder",
        "SocialBuilder",
    ]
    assert tiny_graph.recipe[1]["settings"]["min_count"] == 1
    assert "interacted" in r.to_text()


def test_save_load_round_trip(tiny_graph, tmp_path) -> None:
    kg = tiny_graph
    feats = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    kg.set_features("item", "text", feats, mask=np.array([1, 1, 0, 1, 1], bool))
    path = kg.save(tmp_path / "g")
    back = KnowledgeGraph.load(path)
    assert back.equals(kg, check_report=True), back.diff(kg, check_report=True)
    np.testing.assert_array_equal(back.features["item"]["text"], feats)
    assert back.feature_masks["item"]["text"].tolist() == [True, True, False, True, True]
    assert not any(p.suffix in {".pkl", ".pickle", ".pt"} for p in path.iterdir())
    with pytest.raises(ConfigError, match="already exists"):
        kg.save(tmp_path / "g")
    kg.save(tmp_path / "g", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # no temporary leftovers


def test_failed_save_leaves_nothing(tiny_graph, tmp_path, monkeypatch) -> None:
    import safetensors.numpy

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        tiny_graph.save(tmp_path / "g")
    assert list(tmp_path.iterdir()) == []


def test_an_overwrite_that_fails_at_the_last_rename_keeps_the_old_directory(tiny_graph, tmp_path, monkeypatch) -> None:
    import os

    from kg_builders import _files

    path = tiny_graph.save(tmp_path / "g")
    before = sorted(p.name for p in path.iterdir())
    real = os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".g.tmp-"):  # the new directory's rename into place fails
            raise OSError("rename failed")
        real(src, dst)

    monkeypatch.setattr(_files.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        tiny_graph.save(tmp_path / "g", overwrite=True)
    monkeypatch.setattr(_files.os, "replace", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # the old one back, no leftovers
    assert sorted(p.name for p in path.iterdir()) == before
    assert KnowledgeGraph.load(path).equals(tiny_graph)
    # a directory an earlier killed overwrite left aside, under any name, is no obstacle
    import os

    (tmp_path / f".g.old-{os.getpid()}" / "x").mkdir(parents=True)
    tiny_graph.save(tmp_path / "g", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".g.old-{os.getpid()}", "g"]


def test_load_errors(tiny_graph, tmp_path) -> None:
    path = tiny_graph.save(tmp_path / "g")
    meta = json.loads((path / "graph.json").read_text())
    meta["format_version"] = 99
    (path / "graph.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="newer than this graph-rec"):
        KnowledgeGraph.load(path)
    (path / "graph.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        KnowledgeGraph.load(path)
    (path / "nodes.json").unlink()
    with pytest.raises(CheckpointError, match="nodes.json is missing"):
        KnowledgeGraph.load(path)


def _without(key: str):
    return lambda o: {k: v for k, v in o.items() if k != key}


@pytest.mark.parametrize(
    ("file", "edit", "words"),
    [
        ("graph.json", lambda o: [], "graph.json: corrupt JSON"),
        ("nodes.json", lambda o: [], "nodes.json: corrupt JSON"),
        ("graph.json", b'{"format": "\xff"}', "graph.json: corrupt JSON"),
        ("graph.json", lambda o: {**o, "format_version": "x"}, "graph.json: key 'format_version'"),
        ("graph.json", lambda o: {**o, "format_version": None}, "graph.json: key 'format_version'"),
        ("graph.json", _without("report"), "graph.json: key 'report' is missing"),
        ("graph.json", _without("recipe"), "graph.json: key 'recipe' is missing"),
        ("graph.json", _without("node_types"), "graph.json: key 'node_types' is missing"),
        ("graph.json", _without("edge_types"), "graph.json: key 'edge_types' is missing"),
        ("nodes.json", _without("ids"), "nodes.json: key 'ids' is missing"),
        ("graph.json", lambda o: {**o, "node_types": [*o["node_types"], "genre"]}, "graph.json: 'node_types'"),
        ("graph.json", lambda o: {**o, "report": {**o["report"], "bogus": 1}}, "graph.json: key 'report'.*bogus"),
        ("graph.json", lambda o: {**o, "edge_types": [["user", "interacted"]]}, "graph.json: .*'edge_types'"),
        ("nodes.json", lambda o: {**o, "ids": {**o["ids"], "user": "u1u2u3"}}, "nodes.json: key 'ids'.*'user'"),
    ],
)
def test_load_names_the_damaged_file_and_key(tiny_graph, tmp_path, file, edit, words) -> None:
    path = tiny_graph.save(tmp_path / "g")
    if isinstance(edit, bytes):
        (path / file).write_bytes(edit)
    else:
        (path / file).write_text(json.dumps(edit(json.loads((path / file).read_text()))))
    with pytest.raises(CheckpointError, match=words):
        KnowledgeGraph.load(path)


def test_graph_checks_edge_attributes_weights_and_ids() -> None:
    ids = {"user": ["a", "b"], "item": ["x"]}
    ei = np.array([[0, 1], [0, 0]], np.int64)
    et = ("user", "r", "item")
    with pytest.raises(SchemaError, match="edge attribute 'ts' must have E rows"):
        KnowledgeGraph(ids, {et: EdgeStore(ei, np.ones(2, np.float32), {"ts": np.array([1])})})
    with pytest.raises(SchemaError, match="edge_weight must be float"):
        KnowledgeGraph(ids, {et: EdgeStore(ei, np.ones(2, np.int64))})
    with pytest.raises(SchemaError, match="not strings: \\[1\\]"):
        KnowledgeGraph({"user": ["a", 1]}, {})


def test_graph_checks() -> None:
    with pytest.raises(SchemaError, match="duplicate ids"):
        KnowledgeGraph({"user": ["a", "a"]}, {})
    with pytest.raises(SchemaError, match="out of range"):
        KnowledgeGraph(
            {"user": ["a"], "item": ["x"]},
            {("user", "r", "item"): EdgeStore(np.array([[0], [1]], np.int64), np.ones(1, np.float32))},
        )
    with pytest.raises(SchemaError, match="snake_case"):
        KnowledgeGraph({"User": ["a"]}, {})
    kg = KnowledgeGraph({"user": ["a", "b"]}, {})
    with pytest.raises(SchemaError, match=r"must be \[2, dim\]"):
        kg.set_features("user", "x", np.zeros((3, 2)))


def test_rdf_file_as_external_knowledge_graph(tiny_tables, tmp_path) -> None:
    """An RDF (Turtle) file joined to items by a predicate becomes typed item/entity edges."""
    from kg_builders.sources.rdf_source import load_rdf

    ttl = tmp_path / "kg.ttl"
    ttl.write_text(
        "@prefix ex: <http://example.org/> .\n"
        'ex:film1 ex:itemId "i1" ; ex:director ex:ann ; ex:label "Alpha" .\n'
        'ex:film2 ex:itemId "i2" ; ex:director ex:ann .\n'
        "ex:ann ex:bornIn ex:paris .\n"
    )
    triples, literals, item_entities = load_rdf(ttl, item_predicate="ex:itemId")
    assert len(literals) == 1 and set(item_entities["item_id"]) == {"i1", "i2"}
    t = tiny_tables.replace(triples=triples, item_entities=item_entities)
    kg = build_graph(t, [InteractionBuilder(), KnowledgeBuilder()])
    ann = "kg:http://example.org/ann"
    assert _edges(kg, ("item", "director", "entity")) == {("i1", ann): 1.0, ("i2", ann): 1.0}
    assert _edges(kg, ("entity", "born_in", "entity")) == {(ann, "kg:http://example.org/paris"): 1.0}


def _pair_graph(**attrs) -> tuple[dict, dict]:
    ids = {"user": ["a", "b"], "item": ["x"]}
    ei = np.array([[0, 1], [0, 0]], np.int64)
    return ids, {("user", "r", "item"): EdgeStore(ei, np.ones(2, np.float32), dict(attrs))}


def test_edge_types_sharing_a_file_key_are_refused() -> None:
    # ("item", "film__director", "person") and ("item__film", "director", "person") both key as
    # item__film__director__person: a saved graph mixed their arrays up without a word
    st = EdgeStore(np.zeros((2, 1), np.int64), np.ones(1, np.float32))
    ids = {"item": ["m"], "person": ["p"], "item__film": ["f"]}
    with pytest.raises(SchemaError, match="share the key 'item__film__director__person'"):
        KnowledgeGraph(ids, {("item", "film__director", "person"): st, ("item__film", "director", "person"): st})


def test_python_values_text_and_numpy_bools_save_and_load(tmp_path) -> None:
    note = np.asarray([None, {"k": [1, "x"]}], dtype=object)
    ids, edges = _pair_graph(note=note, label=np.asarray(["x", "yz"]), when=np.asarray([1, 2], np.int64))
    kg = KnowledgeGraph(ids, edges, node_attrs={"user": {"vip": [np.bool_(True), np.bool_(False)]}})
    assert kg.edges[("user", "r", "item")].attrs["label"].dtype == object  # numpy text is held as str objects
    assert kg.equals(kg)  # None among the values used to crash the comparison (np.lexsort)
    back = KnowledgeGraph.load(kg.save(tmp_path / "g"))
    assert back.equals(kg), back.diff(kg)
    attrs = back.edges[("user", "r", "item")].attrs
    assert attrs["note"].tolist() == [None, {"k": [1, "x"]}] and attrs["label"].tolist() == ["x", "yz"]
    assert attrs["when"].dtype == np.int64 and back.node_attrs["user"]["vip"] == [True, False]
    # a reader of format 1 cannot read these values: the file says version 2 (a plain graph stays 1)
    assert json.loads((tmp_path / "g" / "graph.json").read_text())["format_version"] == 2
    plain = KnowledgeGraph(*_pair_graph(when=np.asarray([1, 2], np.int64))).save(tmp_path / "p")
    assert json.loads((plain / "graph.json").read_text())["format_version"] == 1
    # values JSON cannot hold (a set) are compared, not a crash
    odd = KnowledgeGraph(*_pair_graph(s=np.asarray([{1}, {2}], dtype=object)))
    assert odd.equals(odd)


def test_attributes_a_graph_cannot_hold_are_refused_by_name() -> None:
    for bad in (
        np.asarray(["2020-01-01", "2021-01-01"], "datetime64[D]"),
        np.zeros((2, 2), dtype=object),
        np.asarray([[b"a", b"b"], [b"c", b"d"]]),  # 2-D text
    ):
        with pytest.raises(SchemaError, match="edge attribute 'ts' has dtype"):
            KnowledgeGraph(*_pair_graph(ts=bad))
    ids, edges = _pair_graph(obj=np.asarray([object(), 1], dtype=object))
    with pytest.raises(SchemaError, match="edge attribute 'obj'.*cannot be saved"):
        KnowledgeGraph(ids, edges).save("/nonexistent/never-written")


@pytest.mark.parametrize(
    ("mask", "words"),
    [
        (np.ones(1, bool), r"must be bool \[5\], got bool \[1\]"),
        (np.asarray([0, 2.5, 1, 1, 1], np.float32), r"must be bool \[5\], got float32"),
    ],
)
def test_load_refuses_a_damaged_feature_mask(tiny_graph, tmp_path, mask, words) -> None:
    from safetensors.numpy import load_file, save_file

    tiny_graph.feature_masks["item"] = {"seen": np.ones(5, bool)}  # a mask without features
    path = tiny_graph.save(tmp_path / "g")
    arrays = load_file(str(path / "arrays.safetensors"))
    arrays["masks/item/seen"] = mask
    save_file(arrays, str(path / "arrays.safetensors"))
    with pytest.raises(CheckpointError, match=f"feature mask item.seen {words}"):
        KnowledgeGraph.load(path)
