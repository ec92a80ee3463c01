"""The knowledge-store contract: one hand-made graph and the exact answers every store must give.

Not collected by itself (no ``test_`` names). A store's tests build the store from
:func:`contract_graph`, :func:`contract_recommendations` and :func:`contract_explanations` and call
:func:`check_store` (or each of :data:`CHECKS`, for one failure per check)::

    store = EmbeddedStore(contract_graph(), recommendations=contract_recommendations(),
                          explanations=contract_explanations())
    check_store(store)

Only the :class:`~graph_rec.explore.store.KnowledgeStore` protocol is used, so the same checks run
on the embedded store and on Neo4j. Every expected list below was worked out by hand from the
edge list in :func:`contract_graph` (see the comments), not by running store code.

The graph (weights are exact binary fractions, so they survive float32 -> float64 unchanged)::

    u1 -interacted(5.0)-> i1      u1 -wishlisted(1.0)-> i1     u1 -interacted(3.0)-> i2
    u2 -interacted(4.0)-> i1      u2 -interacted(2.5)-> EVIL   u3 -interacted(1.0)-> i2
    u1 -follows(1.0)-> u2         u2 -follows(0.5)-> u1
    i1 -tagged_with(2.0)-> ROCK   EVIL -tagged_with(1.0)-> ROCK    i2 -tagged_with(1.0)-> calm
    u2 -uses_tag(1.0)-> ROCK
    i1 -has_genre(1.0)-> DRAMA    i2 -has_genre(1.0)-> DRAMA
    PERSON -directed(1.0)-> EVIL
    (U4 and i4 have no edges)
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from graph_rec.errors import ConfigError, UnknownIdError
from graph_rec.explore.store import EXPLANATION_COLUMNS, RECOMMENDATION_COLUMNS, KnowledgeStore
from graph_rec.explore.types import Edge, Neighbour, NodeRef, Path, Recommendation, Subgraph
from kg_builders.graph import EdgeStore, KnowledgeGraph

# ids that break naive string building in Cypher, JSON or shells
EVIL = 'x"}) DETACH DELETE n //'
EVIL_TITLE = "Robert'); MATCH (m) DETACH DELETE m //"
ROCK = "`rock`"
PERSON = "person:O'Brien \\ {dir}"
DRAMA = "genre:drama"
U4 = "u'4 {}"

U1, U2, U3, USER4 = NodeRef("user", "u1"), NodeRef("user", "u2"), NodeRef("user", "u3"), NodeRef("user", U4)
I1, I2, IEVIL, I4 = NodeRef("item", "i1"), NodeRef("item", "i2"), NodeRef("item", EVIL), NodeRef("item", "i4")
T_ROCK, T_CALM = NodeRef("tag", ROCK), NodeRef("tag", "calm")
E_DRAMA, E_PERSON = NodeRef("entity", DRAMA), NodeRef("entity", PERSON)

NODE_IDS = {
    "user": ["u1", "u2", "u3", U4],
    "item": ["i1", "i2", EVIL, "i4"],
    "tag": [ROCK, "calm"],
    "entity": [DRAMA, PERSON],
}

# (src type, relation, dst type) -> [(src id, dst id, weight)]
EDGES = {
    ("user", "interacted", "item"): [
        ("u1", "i1", 5.0),
        ("u1", "i2", 3.0),
        ("u2", "i1", 4.0),
        ("u2", EVIL, 2.5),
        ("u3", "i2", 1.0),
    ],
    ("user", "wishlisted", "item"): [("u1", "i1", 1.0)],
    ("user", "follows", "user"): [("u1", "u2", 1.0), ("u2", "u1", 0.5)],
    ("item", "tagged_with", "tag"): [("i1", ROCK, 2.0), (EVIL, ROCK, 1.0), ("i2", "calm", 1.0)],
    ("user", "uses_tag", "tag"): [("u2", ROCK, 1.0)],
    ("item", "has_genre", "entity"): [("i1", DRAMA, 1.0), ("i2", DRAMA, 1.0)],
    ("entity", "directed", "item"): [(PERSON, EVIL, 1.0)],
}


def contract_graph() -> KnowledgeGraph:
    """The contract's knowledge graph (module docstring), with item, tag and entity attributes."""
    pos = {t: {i: k for k, i in enumerate(ids)} for t, ids in NODE_IDS.items()}
    edges = {}
    for (s, r, d), rows in EDGES.items():
        index = np.array([[pos[s][a] for a, _, _ in rows], [pos[d][b] for _, b, _ in rows]], dtype=np.int64)
        edges[(s, r, d)] = EdgeStore(index, np.array([w for _, _, w in rows], dtype=np.float32))
    attrs = {
        "item": {
            "title": ["Alpha", "Beta", EVIL_TITLE, None],
            "year": [1990, None, 2001, 2003],
            "genres": [["Drama", "Comedy"], ["Drama"], ["Drama"], None],
        },
        "tag": {"text": ["`Rock`", "Calm"]},
        "entity": {"name": ["Drama", "O'Brien"], "entity_type": ["genre", "person"]},
    }
    return KnowledgeGraph(NODE_IDS, edges, node_attrs=attrs)


