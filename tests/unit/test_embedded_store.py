"""The embedded (networkx) knowledge store: the shared store contract, frame validation, path search.

Path search is also checked against an independent brute-force enumeration (written here from the
KG's edge arrays, not from the store's graph) on random multigraphs with parallel edges, edges both
ways and self-loops, and on the real ml-latest-small graph when ../shared/data has it.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from graph_rec.errors import ConfigError, DataError, SchemaError, UnknownIdError
from graph_rec.explore import embedded
from graph_rec.explore.embedded import EmbeddedStore
from graph_rec.explore.types import Edge, Neighbour, NodeRef, Path
from kg_builders.export.networkx_graph import from_networkx
from kg_builders.graph import EdgeStore, KnowledgeGraph
from tests.conftest import shared_data
from tests.store_contract import (
    CHECKS,
    EVIL,
    I1,
    IEVIL,
    U1,
    U2,
    check_store,
    contract_explanations,
    contract_graph,
    contract_recommendations,
)


@pytest.fixture(scope="module")
def store() -> EmbeddedStore:
    return EmbeddedStore(
        contract_graph(), recommendations=contract_recommendations(), explanations=contract_explanations()
    )


# --------------------------------------------------------------------- the contract
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_contract(store: EmbeddedStore, check) -> None:
    check(store)


def test_check_store_runs_every_check(store: EmbeddedStore) -> None:
    check_store(store)
    store.close()  # a no-op: the store still answers
    assert store.neighbours(U1, limit=1) == [Neighbour(U2, "follows", "in", 0.5)]


def test_contract_fails_on_a_wrong_store() -> None:
    # the contract is not vacuous: a store missing one edge fails it
    kg = contract_graph()
    e = kg.edges[("user", "wishlisted", "item")]
    kg.edges[("user", "wishlisted", "item")] = EdgeStore(e.edge_index[:, :0], e.edge_weight[:0])
    wrong = EmbeddedStore(kg, recommendations=contract_recommendations(), explanations=contract_explanations())
    with pytest.raises(AssertionError):
        check_store(wrong)


# --------------------------------------------------------------------- graph and nodes
def test_graph_has_the_to_networkx_layout_without_features() -> None:
    kg = contract_graph()
    kg.set_features("item", "text", np.ones((4, 8), dtype=np.float32), mask=np.array([1, 1, 0, 1], dtype=bool))
    s = EmbeddedStore(kg)
    g = s.graph
    assert g.number_of_nodes() == 12 and g.number_of_edges() == kg.num_edges() == 15
    assert set(g[("user", "u1")][("item", "i1")]) == {"interacted", "wishlisted"}
    assert not any(k.startswith("feature") for _, d in g.nodes(data=True) for k in d)
    assert set(s.node(I1)) == {"type", "id", "title", "year", "genres"}
    back = from_networkx(g)
    assert not back.features
    bare = KnowledgeGraph(kg.node_ids, kg.edges, node_attrs=kg.node_attrs)
    assert back.equals(bare)


def test_node_returns_a_copy(store: EmbeddedStore) -> None:
    store.node(I1)["genres"].append("Horror")
    assert store.node(I1)["genres"] == ["Drama", "Comedy"]


def test_node_attribute_named_like_an_added_key_is_refused() -> None:
    kg = contract_graph()
    kg.node_attrs["tag"]["type"] = ["a", "b"]
    with pytest.raises(SchemaError, match="type"):
        EmbeddedStore(kg)


def test_not_a_noderef_is_a_config_error(store: EmbeddedStore) -> None:
    with pytest.raises(ConfigError):
        store.node(("user", "u1"))  # type: ignore[arg-type]


def test_self_loops() -> None:
    kg = contract_graph()
    u = kg.node_ids["user"].index("u3")
    kg.edges[("user", "follows", "user")] = EdgeStore(
        np.array([[0, 1, u], [1, 0, u]], dtype=np.int64), np.array([1.0, 0.5, 0.25], dtype=np.float32)
    )
    s = EmbeddedStore(kg)
    u3 = NodeRef("user", "u3")
    loop_out, loop_in = Neighbour(u3, "follows", "out", 0.25), Neighbour(u3, "follows", "in", 0.25)
    # a self-loop is an out edge and an in edge
    assert s.neighbours(u3, relation="follows") == [loop_in, loop_out]
    assert s.neighbours(u3, direction="out", relation="follows") == [loop_out]
    assert s.subgraph([u3]).edges.count(Edge(u3, "follows", u3, 0.25)) == 1
    assert all(len(set(p.nodes)) == len(p.nodes) for p in s.paths(u3, IEVIL, max_hops=4, limit=1000))


# --------------------------------------------------------------------- frames
def test_frames_missing_columns_are_named() -> None:
    kg = contract_graph()
    with pytest.raises(SchemaError, match="rank.*model"):
        EmbeddedStore(kg, recommendations=contract_recommendations().drop(columns=["rank", "model"]))
    with pytest.raises(SchemaError, match="contribution"):
        EmbeddedStore(kg, explanations=contract_explanations().drop(columns=["contribution"]))


def test_frames_with_duplicates_are_refused() -> None:
    recs = contract_recommendations()
    with pytest.raises(DataError, match="twice") as err:
        EmbeddedStore(contract_graph(), recommendations=pd.concat([recs, recs.iloc[[2]]]))
    assert err.value.line == 5
    # the same item by another model is a different recommendation
    other = recs.iloc[[2]].assign(model="ease", rank=4)
    got = EmbeddedStore(contract_graph(), recommendations=pd.concat([recs, other])).recommendations("u1")
    assert [(r.item_id, r.rank, r.model) for r in got] == [
        (EVIL, 1, "graphrec"),
        ("i2", 2, "graphrec"),
        ("i4", 3, "graphrec"),
        (EVIL, 4, "ease"),
    ]
    expl = contract_explanations()
    expl.loc[2, "rank"] = 1  # rank 1 of (u1, EVIL) twice
    with pytest.raises(DataError, match="rank 1") as err:
        EmbeddedStore(contract_graph(), explanations=expl)
    assert err.value.line == 3


def test_explanation_paths_through_unknown_nodes_are_refused() -> None:
    expl = contract_explanations()
    ghost = Path((U1, NodeRef("tag", "ghost"), IEVIL), ("uses_tag", "tagged_with"), (True, False))
    expl.loc[0, "path"] = json.dumps(ghost.to_dict())
    with pytest.raises(UnknownIdError) as err:
        EmbeddedStore(contract_graph(), explanations=expl)
    assert err.value.kind == "tag" and err.value.ids == ["ghost"]
    planet = Path((U1, NodeRef("planet", "mars"), IEVIL), ("orbits", "orbits"), (True, False))
    expl.loc[0, "path"] = json.dumps(planet.to_dict())
    with pytest.raises(SchemaError, match="planet"):
        EmbeddedStore(contract_graph(), explanations=expl)


def test_paths_the_neo4j_store_could_not_read_back_are_refused_here_too() -> None:
    """Both stores check paths with the same rules, so both answer or both refuse (Neo4jStore.why
    reads the stored text with Path.from_dict)."""
    good = json.loads(contract_explanations().loc[0, "path"])
    for bad, why in (
        ({**good, "nodes": [[*good["nodes"][0], "extra"], *good["nodes"][1:]]}, r"each node must be \[type, id\]"),
        ({**good, "contribution": "n/a"}, "'contribution' must be a number, got 'n/a'"),
        ({**good, "contribution": True}, "'contribution' must be a number"),
        ([good], "path is not the JSON text"),
    ):
        expl = contract_explanations()
        expl.loc[0, "path"] = json.dumps(bad)
        with pytest.raises(DataError, match=why) as err:
            EmbeddedStore(contract_graph(), explanations=expl)
        assert err.value.line == 1 and err.value.field == "path"
        Path.from_dict(good)  # (what the check accepts, from_dict reads)


def test_missing_contributions_are_none_and_rank_last() -> None:
    expl = contract_explanations().astype({"contribution": object})
    expl.loc[1, "contribution"] = None  # EXPLAINED_A, otherwise the first
    got = EmbeddedStore(contract_graph(), explanations=expl).why("u1", EVIL)
    assert [p.contribution for p in got] == [0.25, 0.25, None]
    assert got[2].nodes == (U1, I1, NodeRef("tag", "`rock`"), IEVIL)


def test_frames_naming_unknown_ids_list_them() -> None:
    kg = contract_graph()
    recs = contract_recommendations()
    ghosts = pd.DataFrame(
        {"user_id": [f"ghost{k}" for k in range(15)], "item_id": "i1", "score": 0.5, "rank": 1, "model": "m"}
    )
    with pytest.raises(UnknownIdError) as err:
        EmbeddedStore(kg, recommendations=pd.concat([recs, ghosts, ghosts]))
    assert err.value.kind == "user" and err.value.ids == [f"ghost{k}" for k in range(15)]
    assert "'ghost0'" in str(err.value) and "5 more" in str(err.value)
    expl = contract_explanations()
    expl.loc[1, "item_id"] = "no-such-item"
    with pytest.raises(UnknownIdError) as err:
        EmbeddedStore(kg, explanations=expl)
    assert err.value.kind == "item" and err.value.ids == ["no-such-item"]
    # an item id in the user column is unknown as a user
    recs.loc[0, "user_id"] = "i1"
    with pytest.raises(UnknownIdError, match="user"):
        EmbeddedStore(kg, recommendations=recs)


@pytest.mark.parametrize(
    ("column", "value"),
    [("score", "high"), ("score", None), ("rank", 0), ("rank", 1.5), ("user_id", None)],
)
def test_bad_recommendation_values(column: str, value) -> None:
    recs = contract_recommendations().astype({column: object})
    recs.loc[2, column] = value
    with pytest.raises(DataError) as err:
        EmbeddedStore(contract_graph(), recommendations=recs)
    assert err.value.field == column and err.value.line == 3


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("path", "not json"),
        ("path", json.dumps({"nodes": [["user", "u1"]], "relations": [], "forward": []})),
        ("path", json.dumps({"nodes": [["user", "u1"], ["item", "i1"]]})),
        ("path", None),
        ("contribution", "large"),
        ("rank", -1),
    ],
)
def test_bad_explanation_values(column: str, value) -> None:
    expl = contract_explanations().astype({column: object})
    expl.loc[1, column] = value
    with pytest.raises(DataError) as err:
        EmbeddedStore(contract_graph(), explanations=expl)
    assert err.value.field == column and err.value.line == 2


def test_frames_must_be_dataframes() -> None:
    with pytest.raises(ConfigError):
        EmbeddedStore(contract_graph(), recommendations=contract_recommendations().to_dict())  # type: ignore[arg-type]


def test_without_frames_nothing_is_stored_and_why_falls_back_to_paths() -> None:
    s = EmbeddedStore(contract_graph())
    assert s.recommendations("u1") == []
    assert s.why("u1", EVIL, limit=10) == s.paths(U1, IEVIL, max_hops=3, limit=10)
    assert all(p.contribution is None for p in s.why("u1", EVIL))
    empty = EmbeddedStore(
        contract_graph(),
        recommendations=contract_recommendations().iloc[:0],
        explanations=contract_explanations().iloc[:0],
    )
    assert empty.recommendations("u1") == [] and len(empty.why("u1", EVIL, limit=10)) == 8


def test_integer_ids_in_frames_are_read_as_strings() -> None:
    kg = KnowledgeGraph(
        {"user": ["7"], "item": ["42", "43"]},
        {("user", "interacted", "item"): EdgeStore(np.array([[0], [0]], dtype=np.int64), np.ones(1, np.float32))},
    )
    recs = pd.DataFrame({"user_id": [7, 7], "item_id": [43, 42], "score": [2, 1], "rank": [1.0, 2.0], "model": None})
    got = EmbeddedStore(kg, recommendations=recs).recommendations("7")
    assert [(r.item_id, r.score, r.rank, r.model) for r in got] == [("43", 2.0, 1, ""), ("42", 1.0, 2, "")]


# --------------------------------------------------------------------- path search against brute force
Key = tuple[str, str]


def _adjacency(kg: KnowledgeGraph) -> dict[Key, dict[Key, set[tuple[str, bool]]]]:
    """(type, id) -> other end -> {(relation, stored from the node)}; straight from the KG's arrays."""
    adj: dict[Key, dict[Key, set[tuple[str, bool]]]] = defaultdict(lambda: defaultdict(set))
    for (s, r, d), e in kg.edges.items():
        src, dst = kg.node_ids[s], kg.node_ids[d]
        for a, b in e.edge_index.T.tolist():
            u, v = (s, src[a]), (d, dst[b])
            adj[u][v].add((r, True))
            adj[v][u].add((r, False))
    return adj


