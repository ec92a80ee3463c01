"""Neo4j export without a server: names, settings, value encodings, batching, errors and argument checks.

Everything here is checked before :func:`write_neo4j` opens a connection (the settings point at
a port where nothing listens, so reaching the network would raise ExportError instead). The
round trips against a real Bolt server are in tests/integration/test_neo4j.py.
"""

from __future__ import annotations

import argparse
import io
import json
import socket

import numpy as np
import pandas as pd
import pytest

from graph_rec.cli_neo4j import add_parsers, cmd_neo4j_explore, cmd_neo4j_export, parse_ref, settings_from_args
from graph_rec.explore.types import NodeRef
from graph_rec.explore.types import Path as GraphPath
from kg_builders._batches import bounded_batches
from kg_builders.errors import ConfigError, DataError, ExportError, SchemaError, UnknownIdError
from kg_builders.export import neo4j_db
from kg_builders.export.neo4j_db import (
    Neo4jSettings,
    driver_error,
    node_label,
    node_type_of,
    quote,
    relation_of,
    relationship_type,
    write_neo4j,
)
from kg_builders.graph import EdgeStore, KnowledgeGraph

neo4j = pytest.importorskip("neo4j")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NOWHERE = Neo4jSettings(uri=f"bolt://127.0.0.1:{_closed_port()}", password="top-secret-pw", connection_timeout=0.5)


# --------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("node_type", "label"),
    [
        ("user", "User"),
        ("tag", "Tag"),
        ("item", "Item"),
        ("item_genre", "ItemGenre"),
        ("film_film_director", "FilmFilmDirector"),
        ("item_v2", "ItemV2"),
        ("user2_item", "User2Item"),
    ],
)
def test_node_types_map_to_camel_case_labels_and_back(node_type: str, label: str) -> None:
    assert node_label(node_type) == label
    assert node_type_of(label) == node_type


@pytest.mark.parametrize(
    "bad", ["a_1", "a__b", "a_", "User", "user-x", "", "x`y", "item genre", "1item", None, "user\n"]
)
def test_node_types_without_a_reversible_label_are_refused_by_name(bad) -> None:
    with pytest.raises(SchemaError) as err:
        node_label(bad)
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize(("node_type", "label"), [("explanation", "Explanation"), ("graph_rec_meta", "GraphRecMeta")])
def test_labels_graph_rec_uses_itself_are_reserved(node_type: str, label: str) -> None:
    with pytest.raises(SchemaError, match=f"'{label}'.*reserves"):
        node_label(node_type)


def test_relations_map_to_upper_case_types_and_back() -> None:
    for relation in ("tagged_with", "interacted", "film_film_director", "r_2"):
        assert relationship_type(relation) == relation.upper()
        assert relation_of(relation.upper()) == relation
    for bad in ("Tagged", "a-b", "x`) DETACH DELETE n //", "", "rev rel", "likes\n"):
        with pytest.raises(SchemaError, match="relation"):
            relationship_type(bad)
    for reserved in ("recommended", "has_explanation", "explains", "path_node"):
        with pytest.raises(SchemaError, match="reserves"):
            relationship_type(reserved)
    for bad in ("TAGGED-WITH", "TAGGED\n"):
        with pytest.raises(SchemaError):
            relation_of(bad)


def test_quote_checks_before_quoting() -> None:
    assert quote("User") == "`User`"
    assert quote("TAGGED_WITH") == "`TAGGED_WITH`"
    for bad in ("Us`er", "a b", "", "x)-[r]-(y", "User`) DETACH DELETE n //", "User\n", "TAGGED\n"):
        with pytest.raises(SchemaError):
            quote(bad)


# --------------------------------------------------------------------- settings
def test_settings_never_show_the_password() -> None:
    s = Neo4jSettings(uri="bolt://db.example:7687", user="alice", password="hunter2-secret", database="graph")
    assert "hunter2-secret" not in repr(s) and "hunter2-secret" not in str(s)
    assert "alice" in repr(s) and "graph" in repr(s)
    assert s.replace(batch_size=5).password == "hunter2-secret"
    assert Neo4jSettings().database == "neo4j"  # a real Neo4j's default; ArcadeDB serves "graph"


@pytest.mark.parametrize(
    "changes",
    [
        {"uri": "http://localhost:7474"},
        {"uri": "bolt://"},
        {"batch_size": 0},
        {"batch_size": True},
        {"batch_size": "10"},
        {"max_batch_bytes": -1},
        {"connection_timeout": 0},
        {"max_retry_time": "30"},
        {"database": ""},
        {"password": None},
    ],
)
def test_bad_settings_are_config_errors(changes: dict) -> None:
    with pytest.raises(ConfigError):
        Neo4jSettings(**changes)


