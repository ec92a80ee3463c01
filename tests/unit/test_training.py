"""The trainer: sampling, determinism, early stopping, checkpoints, resume after a crash, config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import graph_rec.training.trainer as trainer_mod
from graph_rec.data import RecData, UserItems
from graph_rec.errors import CheckpointError, ConfigError, DataError
from graph_rec.eval.evaluator import EvalConfig
from graph_rec.training import TrainConfig, fit, init_model
from graph_rec.training.sampling import epoch_batches, sample_negatives
from tests.worlds import synthetic_graph

EVAL = EvalConfig(ks=(10, 20), beyond_accuracy=False)


@pytest.fixture(scope="module")
def world_data() -> RecData:
    kg, sp = synthetic_graph()
    return RecData(kg, sp)


def test_negatives_are_never_known_positives_and_are_seeded():
    train = UserItems.from_pairs([0, 0, 0, 1, 2], [0, 1, 2, 3, 0], 3, 5)
    users = torch.tensor([0, 1, 2] * 200)
    a = sample_negatives(train, users, 3, torch.Generator().manual_seed(1))
    b = sample_negatives(train, users, 3, torch.Generator().manual_seed(1))
    assert a.shape == (600, 3) and torch.equal(a, b)
    assert not train.contains(users.repeat_interleave(3), a.reshape(-1)).any()
    assert set(a[users == 0].reshape(-1).tolist()) == {3, 4}  # user 0 has 0, 1, 2


def test_a_user_with_every_item_has_no_negative():
    train = UserItems.from_pairs([0, 0, 1], [0, 1, 0], 2, 2)
    with pytest.raises(DataError, match=r"users \[0\] have interacted with every item"):
        sample_negatives(train, torch.tensor([0, 1]), 1, torch.Generator().manual_seed(0))


def test_training_names_the_users_who_interacted_with_every_item(world_data):
    import copy

    data = copy.copy(world_data)
    n, m = data.num_users, data.num_items
    users = torch.cat([torch.zeros(m, dtype=torch.long), data.train.users()[data.train.users() > 0]])
    items = torch.cat([torch.arange(m), data.train.indices[data.train.users() > 0]])
    data.train = UserItems.from_pairs(users, items, n, m)
    for part in ("valid", "test"):  # user 0 now knows every item: no held-out pair is left for it
        held = getattr(data, part)
        keep = held.users() > 0
        setattr(data, part, UserItems.from_pairs(held.users()[keep], held.indices[keep], n, m))
    model = init_model("mf", {"embedding_dim": 4}, data, seed=0)
    first = repr(data.user_ids[0])
    with pytest.raises(DataError, match=rf"1 user\(s\) interacted with every one of the {m} items.*\[{first}\]"):
        fit(model, data, TrainConfig(epochs=1))
    fit(model, data, TrainConfig(epochs=1, eval_every=1, shared_negatives=True, num_negatives=8))


def test_an_epoch_visits_every_training_pair_once(world_data):
    seen = []
    for u, p, n in epoch_batches(world_data.train, 100, 2, torch.Generator().manual_seed(0)):
        assert n.shape == (u.numel(), 2)
        seen.append(u * world_data.num_items + p)
    keys = torch.cat(seen)
    assert keys.numel() == world_data.train.nnz
    assert torch.equal(torch.sort(keys).values, world_data.train.keys())


def test_train_config_rejects_typos_and_bad_values():
    with pytest.raises(ConfigError, match=r"unknown train setting\(s\) \['learning_rate'\]; valid keys: \[.*'lr'"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="loss must be one of"):
        TrainConfig(loss="hinge")
    for bad in ("recall20", "recall@20\n"):
        with pytest.raises(ConfigError, match="metric must look like"):
            TrainConfig(metric=bad)
    with pytest.raises(ConfigError, match="lr must be"):
        TrainConfig(lr=0)


def _train(data, name="graphrec", settings=None, run_dir=None, resume=False, **train):
    cfg = TrainConfig(**{"epochs": 6, "batch_size": 128, "lr": 0.01, "eval_every": 2, "patience": 10, **train})
    model = init_model(name, settings or {"embedding_dim": 8, "num_layers": 2}, data, seed=cfg.seed)
    result = fit(
        model,
        data,
        cfg,
        eval_config=EVAL,
        run_dir=run_dir,
        resume=resume,
        fingerprint={"name": name, **(settings or {})},
    )
    with torch.inference_mode():
        scores = model.scorer()(torch.arange(data.num_users)).clone()
    return result, scores


@pytest.mark.parametrize("name", ["graphrec", "mf", "lightgcn"])
def test_same_seed_same_run(world_data, name):
    settings = {"embedding_dim": 8}
    r1, s1 = _train(world_data, name, settings)
    r2, s2 = _train(world_data, name, settings)
    assert [h["loss"] for h in r1.history] == [h["loss"] for h in r2.history]
    assert torch.equal(s1, s2)
    r3, s3 = _train(world_data, name, settings, seed=7)
    assert not torch.equal(s1, s3)


def test_training_lowers_the_loss_and_keeps_the_best_epoch(world_data):
    result, scores = _train(world_data, epochs=10)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    evals = {h["epoch"]: h["valid"]["recall@20"] for h in result.history if "valid" in h}
    assert result.best_epoch == max(evals, key=lambda e: (evals[e], -e))
    assert result.best_valid["recall@20"] == max(evals.values())
    assert result.stopped == "epochs" and 0 < result.seconds_to_best <= result.seconds


def test_early_stopping_stops_after_patience(world_data):
    result, _ = _train(world_data, epochs=50, eval_every=1, patience=2, lr=0.5, min_delta=1.0)
    # min_delta 1.0 makes every evaluation after the first "no improvement"
    assert result.stopped == "early_stopping"
    assert result.best_epoch == 1 and len(result.history) == 3


def _crash_in_epoch(monkeypatch, epoch):
    """Make the trainer's batch iterator raise at the start of ``epoch``; returns the real one."""
    real = trainer_mod.epoch_batches
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == epoch:
            raise KeyboardInterrupt(f"simulated crash in epoch {epoch}")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "epoch_batches", crashing)
    return real


