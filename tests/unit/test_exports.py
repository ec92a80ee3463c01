"""Exporters: PyG HeteroData / homogeneous view, networkx and RDF round trips, purity."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import rdflib
import torch

from kg_builders.errors import ConfigError, SchemaError
from kg_builders.export import (
    GR,
    HomogeneousView,
    from_networkx,
    from_rdf,
    rdf_format_for,
    to_hetero_data,
    to_homogeneous,
    to_networkx,
    to_rdf,
    write_rdf,
)
from kg_builders.export.rdf_graph import GR_IRI, node_iri
from kg_builders.fragment import EdgeBlock, GraphFragment, NodeBlock
from kg_builders.graph import BuildReport, EdgeStore, KnowledgeGraph, build_graph
from kg_builders.tables import Tables

ITEM_IDS = ["i1", "i/2", "i#3", "ü-4 日本", "50%", "q\"uo'te", "sp ace"]


def _store(pairs: list[tuple[int, int]], weights: list[float], **attrs: np.ndarray) -> EdgeStore:
    ei = np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T.copy()
    return EdgeStore(ei, np.asarray(weights, dtype=np.float32), dict(attrs))


@pytest.fixture
def kg() -> KnowledgeGraph:
    """4 users, 7 items with awkward ids, 2 tags, 2 entities, 0 genres; parallel edges and a self-loop."""
    rng = np.random.default_rng(0)
    node_ids = {
        "user": ["u1", "u2", "u 3", "Ωmega"],
        "item": ITEM_IDS,
        "tag": ["funny", "dark"],
        "entity": ["Q1", "wd:Q 2"],
        "genre": [],
    }
    node_attrs = {
        "user": {"age": [31, None, 25, np.int64(40)], "nothing": [None, None, None, None]},
        "item": {
            "title": ["Alpha", "Bêta", None, "日本の映画", "", 'say "hi"\n', "x"],
            "genres": [("Drama", "Comedy"), ["Drama"], [], None, ("Sci-Fi",), ["a", "b"], ["ü"]],
            "year": [1990, 1991, None, 1993, 1994, 2000, 2001],
            "score": [0.1234567890123457, 1 / 3, None, 2.0, -0.0, 1e300, 5e-324],
            "meta": [{"k": [1, 2]}, None, {}, None, None, None, {"n": None}],
            "flag": [True, False, None, True, True, False, True],
        },
        "tag": {},
    }
    inter = _store(
        [(0, 0), (0, 0), (0, 1), (1, 2), (2, 3), (3, 6), (0, 0)],
        [5.0, 0.1, 3.0, 2.5, 1 / 3, 4.0, 5.0],
        count=np.asarray([1, 2, 1, 3, 1, 1, 1], dtype=np.float32) / 3,
        timestamp=np.asarray([10, 20, 30, 2**40, -5, 0, 10], dtype=np.int64),
        score=np.asarray([1 / 3, 0.1, 2.0, 1e-300, 7.0, 0.5, 1 / 3], dtype=np.float64),
    )
    similar = _store([(0, 0), (0, 1), (0, 1), (4, 5), (6, 2)], [1.0, 0.7, 0.9, 0.25, 0.125])
    edges = {
        ("user", "interacted", "item"): inter,
        ("item", "tagged_with", "tag"): _store([(0, 0), (1, 0), (3, 1)], [1.0, 2.0, 1.0]),
        ("item", "similar_to", "item"): similar,
        ("item", "mentions", "entity"): _store([(0, 0), (2, 1), (5, 1)], [1.0, 1.0, 0.5]),
        ("entity", "related_to", "entity"): _store([], []),
        ("user", "follows", "user"): _store([(0, 1), (1, 0), (2, 2)], [1.0, 1.0, 1.0]),
    }
    text = rng.standard_normal((7, 4)).astype(np.float32)
    image = rng.standard_normal((7, 2)).astype(np.float32)
    mask = np.asarray([True, True, False, True, False, True, True])
    text[~mask] = 0.0
    report = BuildReport(
        source="hand-made",
        nodes={t: len(v) for t, v in node_ids.items()},
        edges={"user__interacted__item": 7},
        dropped=[{"stage": "X", "reason": "why", "count": 2, "examples": ["a", "b"]}],
        input_rows={"interactions": 9},
        seconds=0.125,
    )
    recipe = [{"builder": "Hand", "settings": {"alpha": 0.5, "names": ["a", "b"], "none": None}}]
    return KnowledgeGraph(
        node_ids,
        edges,
        node_attrs=node_attrs,
        features={"item": {"text": text, "image": image}},
        feature_masks={"item": {"text": mask}},
        report=report,
        recipe=recipe,
    )


def _same_extras(a: KnowledgeGraph, b: KnowledgeGraph) -> None:
    """What ``equals`` does not look at: masks, dtypes, edge order and the attribute values themselves."""
    assert {t: sorted(s) for t, s in a.feature_masks.items()} == {t: sorted(s) for t, s in b.feature_masks.items()}
    for t, slots in a.feature_masks.items():
        for n, m in slots.items():
            assert b.feature_masks[t][n].dtype == np.bool_
            np.testing.assert_array_equal(b.feature_masks[t][n], m)
    for t, slots in a.features.items():
        for n, arr in slots.items():
            assert b.features[t][n].dtype == arr.dtype and b.features[t][n].shape == arr.shape
    assert b.edge_types == a.edge_types and b.node_types == a.node_types
    for et, e in a.edges.items():
        f = b.edges[et]
        np.testing.assert_array_equal(f.edge_index, e.edge_index)  # order kept, not only the multiset
        assert f.edge_index.dtype == np.int64 and f.edge_weight.dtype == e.edge_weight.dtype
        np.testing.assert_array_equal(f.edge_weight, e.edge_weight)
        assert sorted(f.attrs) == sorted(e.attrs)
        for k, v in e.attrs.items():
            assert f.attrs[k].dtype == v.dtype, (et, k)
            np.testing.assert_array_equal(f.attrs[k], v)
    assert json.loads(json.dumps(b.node_attrs, default=_plain)) == json.loads(json.dumps(a.node_attrs, default=_plain))


def _plain(o):
    return o.item() if isinstance(o, np.generic) else list(o)


# --------------------------------------------------------------------- HeteroData
def test_hetero_data_validates_with_counts_and_dtypes(kg: KnowledgeGraph) -> None:
    data = to_hetero_data(kg)
    assert data.validate() is True
    assert data.node_types == kg.node_types
    for t in kg.node_types:
        assert data[t].num_nodes == kg.num_nodes(t)
        assert torch.equal(data[t].n_id, torch.arange(kg.num_nodes(t)))
        assert "node_id" not in data[t]
    forward = kg.edge_types
    assert data.edge_types[: len(forward)] == forward
    assert data.edge_types[len(forward) :] == [(d, "rev_" + r, s) for s, r, d in forward]
    for et in forward:
        store = data[et]
        assert store.edge_index.dtype == torch.long and store.edge_weight.dtype == torch.float32
        assert store.num_edges == kg.num_edges(et)
        np.testing.assert_array_equal(store.edge_index.numpy(), kg.edges[et].edge_index)
        np.testing.assert_array_equal(store.edge_weight.numpy(), kg.edges[et].edge_weight)
    inter = data["user", "interacted", "item"]
    assert inter.edge_attr_count.dtype == torch.float32 and inter.edge_attr_timestamp.dtype == torch.int64
    assert inter.edge_attr_timestamp.tolist() == kg.edges[("user", "interacted", "item")].attrs["timestamp"].tolist()
    assert data.num_edges == 2 * kg.num_edges()


def test_reverse_edges_are_exact_flips(kg: KnowledgeGraph) -> None:
    data = to_hetero_data(kg)
    for s, r, d in kg.edge_types:
        fwd, rev = data[s, r, d], data[d, "rev_" + r, s]
        assert torch.equal(rev.edge_index, fwd.edge_index.flip(0))
        assert torch.equal(rev.edge_weight, fwd.edge_weight)
        for key in ("edge_attr_count", "edge_attr_timestamp", "edge_attr_score"):
            if key in fwd:
                assert torch.equal(rev[key], fwd[key])
    # a self-type relation keeps its own reverse, and the self-loop is its own flip
    rev_sim = data["item", "rev_similar_to", "item"].edge_index
    assert rev_sim[:, 0].tolist() == [0, 0] and rev_sim[:, 1].tolist() == [1, 0]
    plain = to_hetero_data(kg, add_reverse=False)
    assert plain.edge_types == kg.edge_types and plain.validate()


def test_node_features_and_mask(kg: KnowledgeGraph) -> None:
    text, image = kg.features["item"]["text"], kg.features["item"]["image"]
    data = to_hetero_data(kg)
    np.testing.assert_array_equal(data["item"].x.numpy(), np.concatenate([image, text], axis=1))  # sorted slots
    assert data["item"].x_mask.dtype == torch.bool
    assert data["item"].x_mask.tolist() == kg.feature_masks["item"]["text"].tolist()
    assert "x" not in data["user"] and "x_mask" not in data["user"]
    only_text = to_hetero_data(kg, features="text")
    np.testing.assert_array_equal(only_text["item"].x.numpy(), text)
    assert only_text["item"].x_mask.tolist() == kg.feature_masks["item"]["text"].tolist()
    only_image = to_hetero_data(kg, features="image")
    assert only_image["item"].x.shape == (7, 2) and "x_mask" not in only_image["item"]
    assert "x" not in to_hetero_data(kg, features=None)["item"]
    with pytest.raises(ConfigError, match="nope"):
        to_hetero_data(kg, features="nope")
    data["item"].x[:] = 42.0  # a copy: the graph's arrays do not change
    assert not (kg.features["item"]["image"] == 42.0).any()


# --------------------------------------------------------------------- homogeneous
def test_homogeneous_matches_pyg_and_maps_indices_back(kg: KnowledgeGraph) -> None:
    view = to_homogeneous(kg)
    assert isinstance(view, HomogeneousView)
    counts = [kg.num_nodes(t) for t in kg.node_types]
    assert view.num_nodes == sum(counts) and view.num_edges == 2 * kg.num_edges()
    assert view.node_offsets == {"user": 0, "item": 4, "tag": 11, "entity": 13, "genre": 15}
    assert view.node_types == kg.node_types and view.edge_types == to_hetero_data(kg).edge_types
    assert view.edge_index.dtype == torch.long and view.edge_type.dtype == torch.long
    assert view.node_type.dtype == torch.long and view.edge_weight.dtype == torch.float32

    pyg = to_hetero_data(kg).to_homogeneous()
    assert pyg.num_nodes == view.num_nodes and pyg.num_edges == view.num_edges
    assert torch.equal(pyg.edge_index, view.edge_index)
    assert torch.equal(pyg.edge_type, view.edge_type) and torch.equal(pyg.node_type, view.node_type)
    assert torch.equal(pyg.edge_weight, view.edge_weight)
    assert (
        torch.bincount(pyg.edge_type, minlength=len(view.edge_types)).tolist()
        == [kg.num_edges(et) for et in kg.edge_types] * 2
    )

    for t in kg.node_types:
        for i in range(kg.num_nodes(t)):
            g = view.global_index(t, i)
            assert view.local_index(g) == (t, i) and view.node_types[int(view.node_type[g])] == t
    k = view.edge_types.index(("item", "rev_interacted", "user"))
    sel = view.edge_type == k
    src, dst = view.edge_index[:, sel]
    ei = kg.edges[("user", "interacted", "item")].edge_index
    assert src.tolist() == (ei[1] + 4).tolist() and dst.tolist() == ei[0].tolist()
    assert view.global_index("item", torch.tensor([0, 6])).tolist() == [4, 10]
    assert view.global_index("item", [1, 2]).tolist() == [5, 6]
    with pytest.raises(IndexError):
        view.global_index("item", 7)
    with pytest.raises(IndexError):
        view.global_index("genre", 0)
    with pytest.raises(IndexError):
        view.local_index(view.num_nodes)
    with pytest.raises(SchemaError):
        view.global_index("nope", 0)
    # indices that are not integers used to be truncated (0.9 -> 0) or taken as positions (bools)
    for bad in (np.array([0.9, 2.7]), torch.tensor([True, False]), 2.5, True):
        with pytest.raises(TypeError, match="integer"):
            view.global_index("item", bad)
    for bad in (2.9, True):
        with pytest.raises(TypeError, match="integer"):
            view.local_index(bad)
    assert view.global_index("item", np.int64(1)) == 5 and view.local_index(np.int64(5)) == ("item", 1)
    assert view.local_index(view.edge_index[0, 0]) == view.local_index(int(view.edge_index[0, 0]))  # 0-d tensor
    assert view.global_index("item", []).tolist() == [] and view.global_index("item", []).dtype == torch.long
    with pytest.raises(TypeError, match="integer"):
        view.local_index(torch.tensor(True))
    fwd = to_homogeneous(kg, add_reverse=False)
    assert fwd.num_edges == kg.num_edges() and fwd.edge_types == kg.edge_types


# --------------------------------------------------------------------- networkx
def test_networkx_layout(kg: KnowledgeGraph) -> None:
    g = to_networkx(kg)
    assert isinstance(g, nx.MultiDiGraph)
    assert g.number_of_nodes() == sum(kg.num_nodes(t) for t in kg.node_types)
    assert g.number_of_edges() == kg.num_edges()
    node = g.nodes["item", "i#3"]
    assert node["node_type"] == "item" and node["node_id"] == "i#3" and node["index"] == 2
    assert "title" not in node and "year" not in node  # None values are left out
    assert node["feature_mask:text"] is False and node["feature:text"] == [0.0] * 4
    assert g.nodes["item", "i1"]["genres"] == ["Drama", "Comedy"]  # tuple -> list
    assert g.nodes["user", "Ωmega"]["age"] == 40 and type(g.nodes["user", "Ωmega"]["age"]) is int
    # three parallel interactions u1 -> i1, two of them identical, and a self-loop
    keys = sorted(g["user", "u1"]["item", "i1"])
    assert keys == ["interacted", "interacted#1", "interacted#2"]
    e = g.edges[("user", "u1"), ("item", "i1"), "interacted"]
    assert e["relation"] == "interacted" and e["weight"] == 5.0 and e["timestamp"] == 10
    assert g.has_edge(("item", "i1"), ("item", "i1"), key="similar_to")
    assert g.graph["node_types"] == kg.node_types and g.graph["edge_types"] == kg.edge_types
    assert g.graph["report"] == kg.report.to_dict() and g.graph["recipe"] == kg.recipe
    assert g.graph["feature_dtypes"] == {"item": {"text": "float32", "image": "float32"}}


def test_networkx_round_trip(kg: KnowledgeGraph) -> None:
    back = from_networkx(to_networkx(kg))
    assert back.diff(kg, check_report=True) == []
    assert back.equals(kg, check_report=True)
    _same_extras(kg, back)
    assert back.node_attrs["user"]["nothing"] == [None] * 4 and back.node_attrs["tag"] == {}


def test_networkx_round_trip_survives_shuffled_insertion(kg: KnowledgeGraph) -> None:
    g = to_networkx(kg)
    h = nx.MultiDiGraph()
    h.graph.update(g.graph)
    h.add_nodes_from(reversed(list(g.nodes(data=True))))
    h.add_edges_from(reversed(list(g.edges(keys=True, data=True))))
    back = from_networkx(h)
    assert back.equals(kg, check_report=True)
    _same_extras(kg, back)


def test_from_networkx_reads_a_hand_built_graph() -> None:
    g = nx.MultiDiGraph(node_types=["user", "item"], edge_types=[("user", "rated", "item")])
    g.add_node(("item", "b"), node_type="item", node_id="b", index=1, title="B")
    g.add_node(("item", "a"), node_type="item", node_id="a", index=0, title="A")
    g.add_node(("user", "x"), node_type="user", node_id="x", index=0)
    g.add_edge(("user", "x"), ("item", "b"), relation="rated", weight=4.0, stars=4)
    kg = from_networkx(g)
    assert kg.node_ids == {"user": ["x"], "item": ["a", "b"]}
    assert kg.node_attrs == {"item": {"title": ["A", "B"]}}
    e = kg.edges[("user", "rated", "item")]
    assert e.edge_index.tolist() == [[0], [1]] and e.edge_weight.dtype == np.float32
    assert e.attrs["stars"].tolist() == [4]
    g.add_node(("tag", "t"), node_type="tag", node_id="t", index=0)
    with pytest.raises(SchemaError, match="tag"):
        from_networkx(g)
    with pytest.raises(SchemaError, match="node_types"):
        from_networkx(nx.MultiDiGraph())


def test_networkx_rejects_reserved_attribute_names(kg: KnowledgeGraph) -> None:
    bad = KnowledgeGraph({"item": ["a"]}, {}, node_attrs={"item": {"index": [3]}})
    with pytest.raises(SchemaError, match="index"):
        to_networkx(bad)
    bad_edges = KnowledgeGraph({"item": ["a"]}, {("item", "like", "item"): _store([(0, 0)], [1.0], weight=np.ones(1))})
    with pytest.raises(SchemaError, match="weight"):
        to_networkx(bad_edges)


def _set_node(key: tuple[str, str], name: str, value: object):
    def change(g: nx.MultiDiGraph) -> None:
        g.nodes[key][name] = value

    return change


def _set_edge(name: str, value: object):
    def change(g: nx.MultiDiGraph) -> None:
        g.edges[("user", "u1"), ("item", "i1"), "interacted"][name] = value

    return change


def _set_graph(name: str, value: object):
    def change(g: nx.MultiDiGraph) -> None:
        g.graph[name] = value

    return change


def _drop_edge_weight_dtype(g: nx.MultiDiGraph) -> None:
    del g.graph["edge_dtypes"]["user__interacted__item"]["weight"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_set_node(("user", "u1"), "index", "x"), r"node \('user', 'u1'\).*index"),
        (_set_node(("user", "u1"), "index", 0.5), r"node \('user', 'u1'\).*index"),
        (_set_node(("item", "i1"), "feature:text", [1.0]), r"node \('item', 'i1'\).*feature:text"),
        (_set_node(("item", "i1"), "feature:text", ["a", "b", "c", "d"]), "feature:text"),
        (_set_edge("weight", "heavy"), "weight"),
        (_set_edge("index", "x"), r"edge \('user', 'u1'\) -> \('item', 'i1'\).*index"),
        (_set_edge("timestamp", "soon"), "timestamp"),
        (_set_graph("node_types", 5), "node_types"),
        (_set_graph("edge_types", [("user", "interacted")]), "edge_types"),
        (_set_graph("report", {"bogus": 1}), "report.*bogus"),
        (_set_graph("feature_dtypes", {"item": {"text": "no-such-dtype", "image": "float32"}}), "feature_dtypes"),
        (_drop_edge_weight_dtype, "edge_dtypes.*user__interacted__item"),
    ],
    ids=[
        "node-index-str",
        "node-index-float",
        "feature-row-too-short",
        "feature-row-of-text",
        "weight-not-a-number",
        "edge-index-str",
        "edge-attribute-not-a-number",
        "node-types-not-a-list",
        "edge-type-of-two-names",
        "report-with-unknown-key",
        "feature-dtype-unknown",
        "edge-dtypes-without-weight",
    ],
)
def test_from_networkx_names_what_is_malformed(kg: KnowledgeGraph, change, match: str) -> None:
    g = to_networkx(kg)
    change(g)
    with pytest.raises(SchemaError, match=match):
        from_networkx(g)


# --------------------------------------------------------------------- RDF
@pytest.mark.parametrize("fmt", ["turtle", "nt"])
def test_rdf_round_trip_through_text(kg: KnowledgeGraph, fmt: str) -> None:
    text = to_rdf(kg).serialize(format=fmt)
    assert isinstance(text, str)
    parsed = rdflib.Graph()
    parsed.parse(data=text, format=fmt)
    back = from_rdf(parsed)
    assert back.diff(kg, check_report=True) == []
    _same_extras(kg, back)
    assert back.node_ids["item"] == ITEM_IDS


@pytest.mark.parametrize("suffix", [".ttl", ".nt"])
def test_rdf_round_trip_through_a_file(kg: KnowledgeGraph, tmp_path, suffix: str) -> None:
    path = tmp_path / f"graph{suffix}"
    n = write_rdf(kg, path)
    g = rdflib.Graph()
    g.parse(path, format=rdf_format_for(path))
    assert len(g) == n == len(to_rdf(kg))
    assert from_rdf(g).equals(kg, check_report=True)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_streamed_n_triples_are_rdflibs_lines_each_once(kg: KnowledgeGraph, tmp_path) -> None:
    """write_rdf streams N-Triples without an rdflib store: the same lines rdflib's serializer writes."""
    path = tmp_path / "g.nt"
    n = write_rdf(kg, path, base="http://example.org/mine/", include_features=False)
    lines = path.read_bytes().decode("utf-8").splitlines()
    expected = to_rdf(kg, base="http://example.org/mine/", include_features=False).serialize(format="nt")
    assert sorted(lines) == sorted(expected.splitlines()) and len(lines) == len(set(lines)) == n
    # the parallel u1 -> i1 interactions write one direct triple and a statement each
    u1, i1 = (f"<http://example.org/mine/node/{t}/{x}>" for t, x in (("user", "u1"), ("item", "i1")))
    assert sum(line.startswith(f"{u1} <{GR_IRI}interacted> {i1}") for line in lines) == 1
    written = rdflib.Graph().parse(path, format="nt")
    assert sum(1 for _ in written.subjects(GR["target"], rdflib.URIRef(i1[1:-1]))) >= 3
    # a named format for another suffix; a bad base or format leaves nothing behind
    other = tmp_path / "g.rdf"
    assert write_rdf(kg, other, rdf_format="nt") == len(to_rdf(kg))
    with pytest.raises(ConfigError, match="base"):
        write_rdf(kg, tmp_path / "bad.nt", base="http://example.org/no-slash")
    with pytest.raises(ConfigError, match="unknown RDF format 'xml'"):
        write_rdf(kg, tmp_path / "bad.nt", rdf_format="xml")
    with pytest.raises(ConfigError, match="suffixes"):
        write_rdf(kg, tmp_path / "bad.rdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.nt", "g.rdf"]


