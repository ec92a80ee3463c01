"""write_neo4j / read_neo4j / Neo4jStore / ``graph-rec neo4j`` against a real Bolt server.

The server is ArcadeDB with its Neo4j-compatible Bolt plugin, installed and started by the
project's own ``scripts/arcadedb.sh`` (the first install downloads ``arcadedb-embedded`` from
PyPI into ``$ARCADE_BASE``, by default ``~/.cache/graph-rec/arcadedb``). The session runs its own
instance: a fresh data folder, free ports on 127.0.0.1 and a random password, stopped at the end,
so it never touches a server or database of the user's. The tests skip only when the install
itself is impossible (no network to PyPI and nothing installed).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graph_rec.cli_neo4j import add_parsers
from graph_rec.explore.neo4j_store import Neo4jStore
from graph_rec.explore.types import NodeRef
from graph_rec.explore.types import Path as GraphPath
from kg_builders.builders.standard import standard_builders
from kg_builders.errors import DataError, ExportError, SchemaError, UnknownIdError
from kg_builders.export import neo4j_db
from kg_builders.export.neo4j_db import (
    Neo4jSettings,
    clear_neo4j,
    count_neo4j,
    read_neo4j,
    write_neo4j,
)
from kg_builders.graph import BuildReport, EdgeStore, KnowledgeGraph, build_graph
from kg_builders.sources.synthetic import make_synthetic_world
from kg_builders.split import split_random
from tests.store_contract import CHECKS, check_store, contract_explanations, contract_graph, contract_recommendations
from tests.worlds import synthetic_graph

neo4j = pytest.importorskip("neo4j")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "arcadedb.sh"


# --------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One ArcadeDB instance of this test session (its own data folder, ports and password)."""

    env: dict[str, str]
    settings: Neo4jSettings

    def script(self, command: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SCRIPT), command], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> None:
        r = self.script("start")
        if r.returncode != 0:
            log = Path(self.env["ARCADE_DATA"], "server.log")
            tail = log.read_text()[-2000:] if log.is_file() else ""
            pytest.fail(f"scripts/arcadedb.sh start failed: {r.stdout}{r.stderr}\n{tail}")

    def stop(self) -> None:
        r = self.script("stop")
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("arcadedb-data")
    password = "pw-" + secrets.token_urlsafe(12)
    bolt, http = _free_port(), _free_port()
    env = {
        **os.environ,
        "ARCADE_DATA": str(data),
        "ARCADE_BOLT_PORT": str(bolt),
        "ARCADE_HTTP_PORT": str(http),
        "ARCADE_PASSWORD": password,
        "ARCADE_HEAP": "768m",
    }
    settings = Neo4jSettings(
        uri=f"bolt://127.0.0.1:{bolt}", user="root", password=password, database="graph", max_retry_time=5.0
    )
    srv = Server(env, settings)
    installed = srv.script("install", timeout=900)
    if installed.returncode != 0:
        pytest.skip(
            "ArcadeDB (PyPI arcadedb-embedded) could not be installed by scripts/arcadedb.sh, so there is no "
            f"Bolt server to test against (no network to PyPI?): {(installed.stdout + installed.stderr)[-600:]}"
        )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def db(server: Server) -> Neo4jSettings:
    """The session's server with an empty database."""
    _cypher(server.settings, "MATCH (n) DETACH DELETE n")
    return server.settings


def _cypher(settings: Neo4jSettings, query: str, **params) -> list[dict]:
    with neo4j.GraphDatabase.driver(settings.uri, auth=(settings.user, settings.password)) as d:
        records, _, _ = d.execute_query(query, params, database_=settings.database)
    return [r.data() for r in records]


# --------------------------------------------------------------------- graphs
HOSTILE = [
    "x'}) DETACH DELETE n //",
    "`; MATCH (n) DETACH DELETE n; //",
    "{id: 'u1'}",
    "$rows",
    'a"b\\c',
    "line\nbreak",
    "ünï 日本",
    " ",
    "MERGE (m:Pwned) RETURN m",
    "row.id}) SET n.pwned = true WITH n MATCH (m) DETACH DELETE m //",
]


