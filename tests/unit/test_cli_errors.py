"""Command-line user errors: one line on stderr and exit status 2, never a traceback; nothing lost."""

from __future__ import annotations

import pytest

import graph_rec.cli as cli
from graph_rec.distributed import SINGLE
from graph_rec.errors import ConfigError

TOML = """
[data]
dataset = "{dataset}"

[features]
encoder = "none"
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "synthetic", "--out", "x", "--ratios", "a,b"],
        ["evaluate", "some-run", "--ks", "10,twenty"],
    ],
)
def test_a_malformed_number_list_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(argv)
    assert err.value.code == 2
    assert "is not a comma-separated list of" in capsys.readouterr().err


def test_files_and_devices_that_are_not_what_a_flag_needs(tmp_path, capsys):
    assert cli.main(["export", str(tmp_path), "--to", "turtle", "--out", str(tmp_path)]) == 2
    assert "is a directory; name the file to write" in capsys.readouterr().err
    users = tmp_path / "users.txt"
    users.write_bytes(b"u1\n\xff\xfe\n")
    assert cli.main(["score-all", str(tmp_path), "--users", str(users), "--out", str(tmp_path / "o")]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="device 'bogus' is not a device"):
        SINGLE.device("bogus")


def test_a_config_that_is_not_a_utf8_file_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "bin.toml"
    cfg.write_bytes(b"\xff\xfe[data]\n")
    assert cli.main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "bin.toml: not UTF-8 text (byte 0)" in capsys.readouterr().err
    assert cli.main(["train", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "is a directory, not a TOML file" in capsys.readouterr().err


def test_overwrite_replaces_runs_only_and_only_once_the_new_data_is_ready(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    cfg = tmp_path / "run.toml"
    cfg.write_text(TOML.format(dataset="synthetic"))
    assert cli.main(["train", str(cfg), "--out", str(notes), "--overwrite"]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert (notes / "thesis.txt").read_text() == "years of work"
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    (run / "history.json").write_text("[]")
    cfg.write_text(TOML.format(dataset=str(tmp_path / "no-such-data")))
    assert cli.main(["train", str(cfg), "--out", str(run), "--overwrite", "--cache-dir", str(tmp_path / "c")]) == 2
    capsys.readouterr()
    assert (run / "history.json").is_file()  # the data failed to load: the old run is still there


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_datasets", interrupted)
    assert cli.main(["datasets"]) == 130
    assert capsys.readouterr().err == "graph-rec: interrupted\n"


def test_demo_replaces_only_its_own_output(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    assert cli.main(["demo", "--out", str(mine)]) == 2
    assert "holds files a demo does not write (['thesis.txt']); pass --overwrite" in capsys.readouterr().err
    assert (mine / "thesis.txt").read_text() == "years of work"
    (tmp_path / "afile").write_text("x")
    assert cli.main(["demo", "--out", str(tmp_path / "afile" / "d")]) == 2
    assert "afile is a file, not a directory" in capsys.readouterr().err


def test_build_refuses_what_it_would_ignore_or_cannot_write(tmp_path, capsys):
    assert cli.main(["build", "synthetic", "--kg", str(tmp_path / "kg"), "--out", str(tmp_path / "g")]) == 2
    assert "'synthetic' is generated, not read from files: remove data.kg" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert cli.main(["build", "synthetic", "--out", str(tmp_path / "afile" / "g")]) == 2
    assert "afile is a file, not a directory" in capsys.readouterr().err
    assert cli.main(["build", "synthetic", "--min-rating", "nan", "--out", str(tmp_path / "g")]) == 2
    assert "min_rating must be a finite number or None, got nan" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"[1, 2]", "must hold a JSON object, not list"), (b"\xff\xfe", "is not valid JSON")],
)
def test_a_run_json_that_is_not_an_object_is_one_line(tmp_path, capsys, content, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_bytes(content)
    assert cli.main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_neo4j_export_of_a_run_writes_its_recommendations(tmp_path, monkeypatch, capsys, cache_root):
    """A run directory is a model (as for recommend and explain): not its graph alone."""
    import kg_builders.export.neo4j_db as neo4j_db
    from graph_rec.runs import RunConfig, train_run

    config = RunConfig.from_dict(
        {
            "data": {"dataset": "synthetic", "seed": 5},
            "features": {"encoder": "none"},
            "model": {"name": "graphrec", "embedding_dim": 8, "num_layers": 1},
            "train": {"epochs": 1, "batch_size": 512, "eval_every": 1},
            "eval": {"ks": [10, 20]},
        }
    )
    train_run(config, tmp_path / "run", cache_dir=cache_root)
    got = {}

    def fake_write(kg, settings, **kw):  # no server here: what would be written is what counts
        got.update(kw)
        return neo4j_db.Neo4jWriteReport(uri=settings.uri, database=settings.database)

    monkeypatch.setattr(neo4j_db, "write_neo4j", fake_write)
    monkeypatch.setenv("NEO4J_PASSWORD", "secret")
    assert cli.main(["neo4j", "export", str(tmp_path / "run"), "--k", "5", "--explain-top", "1"]) == 0, (
        capsys.readouterr()
    )
    recs = got["recommendations"]
    assert recs["user_id"].nunique() > 1 and len(recs) == 5 * recs["user_id"].nunique()
    assert set(got["embeddings"]) >= {"user", "item"}
    assert got["explanations"] is not None and len(got["explanations"])
    # a bare graph has no model: recommendation settings are refused, not dropped
    assert cli.main(["neo4j", "export", str(tmp_path / "run" / "graph"), "--k", "5"]) == 2
    assert "is a graph without a model: --k apply to a recommender or a run" in capsys.readouterr().err


def test_build_overwrite_replaces_builds_only_and_keeps_a_linked_out(tmp_path, capsys):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    argv = ["build", "synthetic", "--split", "none", "--overwrite", "--out"]
    assert cli.main([*argv, str(notes)]) == 2
    assert "holds ['thesis.txt'], which a build did not write" in capsys.readouterr().err
    assert (notes / "thesis.txt").read_text() == "years of work"
    # a link to a scratch folder: the build replaces what it names, and the link stays a link
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    link = tmp_path / "link"
    link.symlink_to(scratch)
    assert cli.main([*argv, str(link)]) == 0 and cli.main([*argv, str(link)]) == 0
    assert link.is_symlink() and (scratch / "graph" / "graph.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "notes", "scratch"]  # nothing left aside


def test_outputs_that_cannot_be_written_are_one_line(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "b.out"
    blocker.write_text("a file")
    built = tmp_path / "built"
    assert cli.main(["build", "synthetic", "--split", "none", "--out", str(built)]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(built), "--to", "nt", "--out", str(blocker / "x.nt")]) == 2
    assert f"{blocker} is a file, not a directory" in capsys.readouterr().err
    assert cli.main(["score-all", str(built), "--out", str(blocker / "x")]) == 2
    assert f"{blocker} is a file, not a directory" in capsys.readouterr().err

    import kg_builders.export

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "g.nt"))

    monkeypatch.setattr(kg_builders.export, "write_rdf", full_disk)
    assert cli.main(["export", str(built), "--to", "nt", "--out", str(tmp_path / "g.nt"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "No space left on device" in err and "g.nt" in err
    assert cli.json.loads(out)["error"] == "OSError"


def test_json_output_is_strict_json():
    import json

    text = cli.json_text({"relative": float("nan"), "ci": [float("-inf"), 1.5], "n": 3})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == {
        "relative": None,
        "ci": [None, 1.5],
        "n": 3,
    }


def test_demo_refuses_a_kg_it_would_ignore_and_errors_stay_on_one_line(tmp_path, capsys, monkeypatch):
    argv = ["demo", "--offline", "--kg", str(tmp_path / "kg"), "--out", str(tmp_path / "d")]
    assert cli.main(argv) == 2
    assert "--kg" in capsys.readouterr().err and not (tmp_path / "d").exists()

    def wrapped(args):  # a driver's or a hub's message with a line break inside
        raise ConfigError("cannot load text model 'x': we couldn't connect\nCheck your internet connection")

    monkeypatch.setattr(cli, "cmd_datasets", wrapped)  # (the parser is built at each call of main)
    assert cli.main(["datasets"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "connect Check your internet" in err


def test_score_all_users_file_errors_name_the_file_and_line(tmp_path, capsys):
    run = tmp_path / "g"
    assert cli.main(["build", "synthetic", "--split", "none", "--out", str(run)]) == 0
    assert (
        cli.main(["build", "synthetic", "--split", "none", "--min-tag-count", "0", "--out", str(tmp_path / "h")]) == 2
    )
    assert "--min-tag-count must be an integer >= 1, got 0" in capsys.readouterr().err
    users = tmp_path / "users.txt"
    for text, message in (
        ("\n  \n", f"--users file {users} lists no user id"),
        ("u0\nu1\n\nu0\n", f"{users}, line 4: user 'u0' is listed again (first on line 1)"),
    ):
        users.write_text(text)
        assert cli.main(["score-all", str(run), "--users", str(users), "--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