def test_rdf_vocabulary_and_direct_triples(kg: KnowledgeGraph) -> None:
    g = to_rdf(kg)
    u1 = rdflib.URIRef(node_iri("user", "u1"))
    assert str(u1) == "https://w3id.org/graph-rec/node/user/u1"
    assert (u1, rdflib.RDF.type, GR["User"]) in g
    weird = rdflib.URIRef("https://w3id.org/graph-rec/node/item/i%233")
    assert (weird, GR["nodeId"], rdflib.Literal("i#3")) in g
    assert (rdflib.URIRef(node_iri("item", "50%")), GR["nodeType"], rdflib.Literal("item")) in g
    rows = g.query(
        "SELECT ?u ?i WHERE { ?u gr:interacted ?i . ?u gr:nodeId 'u1' }", initNs={"gr": GR}
    )  # parallel edges are one direct triple
    assert sorted(str(r.i).rsplit("/", 1)[1] for r in rows) == ["i%2F2", "i1"]
    stmts = g.query(
        "SELECT ?w ?ts WHERE { ?e gr:relation 'interacted' ; gr:weight ?w ; gr:attr_timestamp ?ts }",
        initNs={"gr": GR},
    )
    assert len(stmts) == kg.num_edges(("user", "interacted", "item"))
    weights = {r.w for r in stmts}
    w01 = rdflib.Literal(repr(float(np.float32(0.1))), datatype=rdflib.XSD.float)
    assert w01 in weights and np.float32(w01.toPython()) == np.float32(0.1)
    assert (weird, GR["attr_title"], None) not in g  # a None attribute writes nothing
    genres = g.value(rdflib.URIRef(node_iri("item", "i1")), GR["attr_genres"])
    assert genres.datatype == rdflib.RDF.JSON and json.loads(genres) == ["Drama", "Comedy"]
    assert (None, rdflib.RDF.type, GR["Genre"]) not in g