def awkward_graph() -> KnowledgeGraph:
    """Hostile ids and text, every kind of attribute, parallel edges, a self-loop, empty types, features."""
    node_ids = {
        "user": ["u1", HOSTILE[0], HOSTILE[1], "Ωmega"],
        "item": ["i1", HOSTILE[2], HOSTILE[3], HOSTILE[4], HOSTILE[5], HOSTILE[6], HOSTILE[7]],
        "tag": [HOSTILE[8], HOSTILE[9]],
        "item_genre": [],
    }
    node_attrs = {
        "user": {"age": [31, None, 25, np.int64(40)], "nothing": [None] * 4},
        "item": {
            "title": [HOSTILE[9], "Bêta", None, "日本の映画", "", 'say "hi"\n', HOSTILE[0]],
            "genres": [("Drama", "Comedy"), ["Drama"], [], None, ("Sci-Fi",), ["a", "b"], [HOSTILE[1]]],
            "year": [1990, 1991, None, 1993, 1994, 2000, 2001],
            "score": [0.1234567890123457, 1 / 3, None, 2.0, -0.0, 1e300, 5e-324],
            "meta": [{"k": [1, 2]}, None, {}, None, None, None, {"n": None, HOSTILE[2]: [1, "x"]}],
            "flag": [True, False, None, True, True, False, True],
            "odd `name} {x}": ["a", None, None, None, None, None, "b"],
        },
        "tag": {},
    }

    def store(pairs, weights, **attrs):
        ei = np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T.copy()
        return EdgeStore(ei, np.asarray(weights, dtype=np.float32), dict(attrs))

    edges = {
        ("user", "interacted", "item"): store(
            [(0, 0), (0, 0), (0, 1), (1, 2), (2, 3), (3, 6), (0, 0)],
            [5.0, 0.1, 3.0, 2.5, 1 / 3, 4.0, 5.0],
            timestamp=np.asarray([10, 20, 30, 2**40, -5, 0, 10], dtype=np.int64),
            count=np.asarray([1, 2, 1, 3, 1, 1, 1], dtype=np.float32) / 3,
            pos=np.arange(14, dtype=np.float32).reshape(7, 2),
            note=np.asarray([HOSTILE[0], "w", "x", "", HOSTILE[4], "y", "z"], dtype=object),
        ),
        ("item", "tagged_with", "tag"): store([(0, 0), (1, 0), (3, 1)], [1.0, 2.0, 1.0]),
        ("item", "similar_to", "item"): store([(0, 0), (0, 1), (0, 1), (4, 5), (6, 2)], [1.0, 0.7, 0.9, 0.25, 0.125]),
        ("item", "has_genre", "item_genre"): store([], []),
        ("user", "follows", "user"): store([(0, 1), (1, 0), (2, 2)], [1.0, 1.0, 1.0]),
    }
    rng = np.random.default_rng(0)
    text = rng.standard_normal((7, 4)).astype(np.float32)
    mask = np.asarray([True, True, False, True, False, True, True])
    text[~mask] = 0.0
    report = BuildReport(
        source="hand-made " + HOSTILE[0],
        nodes={t: len(v) for t, v in node_ids.items()},
        edges={"user__interacted__item": 7},
        dropped=[{"stage": "X", "reason": "why", "count": 2, "examples": ["a", HOSTILE[1]]}],
        input_rows={"interactions": 9},
        seconds=0.125,
    )
    recipe = [{"builder": "Hand", "settings": {"alpha": 0.5, "names": ["a", HOSTILE[3]], "none": None}}]
    return KnowledgeGraph(
        node_ids,
        edges,
        node_attrs=node_attrs,
        features={"item": {"text": text, "image": rng.standard_normal((7, 2)).astype(np.float16)}},
        feature_masks={"item": {"text": mask}},
        report=report,
        recipe=recipe,
    )


