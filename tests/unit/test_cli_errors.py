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