def test_rdf_base_and_features_flag(kg: KnowledgeGraph) -> None:
    g = to_rdf(kg, base="http://example.org/mine/", include_features=False)
    assert (rdflib.URIRef("http://example.org/mine/node/tag/dark"), GR["nodeType"], rdflib.Literal("tag")) in g
    back = from_rdf(g)
    assert back.features == {} and back.feature_masks == {}
    assert back.node_ids == kg.node_ids and back.diff(kg) == ["features of item differ", "feature masks of item differ"]
    with pytest.raises(ConfigError, match="base"):
        to_rdf(kg, base="http://example.org/no-slash")


def test_from_rdf_refuses_what_it_cannot_read(kg: KnowledgeGraph) -> None:
    with pytest.raises(SchemaError, match="graph resource"):
        from_rdf(rdflib.Graph())
    g = to_rdf(kg)
    g.remove((rdflib.URIRef(node_iri("item", "i1")), GR["index"], None))
    with pytest.raises(SchemaError, match="gr:index"):
        from_rdf(g)
    g = to_rdf(kg)
    meta = rdflib.URIRef("https://w3id.org/graph-rec/graph")
    g.set((meta, GR["formatVersion"], rdflib.Literal(99)))
    with pytest.raises(SchemaError, match="newer"):
        from_rdf(g)