def assert_identical(back: KnowledgeGraph, kg: KnowledgeGraph) -> None:
    """``equals`` with report and recipe, plus what it does not look at: order, dtypes, masks."""
    assert back.diff(kg, check_report=True) == []
    assert back.node_types == kg.node_types and back.edge_types == kg.edge_types
    assert back.node_ids == kg.node_ids
    for et, e in kg.edges.items():
        f = back.edges[et]
        np.testing.assert_array_equal(f.edge_index, e.edge_index)  # order kept, not only the multiset
        assert f.edge_index.dtype == np.int64 and f.edge_weight.dtype == e.edge_weight.dtype
        np.testing.assert_array_equal(f.edge_weight, e.edge_weight)
        for k, v in e.attrs.items():
            assert f.attrs[k].dtype == v.dtype and f.attrs[k].shape == v.shape, (et, k)
            assert f.attrs[k].tolist() == v.tolist()
    for t, slots in kg.features.items():
        for n, arr in slots.items():
            assert back.features[t][n].dtype == arr.dtype
            np.testing.assert_array_equal(back.features[t][n], arr)
    for t, slots in kg.feature_masks.items():
        for n, m in slots.items():
            np.testing.assert_array_equal(back.feature_masks[t][n], m)


def expected_counts(kg: KnowledgeGraph, *, recs: int = 0, expl: int = 0, steps: int = 0) -> dict:
    nodes = {neo4j_db.node_label(t): kg.num_nodes(t) for t in kg.node_types if kg.num_nodes(t)}
    nodes["GraphRecMeta"] = 1
    if expl:
        nodes["Explanation"] = expl
    rels: dict[str, int] = {}
    for (_, r, _), e in kg.edges.items():
        if e.num_edges:
            rels[r.upper()] = rels.get(r.upper(), 0) + e.num_edges
    if recs:
        rels["RECOMMENDED"] = recs
    if expl:
        rels.update(HAS_EXPLANATION=expl, EXPLAINS=expl, PATH_NODE=steps)
    return {"nodes": dict(sorted(nodes.items())), "relationships": dict(sorted(rels.items()))}