def test_resume_after_a_crash_gives_the_same_result(world_data, tmp_path, monkeypatch):
    full, full_scores = _train(world_data, run_dir=tmp_path / "a", checkpoint_every=1, epochs=8)

    real = _crash_in_epoch(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        _train(world_data, run_dir=tmp_path / "b", checkpoint_every=1, epochs=8)
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 5
    monkeypatch.setattr(trainer_mod, "epoch_batches", real)
    resumed, resumed_scores = _train(world_data, run_dir=tmp_path / "b", resume=True, checkpoint_every=1, epochs=8)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert resumed.best_epoch == full.best_epoch
    assert torch.equal(resumed_scores, full_scores)


def test_resume_from_an_incompatible_run_is_refused(world_data, tmp_path):
    _train(world_data, settings={"embedding_dim": 8, "num_layers": 2}, run_dir=tmp_path / "r", epochs=2)
    with pytest.raises(
        CheckpointError,
        match=r"the run differs \(embedding_dim: 8 saved, 16 now; model.embedding_dim: 8 saved, 16 now\)",
    ):
        _train(world_data, settings={"embedding_dim": 16, "num_layers": 2}, run_dir=tmp_path / "r", resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        _train(world_data, run_dir=tmp_path / "empty", resume=True)
    state = tmp_path / "r" / "checkpoint" / "state.json"
    payload = json.loads(state.read_text())
    payload["format_version"] = 99
    state.write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="format 99"):
        _train(world_data, settings={"embedding_dim": 8, "num_layers": 2}, run_dir=tmp_path / "r", resume=True)


def test_resume_refuses_other_training_settings_without_a_fingerprint(world_data, tmp_path):
    model = init_model("graphrec", {"embedding_dim": 8}, world_data, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=128, lr=0.01, eval_every=1)
    fit(model, world_data, cfg, eval_config=EVAL, run_dir=tmp_path)
    other = TrainConfig(epochs=4, batch_size=64, lr=0.01, eval_every=1, loss="softmax", num_negatives=4)
    with pytest.raises(CheckpointError) as err:
        fit(model, world_data, other, eval_config=EVAL, run_dir=tmp_path, resume=True)
    msg = str(err.value)
    assert "train.batch_size: 128 saved, 64 now" in msg and "train.loss: 'bpr' saved, 'softmax' now" in msg
    assert "epochs" not in msg  # a resume may run longer
    fit(
        model,
        world_data,
        TrainConfig(epochs=3, batch_size=128, lr=0.01, eval_every=1),
        eval_config=EVAL,
        run_dir=tmp_path,
        resume=True,
    )


def test_resuming_a_finished_run_gives_the_finished_model_in_eval_mode(world_data, tmp_path):
    settings = {"embedding_dim": 8, "num_layers": 2, "feature_dropout": 0.5}
    _, fresh = _train(world_data, settings=settings, run_dir=tmp_path, epochs=4)
    model = init_model("graphrec", settings, world_data, seed=2026)
    cfg = TrainConfig(epochs=4, batch_size=128, lr=0.01, eval_every=2, patience=10)
    result = fit(
        model,
        world_data,
        cfg,
        eval_config=EVAL,
        run_dir=tmp_path,
        resume=True,
        fingerprint={"name": "graphrec", **settings},
    )
    assert result.stopped == "epochs" and not model.training
    with torch.inference_mode():
        assert torch.equal(model.scorer()(torch.arange(world_data.num_users)), fresh)


def test_a_time_limit_evaluates_its_last_epoch_and_a_resume_with_more_time_goes_on(world_data, tmp_path):
    # eval_every 5: the limit stops training after epoch 1, which is evaluated all the same
    limited, _ = _train(world_data, run_dir=tmp_path, epochs=6, eval_every=5, max_seconds=1e-9)
    assert limited.stopped == "max_seconds" and limited.best_epoch == 1
    assert [h["epoch"] for h in limited.history if "valid" in h] == [1]
    same, _ = _train(world_data, run_dir=tmp_path, resume=True, epochs=6, eval_every=5, max_seconds=1e-9)
    assert same.stopped == "max_seconds" and len(same.history) == 1  # no more time: nothing more trained
    more, _ = _train(world_data, run_dir=tmp_path, resume=True, epochs=6, eval_every=5, max_seconds=0)
    assert more.stopped == "epochs" and [h["epoch"] for h in more.history] == [1, 2, 3, 4, 5, 6]


def test_a_damaged_checkpoint_is_a_checkpoint_error_and_restores_nothing(world_data, tmp_path):
    from graph_rec.training.checkpoint import load_checkpoint

    _train(world_data, run_dir=tmp_path, epochs=2)
    ckpt = tmp_path / "checkpoint"
    model = init_model("graphrec", {"embedding_dim": 8, "num_layers": 2}, world_data, seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters())
    gen = torch.Generator().manual_seed(3)
    fp = json.loads((ckpt / "state.json").read_text())["fingerprint"]

    def load():
        return load_checkpoint(ckpt, model=model, optimizer=opt, generator=gen, fingerprint=fp)

    (ckpt / "rng.safetensors").rename(tmp_path / "rng")
    with pytest.raises(CheckpointError, match="rng.safetensors is missing"):
        load()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the model was not touched
    (tmp_path / "rng").rename(ckpt / "rng.safetensors")
    # bytes changed inside the tensor data (the header still parses): found by the checksum
    weights = ckpt / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-8] + bytes(b ^ 0xFF for b in good[-8:]))
    with pytest.raises(CheckpointError, match=r"model.safetensors is damaged: its bytes do not match"):
        load()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    weights.write_bytes(good)
    (ckpt / "optimizer.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="optimizer.safetensors is damaged"):
        load()
    # a checkpoint from before the checksums (no 'files' in state.json) is read as it is
    state = json.loads((ckpt / "state.json").read_text())
    del state["files"]
    (ckpt / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="cannot read .*optimizer.safetensors"):
        load()
    text = (ckpt / "state.json").read_text()
    (ckpt / "state.json").write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="state.json is damaged"):
        load()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_an_interrupted_checkpoint_swap_says_where_the_old_one_is(tmp_path):
    from graph_rec.training.checkpoint import load_checkpoint

    (tmp_path / ".checkpoint.old-4242").mkdir()
    with pytest.raises(CheckpointError, match=r"left .*\.checkpoint\.old-4242: rename it to checkpoint"):
        load_checkpoint(
            tmp_path / "checkpoint",
            model=torch.nn.Linear(1, 1),
            optimizer=None,
            generator=torch.Generator(),
            fingerprint={},
        )


