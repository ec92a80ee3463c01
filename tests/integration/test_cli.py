"""The graph-rec command line, run as a user runs it (a subprocess), on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kg_builders.graph import KnowledgeGraph
from tests.conftest import in_process, shared_data

pytestmark = pytest.mark.integration


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "graph_rec.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_build_info_export_synthetic(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    p = run("build", "synthetic", "--out", str(out), "--entities", "synthetic-gazetteer", "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["split"]["method"] == "random" and res["report"]["nodes"]["user"] == 200
    kg = KnowledgeGraph.load(out / "graph")
    assert kg.report.to_dict() == res["report"]
    assert {"user", "item", "tag", "entity"} <= set(kg.node_types)
    assert (out / "split" / "test.csv").is_file()

    human = in_process(capsys, "info", str(out))
    assert human.returncode == 0 and "interacted" in human.stdout and "recipe:" in human.stdout
    info = json.loads(in_process(capsys, "info", str(out), "--json").stdout)
    assert info["schema"]["nodes"]["item"] == kg.num_nodes("item")

    ttl = tmp_path / "g.ttl"
    e = run("export", str(out), "--to", "turtle", "--out", str(ttl), "--json")
    assert e.returncode == 0, e.stderr
    import rdflib

    from kg_builders.export import from_rdf

    assert from_rdf(rdflib.Graph().parse(ttl, format="turtle")).equals(kg)
    nxj = tmp_path / "g.json"
    assert in_process(capsys, "export", str(out), "--to", "networkx", "--out", str(nxj)).returncode == 0
    assert json.loads(nxj.read_text())["directed"] is True


def test_build_refuses_to_overwrite_and_bad_input_names_the_line(tmp_path, capsys) -> None:
    data = tmp_path / "mine"
    data.mkdir()
    (data / "interactions.csv").write_text("user_id,item_id,rating\nu1,i1,4\nu2,i2,abc\n")
    out = tmp_path / "run"
    p = run("build", str(data), "--out", str(out), "--split", "none")
    assert p.returncode == 2
    assert "interactions.csv, line 3, field 'rating'" in p.stderr
    assert not out.exists()  # nothing half-written
    ok = run("build", str(data), "--out", str(out), "--split", "none", "--on-error", "skip", "--json")
    assert ok.returncode == 0, ok.stderr
    rep = json.loads(ok.stdout)["report"]
    assert rep["edges"]["user__interacted__item"] == 1 and len(rep["skipped_rows"]) == 1
    again = in_process(capsys, "build", str(data), "--out", str(out), "--split", "none")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_unknown_dataset_name_lists_the_catalog(tmp_path) -> None:
    p = run("build", "no-such-set", "--out", str(tmp_path / "x"), "--download")
    assert p.returncode == 2 and "ml-latest-small" in p.stderr


def test_datasets_lists_the_catalog() -> None:
    p = run("datasets", "--json")
    names = {d["name"] for d in json.loads(p.stdout)["datasets"]}
    assert {"ml-latest-small", "ml-100k", "hetrec2011-lastfm-2k"} <= names


def test_demo_falls_back_to_synthetic_offline(tmp_path, cache_root) -> None:
    p = run("demo", "--offline", "--out", str(tmp_path / "demo"), "--cache-dir", str(cache_root), "--json")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["dataset"] == "synthetic" and res["ok"] is True and "synthetic" in res["note"]
    assert (tmp_path / "demo" / "graph.nt").stat().st_size > 0
    rdf = next(s for s in res["steps"] if s["step"].startswith("RDF"))
    assert rdf["identical"] is True  # small enough to re-read
    # the chain ends with training: GraphRec and two baselines, evaluated on the test part
    train = res["training"]
    assert set(train) == {"popularity", "ease", "graphrec"}
    for r in train.values():
        assert 0.0 <= r["test"]["recall@20"] <= 1.0
    assert train["graphrec"]["best_epoch"] > 0
    assert train["graphrec"]["test"]["recall@20"] > train["popularity"]["test"]["recall@20"]
    assert (tmp_path / "demo" / "history.png").read_bytes()[:4] == b"\x89PNG"
    # then serving: the model saved as a Recommender, loaded back, asked to recommend and explain
    serving = res["serving"]
    assert Path(serving["model_dir"], "recommender.json").is_file() and len(serving["recommend"]) == 5
    assert serving["explain"] and all(p.startswith(f"user {serving['user']!r}") for p in serving["explain"])
    assert len(serving["new_item_similar"]) == 5 and res["neo4j"] is None
    # everything it wrote is what a rerun may replace; anything else in --out is refused without --overwrite
    from graph_rec.cli import DEMO_OUTPUTS

    assert {q.name for q in (tmp_path / "demo").iterdir()} <= DEMO_OUTPUTS


@pytest.mark.slow
def test_demo_on_movielens_with_kg(tmp_path, cache_root) -> None:
    ml = shared_data("ml-latest-small")
    kg = shared_data("kg-samples") / "movie"
    out = str(tmp_path / "demo")
    p = run(
        "demo",
        "--ml-latest-small",
        str(ml),
        "--kg",
        str(kg),
        "--out",
        out,
        "--cache-dir",
        str(cache_root),
        "--train-epochs",
        "0",
        "--json",
    )  # training on MovieLens is tested in test_train_cli.py
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["dataset"] == "ml-latest-small" and res["ok"] is True
    assert res["report"]["nodes"]["user"] == 610
    assert any(k.startswith("item__film_film_director") for k in res["report"]["edges"])