_META = rdflib.URIRef("https://w3id.org/graph-rec/graph")


def _stmt(i: int, key: str = "user__interacted__item") -> rdflib.URIRef:
    return rdflib.URIRef(f"https://w3id.org/graph-rec/edge/{key}/{i}")


def _drop_edge_counts(g: rdflib.Graph) -> None:
    """Make ``g`` look like an export from before edge counts were recorded in ``gr:schema``."""
    schema = json.loads(g.value(_META, GR["schema"]))
    for spec in schema["edges"].values():
        del spec["num_edges"]
    g.set((_META, GR["schema"], rdflib.Literal(json.dumps(schema), datatype=rdflib.RDF.JSON)))


def test_from_rdf_checks_edge_indices_and_counts(kg: KnowledgeGraph) -> None:
    et = r"\('user', 'interacted', 'item'\)"
    n = kg.num_edges(("user", "interacted", "item"))
    for i in (n - 1, 3):  # the last edge (indices 0 .. E-2 look complete) or one in the middle
        g = to_rdf(kg)
        g.remove((_stmt(i), None, None))
        with pytest.raises(SchemaError, match=f"{et} has {n - 1} edges.*gr:schema records {n}"):
            from_rdf(g)
    g = to_rdf(kg)
    g.set((_stmt(1), GR["index"], rdflib.Literal(0)))  # a repeated index, the count right
    with pytest.raises(SchemaError, match=f"gr:index values of {et} edges are not 0 .. {n - 1}"):
        from_rdf(g)
    # an export without recorded counts still reads, and a gap in its indices is still found
    _drop_edge_counts(g := to_rdf(kg))
    assert from_rdf(g).equals(kg, check_report=True)
    g.remove((_stmt(3), None, None))
    with pytest.raises(SchemaError, match=f"gr:index values of {et} edges are not 0 .. {n - 2}"):
        from_rdf(g)


