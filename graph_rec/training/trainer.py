"""One generic trainer for every registered model: sampling, loss, validation, early stopping, checkpoints.

Gradient-trained models are fitted with Adam on BPR or sampled-softmax batches; each step
propagates the whole graph once (full-graph training), samples negatives with a seeded generator,
and the validation metric is computed every ``eval_every`` epochs by the full-ranking evaluator.
Closed-form models are fitted once and validated once. Everything random flows from
``TrainConfig.seed`` through a forked RNG, so two runs with the same seed give the same history,
and a run resumed from its checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from graph_rec.data import RecData, config_to_dict, data_fingerprint, features_digest
from graph_rec.distributed import SINGLE, DistContext
from graph_rec.errors import CheckpointError, ConfigError, DataError
from graph_rec.eval.evaluator import EvalConfig, evaluate
from graph_rec.models.base import RecModel, Scorer, make_model
from graph_rec.training.checkpoint import load_checkpoint, save_checkpoint, save_state_dict
from graph_rec.training.config import RESUMABLE_CHANGES, TrainConfig
from graph_rec.training.losses import bpr_loss, softmax_loss
from graph_rec.training.sampling import epoch_batches, shared_negative_mask

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        history: one dict per epoch: ``epoch``, ``loss`` (and its parts), ``seconds`` since the start,
            and at evaluation epochs ``valid`` (metric name -> value).
        best_epoch: the epoch whose weights the model holds at the end (0 for closed-form models).
        best_valid: the validation metrics of that epoch.
        seconds: training wall time (this process and earlier ones for a resumed run).
        seconds_to_best: wall time until the best epoch had been evaluated.
        stopped: ``"early_stopping"``, ``"epochs"``, ``"max_seconds"`` or ``"closed_form"``.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    seconds_to_best: float = 0.0
    stopped: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "best_valid": self.best_valid,
            "seconds": round(self.seconds, 3),
            "seconds_to_best": round(self.seconds_to_best, 3),
            "stopped": self.stopped,
            "history": self.history,
        }


def resolve_device(name: str) -> torch.device:
    """The device of a ``TrainConfig.device`` setting in a single process (``"auto"``: CUDA when available)."""
    return SINGLE.device(name)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """torch's global RNG seeded with ``seed`` inside the block and given back as it was after it.

    On a CUDA ``device`` every CUDA device's generator is seeded and restored too (dropout on the
    GPU draws from it); otherwise CUDA is left alone, not even seeded lazily.
    """
    cuda = device is not None and device.type == "cuda"
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed_all(seed)
        yield


def init_model(name: str, settings: Mapping[str, Any], data: RecData, *, seed: int) -> RecModel:
    """Build a registered model with its parameters initialised from ``seed`` (global RNG untouched)."""
    with seeded(seed):
        return make_model(name, settings, data.graph, data.train)


def fit(
    model: RecModel,
    data: RecData,
    config: TrainConfig | None = None,
    *,
    eval_config: EvalConfig | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    fingerprint: Mapping[str, Any] | None = None,
    progress: bool = False,
    dist: DistContext | None = None,
) -> TrainResult:
    """Fit ``model`` on ``data.train``, selecting the epoch on ``data.valid``.

    Args:
        model: a registered model, built on ``data`` (e.g. with :func:`init_model`).
        data: the training graph, positives and validation pairs.
        config: training settings.
        eval_config: validation settings (``ks`` must include ``config.metric``'s k).
        run_dir: where checkpoints (``checkpoint/``) and the best weights (``best/``) go; None keeps
            everything in memory.
        resume: continue from ``run_dir/checkpoint`` (a :class:`CheckpointError` if it is missing or
            was written by a different run).
        fingerprint: what a resumed run must match (configs, data shape); stored in checkpoints. The
            training and validation settings are added, and with ``run_dir`` the model, the data
            (counts, SHA-256 of pairs and edges) and a SHA-256 of the node features, unless given.
        progress: show a tqdm bar over epochs.
        dist: the data-parallel group (:func:`graph_rec.distributed.from_env`; every rank calls
            ``fit`` with the same arguments). Every rank draws the same shuffled batches from the
            shared seed and trains on its own contiguous share of each batch; the model is wrapped in
            :class:`~torch.nn.parallel.DistributedDataParallel`, which averages the gradients, and
            each share's loss is weighted by its size, so a step equals one process's step on the
            whole batch (``batch_size`` stays the global batch). Validation is sharded over users
            and gathered; rank 0 alone writes ``run_dir``. The id/text alignment loss is computed
            per share (not identical to one process's).

    Returns:
        a :class:`TrainResult`; the model holds the best epoch's weights.
    """
    config = config or TrainConfig()
    k = config.metric_k
    eval_config = eval_config or EvalConfig(ks=tuple(sorted({10, 20, k})), beyond_accuracy=False)
    if model.trainable:  # a closed-form model is validated once, with no epoch to select
        check_selection_metric(config, eval_config)
    if data.valid.nnz == 0:
        raise DataError("the data has no validation pairs: early stopping needs a split with a validation part")
    check_sampling(model, config)
    dist = dist or SINGLE
    device = dist.device(config.device)
    model.to(device)
    run = Path(run_dir) if run_dir is not None else None
    fingerprint = dict(fingerprint or {})
    # a resume must match the training settings, the model and the data, whoever calls (the run
    # layer gives its own model, view and data entries, as written in run.json)
    fingerprint.setdefault("train", {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES})
    # the validation protocol decides which epoch is best and when to stop
    fingerprint.setdefault("eval", eval_config.to_dict())
    if run_dir is not None and "model" not in fingerprint:
        fingerprint["model"] = {"name": model.name, **config_to_dict(model.config)}
    if run_dir is not None and "data" not in fingerprint:
        fingerprint["data"] = data_fingerprint(data)
    if run_dir is not None and isinstance(fingerprint["data"], dict) and "features" not in fingerprint["data"]:
        fingerprint["data"] = {**fingerprint["data"], "features": features_digest(data)}
    t_start = time.perf_counter()

    if not model.trainable:
        model.fit(data.train)
        with torch.inference_mode():
            res = evaluate(model.scorer(), data, part="valid", config=eval_config, dist=dist)
        secs = time.perf_counter() - t_start
        result = TrainResult(
            history=[{"epoch": 0, "seconds": round(secs, 3), "valid": res.metrics}],
            best_epoch=0,
            best_valid=res.metrics,
            seconds=secs,
            seconds_to_best=secs,
            stopped="closed_form",
        )
        if run is not None and dist.is_main:
            (run / "best").mkdir(parents=True, exist_ok=True)
            save_state_dict(model, run / "best" / "model.safetensors")
        dist.barrier()
        return result

    if data.train.nnz == 0:
        raise DataError("no training interactions")
    if not config.shared_negatives:  # a per-pair negative must exist for every training user
        full = torch.nonzero(data.train.counts() >= data.num_items).flatten()
        if full.numel():
            ids = [data.user_ids[int(u)] for u in full[:10]]
            raise DataError(
                f"{full.numel()} user(s) interacted with every one of the {data.num_items} items, so no negative "
                f"exists for them (first: {ids}); drop them or train with shared_negatives = true"
            )
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    with seeded(config.seed, device):
        dist.broadcast_parameters(model)
        return _loop(
            model, data, config, eval_config, opt, gen, device, run, resume, fingerprint, progress, t_start, dist
        )


def _loop(
    model: RecModel,
    data: RecData,
    config: TrainConfig,
    eval_config: EvalConfig,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    device: torch.device,
    run: Path | None,
    resume: bool,
    fingerprint: dict[str, Any],
    progress: bool,
    t_start: float,
    dist: DistContext,
) -> TrainResult:
    result = TrainResult()
    start_epoch, bad_evals, best_score = 1, 0, float("-inf")
    elapsed_before = 0.0
    best_state: dict[str, torch.Tensor] | None = None
    sampler = None
    extra_rng: dict[str, Tensor] = {}
    if config.sampling == "neighbour":
        from graph_rec.training.sampled import NeighbourSampler

        # each rank samples the neighbourhoods of its own share with its own stream
        sample_gen = torch.Generator(device=device).manual_seed(config.seed + 1_000_003 * (dist.rank + 1))
        sampler = NeighbourSampler.from_propagation(
            model.propagation, config.fanouts(model.config.num_layers), generator=sample_gen
        )
    if resume:
        if run is None:
            raise ConfigError("resume needs a run directory")
        state = load_checkpoint(run / "checkpoint", model=model, optimizer=opt, generator=gen, fingerprint=fingerprint)
        start_epoch = int(state["epoch"]) + 1
        if start_epoch - 1 > config.epochs:
            raise CheckpointError(
                f"cannot resume {run}: its checkpoint has trained {start_epoch - 1} epochs and train.epochs is "
                f"{config.epochs}; give train.epochs >= {start_epoch - 1} (more to train on)"
            )
        last = state["history"][-1] if state["history"] else {}
        if start_epoch - 1 == config.epochs and not state.get("finished") and "valid" not in last:
            # a run of train.epochs epochs evaluates its last one; this checkpoint's last was not
            raise CheckpointError(
                f"cannot resume {run}: its checkpoint stopped after epoch {start_epoch - 1}, which was never "
                f"evaluated, and train.epochs is {config.epochs}; give train.epochs > {start_epoch - 1}"
            )
        bad_evals = int(state["bad_evals"])
        best_score = float(state["best_score"]) if state["best_score"] is not None else float("-inf")
        elapsed_before = float(state["seconds"])
        result.history = list(state["history"])
        result.best_epoch = int(state["best_epoch"])
        result.best_valid = dict(state["best_valid"])
        result.seconds_to_best = float(state["seconds_to_best"])
        best_file = run / "best" / "model.safetensors"
        if state.get("best_state") is not None:  # written with the counters, so of their best epoch
            best_state = state["best_state"]
        elif result.best_epoch and best_file.is_file():  # a checkpoint from before best.safetensors
            from safetensors.torch import load_file

            best_state = load_file(str(best_file))
        if sampler is not None:
            key = f"sampler.rank{dist.rank}"
            if key not in state["extra_rng"]:
                raise CheckpointError(
                    f"{run / 'checkpoint'} was written by {state.get('world_size', 1)} rank(s) and has no "
                    f"neighbour-sampling state for rank {dist.rank}: resume with the same number of ranks"
                )
            try:
                sampler.generator.set_state(state["extra_rng"][key])
            except RuntimeError:  # written on another kind of device (a CUDA and a CPU state differ)
                sampler.generator.manual_seed(config.seed + 1_000_003 * (dist.rank + 1) + start_epoch)
                logger.warning(
                    "the checkpoint's neighbour-sampling state is of another kind of device than "
                    "train.device %r: sampling restarts from a seed, so the run goes on but not bit for bit",
                    config.device,
                )
        logger.info("resumed from %s at epoch %d", run / "checkpoint", start_epoch)
        stopped_before = state.get("stopped", "epochs")
        # a run stopped by its time limit goes on when resumed with more time (or none)
        more_time = stopped_before == "max_seconds" and (not config.max_seconds or elapsed_before < config.max_seconds)
        if state.get("finished") and (start_epoch > config.epochs or not (stopped_before == "epochs" or more_time)):
            if best_state is not None:
                model.load_state_dict({k: v.to(device) for k, v in best_state.items()})
                _write_best(run, best_state, dist)
            model.eval()
            result.seconds = elapsed_before
            result.stopped = stopped_before
            return result

    def now() -> float:
        return elapsed_before + time.perf_counter() - t_start

    bar = None
    if progress and dist.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, initial=start_epoch - 1, desc=f"train {model.name}", unit="epoch")
    step_module: torch.nn.Module = _BatchForward(model, sampler)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        step_module = DistributedDataParallel(
            step_module,
            device_ids=[device.index] if device.type == "cuda" else None,
            # buffers (features, the graph) are built identically on every rank and never synced;
            # fit() broadcast rank 0's parameters already
            init_sync=False,
            forward_sync_buffers=False,
            find_unused_parameters=True,  # e.g. the relation weights of a model without relations
        )
    stopped = "epochs"
    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.epochs + 1):
        model.train()
        sums: dict[str, float] = {}
        steps = 0
        batches = epoch_batches(
            data.train, config.batch_size, config.num_negatives, gen, shared=config.shared_negatives
        )
        for users, pos, neg in batches:
            users, pos, neg, weight = _share(users, pos, neg, dist, shared=config.shared_negatives)
            mask = shared_negative_mask(data.train, users, neg).to(device) if config.shared_negatives else None
            users, pos, neg = users.to(device), pos.to(device), neg.to(device)
            out = step_module(users, pos, neg)
            main = (
                bpr_loss(out.pos, out.neg, mask)
                if config.loss == "bpr"
                else softmax_loss(out.pos, out.neg, config.temperature, mask)
            )
            loss = main + config.l2 * out.reg
            for v in out.extra.values():
                loss = loss + v
            _check_finite(loss, epoch, config, dist)
            opt.zero_grad(set_to_none=True)
            # DDP averages over ranks: the sum of the share-weighted means is the batch's mean
            w_main = _main_weight(config.loss, mask, weight, dist)
            ((loss * weight) if w_main == weight else (main * w_main + (loss - main) * weight)).backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            steps += 1
            m, total = float(main.detach()), float(loss.detach())
            parts = {"loss": total * weight + m * (w_main - weight), config.loss: m * w_main}
            parts |= {k: float(v.detach()) * weight for k, v in {"reg": out.reg, **out.extra}.items()}
            for key, v in parts.items():
                sums[key] = sums.get(key, 0.0) + v
        if dist.enabled:  # the epoch's losses as one process would log them
            keys = sorted(sums)
            total = dist.all_reduce_sum(torch.tensor([sums[k] for k in keys], dtype=torch.float64))
            sums = {k: float(v) / dist.world_size for k, v in zip(keys, total, strict=True)}
        entry: dict[str, Any] = {"epoch": epoch, **{k: v / max(steps, 1) for k, v in sums.items()}}
        improved = False
        # the time limit is checked on rank 0's clock, the same on every rank; an epoch that ends
        # the training is evaluated even between evaluation epochs, so no trained epoch goes unseen
        time_up = bool(config.max_seconds) and dist.broadcast_object(now()) >= config.max_seconds
        if epoch % config.eval_every == 0 or epoch == config.epochs or time_up:
            model.eval()
            with torch.inference_mode():
                res = evaluate(scorer_for(model, config), data, part="valid", config=eval_config, dist=dist)
            entry["valid"] = res.metrics
            score = res.metrics[config.metric]
            if score > best_score + config.min_delta:
                best_score, bad_evals, improved = score, 0, True
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                result.best_epoch, result.best_valid = epoch, dict(res.metrics)
            else:
                bad_evals += 1
        entry["seconds"] = round(dist.broadcast_object(now()) if dist.enabled else now(), 3)
        if "valid" in entry and dist.is_main:
            logger.info(
                "epoch %d: loss %.4f, valid %s %.4f (%.1f s)",
                epoch,
                entry["loss"],
                config.metric,
                score,
                entry["seconds"],
            )
        if improved:
            result.seconds_to_best = entry["seconds"]
        result.history.append(entry)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{entry['loss']:.4f}", **({config.metric: f"{best_score:.4f}"} if best_state else {}))
        if bad_evals >= config.patience:
            stopped = "early_stopping"
        elif time_up:  # (decided before the evaluation above, so the last epoch is always evaluated)
            stopped = "max_seconds"
        finished = stopped != "epochs" or epoch == config.epochs
        write = run is not None and (
            improved
            or finished
            or "valid" in entry
            or bool(config.checkpoint_every and epoch % config.checkpoint_every == 0)
        )
        if write and sampler is not None:  # every rank's sampling stream, so that each resumes its own
            states = dist.all_gather_object(sampler.generator.get_state())
            extra_rng = {f"sampler.rank{r}": st for r, st in enumerate(states)}
        if write and dist.is_main:
            if improved:
                (run / "best").mkdir(parents=True, exist_ok=True)
                save_state_dict(model, run / "best" / "model.safetensors")  # (atomic)
            save_checkpoint(
                run / "checkpoint",
                model=model,
                optimizer=opt,
                generator=gen,
                state={
                    "epoch": epoch,
                    "bad_evals": bad_evals,
                    "best_score": best_score if best_state is not None else None,
                    "best_epoch": result.best_epoch,
                    "best_valid": result.best_valid,
                    "seconds": now(),
                    "seconds_to_best": result.seconds_to_best,
                    "history": result.history,
                    "fingerprint": fingerprint,
                    "finished": finished,
                    "stopped": stopped,
                    "world_size": dist.world_size,
                },
                extra_rng=extra_rng,
                best=best_state,
            )
        if stopped != "epochs":
            break
    if bar is not None:
        bar.close()
    dist.barrier()  # rank 0 has written its files
    if best_state is None:
        raise CheckpointError("training ended before any validation: lower eval_every or raise epochs")
    model.load_state_dict(best_state)
    model.eval()
    if run is not None:  # (a run killed between best/ and the checkpoint could have left a later best/)
        _write_best(run, best_state, dist)
    result.seconds = dist.broadcast_object(now()) if dist.enabled else now()
    result.stopped = stopped
    logger.info(
        "%s: best %s %.4f at epoch %d of %d (%s, %.1f s)",
        model.name,
        config.metric,
        best_score,
        result.best_epoch,
        epoch,
        stopped,
        result.seconds,
    )
    return result


def _write_best(run: Path, best_state: dict[str, Tensor], dist: DistContext) -> None:
    """``run/best/model.safetensors`` from the result's weights (rank 0 writes; atomic)."""
    if dist.is_main:
        (run / "best").mkdir(parents=True, exist_ok=True)
        save_state_dict(best_state, run / "best" / "model.safetensors")
    dist.barrier()


def check_sampling(model: RecModel, config: TrainConfig) -> None:
    """With ``train.sampling = "neighbour"``: a ConfigError unless ``model`` trains on sampled
    neighbourhoods (a propagation model with the hooks, fan-outs that fit its layers)."""
    if config.sampling != "neighbour":
        return
    from graph_rec.training.sampled import check_model

    try:
        if not model.trainable:
            raise ConfigError(f"{model.name!r} is fitted in closed form, on every interaction at once")
        check_model(model, training=True)
    except ConfigError as exc:
        raise ConfigError(f"train.sampling = 'neighbour' cannot train model {model.name!r}: {exc}") from exc
    try:
        config.fanouts(model.config.num_layers)
    except ConfigError as exc:
        raise ConfigError(f"train.{exc}") from exc


def check_selection_metric(config: TrainConfig, eval_config: EvalConfig) -> None:
    """``config.metric`` (e.g. ``"ndcg@20"``) is among what ``eval_config`` computes, or a ConfigError."""
    name, k = config.metric.split("@")[0], config.metric_k
    if k not in eval_config.ks:
        raise ConfigError(f"train.metric {config.metric!r} needs k={k} in eval.ks {list(eval_config.ks)}")
    if name not in eval_config.metrics:
        raise ConfigError(f"train.metric {config.metric!r} needs {name!r} in eval.metrics {list(eval_config.metrics)}")


def scorer_for(model: RecModel, config: TrainConfig) -> Scorer:
    """The scorer validation uses: the model's own, or with neighbour sampling the layer-wise embeddings.

    Layer-wise inference (:func:`graph_rec.training.sampled.layerwise_embed`) computes the same
    embeddings as ``model.embed()`` in row batches of ``config.inference_batch_size``, holding a few
    ``[N, d]`` matrices and no autograd state.
    """
    if config.sampling != "neighbour":
        return model.scorer()
    from graph_rec.training.sampled import layerwise_embed

    return Scorer.from_embeddings(*layerwise_embed(model, batch_size=config.inference_batch_size))


class _BatchForward(torch.nn.Module):
    """``forward(users, pos, neg)``: the batch's scores, over the whole graph or a sampled neighbourhood.

    The module DistributedDataParallel wraps (so its gradient hooks see every parameter of ``model``).
    """

    def __init__(self, model: RecModel, sampler: Any = None) -> None:
        super().__init__()
        self.model = model
        self.sampler = sampler

    def forward(self, users: Tensor, pos: Tensor, neg: Tensor) -> Any:
        if self.sampler is None:
            return self.model.batch_scores(users, pos, neg)
        from graph_rec.training.sampled import sampled_batch_scores

        return sampled_batch_scores(self.model, self.sampler, users, pos, neg)


def _share(
    users: Tensor, pos: Tensor, neg: Tensor, dist: DistContext, *, shared: bool
) -> tuple[Tensor, Tensor, Tensor, float]:
    """This rank's contiguous share of a batch and the weight of its mean loss (1 in one process).

    With ``n_r`` pairs out of ``B`` on rank ``r`` of ``R``, a weight of ``R n_r / B`` makes DDP's
    average of the ranks' gradients the gradient of the whole batch's mean loss. A rank whose share
    is empty (a last batch smaller than the group) still runs the step, on one pair, with weight 0,
    because every rank must take part in the gradient all-reduce.
    """
    if not dist.enabled:
        return users, pos, neg, 1.0
    b = users.numel()
    sel = dist.shard(b)
    n = sel.stop - sel.start
    weight = dist.world_size * n / b
    if n == 0:
        sel, weight = slice(0, 1), 0.0
    return users[sel], pos[sel], (neg if shared else neg[sel]), weight


def _main_weight(loss: str, mask: Tensor | None, weight: float, dist: DistContext) -> float:
    """The weight of this rank's ranking loss in a step that equals one process's on the whole batch.

    BPR with masked shared negatives is a mean over the kept (pair, negative) cells, and ranks keep
    different shares of them: its weight is ``R k_r / K`` (``k_r`` this rank's kept cells, ``K``
    the batch's), not the share of pairs ``weight``. Other losses are means over pairs.
    """
    if not dist.enabled or loss != "bpr" or mask is None:
        return weight
    kept = float((~mask).sum()) if weight > 0 else 0.0  # (a rank with an empty share runs one pair, weight 0)
    total = float(dist.all_reduce_sum(torch.tensor([kept], dtype=torch.float64))[0])
    return dist.world_size * kept / max(total, 1.0)


def _check_finite(loss: Tensor, epoch: int, config: TrainConfig, dist: DistContext) -> None:
    """Raise on a NaN or infinite loss; in a group every rank raises together (no rank waits forever)."""
    bad = not bool(torch.isfinite(loss))
    if dist.enabled:
        bad = bool(dist.all_reduce_sum(torch.tensor([float(bad)])) > 0)
    if bad:
        raise DataError(
            f"the loss became {float(loss)} at epoch {epoch} (check features for huge values, or lower lr={config.lr})"
        )