def contract_recommendations() -> pd.DataFrame:
    """Stored recommendations of u1 (three) and u2 (one), rows not in rank order."""
    rows = [
        ("u1", "i2", 0.5, 2, "graphrec"),
        ("u2", "i2", 0.75, 1, "ease"),
        ("u1", EVIL, 0.875, 1, "graphrec"),
        ("u1", "i4", 0.125, 3, "graphrec"),
    ]
    return pd.DataFrame(rows, columns=list(RECOMMENDATION_COLUMNS))


# stored explanation paths of (u1, EVIL); their JSON has no contribution: the row's column gives it
EXPLAINED_A = Path((U1, I1, T_ROCK, IEVIL), ("interacted", "tagged_with", "tagged_with"), (True, True, False))
EXPLAINED_B = Path((U1, U2, IEVIL), ("follows", "interacted"), (True, True))
EXPLAINED_C = Path((U1, U2, IEVIL), ("follows", "interacted"), (False, True))


def contract_explanations() -> pd.DataFrame:
    """Three stored explanation paths of (u1, EVIL): contributions 0.75, 0.25, 0.25 (a tie)."""
    rows = [
        ("u1", EVIL, 3, 0.25, json.dumps(EXPLAINED_B.to_dict())),
        ("u1", EVIL, 1, 0.75, json.dumps(EXPLAINED_A.to_dict())),
        ("u1", EVIL, 2, 0.25, json.dumps(EXPLAINED_C.to_dict())),
    ]
    return pd.DataFrame(rows, columns=list(EXPLANATION_COLUMNS))


def _p(
    nodes: tuple[NodeRef, ...], relations: tuple[str, ...], forward: tuple[bool, ...], c: float | None = None
) -> Path:
    return Path(nodes=nodes, relations=relations, forward=forward, contribution=c)


# --------------------------------------------------------------------- checks
def check_protocol(store: KnowledgeStore) -> None:
    assert isinstance(store, KnowledgeStore)


def check_node(store: KnowledgeStore) -> None:
    assert store.node(IEVIL) == {
        "type": "item",
        "id": EVIL,
        "title": EVIL_TITLE,
        "year": 2001,
        "genres": ["Drama"],
    }
    assert store.node(I1) == {"type": "item", "id": "i1", "title": "Alpha", "year": 1990, "genres": ["Drama", "Comedy"]}
    # None attributes are not stored
    assert store.node(I2) == {"type": "item", "id": "i2", "title": "Beta", "genres": ["Drama"]}
    assert store.node(I4) == {"type": "item", "id": "i4", "year": 2003}
    assert store.node(U1) == {"type": "user", "id": "u1"}
    assert store.node(USER4) == {"type": "user", "id": U4}
    assert store.node(T_ROCK) == {"type": "tag", "id": ROCK, "text": "`Rock`"}
    assert store.node(E_PERSON) == {"type": "entity", "id": PERSON, "name": "O'Brien", "entity_type": "person"}