@pytest.mark.parametrize(
    "uri",
    ["bolt://bob:pa55word-xyz@localhost:7687", "bolt:bob:pa55word-xyz@db.example.com:7687", "bolt:///a:pa55word-xyz@h"],
)
def test_credentials_in_the_uri_are_refused_without_echoing_them(uri: str) -> None:
    with pytest.raises(ConfigError, match="must not contain credentials") as err:
        Neo4jSettings(uri=uri)
    assert "pa55word-xyz" not in str(err.value)


@pytest.mark.parametrize("uri", ["bolt://[::1", "bolt://localhost:abc", "bolt://localhost:99999"])
def test_a_malformed_uri_is_a_config_error_naming_it(uri: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a valid URL"):
        Neo4jSettings(uri=uri)


def test_from_dict_rejects_unknown_keys_with_the_valid_ones() -> None:
    s = Neo4jSettings.from_dict({"uri": "neo4j://h:1", "database": "movies"})
    assert (s.uri, s.database) == ("neo4j://h:1", "movies")
    with pytest.raises(ConfigError, match=r"\['pasword'\].*'password'"):
        Neo4jSettings.from_dict({"pasword": "x"})


def test_driver_errors_name_the_uri_and_hide_the_password() -> None:
    s = Neo4jSettings(uri="bolt://127.0.0.1:9", user="root", password="s3cr3t-value")
    auth = driver_error(neo4j.exceptions.AuthError("unauthorized"), s, "writing")
    assert "bolt://127.0.0.1:9" in str(auth) and "wrong user or password" in str(auth) and "'root'" in str(auth)
    gone = driver_error(neo4j.exceptions.ServiceUnavailable("lost s3cr3t-value"), s, "writing")
    assert "is it running?" in str(gone) and "s3cr3t-value" not in str(gone) and "withheld" in str(gone)
    # nothing is masked inside other text, so nothing shows where a short password matched
    same = Neo4jSettings(uri="bolt://localhost:7687", user="neo4j", password="neo4j")
    assert "refused user 'neo4j'" in str(driver_error(neo4j.exceptions.AuthError("unauthorized"), same, "connecting"))
    short = Neo4jSettings(uri="bolt://127.0.0.1:17687", user="root", password="7")
    msg = str(driver_error(neo4j.exceptions.ServiceUnavailable("Couldn't connect"), short, "connecting"))
    assert "bolt://127.0.0.1:17687" in msg and "Couldn't connect" in msg and "*" not in msg
    other = driver_error(neo4j.exceptions.CypherSyntaxError("bad"), s, "reading")
    assert isinstance(other, ExportError) and "CypherSyntaxError" in str(other) and "'neo4j'" in str(other)


def test_a_driver_error_holding_the_password_is_not_chained_into_tracebacks() -> None:
    import traceback

    from kg_builders.export.neo4j_db import driver_errors

    s = Neo4jSettings(uri="bolt://127.0.0.1:9", user="root", password="s3cr3t-value")
    for exc in (
        neo4j.exceptions.ServiceUnavailable("lost s3cr3t-value"),
        neo4j.exceptions.ClientError("'s3cr3t-value'"),
    ):
        with pytest.raises(ExportError, match="withheld") as err, driver_errors(s, "writing"):
            raise exc
        assert err.value.__cause__ is None and err.value.__suppress_context__
        assert "s3cr3t-value" not in "".join(traceback.format_exception(err.value))
    # a message without the password keeps the driver's error as the cause, for debugging
    with pytest.raises(ExportError) as err, driver_errors(s, "writing"):
        raise neo4j.exceptions.ServiceUnavailable("connection refused")
    assert isinstance(err.value.__cause__, neo4j.exceptions.ServiceUnavailable)


def test_attributes_json_cannot_encode_are_refused_before_connecting() -> None:
    import datetime

    nowhere = Neo4jSettings(uri="bolt://127.0.0.1:9", user="root", password="x", connection_timeout=1)
    one = EdgeStore(np.array([[0], [0]], dtype=np.int64), np.ones(1, dtype=np.float32))
    kg = KnowledgeGraph(
        {"user": ["u1"], "item": ["i1", "i2"]},
        {("user", "interacted", "item"): one},
        node_attrs={"item": {"released": [{"on": "1995"}, datetime.date(1995, 1, 1)]}},
    )
    with pytest.raises(SchemaError, match=r"node attribute 'released' of item 'i2' is a date, which neither"):
        write_neo4j(kg, nowhere)  # (not an ExportError: nothing was sent, no server was asked)
    edges = EdgeStore(
        np.array([[0, 0], [0, 1]], dtype=np.int64),
        np.ones(2, dtype=np.float32),
        attrs={"note": np.array([{"a": 1}, {1, 2}], dtype=object)},
    )
    kg = KnowledgeGraph({"user": ["u1"], "item": ["i1", "i2"]}, {("user", "interacted", "item"): edges})
    with pytest.raises(SchemaError, match=r"attribute 'note' of \('user', 'interacted', 'item'\) edge 1 is a set"):
        write_neo4j(kg, nowhere)


# --------------------------------------------------------------------- encodings and batches
def test_columns_neo4j_cannot_hold_are_json_encoded() -> None:
    enc = neo4j_db._encoding
    assert enc([1, None, 2]) == "native"
    assert enc(["a", "", None]) == "native"
    assert enc([[1.5, 2.0], [], None]) == "native"
    assert enc([True, False]) == "native"
    assert enc([[[1, 2]]]) == "json"  # nested list
    assert enc([{"a": 1}]) == "json"  # map
    assert enc([[1, "a"]]) == "json"  # mixed list
    assert enc([[True, 1]]) == "json"  # booleans are not integers
    assert enc([[1, None]]) == "json"  # a list may not hold null
    assert enc([2**70]) == "json"  # beyond 64 bits
    values = [{"k": [1, 2]}, None, {}]
    assert [neo4j_db._decode(v, "json") for v in neo4j_db._encode(values, "json")] == values


def test_batches_respect_rows_and_bytes() -> None:
    rows = [{"id": f"{i:02d}"} for i in range(25)]
    size = neo4j_db._row_bytes

    def batches(max_count: int, max_size: int, items=rows):
        return list(bounded_batches(items, max_count, max_size, size))

    assert [len(b) for b in batches(10, 10**6)] == [10, 10, 5]
    assert [len(b) for b in batches(100, 3 * size(rows[0]))] == [3] * 8 + [1]
    big = [{"v": "x" * 1000}, {"v": "y"}]
    assert [len(b) for b in batches(100, 10, big)] == [1, 1]  # an oversized row goes alone
    assert [b for chunk in batches(7, 50) for b in chunk] == rows  # nothing lost or reordered


# --------------------------------------------------------------------- checks before connecting
def _graph() -> KnowledgeGraph:
    edges = {
        ("user", "interacted", "item"): EdgeStore(
            np.asarray([[0, 1], [0, 1]], dtype=np.int64), np.asarray([1.0, 2.0], dtype=np.float32)
        )
    }
    return KnowledgeGraph({"user": ["u1", "u2"], "item": ["i1", "i2"]}, edges)


def _recs(**overrides) -> pd.DataFrame:
    d = {"user_id": ["u1", "u2"], "item_id": ["i2", "i1"], "score": [0.5, 0.25], "rank": [1, 1], "model": ["m", "m"]}
    d.update(overrides)
    return pd.DataFrame(d)


def _expl(path: str | None = None) -> pd.DataFrame:
    p = GraphPath((NodeRef("user", "u1"), NodeRef("item", "i1")), ("interacted",), (True,))
    return pd.DataFrame(
        {
            "user_id": ["u1"],
            "item_id": ["i1"],
            "rank": [1],
            "contribution": [0.5],
            "path": [path or json.dumps(p.to_dict())],
        }
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"recommendations": _recs(item_id=["i2", "nope"])}, UnknownIdError, "nope"),
        ({"recommendations": _recs(user_id=["u1", "ghost"])}, UnknownIdError, "ghost"),
        ({"recommendations": _recs().drop(columns=["model"])}, SchemaError, "model"),
        ({"recommendations": _recs(user_id=["u1", "u1"], item_id=["i2", "i2"])}, DataError, "given twice"),
        ({"recommendations": _recs(rank=[0, 1])}, DataError, "rank"),
        ({"recommendations": _recs(score=["high", 1.0])}, DataError, "score"),
        ({"recommendations": [1, 2]}, ConfigError, "DataFrame"),
        ({"explanations": _expl("{not json")}, DataError, "path"),
        (
            {"explanations": _expl(json.dumps({"nodes": [["user", "u1"]], "relations": [], "forward": []}))},
            DataError,
            "n >= 2",
        ),
        (
            {
                "explanations": _expl(
                    json.dumps({"nodes": [["user", "u1"], ["planet", "x"]], "relations": ["r"], "forward": [True]})
                )
            },
            SchemaError,
            "planet",
        ),
        ({"embeddings": {"item": np.zeros((3, 4))}}, SchemaError, r"\[2, dim\]"),
        ({"embeddings": {"tag": np.zeros((2, 4))}}, SchemaError, "tag"),
    ],
)
def test_frames_and_embeddings_are_checked_before_connecting(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        write_neo4j(_graph(), NOWHERE, **kwargs)


@pytest.mark.parametrize("name", ["id", "idx", "embedding", "type", "feature_text"])
def test_attribute_names_that_clash_with_graph_rec_properties_are_refused(name: str) -> None:
    kg = KnowledgeGraph({"user": ["u1"]}, {}, node_attrs={"user": {name: [1]}})
    with pytest.raises(SchemaError, match=repr(name)):
        write_neo4j(kg, NOWHERE)
    e = EdgeStore(np.zeros((2, 1), np.int64), np.ones(1, np.float32), {"weight": np.ones(1)})
    with pytest.raises(SchemaError, match="'weight'"):
        write_neo4j(KnowledgeGraph({"user": ["u1"]}, {("user", "follows", "user"): e}), NOWHERE)


def test_an_unreachable_server_is_an_export_error_naming_the_uri() -> None:
    with pytest.raises(ExportError) as err:
        write_neo4j(_graph(), NOWHERE)
    assert NOWHERE.uri in str(err.value) and "top-secret-pw" not in str(err.value)
    assert isinstance(err.value.__cause__, neo4j.exceptions.ServiceUnavailable)


# --------------------------------------------------------------------- the command line edge
def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="graph-rec")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_connection_comes_from_flags_then_environment_then_defaults() -> None:
    env = {"NEO4J_URI": "bolt://env:1", "NEO4J_USER": "envuser", "NEO4J_PASSWORD": "env-pw", "NEO4J_DATABASE": "envdb"}
    args = _parse(["neo4j", "explore", "node", "user:u1"])
    s = settings_from_args(args, environ=env)
    assert (s.uri, s.user, s.password, s.database) == ("bolt://env:1", "envuser", "env-pw", "envdb")
    args = _parse(["neo4j", "explore", "node", "user:u1", "--uri", "bolt://flag:2", "--database", "graph"])
    s = settings_from_args(args, environ=env)
    assert (s.uri, s.user, s.database) == ("bolt://flag:2", "envuser", "graph")
    s = settings_from_args(_parse(["neo4j", "read", "out"]), environ={})
    assert (s.uri, s.user, s.password, s.database) == ("bolt://localhost:7687", "neo4j", "", "neo4j")


