"""A training run's directory is never silently wrong: resumes, overwrites, edited files, bad outputs.

Each case is a defect a review found (2026-12-07): a checkpoint from another split resumed on this
one, an overwrite that lost the old run when the new config failed, a split file edited after the
run, a run that trained for minutes before finding it had no test pairs.
"""

from __future__ import annotations

import json
import shutil

import pytest

from graph_rec.errors import CheckpointError, ConfigError
from graph_rec.runs import RunConfig, load_run, train_run

pytestmark = pytest.mark.integration


def _config(**changes):
    return RunConfig.from_dict(_settings(**changes))


def _settings(**changes):
    d = {
        "data": {"dataset": "synthetic", "seed": 5},
        "features": {"encoder": "none"},
        "model": {"name": "graphrec", "embedding_dim": 8, "num_layers": 1},
        "train": {"epochs": 2, "batch_size": 512, "eval_every": 1, "patience": 5},
        "eval": {"ks": [10, 20]},
    }
    for section, values in changes.items():  # (a value of None takes the key out)
        d[section] = {k: v for k, v in {**d.get(section, {}), **values}.items() if v is not None}
    return d


def test_a_checkpoint_from_another_split_is_refused_even_with_the_same_counts(tmp_path, cache_root):
    a, b = tmp_path / "a", tmp_path / "b"
    train_run(_config(), a, cache_dir=cache_root)
    train_run(_config(data={"seed": 6}), b, cache_dir=cache_root)
    shutil.rmtree(a / "checkpoint")
    shutil.copytree(b / "checkpoint", a / "checkpoint")
    # give b's checkpoint a's counts (on real data two split seeds can give the same ones, the
    # synthetic world's differ): only the content then tells the splits apart
    state_file = a / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    fp_a = json.loads((a / "run.json").read_text())["data"]
    counts = {"users": fp_a["num_users"], "items": fp_a["num_items"], "train": fp_a["train"]}
    counts["edges"] = fp_a["graph"]["edges"]
    assert state["fingerprint"]["data"]["train"] != counts["train"]
    state["fingerprint"]["data"].update(counts)
    state_file.write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"the run differs \(data.sha256: "):
        train_run(_config(train={"epochs": 3}), a, cache_dir=cache_root, resume=True)


def test_a_failed_overwrite_leaves_the_old_run_whole(tmp_path, cache_root):
    out = tmp_path / "run"
    train_run(_config(), out, cache_dir=cache_root)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    bad = _config(view={"relations": ["bogus"]})
    with pytest.raises(ConfigError, match=r"view.relations names \['bogus'\], not in the graph"):
        train_run(bad, out, cache_dir=cache_root, overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    load_run(out)  # still a whole run
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]  # no temporary left


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train": {"device": "cuda:7"}}, r"train.device 'cuda:7' was asked for but CUDA is not available"),
        ({"train": {"sampling": "neighbour", "num_neighbours": [5, 5]}}, r"train.num_neighbours has 2 fan-outs"),
        (
            {"model": {"name": "mf", "num_layers": None}, "train": {"sampling": "neighbour"}},
            r"train.sampling = 'neighbour' cannot train model 'mf': MF does not support sampled training",
        ),
    ],
)
def test_an_overwrite_whose_training_would_fail_at_its_start_keeps_the_old_run(tmp_path, cache_root, changes, message):
    """What training would refuse at its start is refused before the old run's files go."""
    import torch

    if "device" in changes["train"] and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    out = tmp_path / "run"
    train_run(_config(), out, cache_dir=cache_root)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(ConfigError, match=message):
        train_run(_config(**changes), out, cache_dir=cache_root, overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert json.loads((out / "run.json").read_text())["status"] == "finished"


def test_run_files_follow_the_umask(tmp_path, cache_root):
    """safetensors and temporary files are created 0600; a run's files are as readable as any other."""
    import os

    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        train_run(_config(), out, cache_dir=cache_root)
    finally:
        os.umask(old)
    modes = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert {"run.json", "best/model.safetensors", "checkpoint/model.safetensors", "graph/graph.json"} <= set(modes)
    assert {m for m in modes.values()} == {0o644}, modes


def test_a_split_without_test_pairs_is_refused_before_training(tmp_path, cache_root):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"the split has no test pairs \(data.ratios \[0.8, 0.2, 0.0\]"):
        train_run(_config(data={"ratios": [0.8, 0.2, 0.0]}), out, cache_dir=cache_root)
    assert not out.exists()


def test_an_output_under_a_file_is_a_clear_error(tmp_path, cache_root):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=r"cannot write to .*afile/sub: .*afile is a file"):
        train_run(_config(), tmp_path / "afile" / "sub", cache_dir=cache_root)