def test_from_rdf_checks_node_counts(kg: KnowledgeGraph) -> None:
    # a last node without edges: indices 0 .. n-2 of the rest look complete and no edge names it,
    # so without the count recorded, losing it gave back a smaller graph without a word
    ids = {t: [*v, "lonely"] if t == "tag" else v for t, v in kg.node_ids.items()}
    attrs = {t: {k: [*v, None] for k, v in a.items()} if t == "tag" else a for t, a in kg.node_attrs.items()}
    lonely = KnowledgeGraph(ids, kg.edges, node_attrs=attrs)
    n = lonely.num_nodes("tag")
    g = to_rdf(lonely)
    assert from_rdf(g).equals(lonely)
    last = next(s for s in g.subjects(GR["nodeId"], rdflib.Literal("lonely")))
    g.remove((last, None, None))
    with pytest.raises(
        SchemaError, match=f"node type 'tag' has {n - 1} nodes in the RDF graph, but gr:schema records {n}"
    ):
        from_rdf(g)


def _set_meta_json(name: str, value: object):
    def change(g: rdflib.Graph) -> None:
        g.set((_META, GR[name], rdflib.Literal(json.dumps(value), datatype=rdflib.RDF.JSON)))

    return change


def _set(subject: str, name: str, text: str, datatype: rdflib.URIRef):
    def change(g: rdflib.Graph) -> None:
        g.set((rdflib.URIRef(subject), GR[name], rdflib.Literal(text, datatype=datatype)))

    return change


def _edit_schema(edit):
    def change(g: rdflib.Graph) -> None:
        schema = json.loads(g.value(_META, GR["schema"]))
        edit(schema)
        g.set((_META, GR["schema"], rdflib.Literal(json.dumps(schema), datatype=rdflib.RDF.JSON)))

    return change