def test_the_password_comes_from_stdin_or_the_environment_never_a_flag(capsys) -> None:
    args = _parse(["neo4j", "export", "model", "--password-stdin", "--batch-size", "500"])
    s = settings_from_args(args, stdin=io.StringIO("from-stdin\n"), environ={"NEO4J_PASSWORD": "ignored"})
    assert s.password == "from-stdin" and s.batch_size == 500
    with pytest.raises(ConfigError, match="stdin"):
        settings_from_args(args, stdin=io.StringIO(""), environ={})
    with pytest.raises(SystemExit):
        _parse(["neo4j", "export", "model", "--password", "x"])
    assert "--password " not in capsys.readouterr().err.replace("--password-stdin", "")


def test_subcommands_reach_their_handlers_and_nodes_parse() -> None:
    assert _parse(["neo4j", "export", "m"]).func is cmd_neo4j_export
    for argv in (["why", "u", "i"], ["paths", "user:a", "item:b"], ["subgraph", "user:a", "item:b"], ["node", "x:y"]):
        assert _parse(["neo4j", "explore", *argv]).func is cmd_neo4j_explore
    assert parse_ref("entity:genre:drama") == NodeRef("entity", "genre:drama")
    assert parse_ref("item:x'}) //") == NodeRef("item", "x'}) //")
    for bad in ("item", ":x", "item:"):
        with pytest.raises(ConfigError, match="TYPE:ID"):
            parse_ref(bad)