def test_split_files_changed_after_the_run_are_refused(tmp_path, cache_root):
    out = tmp_path / "run"
    train_run(_config(), out, cache_dir=cache_root)
    test_file = next(p for p in (out / "split").iterdir() if p.name.startswith("test"))
    if test_file.suffix == ".csv":
        lines = test_file.read_text().splitlines(keepends=True)
        test_file.write_text("".join(lines[: len(lines) // 2]))
    else:
        import pandas as pd

        df = pd.read_parquet(test_file)
        df.iloc[: len(df) // 2].to_parquet(test_file)
    with pytest.raises(CheckpointError, match=r"do not match its run.json \(test: \d+ recorded, \d+ in the files\)"):
        load_run(out)
    with pytest.raises(CheckpointError, match=r"do not match its run.json"):
        train_run(_config(train={"epochs": 3}), out, cache_dir=cache_root, resume=True)


def test_split_pairs_changed_with_the_same_counts_are_refused(tmp_path, cache_root):
    out = tmp_path / "run"
    train_run(_config(), out, cache_dir=cache_root)
    test_file = out / "split" / "test.csv"
    lines = test_file.read_text().splitlines(keepends=True)
    train_items = set()
    for line in (out / "split" / "train.csv").read_text().splitlines()[1:]:
        user, item = line.split(",")[:2]
        if user == lines[1].split(",")[0]:
            train_items.add(item)
    user, item, *rest = lines[1].split(",")
    held_out = {ln.split(",")[1] for ln in lines[1:] if ln.split(",")[0] == user}
    other = next(f"i{k}" for k in range(1000) if f"i{k}" not in train_items | held_out | {item})
    lines[1] = ",".join([user, other, *rest])  # another item for the same user: every count the same
    test_file.write_text("".join(lines))
    with pytest.raises(CheckpointError, match=r"the same counts, other pairs or edges \(their SHA-256 differs\)"):
        load_run(out)


def test_a_run_from_before_the_data_digest_resumes_and_a_refused_resume_changes_nothing(tmp_path, cache_root):
    out = tmp_path / "run"
    train_run(_config(), out, cache_dir=cache_root)
    state_file = out / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    del state["fingerprint"]["data"]["sha256"], state["files"]  # as written before 2026-12-07
    state_file.write_text(json.dumps(state))
    meta = json.loads((out / "run.json").read_text())
    del meta["data"]["sha256"]
    (out / "run.json").write_text(json.dumps(meta))
    longer = train_run(_config(train={"epochs": 3}), out, cache_dir=cache_root, resume=True)
    assert longer["best_epoch"] >= 1 and len(json.loads((out / "history.json").read_text())["history"]) == 3
    before = (out / "run.json").read_text()
    with pytest.raises(CheckpointError, match=r"model.embedding_dim: 8 saved, 4 now"):
        train_run(_config(model={"embedding_dim": 4}, train={"epochs": 4}), out, cache_dir=cache_root, resume=True)
    assert (out / "run.json").read_text() == before  # still finished, with its summary


def test_overwrite_writes_into_the_directory_it_is_given(tmp_path, cache_root):
    import os
    import stat

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    link = tmp_path / "runs-link"
    link.symlink_to(scratch, target_is_directory=True)
    train_run(_config(), link, cache_dir=cache_root)
    train_run(_config(data={"seed": 6}), link, cache_dir=cache_root, overwrite=True)
    assert link.is_symlink() and (scratch / "run.json").is_file()  # the link still leads to the run
    assert json.loads((scratch / "run.json").read_text())["config"]["data"]["seed"] == 6
    assert sorted(p.name for p in scratch.iterdir() if p.name.startswith(".")) == []
    mask = os.umask(0)
    os.umask(mask)
    for d in (scratch / "graph", scratch / "split"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o777 & ~mask  # not mkdtemp's private 0700


def test_a_closed_form_run_needs_no_selection_metric(tmp_path, cache_root):
    settings = {**_settings(eval={"metrics": ["ndcg"]}), "model": {"name": "popularity"}}
    cfg = RunConfig.from_dict(settings)  # train.metric stays recall@20, which [eval] does not compute
    summary = train_run(cfg, tmp_path / "run", cache_dir=cache_root)
    assert summary["stopped"] == "closed_form" and "ndcg@20" in summary["valid"]


def test_the_selection_metric_must_be_computed():
    with pytest.raises(ConfigError, match=r"train.metric 'ndcg@20' needs 'ndcg' in eval.metrics \['recall'\]"):
        _config(train={"metric": "ndcg@20"}, eval={"metrics": ["recall"]})


def test_an_unfinished_run_says_so(tmp_path, cache_root, capsys):
    import graph_rec.cli as cli

    out = tmp_path / "run"
    train_run(_config(), out, cache_dir=cache_root)
    meta = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**meta, "status": "running"}))  # as a killed run leaves it
    assert cli.main(["evaluate", str(out), "--json"]) == 0
    assert "did not finish (status 'running'): these are its best weights so far" in capsys.readouterr().err
    shutil.rmtree(out / "checkpoint")  # killed before its first evaluation
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*start it again \(--overwrite\)"):
        train_run(_config(), out, cache_dir=cache_root, resume=True)


def test_a_bad_config_in_run_json_names_the_file(tmp_path, cache_root):
    out = tmp_path / "run"
    train_run(_config(), out, cache_dir=cache_root)
    meta = json.loads((out / "run.json").read_text())
    meta["config"]["train"]["epocs"] = 3
    (out / "run.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"run/run.json holds a config this graph-rec refuses: unknown train"):
        load_run(out)
    with pytest.raises(CheckpointError, match=r"run/run.json holds a config"):
        train_run(_config(), out, cache_dir=cache_root, resume=True)


def test_a_resume_with_fewer_epochs_than_trained_is_refused(tmp_path, cache_root):
    out = tmp_path / "run"
    train_run(_config(train={"epochs": 3}), out, cache_dir=cache_root)
    before = (out / "run.json").read_text()
    with pytest.raises(CheckpointError, match=r"trained 3 epochs and train.epochs is 2; give train.epochs >= 3"):
        train_run(_config(train={"epochs": 2}), out, cache_dir=cache_root, resume=True)
    assert (out / "run.json").read_text() == before
    same = train_run(_config(train={"epochs": 3}), out, cache_dir=cache_root, resume=True)
    assert same["best_epoch"] >= 1