_U1, _I1, _E0 = node_iri("user", "u1"), node_iri("item", "i1"), str(_stmt(0))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_edit_schema(lambda s: s.pop("edges")), "gr:schema.*'edges'"),
        (_edit_schema(lambda s: s["edges"].pop("user__interacted__item")), "gr:schema.*user__interacted__item"),
        (_edit_schema(lambda s: s["edges"]["user__interacted__item"].pop("weight")), "gr:schema.*'weight'"),
        (_edit_schema(lambda s: s["features"]["item"]["text"].update(dtype="nope")), "gr:schema.*'nope'"),
        (_set(str(_META), "nodeTypes", "[oops", rdflib.RDF.JSON), "gr:nodeTypes"),
        (_set_meta_json("nodeTypes", "user"), "gr:nodeTypes .* not a list"),
        (_set_meta_json("edgeTypes", [["user", "interacted"]]), "gr:edgeTypes"),
        (_set_meta_json("report", {"bogus": 1}), "gr:report.*bogus"),
        (_set(str(_META), "formatVersion", "one", rdflib.XSD.integer), "gr:formatVersion"),
        (_set(_U1, "index", "zero", rdflib.XSD.integer), f"gr:index of {_U1}"),
        (_set(_U1, "index", "0.5", rdflib.XSD.decimal), f"gr:index of {_U1}"),
        (_set(_I1, "feature_text", "[1.0, 2.0]", rdflib.RDF.JSON), f"gr:feature_text of {_I1}"),
        (_set(_I1, "feature_text", '["a", "b", "c", "d"]', rdflib.RDF.JSON), "feature 'text' of 'item'"),
        (_set(_I1, "featureMask_text", "yes", rdflib.XSD.string), f"gr:featureMask_text of {_I1}.*not a boolean"),
        (_set(_I1, "attr_year", "soon", rdflib.XSD.integer), f"gr:attr_year of {_I1}"),
        (_set(_E0, "weight", "heavy", rdflib.XSD.float), f"gr:weight of {_E0}"),
        (_set(_E0, "weight", "[1, 2]", rdflib.RDF.JSON), f"gr:weight of {_E0}"),
        (_set(_E0, "index", "first", rdflib.XSD.integer), f"gr:index of {_E0}"),
        (_set(_E0, "attr_timestamp", "soon", rdflib.XSD.integer), f"gr:attr_timestamp of {_E0}"),
        (_set(_E0, "attr_count", "[1, 2]", rdflib.RDF.JSON), "edge attribute 'count'"),
    ],
    ids=[
        "schema-without-edges",
        "schema-without-an-edge-type",
        "schema-edge-without-weight",
        "schema-feature-dtype-unknown",
        "node-types-not-json",
        "node-types-not-a-list",
        "edge-type-of-two-names",
        "report-with-unknown-key",
        "format-version-not-a-number",
        "node-index-not-a-number",
        "node-index-not-an-integer",
        "feature-row-too-short",
        "feature-row-of-text",
        "feature-mask-not-boolean",
        "node-attribute-not-a-number",
        "weight-not-a-number",
        "weight-a-list",
        "edge-index-not-a-number",
        "edge-attribute-not-a-number",
        "edge-attribute-a-list",
    ],
)
def test_from_rdf_names_what_is_malformed(kg: KnowledgeGraph, change, match: str) -> None:
    g = to_rdf(kg)
    change(g)
    with pytest.raises(SchemaError, match=match):
        from_rdf(g)


# --------------------------------------------------------------------- values checked against their dtype
def _typed_kg() -> KnowledgeGraph:
    """Edge attributes of several dtypes (int64, uint8, bool, float16 [E, 2]), a float32 feature and a mask."""
    attrs = {
        "i": np.asarray([7], np.int64),
        "u8": np.asarray([7], np.uint8),
        "b": np.asarray([True]),
        "v": np.asarray([[1.5, -2.0]], np.float16),
    }
    return KnowledgeGraph(
        {"n": ["a", "b"]},
        {("n", "r", "n"): _store([(0, 1)], [1.0], **attrs)},
        features={"n": {"f": np.zeros((2, 2), np.float32)}},
        feature_masks={"n": {"f": np.asarray([True, False])}},
    )


_NR0, _NA = str(_stmt(0, "n__r__n")), node_iri("n", "a")
_DECIMAL, _JSON = rdflib.XSD.decimal, rdflib.RDF.JSON


@pytest.mark.parametrize(
    ("subject", "name", "literal", "match"),
    [
        (
            _NR0,
            "attr_i",
            rdflib.Literal("1.5", datatype=_DECIMAL),
            "gr:attr_i of .*/0 is 1.5, which does not fit int64",
        ),
        (_NR0, "attr_i", rdflib.Literal(2**70), "gr:attr_i of .* does not fit int64: out of its range"),
        (_NR0, "attr_i", rdflib.Literal(True), "gr:attr_i of .* is True, .* int64: a boolean, not a number"),
        (_NR0, "attr_u8", rdflib.Literal(300), r"gr:attr_u8 of .* is 300, .* uint8: out of its range 0 \.\. 255"),
        (_NR0, "attr_u8", rdflib.Literal(-1), "gr:attr_u8 of .* is -1, which does not fit uint8"),
        (_NR0, "attr_b", rdflib.Literal("yes"), "gr:attr_b of .* is 'yes', which does not fit bool: not a boolean"),
        (_NR0, "attr_b", rdflib.Literal(1), "gr:attr_b of .* is 1, which does not fit bool"),
        (_NR0, "weight", rdflib.Literal("1" + "0" * 300 + ".0", datatype=_DECIMAL), "gr:weight of .* float32"),
        (_NR0, "attr_v", rdflib.Literal("[70000.0, 1.0]", datatype=_JSON), "gr:attr_v of .* holds 70000.0, .* float16"),
        (_NR0, "attr_v", rdflib.Literal("[1.0]", datatype=_JSON), r"gr:attr_v of .* not a nested list of shape \[2\]"),
        (_NA, "feature_f", rdflib.Literal("[1e300, 0.0]", datatype=_JSON), "feature 'f' of 'n' nodes: gr:feature_f of"),
        (_NA, "feature_f", rdflib.Literal("[true, 0.0]", datatype=_JSON), "gr:feature_f of .* holds True, .* float32"),
    ],
    ids=[
        "int64-from-a-decimal",
        "int64-out-of-range",
        "int64-from-a-boolean",
        "uint8-out-of-range",
        "uint8-negative",
        "bool-from-a-string",
        "bool-from-an-integer",
        "float32-weight-overflows",
        "float16-row-overflows",
        "row-of-the-wrong-shape",
        "float32-feature-overflows",
        "feature-from-a-boolean",
    ],
)
def test_from_rdf_refuses_a_value_that_does_not_fit_its_dtype(subject, name, literal, match: str) -> None:
    """A literal valid for its own datatype, but not for the dtype gr:schema records: never cast."""
    g = to_rdf(_typed_kg())
    _same_extras(_typed_kg(), from_rdf(g))  # unedited, it reads back
    g.set((rdflib.URIRef(subject), GR[name], literal))
    with pytest.raises(SchemaError, match=match):
        from_rdf(g)


def _set_typed_edge(name: str, value: object):
    def change(g: nx.MultiDiGraph) -> None:
        g.edges[("n", "a"), ("n", "b"), "r"][name] = value

    return change


