"""Training settings: one frozen dataclass, read from a mapping (a TOML table) with strict keys."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from graph_rec.data import check_float, check_int, config_from_dict, config_to_dict
from graph_rec.errors import ConfigError

LOSSES = ("bpr", "softmax")
SAMPLING = ("full", "neighbour")
#: train settings a resumed run may change (everything else must match the checkpoint)
RESUMABLE_CHANGES = ("epochs", "max_seconds", "device")
_METRIC = re.compile(r"^(recall|ndcg|precision|hit|mrr)@([1-9][0-9]*)\Z")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How a gradient-trained model is fitted.

    Args:
        epochs: maximum number of passes over the training interactions.
        batch_size: training (user, positive) pairs per step; each step propagates the whole graph once.
        lr: Adam learning rate.
        l2: weight of the regulariser (squared norm of the batch's layer-0 embeddings / B).
        loss: ``"bpr"`` (Rendle et al., UAI 2009) or ``"softmax"`` (sampled softmax over the
            positive and ``num_negatives`` uniform negatives, temperature ``temperature``).
        num_negatives: negatives sampled per positive, never a known training positive of the user.
        shared_negatives: sample ``num_negatives`` items once per batch and score every user of the
            batch against them (one matrix product instead of a gather per pair; what makes
            hundreds of softmax negatives cheap). A sampled item that is a training positive of a
            user is masked out of that user's loss.
        temperature: softmax temperature (``loss="softmax"`` only).
        eval_every: evaluate on validation every this many epochs.
        patience: stop after this many evaluations without improving ``metric``.
        metric: the validation metric that selects the best epoch, e.g. ``"recall@20"``.
        min_delta: an improvement smaller than this does not count.
        seed: seeds initialisation, sampling and dropout (through forked generators).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"`` (CUDA when available).
        grad_clip: clip the gradient norm to this (0: off).
        max_seconds: stop training after this wall time (0: no limit). The epoch that reaches it is
            evaluated on validation; a run stopped by it goes on when resumed with a larger limit or none.
        checkpoint_every: write a resumable checkpoint every this many epochs (0: only at evaluations).
        sampling: ``"full"`` propagates the whole graph at every step; ``"neighbour"`` propagates
            only over a sampled neighbourhood of the batch's nodes (:mod:`graph_rec.training.sampled`:
            memory bounded by the fan-outs, for graphs whose full propagation does not fit), and
            validation embeddings are computed layer by layer in row batches.
        num_neighbours: neighbour sampling's fan-out per hop (one value for every hop, or one per
            propagation layer), e.g. ``[10, 10, 10]``.
        inference_batch_size: rows per batch of the layer-wise validation embeddings (sampling
            ``"neighbour"`` only).
    """

    epochs: int = 300
    batch_size: int = 4096
    lr: float = 1e-3
    l2: float = 1e-4
    loss: Literal["bpr", "softmax"] = "bpr"
    num_negatives: int = 1
    shared_negatives: bool = False
    temperature: float = 0.2
    eval_every: int = 5
    patience: int = 5
    metric: str = "recall@20"
    min_delta: float = 0.0
    seed: int = 2026
    device: str = "cpu"
    grad_clip: float = 0.0
    max_seconds: float = 0.0
    checkpoint_every: int = 0
    sampling: Literal["full", "neighbour"] = "full"
    num_neighbours: tuple[int, ...] = (10,)
    inference_batch_size: int = 65536

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "num_negatives", "eval_every", "patience"):
            check_int(f"train.{name}", getattr(self, name), minimum=1)
        check_int("train.seed", self.seed, maximum=2**63 - 1)
        check_int("train.checkpoint_every", self.checkpoint_every)
        check_float("train.lr", self.lr, open_low=True)
        check_float("train.l2", self.l2)
        check_float("train.temperature", self.temperature, open_low=True)
        check_float("train.min_delta", self.min_delta)
        check_float("train.grad_clip", self.grad_clip)
        check_float("train.max_seconds", self.max_seconds)
        if not isinstance(self.shared_negatives, bool):
            raise ConfigError(f"shared_negatives must be true or false, got {self.shared_negatives!r}")
        if self.sampling not in SAMPLING:
            raise ConfigError(f"sampling must be one of {list(SAMPLING)}, got {self.sampling!r}")
        if (
            isinstance(self.num_neighbours, str | int)
            or not isinstance(self.num_neighbours, tuple | list)
            or not (self.num_neighbours)
        ):
            raise ConfigError(
                f"num_neighbours must be a non-empty list of positive integers, got {self.num_neighbours!r}"
            )
        for k in self.num_neighbours:
            check_int("each of train.num_neighbours", k, minimum=1)
        object.__setattr__(self, "num_neighbours", tuple(int(k) for k in self.num_neighbours))
        check_int("train.inference_batch_size", self.inference_batch_size, minimum=1)
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if not isinstance(self.metric, str) or not _METRIC.match(self.metric):
            raise ConfigError(
                f"metric must look like 'recall@20' (recall, ndcg, precision, hit, mrr), got {self.metric!r}"
            )
        if not isinstance(self.device, str) or not re.match(r"^(cpu|auto|cuda(:[0-9]+)?|mps)$", self.device):
            raise ConfigError(f"device must be 'cpu', 'auto', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")

    def fanouts(self, num_layers: int) -> list[int]:
        """The fan-out of each of ``num_layers`` hops (a single value applies to every hop)."""
        if len(self.num_neighbours) == 1:
            return list(self.num_neighbours) * num_layers
        if len(self.num_neighbours) != num_layers:
            raise ConfigError(
                f"num_neighbours has {len(self.num_neighbours)} fan-outs but the model has {num_layers} layers: "
                "give one per layer, or a single value for all"
            )
        return list(self.num_neighbours)

    @property
    def metric_k(self) -> int:
        return int(self.metric.split("@")[1])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        return config_from_dict(cls, d, "train")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
