"""The contract every registered model keeps, checked on one tiny hand-made knowledge graph.

Parametrised over ``sorted(MODELS)`` (the registry is filled by ``model_class``), so a new model is
covered as soon as it is registered.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from graph_rec.data import RecData
from graph_rec.errors import ConfigError, NotFittedError
from graph_rec.models.base import MODELS, BatchOutput, RecModel, make_model, model_class
from kg_builders.graph import EdgeStore, KnowledgeGraph
from kg_builders.split import Split

model_class("mf")  # fills the registry with the built-in models
NAMES = sorted(MODELS)
TRAINABLE = [n for n in NAMES if MODELS[n].trainable]
CLOSED_FORM = [n for n in NAMES if not MODELS[n].trainable]

# user -> items (training interactions); item 5 has none (a cold item)
TRAIN = {0: [0, 1, 2], 1: [1, 3], 2: [0, 2, 4], 3: [3, 4]}
HELD_OUT = {0: [3], 1: [0], 2: [1], 3: [5]}


def _edges(pairs: list[tuple[int, int]]) -> EdgeStore:
    ei = np.asarray(pairs, dtype=np.int64).T.reshape(2, -1)
    return EdgeStore(edge_index=ei, edge_weight=np.ones(ei.shape[1], dtype=np.float32))


def _frame(d: dict[int, list[int]]) -> pd.DataFrame:
    rows = [(f"u{u}", f"i{i}") for u, items in d.items() for i in items]
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


@pytest.fixture(scope="module")
def data() -> RecData:
    """4 users, 6 items, 2 tags, 1 entity; interactions, item-tag and item-entity edges; 8-dim text on every node."""
    node_ids = {
        "user": [f"u{k}" for k in range(4)],
        "item": [f"i{k}" for k in range(6)],
        "tag": ["t0", "t1"],
        "entity": ["e0"],
    }
    edges = {
        ("user", "interacted", "item"): _edges([(u, i) for u, items in TRAIN.items() for i in items]),
        ("item", "tagged_with", "tag"): _edges([(0, 0), (1, 0), (2, 1), (5, 1)]),
        ("item", "mentions", "entity"): _edges([(3, 0), (4, 0), (5, 0)]),
    }
    rng = np.random.default_rng(0)
    features = {t: {"text": rng.normal(size=(len(ids), 8)).astype(np.float32)} for t, ids in node_ids.items()}
    kg = KnowledgeGraph(node_ids, edges, features=features)
    split = Split(_frame(TRAIN), _frame({u: v[:1] for u, v in HELD_OUT.items()}), _frame(HELD_OUT), "random")
    return RecData(kg, split)


def _settings(name: str) -> dict[str, int]:
    fields = {f.name for f in dataclasses.fields(MODELS[name].config_class)}
    return {"embedding_dim": 8} if "embedding_dim" in fields else {}


def _build(name: str, data: RecData, seed: int = 0) -> RecModel:
    torch.manual_seed(seed)
    return make_model(name, _settings(name), data.graph, data.train)


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    users = torch.tensor([0, 1, 2, 3, 0])
    pos = torch.tensor([0, 1, 4, 3, 2])
    neg = torch.tensor([[5, 3], [0, 2], [1, 5], [0, 1], [4, 3]])
    return users, pos, neg


def _loss(out: BatchOutput) -> torch.Tensor:
    bpr = -F.logsigmoid(out.pos[:, None] - out.neg).mean()
    return bpr + 1e-4 * out.reg + sum(out.extra.values(), start=torch.zeros(()))


def _ready(name: str, data: RecData, seed: int = 0, steps: int = 3) -> RecModel:
    """A fitted closed-form model, or a trainable one moved a few optimiser steps away from its initialisation."""
    model = _build(name, data, seed)
    if model.trainable:
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(steps):
            opt.zero_grad()
            _loss(model.batch_scores(*_batch())).backward()
            opt.step()
    else:
        model.fit(data.train)
    model.eval()
    return model


def _scores(model: RecModel, users: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.scorer()(users).clone()


def test_registry_has_the_built_in_models() -> None:
    assert {"popularity", "itemknn", "ease", "mf", "lightgcn", "graphrec"} <= set(NAMES)
    assert set(CLOSED_FORM) >= {"popularity", "itemknn", "ease"}
    assert set(TRAINABLE) >= {"mf", "lightgcn", "graphrec"}


@pytest.mark.parametrize("name", NAMES)
def test_class_declares_name_config_and_paper(name: str) -> None:
    cls = MODELS[name]
    assert issubclass(cls, RecModel)
    assert cls.name == name
    assert isinstance(cls.trainable, bool)
    assert cls.paper.strip()
    assert dataclasses.is_dataclass(cls.config_class)
    assert cls.config_class.__dataclass_params__.frozen
    assert all(f.kw_only for f in dataclasses.fields(cls.config_class))
    cls.config_class()  # every setting has a default


@pytest.mark.parametrize("name", NAMES)
def test_scorer_gives_finite_scores_for_every_item(name: str, data: RecData) -> None:
    model = _ready(name, data)
    users = torch.tensor([3, 0, 2])
    scores = _scores(model, users)
    assert scores.shape == (3, data.num_items)
    assert scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    # scoring users one at a time gives the same rows as a batch
    single = torch.cat([_scores(model, users[k : k + 1]) for k in range(3)])
    torch.testing.assert_close(single, scores)


@pytest.mark.parametrize("name", NAMES)
def test_scores_can_be_masked_in_place(name: str, data: RecData) -> None:
    model = _ready(name, data)
    with torch.inference_mode():
        scores = model.scorer()(torch.tensor([0, 1]))
        before = scores[1].clone()
        scores[0, 0] = float("-inf")  # what exclude-seen does
        assert scores[0, 0] == float("-inf")
        torch.testing.assert_close(scores[1], before)


@pytest.mark.parametrize("name", TRAINABLE)
def test_trainable_batch_scores_shapes_reg_and_gradients(name: str, data: RecData) -> None:
    model = _build(name, data)
    model.train()
    users, pos, neg = _batch()
    out = model.batch_scores(users, pos, neg)
    assert isinstance(out, BatchOutput)
    assert out.pos.shape == (5,)
    assert out.neg.shape == (5, 2)
    assert out.reg.shape == ()
    assert float(out.reg.detach()) >= 0
    assert isinstance(out.extra, dict)
    assert all(v.shape == () for v in out.extra.values())
    _loss(out).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    # the batch's scores agree with the ranking scorer
    model.eval()
    out = model.batch_scores(users, pos, neg)
    full = _scores(model, users)
    torch.testing.assert_close(out.pos.detach(), full[torch.arange(5), pos], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.neg.detach(), torch.gather(full, 1, neg), rtol=1e-4, atol=1e-5)
    u, i = model.embed()
    assert u.shape[0] == data.num_users and i.shape[0] == data.num_items


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_closed_form_scores_only_after_fit(name: str, data: RecData) -> None:
    model = _build(name, data)
    assert not model.is_fitted()
    with pytest.raises(NotFittedError):
        model.scorer()
    with pytest.raises(NotImplementedError):
        model.batch_scores(*_batch())
    model.fit(data.train)
    assert model.is_fitted()
    assert _scores(model, torch.tensor([0])).shape == (1, data.num_items)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_through_safetensors_gives_identical_scores(name: str, data: RecData, tmp_path) -> None:
    model = _ready(name, data, seed=0)
    users = torch.arange(data.num_users)
    expected = _scores(model, users)
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    fresh = _build(name, data, seed=1)
    if fresh.trainable:  # a different seed gives different parameters
        assert not torch.allclose(_scores(fresh.eval(), users), expected)
    else:
        assert not fresh.is_fitted()
    fresh.load_state_dict(load_file(str(path)), strict=True)
    fresh.eval()
    assert fresh.is_fitted()
    torch.testing.assert_close(_scores(fresh, users), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_scores(name: str, data: RecData) -> None:
    users = torch.arange(data.num_users)
    a = _scores(_ready(name, data, seed=3), users)
    b = _scores(_ready(name, data, seed=3), users)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_config_typo_lists_the_valid_keys(name: str, data: RecData) -> None:
    valid = [f.name for f in dataclasses.fields(MODELS[name].config_class)]
    with pytest.raises(ConfigError) as err:
        make_model(name, {"embeding_dimm": 8}, data.graph, data.train)
    msg = str(err.value)
    assert "embeding_dimm" in msg
    assert "valid keys" in msg
    assert all(k in msg for k in valid)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_config_class_is_rejected(name: str, data: RecData) -> None:
    other = next(n for n in NAMES if MODELS[n].config_class is not MODELS[name].config_class)
    with pytest.raises(ConfigError, match=MODELS[name].config_class.__name__):
        MODELS[name](MODELS[other].config_class(), data.graph, data.train)


def test_unknown_model_lists_the_registered_models(data: RecData) -> None:
    with pytest.raises(ConfigError) as err:
        make_model("lightgnc", {}, data.graph, data.train)
    msg = str(err.value)
    assert "lightgnc" in msg
    assert all(n in msg for n in NAMES)