_EDGE_AB = r"edge \('n', 'a'\) -> \('n', 'b'\) \(key 'r'\)"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_set_typed_edge("i", 1.5), f"attribute 'i' of {_EDGE_AB} is 1.5, which does not fit int64"),
        (_set_typed_edge("i", "7"), f"attribute 'i' of {_EDGE_AB} is '7', .* int64: not an integer"),
        (_set_typed_edge("i", np.float64(7.0)), "attribute 'i' .* is 7.0, .* int64"),
        (_set_typed_edge("u8", 300), r"attribute 'u8' .* is 300, .* uint8: out of its range 0 \.\. 255"),
        (_set_typed_edge("u8", np.int64(-1)), "attribute 'u8' .* is -1, which does not fit uint8"),
        (_set_typed_edge("b", 1), "attribute 'b' .* is 1, which does not fit bool"),
        (_set_typed_edge("weight", 1e300), f"weight of {_EDGE_AB} is 1e\\+300, .* float32"),
        (_set_typed_edge("v", [70000.0, 1.0]), "attribute 'v' .* holds 70000.0, .* float16"),
        (_set_node(("n", "a"), "feature:f", [1e300, 0.0]), r"'feature:f' of node \('n', 'a'\) holds 1e\+300"),
        (_set_node(("n", "b"), "feature:f", [True, 0.0]), r"'feature:f' of node \('n', 'b'\) holds True"),
        (_set_node(("n", "a"), "feature_mask:f", 1), r"'feature_mask:f' of node \('n', 'a'\) is 1, .* bool"),
    ],
    ids=[
        "int64-from-a-float",
        "int64-from-a-string",
        "int64-from-a-numpy-float",
        "uint8-out-of-range",
        "uint8-from-a-negative-numpy-int",
        "bool-from-an-integer",
        "float32-weight-overflows",
        "float16-row-overflows",
        "float32-feature-overflows",
        "feature-from-a-boolean",
        "mask-from-an-integer",
    ],
)
def test_from_networkx_refuses_a_value_that_does_not_fit_its_dtype(change, match: str) -> None:
    g = to_networkx(_typed_kg())
    _same_extras(_typed_kg(), from_networkx(g))  # unedited, it reads back
    change(g)
    with pytest.raises(SchemaError, match=match):
        from_networkx(g)


def test_networkx_attribute_names_that_are_networkx_parameters_round_trip() -> None:
    """Attributes go to networkx as dicts: an edge attribute ``key`` or a node attribute
    ``node_for_adding`` is an attribute like another (as keyword arguments they collided)."""
    names = ("key", "u_for_edge", "v_for_edge", "ebunch_to_add", "attr")
    edge_attrs = {name: np.asarray([k, k + 10], np.int64) for k, name in enumerate(names)}
    kg = KnowledgeGraph(
        {"n": ["a", "b"]},
        {("n", "r", "n"): _store([(0, 1), (0, 1)], [1.0, 2.0], **edge_attrs)},
        node_attrs={"n": {"node_for_adding": [1, 2], "nodes_for_adding": ["x", None], "attr": [True, False]}},
    )
    g = to_networkx(kg)
    assert g.edges[("n", "a"), ("n", "b"), "r"]["key"] == 0 and g.edges[("n", "a"), ("n", "b"), "r#1"]["key"] == 10
    assert g.nodes[("n", "a")]["node_for_adding"] == 1 and g.nodes[("n", "a")]["nodes_for_adding"] == "x"
    back = from_networkx(g)
    assert back.equals(kg, check_report=True), back.diff(kg)
    _same_extras(kg, back)


def test_rdf_names_the_node_or_edge_whose_value_it_cannot_write(tmp_path) -> None:
    import datetime

    when = datetime.date(2020, 1, 1)
    node = KnowledgeGraph({"item": ["i1", "i2"]}, {}, node_attrs={"item": {"released": [None, when]}})
    keyed = KnowledgeGraph({"item": ["i1", "i2"]}, {}, node_attrs={"item": {"meta": [{(1, 2): "x"}, None]}})
    edge = KnowledgeGraph(
        {"item": ["i1", "i2"]},
        {("item", "r", "item"): _store([(0, 1), (1, 0)], [1.0, 1.0], when=np.asarray([None, when], dtype=object))},
    )
    cases = [
        (node, r"node attribute item\.released of node 'i2': value of type date cannot be written to RDF"),
        (keyed, r"node attribute item\.meta of node 'i1': value .* cannot be written to RDF: keys must be"),
        (edge, r"edge attribute 'when' of edge 1 of \('item', 'r', 'item'\): value of type date cannot be written"),
    ]
    for kg, match in cases:
        with pytest.raises(SchemaError, match=match):
            to_rdf(kg)
        for suffix in (".nt", ".ttl"):
            with pytest.raises(SchemaError, match=match):
                write_rdf(kg, tmp_path / f"g{suffix}")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_names_that_clash_with_the_vocabulary_and_unusual_dtypes_survive() -> None:
    """Relations named like vocabulary terms, a node type ``edge``, odd attribute names and dtypes."""
    attrs = {
        "n/a": np.asarray([1.5, -np.inf, np.inf]),
        "flag": np.asarray([True, False, True]),
        "small": np.asarray([1, 2, 65535], dtype=np.uint16),
        "label": np.asarray(["x", "y z", "ü"], dtype=object),
    }
    relations = ["source", "target", "index", "weight", "relation", "node_type", "attr_my_20title"]
    edges = {("edge", r, "edge"): _store([(0, 1), (1, 0), (0, 0)], [0.1, 0.2, 0.3], **attrs) for r in relations}
    edges[("edge", "to", "node")] = _store([(1, 0)], [2.0], vec=np.asarray([[1.5, 2.0, -0.25]], dtype=np.float16))
    kg = KnowledgeGraph(
        {"edge": ["a", "b"], "node": ["x"]},
        edges,
        node_attrs={"edge": {"my title": ["t1", None], "big": [2**70, -1]}},
        features={"node": {"f 1": np.zeros((1, 0), dtype=np.float64)}},
    )
    for fmt in ("turtle", "nt"):
        parsed = rdflib.Graph()
        parsed.parse(data=to_rdf(kg).serialize(format=fmt), format=fmt)
        _same_extras(kg, from_rdf(parsed))
    _same_extras(kg, from_networkx(to_networkx(kg)))
    data = to_hetero_data(kg)
    assert data.validate() and "edge_attr_label" not in data["edge", "source", "edge"]
    assert data["edge", "to", "node"].edge_attr_vec.shape == (1, 3)