def synthetic_tables(kg: KnowledgeGraph, *, k: int = 3, seed: int = 0) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Embeddings, top-k recommendations and one explanation path per recommendation, made up from the graph."""
    rng = np.random.default_rng(seed)
    emb = {t: rng.standard_normal((kg.num_nodes(t), 5)).astype(np.float32) for t in ("user", "item")}
    users, items = kg.node_ids["user"], kg.node_ids["item"]
    rows, paths = [], []
    inter = kg.edges[("user", "interacted", "item")].edge_index
    for u, user in enumerate(users):
        picks = rng.choice(len(items), size=k, replace=False)
        seen = inter[1, inter[0] == u]
        for rank, i in enumerate(picks, start=1):
            rows.append((user, items[i], float(1.0 / rank), rank, "made-up"))
            via = items[seen[0]] if len(seen) else items[(i + 1) % len(items)]
            p = GraphPath(
                (NodeRef("user", user), NodeRef("item", via), NodeRef("item", items[i])),
                ("interacted", "similar"),
                (True, True),
                0.5 / rank,
            )
            paths.append((user, items[i], 1, 0.5 / rank, json.dumps(p.to_dict())))
    recs = pd.DataFrame(rows, columns=["user_id", "item_id", "score", "rank", "model"])
    expl = pd.DataFrame(paths, columns=["user_id", "item_id", "rank", "contribution", "path"])
    return emb, recs, expl


# --------------------------------------------------------------------- round trip and idempotence
def test_round_trip_is_identical(db: Neo4jSettings) -> None:
    kg = awkward_graph()
    report = write_neo4j(kg, db)
    assert report.nodes == {"User": 4, "Item": 7, "Tag": 2, "ItemGenre": 0}
    assert report.relationships == {"INTERACTED": 7, "TAGGED_WITH": 3, "SIMILAR_TO": 5, "HAS_GENRE": 0, "FOLLOWS": 3}
    assert count_neo4j(db) == expected_counts(kg)
    assert_identical(read_neo4j(db), kg)
    # what Cypher users see: one label per type, typed relationships with weights, verbatim values
    rows = _cypher(
        db,
        "MATCH (u:User {id: $u})-[r:INTERACTED]->(i:Item {id: $i}) RETURN r.weight AS w, r.idx AS idx, "
        "r.timestamp AS ts, i.title AS title ORDER BY idx",
        u="u1",
        i="i1",
    )
    assert [(r["w"], r["idx"], r["ts"]) for r in rows] == [(5.0, 0, 10), (np.float32(0.1).item(), 1, 20), (5.0, 6, 10)]
    assert rows[0]["title"] == HOSTILE[9]


def test_a_hand_edited_value_that_does_not_fit_its_dtype_is_named_on_reading(db: Neo4jSettings) -> None:
    kg = awkward_graph()
    write_neo4j(kg, db)
    _cypher(db, "MATCH ()-[r:INTERACTED {idx: 0}]->() SET r.timestamp = 1.5")
    with pytest.raises(SchemaError, match=r"'timestamp' of INTERACTED relationship 0 is 1.5, which does not fit int64"):
        read_neo4j(db)
    _cypher(db, "MATCH ()-[r:INTERACTED {idx: 0}]->() SET r.timestamp = 10, r.weight = 'heavy'")
    with pytest.raises(
        SchemaError, match=r"weight of INTERACTED relationship 0 is 'heavy', which does not fit float32"
    ):
        read_neo4j(db)


def test_writing_twice_leaves_identical_counts(db: Neo4jSettings) -> None:
    kg, _ = synthetic_graph()
    emb, recs, expl = synthetic_tables(kg)
    steps = 3 * len(expl)
    first = write_neo4j(kg, db, embeddings=emb, recommendations=recs, explanations=expl)
    counts = count_neo4j(db)
    assert counts == expected_counts(kg, recs=len(recs), expl=len(expl), steps=steps)
    second = write_neo4j(kg, db, embeddings=emb, recommendations=recs, explanations=expl)
    assert count_neo4j(db) == counts
    timing = {"seconds": 0, "batches": 0, "phase_seconds": {}}
    assert second.to_dict() | timing == first.to_dict() | timing
    assert set(first.phase_seconds) == {
        "schema",
        "nodes",
        "relationships",
        "recommendations",
        "explanations",
    }
    assert_identical(read_neo4j(db), kg)
    # embeddings are list properties, exact (float32 values survive float64)
    user = kg.node_ids["user"][7]
    got = _cypher(db, "MATCH (u:User {id: $id}) RETURN u.embedding AS e", id=user)[0]["e"]
    assert np.asarray(got, dtype=np.float32).tolist() == emb["user"][7].tolist()


def test_new_recommendations_replace_old_ones(db: Neo4jSettings) -> None:
    kg, _ = synthetic_graph()
    _, recs, expl = synthetic_tables(kg, seed=0)
    _, recs2, expl2 = synthetic_tables(kg, seed=1)  # other items, same users and model
    write_neo4j(kg, db, recommendations=recs, explanations=expl)
    write_neo4j(kg, db, recommendations=recs2, explanations=expl2)
    assert count_neo4j(db) == expected_counts(kg, recs=len(recs2), expl=len(expl2), steps=3 * len(expl2))
    user = kg.node_ids["user"][0]
    with Neo4jStore(db) as store:
        got = store.recommendations(user)
        assert [(r.item_id, r.rank) for r in got] == [
            (i, k) for i, k in recs2[recs2.user_id == user][["item_id", "rank"]].itertuples(index=False)
        ]
        first = recs2[recs2.user_id == user].iloc[0]
        why = store.why(user, first.item_id)
        mine = expl2[(expl2.user_id == user) & (expl2.item_id == first.item_id)]
        assert [p.to_dict() for p in why] == [json.loads(mine.path.iloc[0])]


def test_an_earlier_different_graph_is_replaced_and_other_data_kept(db: Neo4jSettings) -> None:
    _cypher(db, "CREATE (:Sentinel {id: 'keep'})-[:MINE]->(:Sentinel {id: 'also'})")
    big, _ = synthetic_graph(seed=3)  # ids u0.., i0..: u1 and i1 are in the small graph too
    emb, recs, expl = synthetic_tables(big)
    write_neo4j(big, db, embeddings=emb, recommendations=recs, explanations=expl)
    small = awkward_graph()
    report = write_neo4j(small, db)
    assert report.removed_nodes == sum(big.num_nodes(t) for t in big.node_types) - 2  # all but u1 and i1
    assert report.removed_relationships > 0  # types small lacks between labels it keeps (KG relations)
    assert_identical(read_neo4j(db), small)
    # what the explorer would traverse: exactly the small graph, plus what survives of the old outputs
    users, items = set(small.node_ids["user"]), set(small.node_ids["item"])
    kept_recs = recs[recs.user_id.isin(users) & recs.item_id.isin(items)]
    kept_expl = [
        p for p in expl.path if {n[1] for n in json.loads(p)["nodes"]} <= users | items
    ]  # every node of a kept path is a user or item of the small graph
    want = expected_counts(small, recs=len(kept_recs), expl=len(kept_expl), steps=3 * len(kept_expl))
    want["nodes"]["Sentinel"] = 2
    want["relationships"]["MINE"] = 1
    got = count_neo4j(db)
    assert got == {k: dict(sorted(v.items())) for k, v in want.items()}
    assert _cypher(db, "MATCH (u:User {id: 'u1'}) RETURN u.embedding AS e") == [{"e": None}]  # the old model's
    # clear=True deletes every graph-rec label first and leaves the same graph; clear_neo4j deletes it all
    write_neo4j(small, db, clear=True)
    assert_identical(read_neo4j(db), small)
    assert clear_neo4j(db) == sum(small.num_nodes(t) for t in small.node_types) + 1
    assert count_neo4j(db) == {"nodes": {"Sentinel": 2}, "relationships": {"MINE": 1}}


def _without(kg: KnowledgeGraph, *, relation: str, attr: str) -> KnowledgeGraph:
    """``kg`` less one relation, one item attribute, and its features."""
    return KnowledgeGraph(
        kg.node_ids,
        {et: e for et, e in kg.edges.items() if et[1] != relation},
        node_attrs={t: {k: v for k, v in a.items() if k != attr} for t, a in kg.node_attrs.items()},
        report=kg.report,
        recipe=kg.recipe,
    )


def test_rewriting_drops_properties_and_relationship_types_the_graph_no_longer_has(db: Neo4jSettings) -> None:
    kg = awkward_graph()
    write_neo4j(kg, db, embeddings={"item": np.ones((7, 3), dtype=np.float32)})
    smaller = _without(kg, relation="follows", attr="title")
    report = write_neo4j(smaller, db)
    assert (report.removed_nodes, report.removed_relationships) == (0, 3)
    assert count_neo4j(db) == expected_counts(smaller)
    keys = {r["k"] for r in _cypher(db, "MATCH (n:Item) UNWIND keys(n) AS k RETURN DISTINCT k AS k")}
    assert keys and not keys & {"embedding", "title", "feature_text", "feature_mask_text"}
    assert_identical(read_neo4j(db), smaller)
    again = write_neo4j(smaller, db)  # nothing left to remove
    assert (again.removed_nodes, again.removed_relationships) == (0, 0)


def test_a_label_new_to_the_database_leaves_another_writers_nodes_alone(db: Neo4jSettings) -> None:
    kg = awkward_graph()
    no_tags = KnowledgeGraph(
        {t: ids for t, ids in kg.node_ids.items() if t != "tag"},
        {et: e for et, e in kg.edges.items() if "tag" not in (et[0], et[2])},
        node_attrs={t: a for t, a in kg.node_attrs.items() if t != "tag"},
    )
    write_neo4j(no_tags, db)
    _cypher(db, "CREATE (:Tag {id: 'theirs', note: 'not graph-rec'})")  # Tag: not a label graph-rec wrote
    report = write_neo4j(kg, db)  # now the graph has tags
    assert report.removed_nodes == 0
    assert _cypher(db, "MATCH (t:Tag {id: 'theirs'}) RETURN t.note AS note") == [{"note": "not graph-rec"}]


def test_a_write_stopped_before_removing_stale_types_removes_them_when_run_again(
    db: Neo4jSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    kg = awkward_graph()
    write_neo4j(kg, db)
    smaller = _without(kg, relation="follows", attr="title")

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(neo4j_db, "_remove_stale", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_neo4j(smaller, db)  # the metadata already holds the new schema, without FOLLOWS
    monkeypatch.undo()
    assert count_neo4j(db)["relationships"]["FOLLOWS"] == 3
    write_neo4j(smaller, db)
    assert count_neo4j(db) == expected_counts(smaller)
    assert_identical(read_neo4j(db), smaller)


def test_a_clear_stopped_half_way_is_finished_by_any_rerun(db: Neo4jSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    big, _ = synthetic_graph(seed=3)  # labels and types the small graph does not have (its KG)
    write_neo4j(big, db)
    small = awkward_graph()
    real, calls = neo4j_db._delete_label, {"n": 0}

    def stopped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # the process is stopped as the clear begins: all of the old graph is left
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(neo4j_db, "_delete_label", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_neo4j(small, db, clear=True)
    monkeypatch.undo()
    assert count_neo4j(db) != expected_counts(small)
    write_neo4j(small, db)  # without clear: the metadata still names the old graph's labels and types
    assert count_neo4j(db) == expected_counts(small)
    assert_identical(read_neo4j(db), small)


def test_an_interrupted_write_completes_when_run_again(db: Neo4jSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    kg, _ = synthetic_graph()
    emb, recs, expl = synthetic_tables(kg)
    settings = db.replace(batch_size=40)
    real = neo4j_db._execute
    calls = {"n": 0}

    def interrupted(session, work, *args):
        calls["n"] += 1
        if calls["n"] == 12:  # the process is stopped between two batches, in the middle of the edges
            raise KeyboardInterrupt
        return real(session, work, *args)

    monkeypatch.setattr(neo4j_db, "_execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_neo4j(kg, settings, embeddings=emb, recommendations=recs, explanations=expl)
    monkeypatch.setattr(neo4j_db, "_execute", real)
    partial = count_neo4j(db)
    full = expected_counts(kg, recs=len(recs), expl=len(expl), steps=3 * len(expl))
    assert partial != full and sum(partial["relationships"].values()) < sum(full["relationships"].values())
    with pytest.raises(SchemaError, match="did not complete"):
        read_neo4j(db)
    write_neo4j(kg, settings, embeddings=emb, recommendations=recs, explanations=expl)
    assert count_neo4j(db) == full
    assert_identical(read_neo4j(db), kg)


# --------------------------------------------------------------------- hostile data and names
def test_hostile_ids_and_text_are_stored_verbatim_and_never_run(db: Neo4jSettings) -> None:
    _cypher(db, "CREATE (:Sentinel {id: 'keep'})")
    kg = awkward_graph()
    write_neo4j(kg, db)
    assert _cypher(db, "MATCH (s:Sentinel) RETURN s.id AS id") == [{"id": "keep"}]
    assert _cypher(db, "MATCH (n) WHERE n.pwned IS NOT NULL RETURN count(n) AS c") == [{"c": 0}]
    labels = {r["label"] for r in _cypher(db, "MATCH (n) UNWIND labels(n) AS label RETURN DISTINCT label")}
    assert labels == {"User", "Item", "Tag", "GraphRecMeta", "Sentinel"}
    stored = {r["id"] for r in _cypher(db, "MATCH (n) WHERE n:User OR n:Item OR n:Tag RETURN n.id AS id")}
    assert set(HOSTILE) <= stored
    title = _cypher(db, "MATCH (i:Item {id: $id}) RETURN i.title AS t, i.genres AS g", id=HOSTILE[7])
    assert title == [{"t": HOSTILE[0], "g": [HOSTILE[1]]}]
    odd = _cypher(db, "MATCH (i:Item {id: 'i1'}) RETURN properties(i) AS p")[0]["p"]
    assert odd["odd `name} {x}"] == "a" and odd["title"] == HOSTILE[9]
    assert odd["meta"] == json.dumps({"k": [1, 2]})  # a column Neo4j cannot hold as is: JSON text
    with Neo4jStore(db) as store:
        assert store.node(NodeRef("item", HOSTILE[7]))["genres"] == [HOSTILE[1]]
        assert store.node(NodeRef("item", "i1"))["meta"] == {"k": [1, 2]}
        assert [n.node.id for n in store.neighbours(NodeRef("tag", HOSTILE[8]))] == ["i1", HOSTILE[2]]
        # an id that looks like a query parameter ("$rows") is read back as itself
        assert store.node(NodeRef("item", HOSTILE[3])) is not None
        assert HOSTILE[0] in {n.node.id for n in store.neighbours(NodeRef("item", HOSTILE[3]))}
    assert_identical(read_neo4j(db), kg)


def test_labels_and_types_are_validated_before_anything_is_written(db: Neo4jSettings) -> None:
    bad_type = KnowledgeGraph({"a_1": ["x"]}, {})
    with pytest.raises(SchemaError, match="'a_1'"):
        write_neo4j(bad_type, db)
    reserved = KnowledgeGraph(
        {"user": ["u"], "item": ["i"]},
        {("user", "recommended", "item"): EdgeStore(np.zeros((2, 1), np.int64), np.ones(1, np.float32))},
    )
    with pytest.raises(SchemaError, match="'recommended'"):
        write_neo4j(reserved, db)
    kg, _ = synthetic_graph()
    _, recs, expl = synthetic_tables(kg)
    with pytest.raises(UnknownIdError) as err:
        write_neo4j(kg, db, recommendations=recs.assign(item_id=["nope"] + recs.item_id.tolist()[1:]))
    assert err.value.ids == ["nope"]
    with pytest.raises(DataError, match="path"):
        write_neo4j(kg, db, explanations=expl.assign(path="{not json"))
    assert count_neo4j(db) == {"nodes": {}, "relationships": {}}


# --------------------------------------------------------------------- faults
def test_wrong_password_names_the_uri_never_the_password(server: Server) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(8)
    settings = server.settings.replace(password=wrong)
    with pytest.raises(ExportError) as err:
        write_neo4j(awkward_graph(), settings)
    text = str(err.value)
    assert server.settings.uri in text and "wrong user or password" in text
    assert wrong not in text and server.settings.password not in text and wrong not in repr(settings)
    assert isinstance(err.value.__cause__, neo4j.exceptions.AuthError)
    with pytest.raises(ExportError, match="refused user 'root'"):
        Neo4jStore(settings)


def test_server_not_running_names_the_uri(tmp_path: Path) -> None:
    settings = Neo4jSettings(
        uri=f"bolt://127.0.0.1:{_free_port()}", user="root", password="s3cret-pw", connection_timeout=2.0
    )
    t0 = time.perf_counter()
    for call in (lambda: write_neo4j(awkward_graph(), settings), lambda: read_neo4j(settings)):
        with pytest.raises(ExportError) as err:
            call()
        assert settings.uri in str(err.value) and "is it running?" in str(err.value)
        assert "s3cret-pw" not in str(err.value)
        assert isinstance(err.value.__cause__, neo4j.exceptions.ServiceUnavailable)
    assert time.perf_counter() - t0 < 30


def test_server_stopped_mid_write_then_rerun_completes(
    server: Server, db: Neo4jSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    kg, _ = synthetic_graph()
    settings = db.replace(batch_size=40, max_retry_time=3.0, connection_timeout=3.0)
    real = neo4j_db._execute
    calls = {"n": 0}

    def stopping(session, work, *args):
        calls["n"] += 1
        if calls["n"] == 10:  # the server goes away while write_neo4j is running
            server.stop()
        return real(session, work, *args)

    monkeypatch.setattr(neo4j_db, "_execute", stopping)
    try:
        t0 = time.perf_counter()
        with pytest.raises(ExportError) as err:
            write_neo4j(kg, settings)
        assert time.perf_counter() - t0 < 60
    finally:
        monkeypatch.setattr(neo4j_db, "_execute", real)
        server.start()  # stop/start keeps the data
    text = str(err.value)
    assert settings.uri in text and settings.password not in text and "run again" in text
    assert isinstance(err.value.__cause__, neo4j.exceptions.DriverError | neo4j.exceptions.Neo4jError)
    partial = count_neo4j(db)
    assert sum(partial["nodes"].values()) > 0 and partial != expected_counts(kg)
    write_neo4j(kg, settings)
    assert count_neo4j(db) == expected_counts(kg)
    assert_identical(read_neo4j(db), kg)


# --------------------------------------------------------------------- the store contract
@pytest.fixture(scope="module")
def contract_store(server: Server) -> Iterator[Neo4jStore]:
    _cypher(server.settings, "MATCH (n) DETACH DELETE n")
    write_neo4j(
        contract_graph(),
        server.settings,
        recommendations=contract_recommendations(),
        explanations=contract_explanations(),
    )
    store = Neo4jStore(server.settings)
    yield store
    store.close()


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_store_contract(contract_store: Neo4jStore, check) -> None:
    check(contract_store)


def test_check_store_passes(contract_store: Neo4jStore) -> None:
    check_store(contract_store)


def test_store_ignores_another_writers_data(db: Neo4jSettings) -> None:
    write_neo4j(contract_graph(), db, recommendations=contract_recommendations(), explanations=contract_explanations())
    # another application's data next to the graph: a node of its own label linked to graph nodes,
    # and a relationship of its own type between graph nodes
    _cypher(
        db,
        "MATCH (u:User {id: 'u1'}), (i:Item {id: 'i2'}) CREATE (u)-[:LIVES_IN]->(c:City {id: 'paris'})<-[:SOLD_IN]-(i)",
    )
    _cypher(db, "MATCH (a:User {id: 'u3'}), (b:User {id: 'u1'}) CREATE (a)-[:KNOWS {weight: 1.0}]->(b)")
    with Neo4jStore(db) as store:
        check_store(store)  # every contract answer as if the other data were not there


# --------------------------------------------------------------------- the command line
def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="graph-rec")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_export_read_and_explore_a_saved_recommender(
    db: Neo4jSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from graph_rec.recommender import Recommender

    # a small world: the export explains every user's first recommendation
    tables = make_synthetic_world(num_users=20, num_items=60, interactions_per_user=10, seed=5, with_images=False)
    sp = split_random(tables, ratios=(0.8, 0.1, 0.1), seed=0)
    train_tables = sp.train_tables(tables)
    kg = build_graph(train_tables, standard_builders(train_tables))
    train = {"epochs": 2, "batch_size": 256, "lr": 0.02, "eval_every": 2, "loss": "softmax", "num_negatives": 32}
    settings = {"embedding_dim": 8, "num_layers": 2, "relation_mode": "none", "score": "cosine"}
    rec = Recommender.fit(kg, split=sp, settings=settings, train=train)
    rec.save(tmp_path / "model")
    for name in ("NEO4J_URI", "NEO4J_USER", "NEO4J_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NEO4J_PASSWORD", db.password)
    conn = ["--uri", db.uri, "--user", db.user, "--database", db.database]
    assert _cli(["neo4j", "export", str(tmp_path / "model"), "--k", "5", "--explain-top", "1", *conn]) == 0
    out = capsys.readouterr().out
    assert "wrote recommender" in out and db.password not in out
    user = rec.user_ids[3]
    expected = rec.recommend(user, k=5)

    # the password on standard input instead of the environment
    monkeypatch.delenv("NEO4J_PASSWORD")
    monkeypatch.setattr("sys.stdin", io.StringIO(db.password + "\n"))
    assert _cli(["neo4j", "explore", "recommendations", user, "--json", "--password-stdin", *conn]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [r["item_id"] for r in got] == list(expected.item_ids)
    assert [r["rank"] for r in got] == [1, 2, 3, 4, 5]

    monkeypatch.setenv("NEO4J_PASSWORD", db.password)
    monkeypatch.setenv("NEO4J_URI", db.uri)
    monkeypatch.setenv("NEO4J_USER", db.user)
    monkeypatch.setenv("NEO4J_DATABASE", db.database)
    assert _cli(["neo4j", "explore", "why", user, expected.item_ids[0], "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    stored = rec.explain(user, expected.item_ids[0], max_paths=3).paths
    assert [p["nodes"] for p in paths] == [[[n.type, n.id] for n in p.nodes] for p in stored]
    assert _cli(["neo4j", "explore", "neighbours", f"user:{user}", "--relation", "interacted"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == int((kg.edges[("user", "interacted", "item")].edge_index[0] == 3).sum())
    assert all(line.startswith("-> interacted") for line in lines)

    assert _cli(["neo4j", "read", str(tmp_path / "back")]) == 0
    assert_identical(KnowledgeGraph.load(tmp_path / "back"), rec.graph)
    # embeddings of every node type the model propagates
    emb, _, _ = rec.export_tables(k=1, explain_top=0)
    row = _cypher(db, "MATCH (u:User {id: $id}) RETURN u.embedding AS e", id=user)[0]["e"]
    assert np.asarray(row, dtype=np.float32).tolist() == emb["user"][3].tolist()