def _brute_paths(adj, source: NodeRef, target: NodeRef, max_hops: int) -> list[Path]:
    """Every simple path of at most ``max_hops`` edges, by walking every edge label at each step."""
    found: set[tuple[tuple[Key, ...], tuple[str, ...], tuple[bool, ...]]] = set()
    goal = (target.type, target.id)

    def walk(trail: list[Key], rels: list[str], fwd: list[bool]) -> None:
        if trail[-1] == goal:
            found.add((tuple(trail), tuple(rels), tuple(fwd)))
            return
        if len(rels) == max_hops:
            return
        last_hop = len(rels) == max_hops - 1
        for v, labels in adj[trail[-1]].items():
            if v in trail or (last_hop and v != goal):
                continue
            for r, f in labels:
                walk([*trail, v], [*rels, r], [*fwd, f])

    walk([(source.type, source.id)], [], [])
    return [
        Path(tuple(NodeRef(*k) for k in nodes), rels, fwd)
        for nodes, rels, fwd in sorted(found, key=lambda x: (len(x[1]), x[0], x[1], x[2]))
    ]


def _random_graph(seed: int) -> KnowledgeGraph:
    rng = np.random.default_rng(seed)
    n = {"user": 6, "item": 7, "tag": 3}
    ids = {t: [f"{t[0]}{k}" for k in range(c)] for t, c in n.items()}
    types = [
        ("user", "interacted", "item", 14),
        ("user", "likes", "item", 5),
        ("user", "follows", "user", 6),  # self-loops and both directions happen
        ("item", "tagged_with", "tag", 6),
        ("tag", "broader", "tag", 2),
    ]
    edges = {}
    for s, r, d, m in types:
        index = np.stack([rng.integers(0, n[s], m), rng.integers(0, n[d], m)]).astype(np.int64)
        edges[(s, r, d)] = EdgeStore(index, rng.integers(1, 8, m).astype(np.float32) / 2)  # duplicates happen
    return KnowledgeGraph(ids, edges)