def test_settings_differences_name_each_leaf():
    from graph_rec.training.checkpoint import differences

    saved = {"train": {"lr": 0.002, "ks": [10, 20]}, "model": {"d": 8}, "gone": 1}
    now = {"train": {"lr": 0.004, "ks": (10, 20)}, "model": {"d": 8}, "new": {"a": 1}}
    assert differences(saved, now) == [
        "gone: 1 saved, absent now",
        "new: absent saved, {'a': 1} now",
        "train.lr: 0.002 saved, 0.004 now",
    ]
    assert differences(saved, saved) == []


def test_non_finite_state_values_are_written_as_null(tmp_path):
    from graph_rec.training.checkpoint import save_checkpoint

    model = torch.nn.Linear(2, 1)
    state = {
        "epoch": 1,
        "best_score": float("nan"),
        "history": [{"loss": float("inf")}],
        "t": torch.tensor(float("nan")),
    }
    save_checkpoint(tmp_path / "c", model=model, optimizer=None, generator=torch.Generator(), state=state)
    saved = json.loads((tmp_path / "c" / "state.json").read_text())
    assert saved["best_score"] is None and saved["history"] == [{"loss": None}] and saved["t"] is None


def test_closed_form_models_go_through_the_same_trainer(world_data):
    model = init_model("ease", {"l2": 10.0}, world_data, seed=0)
    result = fit(model, world_data, TrainConfig(), eval_config=EVAL)
    assert result.stopped == "closed_form" and result.best_epoch == 0
    assert 0 <= result.best_valid["recall@20"] <= 1


