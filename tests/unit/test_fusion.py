"""ModalityFusion: shapes, masking, gated weights, concat vs gated, gradients, config checks."""

from __future__ import annotations

import pytest
import torch

from graph_rec.errors import ConfigError, SchemaError
from graph_rec.models.fusion import FusionConfig, ModalityFusion

DIMS = {"text": 6, "image": 4, "kg": 3}
N = 5


def _module(mode: str, *, out_dim: int = 8, dropout: float = 0.0, seed: int = 0) -> ModalityFusion:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ModalityFusion(FusionConfig(mode=mode, out_dim=out_dim, dropout=dropout), DIMS).eval()


def _inputs(seed: int = 1) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(N, d, generator=g) for m, d in DIMS.items()}
    masks = {
        "text": torch.tensor([True, True, True, False, False]),
        "image": torch.tensor([True, False, True, False, False]),
        "kg": torch.tensor([True, False, False, True, False]),
    }
    return feats, masks


@pytest.mark.parametrize("mode", ["concat", "gated", "sum"])
def test_shapes_and_nodes_without_modality(mode: str) -> None:
    fusion = _module(mode)
    feats, masks = _inputs()
    out = fusion(feats, masks)
    assert out.shape == (N, 8) and out.dtype == torch.float32
    assert torch.equal(out[4], torch.zeros(8))  # node 4 has no modality: zeros
    assert out[:4].abs().sum(dim=1).gt(0).all()
    assert fusion(feats).shape == (N, 8)  # no masks: every modality available


@pytest.mark.parametrize("mode", ["concat", "gated", "sum"])
def test_masked_rows_do_not_contribute(mode: str) -> None:
    fusion = _module(mode)
    feats, masks = _inputs()
    base = fusion(feats, masks)
    changed = {m: x.clone() for m, x in feats.items()}
    changed["image"][1] = 1e3
    changed["image"][3] = float("nan")  # even NaN in a masked row cannot leak
    changed["kg"][2] = -7.0
    changed["text"][4] = float("inf")
    assert torch.equal(fusion(changed, masks), base)
    changed["image"][0] += 1.0  # an available row does change the output
    assert not torch.allclose(fusion(changed, masks)[0], base[0])


def test_gated_weights_sum_to_one_over_available_modalities() -> None:
    fusion = _module("gated")
    feats, masks = _inputs()
    w = fusion.modality_weights(feats, masks)
    avail = torch.stack([masks[m] for m in fusion.modalities], dim=1)
    assert w.shape == (N, 3)
    assert torch.all(w[~avail] == 0)
    assert torch.all(w[avail] > 0)
    torch.testing.assert_close(w[:4].sum(dim=1), torch.ones(4))
    assert torch.equal(w[4], torch.zeros(3))
    # a node with one modality takes exactly that modality's projection
    with torch.no_grad():
        only_text = fusion.proj["text"](feats["text"][1:2])
    torch.testing.assert_close(fusion(feats, masks)[1:2], only_text)


def test_concat_and_gated_differ_in_structure_and_output() -> None:
    concat, gated = _module("concat"), _module("gated")
    assert concat.out.in_features == 3 * 8 and not hasattr(concat, "score")
    assert hasattr(gated, "score") and not hasattr(gated, "out")
    feats, masks = _inputs()
    assert not torch.allclose(concat(feats, masks)[:4], gated(feats, masks)[:4])
    with pytest.raises(ConfigError, match="gated"):
        concat.modality_weights(feats, masks)


@pytest.mark.parametrize("mode", ["concat", "gated", "sum"])
def test_gradients_flow_to_every_parameter_and_not_to_masked_inputs(mode: str) -> None:
    fusion = _module(mode).train()
    feats, masks = _inputs()
    feats = {m: x.requires_grad_(True) for m, x in feats.items()}
    fusion(feats, masks).pow(2).sum().backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    for m, x in feats.items():
        assert torch.all(x.grad[~masks[m]] == 0), m
        assert x.grad[masks[m]].abs().sum() > 0, m


def test_dropout_only_in_training() -> None:
    fusion = _module("gated", dropout=0.5)
    feats, masks = _inputs()
    torch.testing.assert_close(fusion(feats, masks), fusion(feats, masks))
    fusion.train()
    with torch.random.fork_rng():
        torch.manual_seed(3)
        trained = fusion(feats, masks)
    assert not torch.allclose(trained, fusion.eval()(feats, masks))


def test_config_from_dict_rejects_unknown_keys_and_bad_values() -> None:
    assert FusionConfig.from_dict({"mode": "concat", "out_dim": 16}) == FusionConfig(mode="concat", out_dim=16)
    assert FusionConfig.from_dict(FusionConfig().to_dict()) == FusionConfig()
    with pytest.raises(ConfigError, match=r"\['fusion_mode'\].*valid keys: \['mode', 'out_dim', 'dropout'\]"):
        FusionConfig.from_dict({"fusion_mode": "gated"})
    with pytest.raises(ConfigError, match=r"fusion setting 'mode' must be one of 'concat', 'gated', 'sum', got 'mean'"):
        FusionConfig.from_dict({"mode": "mean"})
    with pytest.raises(ConfigError, match="out_dim"):
        FusionConfig(out_dim=0)
    with pytest.raises(ConfigError, match="out_dim"):
        FusionConfig(out_dim=True)
    with pytest.raises(ConfigError, match="dropout"):
        FusionConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="mapping"):
        FusionConfig.from_dict([("mode", "gated")])


def test_inputs_are_checked() -> None:
    fusion = _module("gated")
    feats, masks = _inputs()
    with pytest.raises(SchemaError, match=r"missing \['kg'\]"):
        fusion({m: x for m, x in feats.items() if m != "kg"}, masks)
    with pytest.raises(SchemaError, match=r"\[N, 4\]"):
        fusion({**feats, "image": torch.zeros(N, 5)}, masks)
    with pytest.raises(SchemaError, match="same number of rows"):
        fusion({**feats, "kg": torch.zeros(N + 1, 3)}, masks)
    with pytest.raises(SchemaError, match="bool"):
        fusion(feats, {**masks, "text": torch.ones(N)})
    with pytest.raises(SchemaError, match="unknown modalities"):
        fusion(feats, {"audio": torch.ones(N, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="identifiers"):
        ModalityFusion(FusionConfig(), {"text.v1": 3})
    with pytest.raises(ConfigError, match="positive integer"):
        ModalityFusion(FusionConfig(), {"text": 0})
    with pytest.raises(ConfigError, match="at least one"):
        ModalityFusion(FusionConfig(), {})
