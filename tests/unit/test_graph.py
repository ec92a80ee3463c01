from __future__ import annotations

import datetime
import json
import sys
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
from kg_builders.graph import EdgeStore, KnowledgeGraph, array_from_spec, build_graph
from kg_builders.tables import Tables


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


def test_tag_spellings_of_one_user_item_tag_count_once(tiny_tables) -> None:
    # the sources drop a (user, item, tag) row repeated with the same text; "Rock" and "rock " of one
    # user on one item are the same assignment too once normalised, so they must not weigh twice
    tags = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", None, None, "u1", "u1"],
            "item_id": ["i1", "i1", "i1", "i1", "i1", "i2", "i2"],
            "tag": ["Rock", "rock ", "ROCK", "rock", "Rock", "Rock", "Jazz"],
        }
    )
    kg = build_graph(tiny_tables.replace(tag_assignments=tags), [InteractionBuilder(), TagBuilder()])
    assert kg.node_ids["tag"] == ["rock", "jazz"]
    assert kg.node_attrs["tag"]["count"] == [5, 1]  # u1's two spellings on i1 are one; userless rows each count
    assert _edges(kg, ("item", "tagged_with", "tag")) == {("i1", "rock"): 4.0, ("i2", "rock"): 1.0, ("i2", "jazz"): 1.0}
    assert _edges(kg, ("user", "uses_tag", "tag")) == {("u1", "rock"): 2.0, ("u2", "rock"): 1.0, ("u1", "jazz"): 1.0}
    repeated = [d for d in kg.report.dropped if d["stage"] == "TagBuilder" and "repeated" in d["reason"]]
    assert [d["count"] for d in repeated] == [1]
    # min_count counts assignments, so the repeat does not lift "rock" to 6
    for min_count, kept in [(5, ["rock"]), (6, [])]:
        built = build_graph(
            tiny_tables.replace(tag_assignments=tags), [InteractionBuilder(), TagBuilder(min_count=min_count)]
        )
        assert built.node_ids["tag"] == kept, min_count


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


def test_a_saved_directory_is_on_disk_before_it_is_renamed_into_place(tiny_graph, tmp_path, monkeypatch) -> None:
    """Every file of the new directory, the directory, and then the rename, are fsynced (power-cut safe)."""
    import os
    import stat

    from kg_builders import _files

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        events.append(("fsync", "dir" if stat.S_ISDIR(st.st_mode) else "file", path))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(_files.os, "fsync", fsync)
    monkeypatch.setattr(_files.os, "replace", replace)
    path = tiny_graph.save(tmp_path / "g")
    moves = [i for i, e in enumerate(events) if e[0] == "replace" and e[2] == path]
    assert len(moves) == 1
    before, after = events[: moves[0]], events[moves[0] + 1 :]
    synced = {e[2].name for e in before if e[0] == "fsync" and e[1] == "file"}
    assert synced >= {p.name for p in path.iterdir()}  # every file of the result, before the rename
    assert ("fsync", "dir", tmp_path) in after  # and the rename itself


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


def test_array_from_spec_checks_each_value_against_the_dtype() -> None:
    """One check for every reader: a value is never cast to fit (no truncation, wrap-around or inf)."""
    got = array_from_spec([np.int64(3), 255], "uint8", [])
    assert got.dtype == np.uint8 and got.tolist() == [3, 255]
    got = array_from_spec([[1, 2.5], [float("nan"), float("-inf")]], "float16", [2])
    assert got.dtype == np.float16 and got.shape == (2, 2) and np.isneginf(got[1, 1])  # non-finite stays non-finite
    assert array_from_spec([np.bool_(True), False], "bool", []).tolist() == [True, False]
    assert array_from_spec([2**64 - 1], "uint64", []).tolist() == [2**64 - 1]
    assert array_from_spec([], "int8", [3]).shape == (0, 3)
    edge = {"where": lambda i: f"edge {i}"}
    for values, dtype, shape, match in [
        ([1, 1.5], "int64", [], "edge 1 is 1.5, which does not fit int64: not an integer"),
        ([True], "int64", [], "edge 0 is True, which does not fit int64: a boolean, not a number"),
        ([2**63], "int64", [], "edge 0 is 9223372036854775808, which does not fit int64: out of its range"),
        ([np.int64(-1)], "uint8", [], r"edge 0 is -1, which does not fit uint8: out of its range 0 \.\. 255"),
        ([1], "bool", [], "edge 0 is 1, which does not fit bool: not a boolean"),
        (["1.5"], "float64", [], "edge 0 is '1.5', which does not fit float64: not a number"),
        ([np.True_], "float32", [], "edge 0 is True, which does not fit float32: a boolean"),
        ([1e300], "float32", [], "edge 0 is 1e\\+300, which does not fit float32: a finite number float32 holds"),
        ([[0.0, 70000.0]], "float16", [2], "edge 0 holds 70000.0, which does not fit float16"),
        ([2**2000], "float64", [], "does not fit float64: an integer too large"),
        ([[1.0]], "float32", [2], r"edge 0 is \[1.0\], not a nested list of shape \[2\]"),
        (["x"], "complex64", [], "dtype complex64 .* is not one a graph holds"),
    ]:
        with pytest.raises(SchemaError, match=match):
            array_from_spec(values, dtype, shape, **edge)
    with pytest.raises(SchemaError, match="row 0 is 1.5"):  # the default name of a row
        array_from_spec([1.5], "int8", [])