def test_softmax_loss_and_alignment_train(world_data):
    settings = {"embedding_dim": 8, "num_layers": 1, "align_weight": 0.1}
    result, scores = _train(world_data, settings=settings, loss="softmax", num_negatives=8, epochs=4)
    assert "align" in result.history[0] and result.history[0]["align"] > 0
    assert torch.isfinite(scores).all()


def test_metric_k_must_be_evaluated(world_data):
    model = init_model("mf", {"embedding_dim": 4}, world_data, seed=0)
    with pytest.raises(ConfigError, match="needs k=50"):
        fit(model, world_data, TrainConfig(metric="recall@50"), eval_config=EVAL)


def test_shared_negatives_are_distinct_and_their_collisions_masked(world_data):
    from graph_rec.training.sampling import shared_negative_mask

    train = world_data.train
    for users, _, neg in epoch_batches(train, 64, 30, torch.Generator().manual_seed(0), shared=True):
        assert neg.shape == (30,) and neg.unique().numel() == 30
        mask = shared_negative_mask(train, users, neg)
        expected = train.contains(users.repeat_interleave(30), neg.repeat(users.numel())).view(-1, 30)
        assert torch.equal(mask, expected)
    # repeated items fall back to the cell-by-cell test
    users, neg = torch.tensor([0, 1]), torch.tensor([3, 3, 5])
    expected = train.contains(users.repeat_interleave(3), neg.repeat(2)).view(2, 3)
    assert torch.equal(shared_negative_mask(train, users, neg), expected)