@pytest.mark.parametrize("seed", range(4))
def test_paths_match_brute_force_on_random_multigraphs(seed: int) -> None:
    kg = _random_graph(seed)
    s, adj = EmbeddedStore(kg), _adjacency(kg)
    nodes = [NodeRef(t, i) for t, ids in kg.node_ids.items() for i in ids]
    rng = np.random.default_rng(100 + seed)
    checked = 0
    for _ in range(12):
        a, b = (nodes[k] for k in rng.choice(len(nodes), 2, replace=False))
        for max_hops in (1, 2, 3, 4):
            expected = _brute_paths(adj, a, b, max_hops)
            checked += len(expected)
            for limit in (1, 3, 10**6):
                assert s.paths(a, b, max_hops=max_hops, limit=limit) == expected[:limit], (a, b, max_hops, limit)
    assert checked > 100  # the graphs are dense enough for the comparison to mean something


@pytest.mark.parametrize("seed", range(2))
def test_neighbours_and_subgraph_match_the_edge_arrays(seed: int) -> None:
    def key(n: Neighbour) -> tuple:
        return (n.relation, n.direction, n.node.type, n.node.id, n.weight)

    kg = _random_graph(seed)
    s = EmbeddedStore(kg)
    stored = [
        Edge(NodeRef(st, kg.node_ids[st][a]), r, NodeRef(dt, kg.node_ids[dt][b]), float(w))
        for (st, r, dt), e in kg.edges.items()
        for (a, b), w in zip(e.edge_index.T.tolist(), e.edge_weight.tolist(), strict=True)
    ]
    for t, ids in kg.node_ids.items():
        for i in ids:
            ref = NodeRef(t, i)
            out = [Neighbour(e.target, e.relation, "out", e.weight) for e in stored if e.source == ref]
            inc = [Neighbour(e.source, e.relation, "in", e.weight) for e in stored if e.target == ref]
            assert s.neighbours(ref, direction="out") == sorted(out, key=key)
            assert s.neighbours(ref, direction="in") == sorted(inc, key=key)
            assert s.neighbours(ref) == sorted(out + inc, key=key)
            # two hops by hand: the ends of the edges at the node, then at those
            one = {ref} | {e.target for e in stored if e.source == ref} | {e.source for e in stored if e.target == ref}
            two = one | {e.target for e in stored if e.source in one} | {e.source for e in stored if e.target in one}
            sub = s.subgraph([ref], hops=2)
            assert sub.nodes == tuple(sorted(two))
            among = [e for e in stored if e.source in two and e.target in two]
            assert sorted(sub.edges, key=repr) == sorted(among, key=repr)