# --------------------------------------------------------------------- against a fake driver
class _FakeSession:
    """Records every statement; answers with ``handler(query)``; refuses schema changes when told."""

    def __init__(self, log: list[str], handler, forbid_schema: bool) -> None:
        self.log, self.handler, self.forbid_schema = log, handler, forbid_schema

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def run(self, query: str, params=None, **kw):
        if self.forbid_schema and query.startswith("CREATE CONSTRAINT"):
            raise neo4j.exceptions.ClientError("Schema operations are not allowed for user")
        self.log.append(query)
        rows = self.handler(query)

        class Result(list):
            def consume(self):
                return None

            def single(self):
                return {"c": 0}

        return Result(rows)

    def execute_read(self, work, *args):
        return work(self, *args)

    execute_write = execute_read


class _FakeDriver:
    def __init__(self, log, handler, forbid_schema=False) -> None:
        self.log, self.handler, self.forbid_schema = log, handler, forbid_schema

    def session(self, **kw):
        return _FakeSession(self.log, self.handler, self.forbid_schema)

    def close(self) -> None:
        return None


def test_a_cleared_write_that_fails_is_marked_writing_before_anything_is_deleted(monkeypatch) -> None:
    from tests.store_contract import contract_graph

    log: list[str] = []
    meta = {"p": {"id": "graph", "status": "complete", "labels_written": ["User", "Item"]}}

    def handler(query: str):
        return [meta] if "RETURN properties" in query else []

    monkeypatch.setattr(neo4j_db, "open_driver", lambda s, a="": _FakeDriver(log, handler))
    neo4j_db.write_neo4j(contract_graph(), Neo4jSettings(password="pw"), clear=True)
    first_delete = next(i for i, q in enumerate(log) if "DETACH DELETE" in q)
    first_meta = next(i for i, q in enumerate(log) if "GraphRecMeta" in q and "MERGE" in q)
    assert first_meta < first_delete  # "writing" is recorded before the old graph goes
    # a server that refuses schema changes fails the write before anything is deleted
    log.clear()
    monkeypatch.setattr(neo4j_db, "open_driver", lambda s, a="": _FakeDriver(log, handler, forbid_schema=True))
    with pytest.raises(ExportError):
        neo4j_db.write_neo4j(contract_graph(), Neo4jSettings(password="pw"), clear=True)
    assert not any("DETACH DELETE" in q for q in log)