def check_neighbours(store: KnowledgeStore) -> None:
    u1_all = [
        Neighbour(U2, "follows", "in", 0.5),  # u2 -follows-> u1
        Neighbour(U2, "follows", "out", 1.0),
        Neighbour(I1, "interacted", "out", 5.0),
        Neighbour(I2, "interacted", "out", 3.0),
        Neighbour(I1, "wishlisted", "out", 1.0),  # parallel to u1 -interacted-> i1
    ]
    assert store.neighbours(U1) == u1_all
    assert store.neighbours(U1, direction="both") == u1_all
    assert store.neighbours(U1, limit=2) == u1_all[:2]
    assert store.neighbours(U1, limit=100) == u1_all
    assert store.neighbours(U1, direction="out") == [n for n in u1_all if n.direction == "out"]
    assert store.neighbours(U1, direction="in") == [Neighbour(U2, "follows", "in", 0.5)]
    assert store.neighbours(U1, relation="follows") == u1_all[:2]
    assert store.neighbours(U1, relation="follows", direction="out") == [Neighbour(U2, "follows", "out", 1.0)]
    assert store.neighbours(U1, relation="interacted", direction="in") == []
    assert store.neighbours(U1, relation="no_such_relation") == []
    assert store.neighbours(IEVIL) == [
        Neighbour(E_PERSON, "directed", "in", 1.0),
        Neighbour(U2, "interacted", "in", 2.5),
        Neighbour(T_ROCK, "tagged_with", "out", 1.0),
    ]
    assert store.neighbours(T_ROCK, direction="in") == [
        Neighbour(I1, "tagged_with", "in", 2.0),
        Neighbour(IEVIL, "tagged_with", "in", 1.0),  # "i1" < 'x"})...'
        Neighbour(U2, "uses_tag", "in", 1.0),
    ]
    assert store.neighbours(T_ROCK, direction="out") == []
    assert store.neighbours(E_DRAMA) == [Neighbour(I1, "has_genre", "in", 1.0), Neighbour(I2, "has_genre", "in", 1.0)]
    assert store.neighbours(USER4) == []
    assert store.neighbours(I4) == []
    for n in store.neighbours(U1):
        assert type(n.weight) is float


def check_subgraph(store: KnowledgeStore) -> None:
    assert store.subgraph([U3]) == Subgraph(nodes=(I2, U3), edges=(Edge(U3, "interacted", I2, 1.0),))
    # two hops from u3: i2, then i2's other neighbours u1, calm, drama; u1's further edges are not included
    assert store.subgraph([U3], hops=2) == Subgraph(
        nodes=(E_DRAMA, I2, T_CALM, U1, U3),
        edges=(
            Edge(I2, "has_genre", E_DRAMA, 1.0),
            Edge(I2, "tagged_with", T_CALM, 1.0),
            Edge(U1, "interacted", I2, 3.0),
            Edge(U3, "interacted", I2, 1.0),
        ),
    )
    u1_one_hop = Subgraph(
        nodes=(I1, I2, U1, U2),
        edges=(
            Edge(U1, "follows", U2, 1.0),
            Edge(U1, "interacted", I1, 5.0),
            Edge(U1, "interacted", I2, 3.0),
            Edge(U1, "wishlisted", I1, 1.0),
            Edge(U2, "follows", U1, 0.5),
            Edge(U2, "interacted", I1, 4.0),
        ),
    )
    assert store.subgraph([U1]) == u1_one_hop
    assert store.subgraph([U1], hops=1, limit=4) == u1_one_hop  # the limit is inclusive
    assert store.subgraph([U1, U1]) == u1_one_hop  # refs are a set
    assert store.subgraph([U3, E_PERSON]) == Subgraph(
        nodes=(E_PERSON, I2, IEVIL, U3),
        edges=(Edge(E_PERSON, "directed", IEVIL, 1.0), Edge(U3, "interacted", I2, 1.0)),
    )
    assert store.subgraph([E_PERSON, USER4]) == Subgraph(
        nodes=(E_PERSON, IEVIL, USER4), edges=(Edge(E_PERSON, "directed", IEVIL, 1.0),)
    )
    assert store.subgraph([I4], hops=3) == Subgraph(nodes=(I4,), edges=())
    # the whole graph: every edge once
    whole = store.subgraph([U1], hops=10)
    assert len(whole.nodes) == 10 and len(whole.edges) == sum(len(rows) for rows in EDGES.values())
    assert USER4 not in whole.nodes and I4 not in whole.nodes
    # two hops from u1 reach 9 nodes (u1, i1, i2, u2, then ROCK, DRAMA, calm, u3, EVIL): too many
    with pytest.raises(ConfigError):
        store.subgraph([U1], hops=2, limit=5)