def test_none_in_object_edge_attributes_round_trips() -> None:
    note = np.asarray(["x", None, {"k": [1, None]}], dtype=object)
    kg = KnowledgeGraph(
        {"n": ["a", "b"]}, {("n", "r", "n"): _store([(0, 1), (1, 0), (0, 0)], [1.0, 1.0, 2.0], note=note)}
    )
    g = to_rdf(kg)
    assert (_stmt(1, "n__r__n"), GR["attr_note"], None) not in g  # None writes nothing, as for node attributes
    backs = [from_networkx(to_networkx(kg))]
    for fmt in ("turtle", "nt"):
        parsed = rdflib.Graph()
        parsed.parse(data=g.serialize(format=fmt), format=fmt)
        backs.append(from_rdf(parsed))
    for back in backs:
        got = back.edges[("n", "r", "n")]
        assert got.attrs["note"].dtype == object and got.attrs["note"].tolist() == note.tolist()
        np.testing.assert_array_equal(got.edge_index, kg.edges[("n", "r", "n")].edge_index)
    g.remove((_stmt(0, "n__r__n"), GR["weight"], None))  # other edge properties stay required
    with pytest.raises(SchemaError, match="gr:weight"):
        from_rdf(g)


def test_rdf_format_for() -> None:
    assert rdf_format_for("a/b/graph.ttl") == "turtle"
    assert rdf_format_for("graph.NT") == "nt"
    with pytest.raises(ConfigError, match=".ttl"):
        rdf_format_for("graph.json")


# --------------------------------------------------------------------- purity
def test_exporters_do_not_mutate_the_graph(kg: KnowledgeGraph, tmp_path) -> None:
    kg.save(tmp_path / "before")
    attrs_before = copy.deepcopy(kg.node_attrs)
    masks_before = {t: {n: m.copy() for n, m in s.items()} for t, s in kg.feature_masks.items()}

    data = to_hetero_data(kg)
    data["user", "interacted", "item"].edge_index.zero_()
    data["user", "interacted", "item"].edge_attr_timestamp.zero_()
    data["item"].x_mask.zero_()
    view = to_homogeneous(kg)
    view.edge_weight.zero_()
    g = to_networkx(kg)
    g.nodes["item", "i1"]["genres"].append("changed")
    g.nodes["item", "i1"]["meta"]["k"].append(3)
    g.graph["recipe"][0]["settings"]["names"].append("c")
    g.graph["report"]["dropped"][0]["examples"].append("c")
    back = from_networkx(g)
    back.recipe[0]["settings"]["alpha"] = 9
    rdf = to_rdf(kg)
    from_rdf(rdf).node_attrs["item"]["genres"][0].append("x")

    before = KnowledgeGraph.load(tmp_path / "before")
    assert kg.diff(before, check_report=True) == []
    assert kg.node_attrs["item"]["genres"][0] == ("Drama", "Comedy")
    assert kg.node_attrs == attrs_before
    for t, s in masks_before.items():
        for n, m in s.items():
            np.testing.assert_array_equal(kg.feature_masks[t][n], m)
    _same_extras(before, kg)


# --------------------------------------------------------------------- a graph from build_graph
@dataclass(frozen=True, kw_only=True)
class _HandBuilder:
    """Users and items from the interactions table, plus item -> genre nodes from fixed settings."""

    genres: tuple[tuple[str, str], ...] = (("i1", "Drama"), ("i2", "Drama"), ("i2", "Sci Fi/Fantasy"))
    weight_column: str = "rating"

    def build(self, tables: Tables) -> GraphFragment:
        inter = tables.interactions
        users = list(dict.fromkeys(inter["user_id"]))
        items = list(dict.fromkeys(inter["item_id"]))
        genre_ids = list(dict.fromkeys(g for _, g in self.genres))
        return GraphFragment(
            nodes={
                "user": NodeBlock(users),
                "item": NodeBlock(
                    items, {"first_user": [inter.loc[inter.item_id == i, "user_id"].iloc[0] for i in items]}
                ),
                "genre": NodeBlock(genre_ids, {"label": [g.upper() for g in genre_ids]}),
            },
            edges={
                ("user", "interacted", "item"): EdgeBlock(
                    inter["user_id"].to_numpy(),
                    inter["item_id"].to_numpy(),
                    inter[self.weight_column].to_numpy(),
                    {"timestamp": inter["timestamp"].to_numpy(dtype=np.int64)},
                ),
                ("item", "has_genre", "genre"): EdgeBlock(
                    np.asarray([i for i, _ in self.genres]), np.asarray([g for _, g in self.genres]), np.ones(3)
                ),
            },
            info={"note": "hand-made"},
        )


def test_graph_from_build_graph_round_trips(tmp_path) -> None:
    inter = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "c d", "a"],
            "item_id": ["i1", "i2", "i2", "i#3", "i1"],
            "rating": [4.5, 3.0, 0.1, 2.0, 4.5],
            "timestamp": [3, 1, 2, 7, 9],
        }
    )
    kg = build_graph(Tables(interactions=inter, source="hand"), [_HandBuilder()])
    assert kg.recipe[0]["builder"] == "_HandBuilder" and kg.num_edges(("user", "interacted", "item")) == 5
    assert to_hetero_data(kg).validate()
    assert from_networkx(to_networkx(kg)).equals(kg, check_report=True)
    for fmt in ("turtle", "nt"):
        parsed = rdflib.Graph()
        parsed.parse(data=to_rdf(kg).serialize(format=fmt), format=fmt)
        back = from_rdf(parsed)
        assert back.equals(kg, check_report=True), back.diff(kg, check_report=True)
        _same_extras(kg, back)


def test_graph_from_the_project_builders_round_trips(tiny_tables) -> None:
    from kg_builders.builders.attributes import ItemAttributeBuilder
    from kg_builders.builders.interactions import InteractionBuilder
    from kg_builders.builders.tags import TagBuilder

    kg = build_graph(tiny_tables, [InteractionBuilder(), TagBuilder(), ItemAttributeBuilder()])
    assert to_hetero_data(kg).validate()
    assert from_networkx(to_networkx(kg)).equals(kg, check_report=True)
    parsed = rdflib.Graph()
    parsed.parse(data=to_rdf(kg).serialize(format="turtle"), format="turtle")
    assert from_rdf(parsed).equals(kg, check_report=True)