def test_path_search_work_is_capped(monkeypatch, store: EmbeddedStore) -> None:
    monkeypatch.setattr(embedded, "MAX_PATH_STEPS", 5)
    with pytest.raises(ConfigError, match="fewer hops"):
        store.paths(U1, IEVIL, max_hops=3, limit=10)


def test_long_and_huge_hop_counts_stop_at_the_graph(monkeypatch) -> None:
    # a ring of 12 users with two chords: simple paths of up to 11 hops, few enough to enumerate
    ids = {"user": [f"u{k}" for k in range(12)], "item": ["lonely"]}
    pairs = np.asarray([(k, (k + 1) % 12) for k in range(12)] + [(0, 6), (3, 9)], dtype=np.int64).T.copy()
    kg = KnowledgeGraph(ids, {("user", "follows", "user"): EdgeStore(pairs, np.ones(pairs.shape[1], np.float32))})
    s, adj = EmbeddedStore(kg), _adjacency(kg)
    a, b = NodeRef("user", "u0"), NodeRef("user", "u5")
    full = _brute_paths(adj, a, b, 12)
    assert len(full) > 5 and max(p.hops for p in full) > 6
    for h in (3, 7, 11, 12, 40, 10**9):  # a huge count used to take memory and time in proportion to it
        assert s.paths(a, b, max_hops=h, limit=10**6) == _brute_paths(adj, a, b, min(h, 12)), h
    monkeypatch.setattr(embedded, "MAX_PATH_STEPS", 1_000)
    lonely = NodeRef("item", "lonely")
    assert s.paths(lonely, a, max_hops=10**9) == [] and s.paths(a, lonely, max_hops=10**9) == []