def test_shared_negative_training_masks_positives_out_of_the_loss():
    from graph_rec.training.losses import bpr_loss, softmax_loss

    pos, neg = torch.tensor([2.0]), torch.tensor([[1.0, 50.0]])
    mask = torch.tensor([[False, True]])
    assert softmax_loss(pos, neg, 1.0, mask) == pytest.approx(float(-torch.log_softmax(torch.tensor([2.0, 1.0]), 0)[0]))
    assert bpr_loss(pos, neg, mask) == pytest.approx(float(-torch.nn.functional.logsigmoid(torch.tensor(1.0))))


# ------------------------------------------------------------------ neighbour-sampled training
SAMPLED = {"sampling": "neighbour", "num_neighbours": [4], "inference_batch_size": 50}


def test_sampled_training_validates_with_layerwise_embeddings_and_learns(world_data):
    result, scores = _train(world_data, epochs=10, **SAMPLED)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    # comparable quality to full-graph training on the same graph (a loose floor on this tiny world)
    full, _ = _train(world_data, epochs=10)
    assert result.best_valid["recall@20"] > 0.5 * full.best_valid["recall@20"]
    assert result.history != full.history  # sampling changed the steps
    r2, s2 = _train(world_data, epochs=10, **SAMPLED)  # and is seeded
    assert [h["loss"] for h in r2.history] == losses and torch.equal(s2, scores)


def test_sampled_training_with_every_neighbour_is_the_full_graph_run(world_data):
    # fan-outs larger than any degree keep every pair: the same steps as full-graph training
    full, full_scores = _train(world_data, epochs=4)
    every, every_scores = _train(world_data, epochs=4, sampling="neighbour", num_neighbours=[10_000])
    assert [h["loss"] for h in every.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-5)
    torch.testing.assert_close(every_scores, full_scores, rtol=1e-4, atol=1e-5)