def test_the_store_on_a_database_without_a_graph_says_so(monkeypatch) -> None:
    import graph_rec.explore.neo4j_store as store_mod

    monkeypatch.setattr(store_mod, "open_driver", lambda s, a="": _FakeDriver([], lambda q: []))
    with pytest.raises(SchemaError, match=r"holds no graph written by graph-rec"):
        store_mod.Neo4jStore(Neo4jSettings(password="pw"))


def test_the_store_treats_an_id_that_is_no_string_as_unknown(monkeypatch) -> None:
    """A server may match 7 to "7" (ArcadeDB does where the id property is typed): the store never asks it."""
    import graph_rec.explore.neo4j_store as store_mod

    schema = {
        "nodes": [{"type": t, "label": lb, "attrs": {}} for t, lb in (("user", "User"), ("item", "Item"))],
        "edges": [{"type": "INTERACTED"}],
    }
    meta = {"p": {"id": "graph", "status": "complete", "schema": json.dumps(schema)}}
    loose = {"p": {"id": "7"}, "ok": 1, "id": "7"}  # every lookup matches, as a loosely comparing server would

    def handler(query: str):
        return [meta] if "GraphRecMeta" in query else [loose]

    monkeypatch.setattr(store_mod, "open_driver", lambda s, a="": _FakeDriver([], handler))
    store = store_mod.Neo4jStore(Neo4jSettings(password="pw"))
    assert store.node(NodeRef("user", "7")) == {"type": "user", "id": "7"}
    for ask in (
        lambda: store.node(NodeRef("user", 7)),  # type: ignore[arg-type]
        lambda: store.neighbours(NodeRef("user", 7)),  # type: ignore[arg-type]
        lambda: store.subgraph([NodeRef("user", "7"), NodeRef("user", 7)]),  # type: ignore[arg-type]
        lambda: store.paths(NodeRef("user", 7), NodeRef("item", "7")),  # type: ignore[arg-type]
        lambda: store.recommendations(7),  # type: ignore[arg-type]
        lambda: store.why(7, "7"),  # type: ignore[arg-type]
    ):
        with pytest.raises(UnknownIdError) as err:
            ask()
        assert err.value.ids == [7]  # as the embedded store names it