def test_an_unknown_id_asked_twice_is_named_once(store: EmbeddedStore) -> None:
    with pytest.raises(UnknownIdError) as err:
        store.subgraph([NodeRef("item", "x"), NodeRef("item", "x")])
    assert err.value.ids == ["x"]  # as the Neo4j store says it


# --------------------------------------------------------------------- the real MovieLens graph
@pytest.fixture(scope="module")
def movielens():
    from kg_builders.builders.standard import standard_builders
    from kg_builders.graph import build_graph
    from kg_builders.sources import load_movielens

    tables = load_movielens(shared_data("ml-latest-small"))
    kg = build_graph(tables, standard_builders(tables))
    return kg, EmbeddedStore(kg)


@pytest.mark.integration
def test_movielens_three_hop_paths_are_real_sorted_and_simple(movielens) -> None:
    kg, s = movielens
    stored = {
        ((st, kg.node_ids[st][a]), r, (dt, kg.node_ids[dt][b]))
        for (st, r, dt), e in kg.edges.items()
        for a, b in e.edge_index.T.tolist()
    }
    inter = kg.edges[("user", "interacted", "item")].edge_index
    by_degree = np.argsort(np.bincount(inter[0], minlength=kg.num_nodes("user")), kind="stable")
    light, median, heavy = (
        NodeRef("user", kg.node_ids["user"][int(by_degree[k])]) for k in (0, len(by_degree) // 2, -1)
    )
    popular = NodeRef("item", kg.node_ids["item"][int(np.bincount(inter[1]).argmax())])
    adj = _adjacency(kg)

    def key(p: Path) -> tuple:
        return (p.hops, [(n.type, n.id) for n in p.nodes], p.relations, p.forward)

    # light (20 ratings) and median users: every path, compared with brute force from the KG's arrays
    for user in (light, median):
        everything = s.paths(user, popular, max_hops=3, limit=10**7)
        assert len(everything) > 300
        assert everything == _brute_paths(adj, user, popular, 3)
        assert everything[:10] == s.paths(user, popular, max_hops=3, limit=10)
    # the heaviest user (2.7k ratings; ~60k such paths): the first ones
    first = s.paths(heavy, popular, max_hops=3, limit=300)
    assert len(first) == 300 and first[:10] == s.paths(heavy, popular, max_hops=3, limit=10)
    for paths in (everything, first):
        assert paths == sorted(paths, key=key) and len(set(paths)) == len(paths)
        for p in paths:
            assert p.nodes[-1] == popular and p.nodes[0].type == "user" and 1 <= p.hops <= 3
            assert len(set(p.nodes)) == len(p.nodes)
            for x, r, y, fwd in zip(p.nodes, p.relations, p.nodes[1:], p.forward, strict=False):
                here, there = (x.type, x.id), (y.type, y.id)
                assert ((here, r, there) if fwd else (there, r, here)) in stored, p