def check_paths(store: KnowledgeStore) -> None:
    # u1 -> EVIL: common neighbour u2 (two follows edges); 3 hops via i1 (2 relations from u1) then
    # u2 or ROCK, and via u2 (2 follows edges) then ROCK. Sorted: hops, node sequence, relations, forward.
    u1_evil = [
        _p((U1, U2, IEVIL), ("follows", "interacted"), (False, True)),
        _p((U1, U2, IEVIL), ("follows", "interacted"), (True, True)),
        _p((U1, I1, T_ROCK, IEVIL), ("interacted", "tagged_with", "tagged_with"), (True, True, False)),
        _p((U1, I1, T_ROCK, IEVIL), ("wishlisted", "tagged_with", "tagged_with"), (True, True, False)),
        _p((U1, I1, U2, IEVIL), ("interacted", "interacted", "interacted"), (True, False, True)),
        _p((U1, I1, U2, IEVIL), ("wishlisted", "interacted", "interacted"), (True, False, True)),
        _p((U1, U2, T_ROCK, IEVIL), ("follows", "uses_tag", "tagged_with"), (False, True, False)),
        _p((U1, U2, T_ROCK, IEVIL), ("follows", "uses_tag", "tagged_with"), (True, True, False)),
    ]
    assert store.paths(U1, IEVIL) == u1_evil  # max_hops=3, limit=10
    assert store.paths(U1, IEVIL, max_hops=3, limit=3) == u1_evil[:3]
    assert store.paths(U1, IEVIL, max_hops=2) == u1_evil[:2]
    assert store.paths(U1, IEVIL, max_hops=1) == []
    # backwards: the reversed paths, read from EVIL (directions flip)
    evil_u1 = store.paths(IEVIL, U1)
    assert [p.nodes for p in evil_u1[:2]] == [(IEVIL, U2, U1)] * 2
    assert [p.forward for p in evil_u1[:2]] == [(False, False), (False, True)]
    assert sorted((tuple(reversed(p.nodes)), tuple(reversed(p.relations))) for p in evil_u1) == sorted(
        (p.nodes, p.relations) for p in u1_evil
    )
    # u1 -> u2: the two follows edges, then via i1 (interacted or wishlisted from u1)
    assert store.paths(U1, U2, max_hops=2) == [
        _p((U1, U2), ("follows",), (False,)),
        _p((U1, U2), ("follows",), (True,)),
        _p((U1, I1, U2), ("interacted", "interacted"), (True, False)),
        _p((U1, I1, U2), ("wishlisted", "interacted"), (True, False)),
    ]
    assert store.paths(U1, U2, limit=3) == [
        _p((U1, U2), ("follows",), (False,)),
        _p((U1, U2), ("follows",), (True,)),
        _p((U1, I1, U2), ("interacted", "interacted"), (True, False)),
    ]
    # only through EVIL and u2; the last edge is either follows edge
    assert store.paths(E_PERSON, U1) == [
        _p((E_PERSON, IEVIL, U2, U1), ("directed", "interacted", "follows"), (True, False, False)),
        _p((E_PERSON, IEVIL, U2, U1), ("directed", "interacted", "follows"), (True, False, True)),
    ]
    assert store.paths(E_PERSON, U1, max_hops=2) == []
    assert store.paths(U1, I4) == []
    assert store.paths(U1, U1) == []  # a path never repeats a node
    for p in store.paths(U1, IEVIL):
        assert p.contribution is None


def check_recommendations(store: KnowledgeStore) -> None:
    u1 = [
        Recommendation("u1", EVIL, 0.875, 1, "graphrec"),
        Recommendation("u1", "i2", 0.5, 2, "graphrec"),
        Recommendation("u1", "i4", 0.125, 3, "graphrec"),
    ]
    assert store.recommendations("u1") == u1
    assert store.recommendations("u1", k=2) == u1[:2]
    assert store.recommendations("u1", k=1) == u1[:1]
    assert store.recommendations("u2") == [Recommendation("u2", "i2", 0.75, 1, "ease")]
    assert store.recommendations("u3") == []
    assert store.recommendations(U4) == []
    for r in store.recommendations("u1"):
        assert type(r.score) is float and type(r.rank) is int