def test_values_a_saved_graph_cannot_hold_are_named(tmp_path) -> None:
    """A node attribute JSON cannot hold names its node type, attribute and node; an object edge
    attribute its edge; a float dtype safetensors cannot store is refused when set."""
    when = datetime.date(2020, 1, 1)
    kg = KnowledgeGraph({"item": ["i1", "i2"]}, {}, node_attrs={"item": {"released": [None, when]}})
    with pytest.raises(SchemaError, match=r"node attribute item\.released of node 'i2' cannot be saved: .*date"):
        kg.save(tmp_path / "g")
    ids, edges = _pair_graph(when=np.asarray([1, when], dtype=object))
    with pytest.raises(
        SchemaError, match=r"edge attribute 'when' of edge 1 of \('user', 'r', 'item'\) cannot be saved"
    ):
        KnowledgeGraph(ids, edges).save(tmp_path / "e")
    assert list(tmp_path.iterdir()) == []
    if np.dtype(np.longdouble).itemsize <= 8:
        pytest.skip("long double is float64 on this platform")
    ids, edges = _pair_graph(w=np.ones(2, np.longdouble))
    with pytest.raises(SchemaError, match=r"\('user', 'r', 'item'\): edge attribute 'w' has dtype float128, which a"):
        KnowledgeGraph(ids, edges)
    store = edges[("user", "r", "item")]
    weighted = {("user", "r", "item"): EdgeStore(store.edge_index, np.ones(2, np.longdouble))}
    with pytest.raises(SchemaError, match=r"\('user', 'r', 'item'\): edge_weight has dtype float128"):
        KnowledgeGraph(ids, weighted)
    kg = KnowledgeGraph(ids, {})
    with pytest.raises(SchemaError, match=r"features user\.x have dtype float128"):
        kg.set_features("user", "x", np.zeros((2, 3), np.longdouble))
    assert kg.features == {}


def test_equals_compares_node_attribute_values_json_cannot_hold() -> None:
    def graph(value: object) -> KnowledgeGraph:
        return KnowledgeGraph({"item": ["i1"]}, {}, node_attrs={"item": {"s": [value]}})

    assert graph({1, 2}).equals(graph({2, 1}))  # used to raise TypeError: not JSON-serialisable: set
    assert graph({1}).diff(graph({2})) == ["node attributes differ"]
    assert not graph({1}).equals(graph("{1}"))  # a set is not its repr as text


