"""Data-parallel training on 2 CPU ranks with gloo, as a user launches it (``torchrun``), against one process.

Tolerance: the 2-rank run must reproduce the single-process run's epoch losses and validation
metrics to 1e-4 (relative) and its best weights to 1e-4 (absolute). Both runs see the same batches
and the same negatives (drawn from the shared seed), and DistributedDataParallel averages the
share-weighted gradients, so the only difference is the order of floating-point additions.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from graph_rec.data import RecData
from graph_rec.distributed import DistContext, from_env, shard_bounds
from graph_rec.errors import ConfigError
from graph_rec.training import init_model
from graph_rec.training.losses import bpr_loss
from graph_rec.training.sampling import epoch_batches, shared_negative_mask
from graph_rec.training.trainer import _BatchForward, _main_weight, _share
from tests.worlds import synthetic_graph

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
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
epochs = {epochs}
batch_size = 500
lr = 0.01
eval_every = 2
patience = 5

[eval]
ks = [10, 20]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"  # two ranks share this machine's cores
    return env


def _train(cfg: Path, out: Path, cache: Path, *, ranks: int, resume: bool = False) -> dict:
    cli = ["-m", "graph_rec.cli", "train", str(cfg), "--out", str(out), "--cache-dir", str(cache), "--json"]
    if resume:
        cli.append("--resume")
    if ranks == 1:
        cmd = [sys.executable, *cli]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "1",
            "--nproc-per-node",
            str(ranks),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(_free_port()),
            *cli,
        ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=_env())
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "best" / "model.safetensors"))


def _assert_same_run(a: Path, b: Path) -> None:
    ha = json.loads((a / "history.json").read_text())["history"]
    hb = json.loads((b / "history.json").read_text())["history"]
    assert [h["epoch"] for h in ha] == [h["epoch"] for h in hb]
    for ea, eb in zip(ha, hb, strict=True):
        assert eb["loss"] == pytest.approx(ea["loss"], rel=1e-4)
        if "valid" in ea:
            assert eb["valid"] == pytest.approx(ea["valid"], rel=1e-4)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-4)
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert mb["test"]["metrics"] == pytest.approx(ma["test"]["metrics"], rel=1e-4)
    assert mb["test"]["num_users"] == ma["test"]["num_users"]


def test_two_gloo_ranks_under_torchrun_match_one_process_and_resume(tmp_path, cache_root) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(epochs=4))
    one, two = tmp_path / "one", tmp_path / "two"
    s1 = _train(cfg, one, cache_root, ranks=1)
    s2 = _train(cfg, two, cache_root, ranks=2)
    # rank 0 alone printed the summary and wrote the run directory
    assert json.loads((two / "run.json").read_text())["world_size"] == 2
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    _assert_same_run(one, two)
    assert s2["test"] == pytest.approx(s1["test"], rel=1e-4)
    assert s2["best_epoch"] == s1["best_epoch"]

    # a 2-rank run stopped after 2 epochs and resumed by both ranks ends where the uninterrupted one does
    resumed = tmp_path / "resumed"
    cfg2 = tmp_path / "short.toml"
    cfg2.write_text(CONFIG.format(epochs=2))
    _train(cfg2, resumed, cache_root, ranks=2)
    _train(cfg, resumed, cache_root, ranks=2, resume=True)
    _assert_same_run(two, resumed)


def test_neighbour_sampled_training_on_two_ranks_resumes_each_ranks_stream(tmp_path, cache_root) -> None:
    sampled = '\nsampling = "neighbour"\nnum_neighbours = [6]\n'
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(epochs=4).replace("patience = 5\n", "patience = 5" + sampled))
    short = tmp_path / "short.toml"
    short.write_text(CONFIG.format(epochs=2).replace("patience = 5\n", "patience = 5" + sampled))
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    _train(cfg, whole, cache_root, ranks=2)
    _train(short, resumed, cache_root, ranks=2)
    from safetensors.torch import load_file

    rng = load_file(str(resumed / "checkpoint" / "rng.safetensors"))
    assert {"extra.sampler.rank0", "extra.sampler.rank1"} <= set(rng)
    assert not torch.equal(rng["extra.sampler.rank0"], rng["extra.sampler.rank1"])  # each rank its own stream
    _train(cfg, resumed, cache_root, ranks=2, resume=True)
    _assert_same_run(whole, resumed)


# --------------------------------------------------------------------------- gradients are synchronised
def _grad_worker(rank: int, world: int, port: int, out: str, shared: bool = False) -> None:
    os.environ.update(
        WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    dist = from_env("cpu")
    try:
        from torch.nn.parallel import DistributedDataParallel

        kg, sp = synthetic_graph()
        data = RecData(kg, sp)
        model = init_model("graphrec", {"embedding_dim": 8, "num_layers": 2}, data, seed=7)
        gen = torch.Generator().manual_seed(3)
        # an odd batch: shares of 151 and 150; shared: 40 negatives for all, known positives masked
        users, pos, neg = next(epoch_batches(data.train, 301, 40 if shared else 2, gen, shared=shared))
        u, p, n, weight = _share(users, pos, neg, dist, shared=shared)
        mask = shared_negative_mask(data.train, u, n) if shared else None
        weight = _main_weight("bpr", mask, weight, dist)  # (the share of kept cells, with a mask)
        # this rank's own gradient, without synchronisation
        out_local = model.batch_scores(u, p, n)
        local = torch.autograd.grad(bpr_loss(out_local.pos, out_local.neg, mask) * weight, list(model.parameters()))
        ddp = DistributedDataParallel(_BatchForward(model), init_sync=False, forward_sync_buffers=False)
        o = ddp(u, p, n)
        (bpr_loss(o.pos, o.neg, mask) * weight).backward()
        torch.save(
            {"synced": [q.grad.clone() for q in model.parameters()], "local": list(local), "n": u.numel()},
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        dist.close()


@pytest.mark.parametrize("shared", [False, True], ids=["per-pair negatives", "shared negatives, masked"])
def test_gradients_are_averaged_across_ranks_into_the_whole_batch_gradient(tmp_path, shared) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_grad_worker, args=(2, _free_port(), str(tmp_path), shared), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert (r0["n"], r1["n"]) == (151, 150)

    kg, sp = synthetic_graph()
    data = RecData(kg, sp)
    model = init_model("graphrec", {"embedding_dim": 8, "num_layers": 2}, data, seed=7)
    users, pos, neg = next(
        epoch_batches(data.train, 301, 40 if shared else 2, torch.Generator().manual_seed(3), shared=shared)
    )
    mask = shared_negative_mask(data.train, users, neg) if shared else None
    out = model.batch_scores(users, pos, neg)
    whole = torch.autograd.grad(bpr_loss(out.pos, out.neg, mask), list(model.parameters()))
    for g0, g1, gw in zip(r0["synced"], r1["synced"], whole, strict=True):
        torch.testing.assert_close(g0, g1, rtol=0, atol=0)  # every rank holds the same gradient
        torch.testing.assert_close(g0, gw, rtol=1e-5, atol=1e-6)  # ... the whole batch's gradient
    # and a rank's own share gives a different one: the all-reduce did the work
    assert any(not torch.allclose(l0, gw, atol=1e-6) for l0, gw in zip(r0["local"], whole, strict=True))


# --------------------------------------------------------------------------- the context itself
def test_shard_bounds_cover_everything_once() -> None:
    for n in (0, 1, 5, 301):
        for world in (1, 2, 3, 8):
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            sizes = [b - a for a, b in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_from_env_without_torchrun_is_a_single_process(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = from_env("cpu")
    assert ctx == DistContext() and not ctx.enabled and ctx.is_main
    assert ctx.all_gather_object({"a": 1}) == [{"a": 1}] and ctx.broadcast_object(3) == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5 is not in 0..1"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
        ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_PORT": "1234"}, "MASTER_ADDR is not set"),
        ({"WORLD_SIZE": "2", "RANK": "0", "GRAPH_REC_DIST_BACKEND": "mpi"}, "backend must be 'gloo' or 'nccl'"),
    ],
)
def test_from_env_rejects_inconsistent_launches(monkeypatch, env, message) -> None:
    for k in ("RANK", "MASTER_ADDR", "MASTER_PORT", "GRAPH_REC_DIST_BACKEND"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=message):
        from_env("cpu")


def test_from_env_without_rank_names_the_missing_variable(monkeypatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="WORLD_SIZE=2 but RANK is not set") as info:
        from_env("cpu")
    assert "RANK=-1" not in str(info.value)  # (a value nobody set)


def test_an_nccl_group_reduces_cpu_tensors_through_gloo(monkeypatch) -> None:
    # NCCL reduces CUDA tensors only, and the trainer all-reduces CPU tensors (the epoch's losses, the
    # non-finite flag of every step): the group must give CPU tensors a backend as well
    import torch.distributed as torch_dist
    from torch.distributed.distributed_c10d import BackendConfig

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    monkeypatch.setattr(torch_dist, "is_initialized", lambda: False)
    monkeypatch.setattr(torch_dist, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.delenv("GRAPH_REC_DIST_BACKEND", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    ctx = from_env("cuda")
    assert ctx == DistContext(rank=1, world_size=2, local_rank=1, backend="nccl")
    (kw,) = calls
    devices = BackendConfig(kw["backend"]).get_device_backend_map()
    assert devices == {"cpu": "gloo", "cuda": "nccl"}
    assert (kw["rank"], kw["world_size"]) == (1, 2)


def test_ranks_given_different_configs_all_stop_naming_the_difference(tmp_path, cache_root) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(CONFIG.format(epochs=2))
    port = str(_free_port())
    procs = []
    for rank, extra in ((0, []), (1, ["--set", "train.lr=0.5"])):
        env = {**_env(), "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank)}
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        cli = ["train", str(cfg), "--out", str(tmp_path / "run"), "--cache-dir", str(cache_root), *extra]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "graph_rec.cli", *cli],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [2, 2], [o[1][-2000:] for o in outs]
    assert "train.lr: 0.01 on rank 0, 0.5 here" in outs[1][1]
    assert "differs from rank 0's" in outs[0][1]
    assert not (tmp_path / "run" / "run.json").exists()  # nothing was trained or written


def test_bad_torchrun_variables_are_config_errors(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "-3")
    with pytest.raises(ConfigError, match="WORLD_SIZE=-3 must be at least 1"):
        from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "notaport")
    with pytest.raises(ConfigError, match="MASTER_PORT='notaport' is not an integer"):
        from_env()
    monkeypatch.setenv("MASTER_PORT", "70000")
    with pytest.raises(ConfigError, match="MASTER_PORT='70000' is not a port"):
        from_env()
