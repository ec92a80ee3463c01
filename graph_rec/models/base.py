"""The contract every recommendation model keeps, and the registry of models.

A model is a ``torch.nn.Module`` built from ``(config, graph, train)``:

* ``config``: its frozen ``@dataclass(kw_only=True)`` settings (``config_class``);
* ``graph``: the :class:`~graph_rec.data.GraphTensors` it may propagate over and read features from;
* ``train``: the training positives, :class:`~graph_rec.data.UserItems`.

Two kinds:

* gradient-trained (``trainable = True``): :meth:`RecModel.batch_scores` gives the scores of a
  batch of (user, positive, negatives) and the regularisation terms; the trainer turns them into
  a loss (BPR or sampled softmax) and steps the optimiser;
* closed-form (``trainable = False``): :meth:`RecModel.fit` computes the model from ``train``
  once (popularity, ItemKNN, EASE).

Both give a :class:`Scorer` for ranking: ``scorer(users) -> [B, num_items]`` scores, computed in
batches of users, never as one ``num_users x num_items`` matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from graph_rec.data import GraphTensors, UserItems, config_from_dict
from graph_rec.errors import ConfigError, NotFittedError


@dataclass(frozen=True)
class BatchOutput:
    """What a gradient-trained model returns for one training batch.

    Attributes:
        pos: ``[B]`` scores of the positive items.
        neg: ``[B, num_negatives]`` scores of the sampled negatives.
        reg: scalar, the squared L2 norm of the layer-0 parameters the batch touched, divided by
            ``B`` (LightGCN's regulariser); the trainer multiplies it by ``l2``.
        extra: named extra loss terms, already weighted (e.g. ``{"align": ...}``); added to the loss.
    """

    pos: Tensor
    neg: Tensor
    reg: Tensor
    extra: dict[str, Tensor]


class Scorer:
    """Scores a batch of users against every item.

    The default scores with embeddings, ``users_repr[users] @ items_repr.T``; closed-form models
    give their own function. The function must return a new tensor per call (not a view of, or the
    same object as, data it keeps): the evaluator and the recommender mask known items in it in place.
    """

    def __init__(self, fn: Any, *, item_repr: Tensor | None = None, user_repr: Tensor | None = None) -> None:
        self._fn = fn
        self.item_repr = item_repr
        self.user_repr = user_repr

    @classmethod
    def from_embeddings(cls, user_repr: Tensor, item_repr: Tensor) -> Scorer:
        """``[num_users, d]`` and ``[num_items, d]`` representations scored by inner product."""
        item_t = item_repr.t().contiguous()
        return cls(lambda users: user_repr[users] @ item_t, item_repr=item_repr, user_repr=user_repr)

    def __call__(self, users: Tensor) -> Tensor:
        """``[B]`` user indices -> ``[B, num_items]`` scores."""
        return self._fn(users)


class RecModel(nn.Module):
    """Base class: registry name, config class and the shared behaviour of every model."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    trainable: ClassVar[bool] = True
    paper: ClassVar[str] = ""

    def __init__(self, config: Any, graph: GraphTensors, train: UserItems) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.num_users = graph.node_counts["user"]
        self.num_items = graph.node_counts["item"]
        if train.num_users != self.num_users or train.num_items != self.num_items:
            raise ConfigError(
                f"train is {train.num_users}x{train.num_items} but the graph has {self.num_users} users and "
                f"{self.num_items} items"
            )

    # ---------------------------------------------------------------- gradient-trained models
    def batch_scores(self, users: Tensor, pos: Tensor, neg: Tensor) -> BatchOutput:
        """Scores of ``[B]`` users with ``[B]`` positives and negatives, with the regulariser.

        ``neg`` is ``[B, n]`` (negatives per pair) or ``[n]`` (negatives shared by the whole batch);
        either way ``BatchOutput.neg`` is ``[B, n]`` (use :func:`neg_scores`).
        """
        raise NotImplementedError(f"{type(self).__name__} is fitted in closed form; it has no batch_scores")

    def embed(self) -> tuple[Tensor, Tensor]:
        """``([num_users, d], [num_items, d])`` final representations (embedding models only)."""
        raise NotImplementedError(f"{type(self).__name__} has no embeddings")

    # ---------------------------------------------------------------- closed-form models
    def fit(self, train: UserItems) -> None:
        """Fit in closed form (only models with ``trainable = False``)."""
        raise NotImplementedError(f"{type(self).__name__} is trained by gradient descent; use the trainer")

    # ---------------------------------------------------------------- ranking
    def scorer(self) -> Scorer:
        """A :class:`Scorer` over the current parameters (call under ``torch.inference_mode``)."""
        users, items = self.embed()
        return Scorer.from_embeddings(users, items)

    def is_fitted(self) -> bool:
        return True

    def check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"{type(self).__name__} has not been fitted")

    def extra_repr(self) -> str:
        return f"num_users={self.num_users}, num_items={self.num_items}"


MODELS: dict[str, type[RecModel]] = {}


def register(cls: type[RecModel]) -> type[RecModel]:
    """Class decorator: add a model to :data:`MODELS` under ``cls.name``."""
    if not cls.name or cls.name in MODELS:
        raise ConfigError(f"model name {cls.name!r} is empty or already registered")
    MODELS[cls.name] = cls
    return cls


def model_class(name: str) -> type[RecModel]:
    _load_builtin()
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    return MODELS[name]


def make_model(name: str, settings: Mapping[str, Any], graph: GraphTensors, train: UserItems) -> RecModel:
    """Build the registered model ``name`` from a settings mapping (unknown keys are an error)."""
    cls = model_class(name)
    config = config_from_dict(cls.config_class, settings, f"model {name!r}")
    return cls(config, graph, train)


def _load_builtin() -> None:
    # the registry is filled by importing the model modules
    from graph_rec.models import baselines, graphrec  # noqa: F401


def neg_scores(user_repr: Tensor, neg_repr: Tensor) -> Tensor:
    """Scores of negatives: ``[B, d]`` with ``[B, n, d]`` (one set per pair) or ``[n, d]`` (shared) -> ``[B, n]``."""
    if neg_repr.dim() == 2:
        return user_repr @ neg_repr.t()
    return torch.einsum("bd,bnd->bn", user_repr, neg_repr)


def l2_of(*tensors: Tensor) -> Tensor:
    """Sum of squared entries of the tensors (the LightGCN regulariser, before dividing by B)."""
    return sum((t.pow(2).sum() for t in tensors), start=torch.zeros(()))