def test_save_load_keeps_a_non_native_byte_order(tmp_path) -> None:
    swapped = ">" if sys.byteorder == "little" else "<"
    ids, edges = _pair_graph(t=np.asarray([5, -7], f"{swapped}i8"), n=np.asarray([1, 2], np.int64))
    store = edges[("user", "r", "item")]
    edges = {("user", "r", "item"): EdgeStore(store.edge_index, np.asarray([0.5, 2], f"{swapped}f4"), store.attrs)}
    kg = KnowledgeGraph(ids, edges)
    kg.set_features("user", "x", np.asarray([[1.5], [-2.5]], f"{swapped}f8"))
    path = kg.save(tmp_path / "g")
    back = KnowledgeGraph.load(path)
    assert back.diff(kg) == []  # diff compares dtypes: '>i8' came back as int64
    e = back.edges[("user", "r", "item")]
    assert e.attrs["t"].dtype == np.dtype(f"{swapped}i8") and e.attrs["t"].tolist() == [5, -7]
    assert e.attrs["n"].dtype == np.int64 and e.edge_weight.dtype == np.dtype(f"{swapped}f4")
    assert back.features["user"]["x"].dtype == np.dtype(f"{swapped}f8")
    meta = json.loads((path / "graph.json").read_text())
    assert "array_dtypes" not in json.loads(
        (KnowledgeGraph(*_pair_graph()).save(tmp_path / "p") / "graph.json").read_text()
    )
    meta["array_dtypes"]["edges/user__r__item/attr/t"] = "float64"
    (path / "graph.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="'array_dtypes' gives 'edges/user__r__item/attr/t' dtype float64"):
        KnowledgeGraph.load(path)


def test_an_interaction_without_a_timestamp_is_a_data_error_naming_it() -> None:
    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "item_id": ["i1", "i2", "i3"],
            "rating": [5.0, 3.0, 4.0],
            "timestamp": pd.array([20, None, 30], dtype="Int64"),
        }
    )
    with pytest.raises(DataError, match=r"row 1 \(user 'u2', item 'i2'\) has no timestamp") as err:
        Tables(interactions=inter)
    assert err.value.field == "timestamp"
    whole = Tables(interactions=inter.assign(timestamp=pd.array([20, 10, 30], dtype="Int64")))
    ts = build_graph(whole, [InteractionBuilder()]).edges[("user", "interacted", "item")].attrs["timestamp"]
    assert ts.dtype == np.int64 and ts.tolist() == [20, 10, 30]


def test_names_with_a_trailing_newline_are_refused() -> None:
    """``$`` matches before a final newline: ``likes\\n`` must not pass as a relation name."""
    from kg_builders.fragment import check_name

    for bad in ("likes\n", "user\n"):
        with pytest.raises(SchemaError, match="snake_case"):
            check_name(bad, "relation")
    with pytest.raises(SchemaError, match="snake_case"):
        SocialBuilder(relation="trusts\n")
    edges = {("user\n", "r", "item"): EdgeStore(np.zeros((2, 1), np.int64), np.ones(1, np.float32))}
    with pytest.raises(SchemaError, match="node type 'user\\\\n'"):
        KnowledgeGraph({"user\n": ["a"], "item": ["i"]}, edges)


def test_interaction_users_follow_row_positions_not_index_labels() -> None:
    # a concat repeats index labels: a user whose every interaction min_rating drops must not come back
    inter = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["i1", "i2"], "rating": [5.0, 1.0]}, index=[0, 0])
    kg = build_graph(Tables(interactions=inter), [InteractionBuilder(min_rating=3)])
    assert kg.node_ids["user"] == ["a"]
    # a sorted table has unordered labels: users come in the order of its rows
    inter = pd.DataFrame(
        {"user_id": ["b", "a", "c"], "item_id": ["i1", "i2", "i3"], "rating": [5.0, 1.0, 4.0]}, index=[5, 1, 3]
    )
    assert build_graph(Tables(interactions=inter), [InteractionBuilder()]).node_ids["user"] == ["b", "a", "c"]
    assert build_graph(Tables(interactions=inter), [InteractionBuilder(min_rating=3)]).node_ids["user"] == ["b", "c"]