def check_why(store: KnowledgeStore) -> None:
    # stored: by contribution, the 0.25 tie broken by path order (C's first edge is backward)
    stored = [
        Path(EXPLAINED_A.nodes, EXPLAINED_A.relations, EXPLAINED_A.forward, 0.75),
        Path(EXPLAINED_C.nodes, EXPLAINED_C.relations, EXPLAINED_C.forward, 0.25),
        Path(EXPLAINED_B.nodes, EXPLAINED_B.relations, EXPLAINED_B.forward, 0.25),
    ]
    assert store.why("u1", EVIL) == stored
    assert store.why("u1", EVIL, limit=2) == stored[:2]
    # nothing stored for (u2, i2): graph paths. 2 hops via u1 (either follows edge); 3 hops via i1,
    # then DRAMA (has_genre both ways) or u1 (interacted or wishlisted into i1)
    fallback = [
        _p((U2, U1, I2), ("follows", "interacted"), (False, True)),
        _p((U2, U1, I2), ("follows", "interacted"), (True, True)),
        _p((U2, I1, E_DRAMA, I2), ("interacted", "has_genre", "has_genre"), (True, True, False)),
        _p((U2, I1, U1, I2), ("interacted", "interacted", "interacted"), (True, False, True)),
        _p((U2, I1, U1, I2), ("interacted", "wishlisted", "interacted"), (True, False, True)),
    ]
    assert store.why("u2", "i2") == fallback  # limit=5: exactly all of them
    assert store.why("u2", "i2", limit=10) == fallback
    assert store.why("u2", "i2", limit=3) == fallback[:3]
    assert store.why("u1", "i4") == []


def check_errors(store: KnowledgeStore) -> None:
    with pytest.raises(UnknownIdError) as err:
        store.node(NodeRef("item", "nope"))
    assert err.value.ids == ["nope"]
    with pytest.raises(UnknownIdError):
        store.node(NodeRef("planet", "u1"))
    with pytest.raises(UnknownIdError):
        store.node(NodeRef("item", "u1"))  # a user id is not an item id
    with pytest.raises(UnknownIdError):
        store.neighbours(NodeRef("user", "nobody"))
    with pytest.raises(ConfigError):
        store.neighbours(U1, direction="sideways")  # type: ignore[arg-type]
    for bad in (0, -1, 2.5, "3"):
        with pytest.raises(ConfigError):
            store.neighbours(U1, limit=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            store.subgraph([U1], hops=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            store.subgraph([U1], limit=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            store.paths(U1, IEVIL, max_hops=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            store.paths(U1, IEVIL, limit=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            store.recommendations("u1", k=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            store.why("u1", EVIL, limit=bad)  # type: ignore[arg-type]
    with pytest.raises(UnknownIdError):
        store.subgraph([U1, NodeRef("item", "nope")])
    with pytest.raises(UnknownIdError):
        store.paths(U1, NodeRef("item", "nope"))
    with pytest.raises(UnknownIdError):
        store.paths(NodeRef("user", "nobody"), I1)
    with pytest.raises(UnknownIdError) as err:
        store.recommendations("nobody")
    assert err.value.ids == ["nobody"]
    with pytest.raises(UnknownIdError):
        store.why("nobody", "i1")
    with pytest.raises(UnknownIdError):
        store.why("u1", "nope")
    with pytest.raises(UnknownIdError):
        store.why("u1", "u2")  # u2 is a user, not an item
    # nothing above changed the store
    assert store.neighbours(U1, limit=1) == [Neighbour(U2, "follows", "in", 0.5)]
    assert store.node(IEVIL)["title"] == EVIL_TITLE


CHECKS: tuple[Callable[[KnowledgeStore], None], ...] = (
    check_protocol,
    check_node,
    check_neighbours,
    check_subgraph,
    check_paths,
    check_recommendations,
    check_why,
    check_errors,
)


def check_store(store: KnowledgeStore) -> None:
    """Run every check on a store holding :func:`contract_graph` and the two contract frames."""
    for check in CHECKS:
        check(store)
