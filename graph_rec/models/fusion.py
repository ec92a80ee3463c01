"""Fusion of per-node modality features (text, image, ...) into one input vector per node.

Each modality ``m`` with features ``x_m`` ``[N, d_m]`` is projected to ``h_m = W_m x_m + b_m``
``[N, out_dim]``. Two ways to combine the projections:

- ``"concat"``: ``z = W [h_1; ...; h_M] + b``, one linear layer over the concatenation.
- ``"gated"``: attention over modalities, per node. Each available modality gets a score
  ``s_m = q^T tanh(A h_m + a) + c_m`` (``q``, ``A``, ``a`` shared across modalities, ``c_m`` a
  learned per-modality bias), the weights are ``softmax`` over the modalities *available for that
  node*, and ``z = sum_m w_m h_m``. This is the semantic-level attention of HAN (Wang et al.,
  "Heterogeneous Graph Attention Network", WWW 2019) applied to modalities, as multimodal
  recommenders such as MMGCN / LATTICE weight modality views.

- ``"sum"``: ``z = sum_m h_m``. Affine in each modality's features, so it commutes with linear
  propagation: ``P z = sum_m (P x_m) W_m^T + (P a_m) b_m^T`` (``a_m`` the availability mask),
  which lets a graph model propagate the raw features once instead of at every step.

Masks say which rows hold real features (e.g. items without an image). A masked modality never
contributes: its input row is replaced by zeros before the projection (so NaN or garbage there
cannot leak, not even into gradients) and its projection is zeroed. A node with no modality
available gets an all-zero output row in both modes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from graph_rec.data import config_from_dict
from graph_rec.errors import ConfigError, SchemaError

MODES = ("concat", "gated", "sum")


@dataclass(frozen=True, kw_only=True)
class FusionConfig:
    """Settings of :class:`ModalityFusion`.

    Args:
        mode: ``"concat"`` (concatenate the projections, then a linear layer), ``"gated"``
            (softmax attention over the available modalities, per node) or ``"sum"`` (the sum of
            the projections).
        out_dim: the size of each projection and of the output.
        dropout: dropout on the projections during training, in ``[0, 1)``.
    """

    mode: Literal["concat", "gated", "sum"] = "gated"
    out_dim: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if isinstance(self.out_dim, bool) or not isinstance(self.out_dim, int) or self.out_dim < 1:
            raise ConfigError(f"out_dim must be a positive integer, got {self.out_dim!r}")
        if (
            isinstance(self.dropout, bool)
            or not isinstance(self.dropout, int | float)
            or not 0.0 <= float(self.dropout) < 1.0
        ):
            raise ConfigError(f"dropout must be a number in [0, 1), got {self.dropout!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FusionConfig:
        """Build from a mapping (e.g. a TOML table).

        Raises:
            ConfigError: an unknown key (the message lists the valid ones) or a bad value.
        """
        return config_from_dict(cls, d, "fusion")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ModalityFusion(nn.Module):
    """Projects each modality to ``out_dim`` and fuses them (see the module docstring).

    Args:
        config: the :class:`FusionConfig`.
        input_dims: modality name -> its feature dimension, e.g. ``{"text": 384, "image": 512}``.
            The order of the keys is the order of the modalities (and of the concatenation).

    Shapes:
        features: modality -> ``[N, d_m]`` float tensor (every configured modality, same ``N``).
        masks: modality -> ``[N]`` bool tensor, True where the row is real; a modality without a
            mask is available for every node.
        output: ``[N, out_dim]``; zeros for nodes with no modality available.
    """

    def __init__(self, config: FusionConfig, input_dims: Mapping[str, int]) -> None:
        super().__init__()
        if not isinstance(config, FusionConfig):
            raise ConfigError(f"config must be a FusionConfig, got {type(config).__name__}")
        if not isinstance(input_dims, Mapping) or not input_dims:
            raise ConfigError("input_dims must map at least one modality name to its dimension")
        for name, dim in input_dims.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ConfigError(f"modality names must be identifiers (snake_case), got {name!r}")
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                raise ConfigError(f"input dimension of modality {name!r} must be a positive integer, got {dim!r}")
        self.config = config
        self.input_dims = dict(input_dims)
        self.modalities: tuple[str, ...] = tuple(self.input_dims)
        out = config.out_dim
        self.proj = nn.ModuleDict({m: nn.Linear(d, out) for m, d in self.input_dims.items()})
        self.dropout = nn.Dropout(config.dropout)
        if config.mode == "concat":
            self.out = nn.Linear(len(self.modalities) * out, out)
        elif config.mode == "gated":
            self.score = nn.Sequential(nn.Linear(out, out), nn.Tanh(), nn.Linear(out, 1, bias=False))
            self.modality_bias = nn.Parameter(torch.zeros(len(self.modalities)))

    @property
    def out_dim(self) -> int:
        return self.config.out_dim

    def extra_repr(self) -> str:
        return f"mode={self.config.mode!r}, modalities={self.modalities}, out_dim={self.config.out_dim}"

    # ----------------------------------------------------------------- checks
    def _available(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None) -> Tensor:
        """Check the inputs; return availability ``[N, M]`` bool."""
        if not isinstance(features, Mapping):
            raise SchemaError(f"features must map modality -> tensor, got {type(features).__name__}")
        missing = [m for m in self.modalities if m not in features]
        unknown = sorted(set(features) - set(self.modalities))
        if missing or unknown:
            raise SchemaError(
                f"features must have exactly the modalities {list(self.modalities)}; missing {missing}, unknown {unknown}"
            )
        sizes = set()
        for m in self.modalities:
            x = features[m]
            if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.input_dims[m]:
                shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise SchemaError(f"features[{m!r}] must be a [N, {self.input_dims[m]}] tensor, got {shape}")
            sizes.add(x.shape[0])
        if len(sizes) != 1:
            raise SchemaError(f"all modalities must have the same number of rows, got {sorted(sizes)}")
        n = sizes.pop()
        device = features[self.modalities[0]].device
        masks = masks or {}
        if not isinstance(masks, Mapping):
            raise SchemaError(f"masks must map modality -> bool tensor, got {type(masks).__name__}")
        unknown = sorted(set(masks) - set(self.modalities))
        if unknown:
            raise SchemaError(f"masks for unknown modalities {unknown}; modalities: {list(self.modalities)}")
        cols = []
        for m in self.modalities:
            mask = masks.get(m)
            if mask is None:
                cols.append(torch.ones(n, dtype=torch.bool, device=device))
                continue
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (n,):
                got = f"{mask.dtype} {list(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
                raise SchemaError(f"masks[{m!r}] must be a [{n}] bool tensor, got {got}")
            cols.append(mask.to(device))
        return torch.stack(cols, dim=1)

    def _project(self, features: Mapping[str, Tensor], avail: Tensor) -> Tensor:
        """Masked projections ``[N, M, out_dim]``; unavailable entries are exactly zero."""
        hs = []
        for j, m in enumerate(self.modalities):
            keep = avail[:, j : j + 1]
            x = features[m]
            x = torch.where(keep, x, torch.zeros((), dtype=x.dtype, device=x.device))
            h = self.dropout(self.proj[m](x))
            hs.append(h * keep.to(h.dtype))
        return torch.stack(hs, dim=1)

    def _weights(self, h: Tensor, avail: Tensor) -> Tensor:
        scores = self.score(h).squeeze(-1) + self.modality_bias  # [N, M]
        any_avail = avail.any(dim=1, keepdim=True)
        scores = scores.masked_fill(~avail, float("-inf"))
        scores = torch.where(any_avail, scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
        return torch.softmax(scores, dim=1) * avail.to(scores.dtype)

    # ----------------------------------------------------------------- API
    def modality_weights(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None) -> Tensor:
        """The gated attention weights ``[N, M]`` (columns in :attr:`modalities` order).

        Each row sums to 1 over the node's available modalities and is 0 elsewhere; a node with
        no modality has an all-zero row.

        Raises:
            ConfigError: the module is in ``"concat"`` mode, which has no weights.
        """
        if self.config.mode != "gated":
            raise ConfigError("modality weights exist in 'gated' mode only")
        avail = self._available(features, masks)
        return self._weights(self._project(features, avail), avail)

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None) -> Tensor:
        """Fuse the modalities: ``[N, out_dim]`` (zeros for nodes with no modality available).

        Raises:
            SchemaError: a missing or unknown modality, a wrong shape, or a mask that is not a
                ``[N]`` bool tensor.
        """
        avail = self._available(features, masks)
        h = self._project(features, avail)  # [N, M, out]
        if self.config.mode == "concat":
            z = self.out(h.reshape(h.shape[0], -1))
        elif self.config.mode == "sum":
            z = h.sum(dim=1)
        else:
            z = (self._weights(h, avail).unsqueeze(-1) * h).sum(dim=1)
        return z * avail.any(dim=1, keepdim=True).to(z.dtype)


__all__ = ["MODES", "FusionConfig", "ModalityFusion"]