def test_a_missing_rating_is_a_data_error_naming_it_when_the_rating_is_used() -> None:
    inter = pd.DataFrame(
        {"user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "rating": pd.array([4.0, None], dtype="Float64")}
    )
    for builder in (InteractionBuilder(), InteractionBuilder(weight="binary", min_rating=3.0)):
        with pytest.raises(DataError, match=r"row 1 \(user 'u2', item 'i2'\) has rating missing") as err:
            build_graph(Tables(interactions=inter), [builder])
        assert err.value.field == "rating"
    nan = inter.assign(rating=[4.0, float("nan")])
    with pytest.raises(DataError, match="has rating missing, not a finite number"):
        build_graph(Tables(interactions=nan), [InteractionBuilder()])
    with pytest.raises(DataError, match="has rating inf, not a finite number"):
        build_graph(Tables(interactions=inter.assign(rating=[4.0, float("inf")])), [InteractionBuilder()])
    kg = build_graph(Tables(interactions=nan), [InteractionBuilder(weight="count")])  # the rating is not used
    assert kg.edges[("user", "interacted", "item")].edge_weight.tolist() == [1.0, 1.0]


def test_load_keeps_the_order_of_feature_slots_and_edge_attributes(tiny_graph, tmp_path) -> None:
    """The order of slots is the order of modalities a model concatenates: load must not sort them."""
    kg = tiny_graph
    for slot, dim in (("text", 3), ("image", 2)):
        kg.set_features("item", slot, np.ones((5, dim), np.float32), mask=np.ones(5, bool))
    et = ("user", "interacted", "item")
    e = kg.edges[et]
    kg.edges[et] = EdgeStore(e.edge_index, e.edge_weight, {"zeta": e.attrs["timestamp"], "alpha": e.attrs["timestamp"]})
    back = KnowledgeGraph.load(kg.save(tmp_path / "g"))
    assert back.equals(kg)
    assert list(back.features["item"]) == ["text", "image"]
    assert list(back.feature_masks["item"]) == ["text", "image"]
    assert list(back.edges[et].attrs) == ["zeta", "alpha"]


def _edit_arrays(path: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    save_file(edit(load_file(str(path / "arrays.safetensors"))), str(path / "arrays.safetensors"))


def _drop_entity(o: dict) -> dict:
    o = json.loads(json.dumps(o))
    del o["ids"]["entity"][0]  # a node in the middle of the order: the edge indices still fit
    for v in o["attrs"]["entity"].values():
        del v[0]
    return o


@pytest.mark.parametrize(
    ("file", "edit", "words"),
    [
        (
            "arrays.safetensors",
            lambda a: {k: v for k, v in a.items() if k != "features/item/text"},
            "arrays.safetensors lacks array 'features/item/text' that graph.json lists",
        ),
        (
            "graph.json",
            lambda o: {**o, "edge_types": o["edge_types"][1:]},
            r"arrays.safetensors holds arrays \['edges/user__interacted__item/attr/timestamp'.* graph.json does not list",
        ),
        ("nodes.json", _drop_entity, "nodes.json: node type 'entity' has 5 ids; graph.json records 6"),
        (
            "arrays.safetensors",
            lambda a: {
                **a,
                "edges/user__friend_of__user/edge_index": np.zeros((2, 0), np.int64),
                "edges/user__friend_of__user/edge_weight": np.zeros(0, np.float32),
            },
            "edge type 'user__friend_of__user' has 0 edges; graph.json records 1",
        ),
        ("graph.json", lambda o: {**o, "feature_slots": {"item": "text"}}, "key 'feature_slots' of node type 'item'"),
    ],
)
def test_load_refuses_a_graph_directory_edited_by_hand(tiny_graph, tmp_path, file, edit, words) -> None:
    tiny_graph.set_features("item", "text", np.ones((5, 2), np.float32))
    path = tiny_graph.save(tmp_path / "g")
    if file == "arrays.safetensors":
        _edit_arrays(path, edit)
    else:
        (path / file).write_text(json.dumps(edit(json.loads((path / file).read_text()))))
    with pytest.raises(CheckpointError, match=words):
        KnowledgeGraph.load(path)


def test_a_graph_saved_before_slots_and_counts_were_recorded_still_loads(tiny_graph, tmp_path) -> None:
    tiny_graph.set_features("item", "text", np.ones((5, 2), np.float32))
    path = tiny_graph.save(tmp_path / "g")
    meta = json.loads((path / "graph.json").read_text())
    for key in ("counts", "feature_slots", "feature_mask_slots"):
        del meta[key]
    (path / "graph.json").write_text(json.dumps(meta))
    assert KnowledgeGraph.load(path).equals(tiny_graph)


def test_knowledge_relations_sharing_a_name_are_named(tiny_tables) -> None:
    triples = pd.DataFrame(
        {
            "head": ["e1", "e1", "e1"],
            "relation": ["film.director", "film_director", "film.actor"],
            "tail": ["p1", "p2", "p3"],
        }
    )
    triples.attrs["file"] = "kg_final.txt"
    with pytest.raises(SchemaError, match=r"kg_final.txt.*\['film.director', 'film_director'\] -> 'film_director'$"):
        KnowledgeBuilder().build(tiny_tables.replace(triples=triples))


def test_builders_giving_one_edge_type_different_attributes_are_named(tiny_tables) -> None:
    with pytest.raises(SchemaError, match=r"InteractionBuilder: \['timestamp'\]; _Plain: \[\]"):
        build_graph(tiny_tables, [InteractionBuilder(), _Plain()])


class _Plain:
    def build(self, tables: Tables):
        from kg_builders.fragment import EdgeBlock, GraphFragment

        block = EdgeBlock(np.array(["u1"], object), np.array(["i2"], object), np.ones(1, np.float32))
        return GraphFragment(edges={("user", "interacted", "item"): block})