def test_sampled_training_resumes_its_sampling_stream(world_data, tmp_path, monkeypatch):
    full, full_scores = _train(world_data, run_dir=tmp_path / "a", checkpoint_every=1, epochs=6, **SAMPLED)
    real = _crash_in_epoch(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        _train(world_data, run_dir=tmp_path / "b", checkpoint_every=1, epochs=6, **SAMPLED)
    monkeypatch.setattr(trainer_mod, "epoch_batches", real)
    resumed, resumed_scores = _train(
        world_data, run_dir=tmp_path / "b", resume=True, checkpoint_every=1, epochs=6, **SAMPLED
    )
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert torch.equal(resumed_scores, full_scores)


def test_sampled_training_settings_are_checked(world_data):
    with pytest.raises(ConfigError, match="num_neighbours has 3 fan-outs but the model has 2 layers"):
        _train(world_data, epochs=1, sampling="neighbour", num_neighbours=[5, 5, 5])
    with pytest.raises(ConfigError, match="sampling must be one of"):
        TrainConfig(sampling="cluster")
    with pytest.raises(ConfigError, match="num_neighbours must be a non-empty list"):
        TrainConfig(num_neighbours=5)
    with pytest.raises(ConfigError, match="attention"):
        _train(
            world_data,
            settings={"embedding_dim": 8, "num_layers": 2, "relation_mode": "attention"},
            epochs=1,
            **SAMPLED,
        )


def test_seeded_blocks_draw_from_the_seed_and_give_the_global_rng_back():
    from graph_rec.training.trainer import seeded

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with seeded(7):
        drawn = torch.rand(2)
    assert torch.equal(torch.rand(3), expected)  # the caller's stream goes on as if nothing happened
    torch.manual_seed(7)
    assert torch.equal(drawn, torch.rand(2))  # the same stream torch.manual_seed(7) gives


def test_resume_takes_the_best_weights_written_with_the_checkpoint_not_a_later_best_dir(world_data, tmp_path):
    from safetensors.torch import load_file, save_file

    _, fresh = _train(world_data, run_dir=tmp_path, epochs=4)
    # a crash after best/ was rewritten for an epoch whose checkpoint never landed
    later = {
        k: v + 1.0 if v.is_floating_point() else v
        for k, v in load_file(str(tmp_path / "best" / "model.safetensors")).items()
    }
    save_file(later, str(tmp_path / "best" / "model.safetensors"))
    _, resumed = _train(world_data, run_dir=tmp_path, resume=True, epochs=4)
    assert torch.equal(resumed, fresh)


def test_a_time_limit_is_decided_once_so_the_stopping_epoch_is_the_evaluated_one(world_data, monkeypatch):
    import types

    # the clock reads 0.9996 s from epoch 3 on: under a 1 s limit, though it rounds to 1.000
    calls = {"n": 0}

    def clock():
        calls["n"] += 1
        return 0.0 if calls["n"] == 1 else (0.5 if calls["n"] < 6 else 0.9996)

    monkeypatch.setattr(trainer_mod, "time", types.SimpleNamespace(perf_counter=clock))
    result, _ = _train(world_data, epochs=6, eval_every=2, max_seconds=1.0)
    assert result.stopped == "epochs"
    assert [h["epoch"] for h in result.history if "valid" in h] == [2, 4, 6]


def test_a_resume_cannot_end_on_an_epoch_that_was_never_evaluated(world_data, tmp_path, monkeypatch):
    real = _crash_in_epoch(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        _train(world_data, run_dir=tmp_path, checkpoint_every=1, epochs=8, eval_every=2)
    monkeypatch.setattr(trainer_mod, "epoch_batches", real)
    with pytest.raises(
        CheckpointError, match="stopped after epoch 3, which was never evaluated.*give train.epochs > 3"
    ):
        _train(world_data, run_dir=tmp_path, resume=True, checkpoint_every=1, epochs=3, eval_every=2)
    # one epoch more evaluates where an uninterrupted run of 4 epochs would
    resumed, scores = _train(world_data, run_dir=tmp_path, resume=True, checkpoint_every=1, epochs=4, eval_every=2)
    full, full_scores = _train(world_data, epochs=4, eval_every=2)
    assert resumed.best_epoch == full.best_epoch and torch.equal(scores, full_scores)


def test_fit_alone_refuses_a_checkpoint_of_another_model_or_data(world_data, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=128, lr=0.01, eval_every=1)
    fit(
        init_model("lightgcn", {"embedding_dim": 8, "num_layers": 1}, world_data, seed=0),
        world_data,
        cfg,
        run_dir=tmp_path,
    )
    for name, settings, message in (
        ("lightgcn", {"embedding_dim": 8, "num_layers": 3}, "model.num_layers: 1 saved, 3 now"),
        ("mf", {"embedding_dim": 8}, "model.name: 'lightgcn' saved, 'mf' now"),
    ):  # parameters of the same names and shapes: only the fingerprint tells them apart
        with pytest.raises(CheckpointError, match=message):
            fit(init_model(name, settings, world_data, seed=0), world_data, cfg, run_dir=tmp_path, resume=True)
    kg, sp = synthetic_graph(seed=4)  # another world: 60 users and 80 items too, other interactions
    other = RecData(kg, sp)
    assert (other.num_users, other.num_items) == (world_data.num_users, world_data.num_items)
    model = init_model("lightgcn", {"embedding_dim": 8, "num_layers": 1}, other, seed=0)
    with pytest.raises(CheckpointError, match=r"data.sha256: '[0-9a-f]+' saved, '[0-9a-f]+' now"):
        fit(model, other, cfg, run_dir=tmp_path, resume=True)


def test_fit_alone_refuses_a_checkpoint_of_other_validation_settings_or_node_features(world_data, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=128, lr=0.01, eval_every=1)
    settings = {"embedding_dim": 8, "num_layers": 1}
    fit(init_model("graphrec", settings, world_data, seed=0), world_data, cfg, eval_config=EVAL, run_dir=tmp_path)
    other_eval = EvalConfig(ks=(10, 20), beyond_accuracy=False, seed=7)  # another tie-breaking order
    with pytest.raises(CheckpointError, match="eval.seed: 0 saved, 7 now"):
        model = init_model("graphrec", settings, world_data, seed=0)
        fit(model, world_data, cfg, eval_config=other_eval, run_dir=tmp_path, resume=True)
    kg, sp = synthetic_graph()  # the same pairs and edges, other text features of the same shapes
    rng = np.random.default_rng(1)
    for t in kg.node_types:
        kg.set_features(t, "text", rng.normal(size=(kg.num_nodes(t), 6)).astype(np.float32))
    other = RecData(kg, sp)
    with pytest.raises(CheckpointError, match=r"data.features: '[0-9a-f]+' saved, '[0-9a-f]+' now"):
        fit(
            init_model("graphrec", settings, other, seed=0), other, cfg, eval_config=EVAL, run_dir=tmp_path, resume=True
        )
    # a checkpoint written before these were fingerprinted is compared on the rest
    state_file = tmp_path / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    del state["fingerprint"]["eval"], state["fingerprint"]["data"]["features"]
    state_file.write_text(json.dumps(state))
    result = fit(
        init_model("graphrec", settings, world_data, seed=0),
        world_data,
        cfg.replace(epochs=3),
        eval_config=EVAL,
        run_dir=tmp_path,
        resume=True,
    )
    assert [h["epoch"] for h in result.history] == [1, 2, 3]


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("mf", {"embedding_dim": 8}, "MF does not support sampled training"),
        ("ease", {}, "'ease' is fitted in closed form"),
    ],
)
def test_neighbour_sampling_refuses_models_it_cannot_train_by_name(world_data, name, settings, message):
    model = init_model(name, settings, world_data, seed=0)
    with pytest.raises(ConfigError, match=f"train.sampling = 'neighbour' cannot train model '{name}': {message}"):
        fit(model, world_data, TrainConfig(epochs=1, sampling="neighbour", num_neighbours=[4]), eval_config=EVAL)


