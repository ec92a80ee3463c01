"""`graph-rec train` and `graph-rec evaluate` as a user runs them: TOML config in, run directory out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import in_process, shared_data

pytestmark = pytest.mark.integration

SYNTHETIC = """
[data]
dataset = "synthetic"
seed = 5

[features]
encoder = "none"

[model]
name = "graphrec"
embedding_dim = 16
num_layers = 2

[train]
epochs = 6
batch_size = 512
lr = 0.01
eval_every = 2
patience = 5
checkpoint_every = 1

[eval]
ks = [10, 20]
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graph_rec.cli", *args], capture_output=True, text=True, timeout=900)


def test_train_evaluate_resume_on_the_synthetic_world(tmp_path, cache_root, capsys) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(SYNTHETIC)
    out = tmp_path / "run"
    p = run("train", str(cfg), "--out", str(out), "--cache-dir", str(cache_root), "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    for name in (
        "run.json",
        "metrics.json",
        "history.json",
        "history.png",
        "best/model.safetensors",
        "checkpoint/model.safetensors",
        "checkpoint/optimizer.safetensors",
        "graph",
        "split",
    ):
        assert (out / name).exists(), name
    assert (out / "history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "finished" and meta["config"]["model"]["embedding_dim"] == 16
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist["history"]] == list(range(1, 7))
    assert sorted(h["epoch"] for h in hist["history"] if "valid" in h) == [2, 4, 6]

    # evaluate from the files alone gives the numbers the training run recorded
    ev = run("evaluate", str(out), "--json")
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(ev.stdout)["metrics"] == pytest.approx(metrics["test"]["metrics"])
    assert summary["test"] == pytest.approx(metrics["test"]["metrics"])
    sampled = json.loads(run("evaluate", str(out), "--part", "valid", "--sampled", "--json").stdout)
    assert 0.0 <= sampled["metrics"]["auc"] <= 1.0 and "f1" in sampled["metrics"]

    # resuming a finished run changes nothing; asking for more epochs continues from the checkpoint
    again = run("train", str(cfg), "--out", str(out), "--resume", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["test"] == pytest.approx(summary["test"])
    changed = in_process(capsys, "train", str(cfg), "--out", str(out), "--resume", "--set", "train.lr=0.5")
    assert changed.returncode == 2 and "train.lr: 0.01 saved, 0.5 now" in changed.stderr, changed.stderr
    assert "only train.epochs, train.max_seconds, train.device may change" in changed.stderr
    longer = run("train", str(cfg), "--out", str(out), "--resume", "--set", "train.epochs=8", "--json")
    assert longer.returncode == 0, longer.stderr
    hist = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in hist["history"]] == list(range(1, 9))

    # a run against itself: every difference 0, with an interval of width 0; the synthetic world has
    # no item features, so diversity is not measured, nor compared
    same = in_process(capsys, "evaluate", str(out), "--against", str(out), "--rounds", "100")
    assert same.returncode == 0, same.stderr
    assert "paired bootstrap over users, 100 resamples, 95%" in same.stdout
    # coverage is of the lists, not per user; diversity is left out
    per_user = [m for m in metrics["test"]["metrics"] if not m.startswith(("coverage", "diversity"))]
    assert same.stdout.count("+0.0% [+0.0%, +0.0%]  p = 1.000") == len(per_user) == 11
    assert "(diversity@20 not compared: no item features" in same.stdout
    cmp = json.loads(
        in_process(capsys, "evaluate", str(out), "--against", str(out), "--rounds", "100", "--json").stdout
    )
    assert list(cmp["not_compared"]) == ["diversity@20"] and "diversity@20" not in cmp["comparisons"]
    assert len(cmp["comparisons"]) == 11

    # a paired comparison needs the same split, compared in the runs' files: a run on other data is refused
    other = tmp_path / "other"
    made = run(
        "train", str(cfg), "--out", str(other), "--cache-dir", str(cache_root),
        "--set", "data.seed=6", "--set", "train.epochs=1", "--set", "train.eval_every=1",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    refused = in_process(capsys, "evaluate", str(out), "--against", str(other))
    assert refused.returncode == 2 and "were trained on different data or splits (" in refused.stderr

    # an existing run is never overwritten by accident
    clash = in_process(capsys, "train", str(cfg), "--out", str(out))
    assert clash.returncode == 2 and "already exists" in clash.stderr


def test_config_errors_name_the_file_and_the_valid_keys(tmp_path, capsys) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(SYNTHETIC.replace("lr = 0.01", "learning_rate = 0.01"))
    p = run("train", str(cfg), "--out", str(tmp_path / "x"))  # once as a user runs it, then in process
    assert p.returncode == 2
    assert str(cfg) in p.stderr and "learning_rate" in p.stderr and "'lr'" in p.stderr
    cfg.write_text(SYNTHETIC.replace('name = "graphrec"', 'name = "kgat"'))
    p = in_process(capsys, "train", str(cfg), "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and "registered models" in p.stderr and "lightgcn" in p.stderr
    cfg.write_text(SYNTHETIC + "\n[trian]\nepochs = 1\n")
    p = in_process(capsys, "train", str(cfg), "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and "['trian']" in p.stderr and "valid sections" in p.stderr
    p = in_process(capsys, "evaluate", str(tmp_path / "nothing"))
    assert p.returncode == 2 and "run.json is missing" in p.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_graphrec_with_real_text_features_beats_popularity_on_movielens(tmp_path, cache_root) -> None:
    ml = shared_data("ml-latest-small")
    base = f"""
[data]
dataset = "{ml}"
seed = 0  # the demo test's split: its texts are in the feature cache
[features]
encoder = "all-MiniLM-L6-v2"
local_files_only = true
[train]
epochs = 10
eval_every = 5
lr = 0.005
[eval]
ks = [20]
"""
    cfg = tmp_path / "ml.toml"
    cfg.write_text(base + '[model]\nname = "graphrec"\nnum_layers = 2\n')
    p = run("train", str(cfg), "--out", str(tmp_path / "g"), "--cache-dir", str(cache_root), "--json")
    assert p.returncode == 0, p.stderr
    graphrec = json.loads(p.stdout)
    run_meta = json.loads((tmp_path / "g" / "run.json").read_text())
    assert run_meta["data"]["graph"]["features"] == {"text": 384}
    assert run_meta["data"]["dropped"]["test"]["also_in_train_or_valid"] == 0
    cfg.write_text(base.replace('encoder = "all-MiniLM-L6-v2"', 'encoder = "none"') + '[model]\nname = "popularity"\n')
    p = run("train", str(cfg), "--out", str(tmp_path / "p"), "--cache-dir", str(cache_root), "--json")
    assert p.returncode == 0, p.stderr
    pop = json.loads(p.stdout)
    assert graphrec["test"]["recall@20"] > 1.2 * pop["test"]["recall@20"]
    # the same comparison with its paired bootstrap interval over the 610 test users
    p = run("evaluate", str(tmp_path / "g"), "--against", str(tmp_path / "p"), "--rounds", "500", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    c = out["comparisons"]["recall@20"]
    assert c["mean_a"] == pytest.approx(pop["test"]["recall@20"])
    assert c["mean_b"] == pytest.approx(graphrec["test"]["recall@20"])
    assert c["relative"] == pytest.approx(c["mean_b"] / c["mean_a"] - 1)
    assert 0.2 < c["relative_ci"][0] < c["relative"] < c["relative_ci"][1]
    assert c["p_value"] == pytest.approx(1 / 500) and c["rows"] == c["clusters"] == 610
    assert out["run"]["metrics"] == pytest.approx(graphrec["test"])
    # both lists' diversity is measured in GraphRec's text features (popularity's run has none)
    assert out["comparisons"]["diversity@20"]["mean_b"] == pytest.approx(graphrec["test"]["diversity@20"])
    assert "novelty@20" in out["comparisons"] and out["not_compared"] == {}
    assert Path(tmp_path / "g" / "history.png").is_file()