def test_best_dir_holds_the_result_after_a_crash_between_its_write_and_the_checkpoint(
    world_data, tmp_path, monkeypatch
):
    from safetensors.torch import load_file

    real = trainer_mod.save_checkpoint

    def killed(*args, **kwargs):
        if kwargs["state"]["epoch"] == 6:  # best/ was just written for epoch 6; its checkpoint never lands
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "save_checkpoint", killed)
    settings = dict(epochs=8, eval_every=2, lr=0.003, seed=2)
    with pytest.raises(KeyboardInterrupt):
        _train(world_data, run_dir=tmp_path, **settings)
    monkeypatch.setattr(trainer_mod, "save_checkpoint", real)
    resumed, _ = _train(world_data, run_dir=tmp_path, resume=True, **{**settings, "epochs": 5})
    model = init_model("graphrec", {"embedding_dim": 8, "num_layers": 2}, world_data, seed=0)
    model.load_state_dict(load_file(str(tmp_path / "best" / "model.safetensors")))
    full, full_scores = _train(world_data, **{**settings, "epochs": 5})
    assert resumed.best_epoch == full.best_epoch
    with torch.inference_mode():
        assert torch.equal(model.scorer()(torch.arange(world_data.num_users)), full_scores)


def test_a_sampling_state_of_another_device_kind_restarts_sampling_from_a_seed(world_data, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    from graph_rec.training.checkpoint import file_sha256

    _train(world_data, run_dir=tmp_path, epochs=2, eval_every=1, **SAMPLED)
    ck = tmp_path / "checkpoint"
    rng = load_file(str(ck / "rng.safetensors"))
    assert rng["extra.sampler.rank0"].numel() > 16
    rng["extra.sampler.rank0"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state is 16 bytes
    save_file(rng, str(ck / "rng.safetensors"))
    state = json.loads((ck / "state.json").read_text())
    state["files"]["rng.safetensors"] = file_sha256(ck / "rng.safetensors")
    (ck / "state.json").write_text(json.dumps(state))
    with caplog.at_level("WARNING"):
        resumed, _ = _train(world_data, run_dir=tmp_path, resume=True, epochs=3, eval_every=1, **SAMPLED)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert "sampling restarts from a seed" in caplog.text
