"""Checkpoints as directories of safetensors + JSON, written atomically, loaded without unpickling.

A checkpoint directory holds:

* ``model.safetensors``: the model's state dict;
* ``optimizer.safetensors``: every tensor of the optimiser state, keyed ``state.<param>.<name>``;
* ``rng.safetensors``: the sampling generator's and torch's global CPU RNG states (uint8), and
  any extra generator states (``extra.<name>``, e.g. each rank's neighbour-sampling generator);
* ``state.json``: format version, epoch, optimiser hyper-parameters (``param_groups``), the
  non-tensor optimiser state, early-stopping counters, the history so far, and a fingerprint of
  the run (model, configs, data shape) that a resume must match.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from graph_rec.errors import CheckpointError
from kg_builders._files import atomic_dir

FORMAT_VERSION = 1


def save_state_dict(module: nn.Module, path: Path) -> None:
    """``module.state_dict()`` to a safetensors file (contiguous CPU copies)."""
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path))


def load_state_dict(module: nn.Module, path: Path) -> None:
    """Load a safetensors state dict into ``module``; a missing or unexpected key is a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(f"{path.name} is missing from {path.parent}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatch {[(k, list(state[k].shape), list(expected[k].shape)) for k in wrong[:5]]}"
        )
    module.load_state_dict({k: v.to(device) for k, v in state.items()})


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for name, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = val.detach().to("cpu").contiguous()
            else:
                plain.setdefault(str(pid), {})[name] = val
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain}


def save_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator,
    state: dict[str, Any],
    extra_rng: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a resumable checkpoint directory atomically (replacing the previous one).

    ``extra_rng`` maps names to further generator states (``Generator.get_state()``) to keep.
    """
    with atomic_dir(path, overwrite=True) as tmp:
        save_state_dict(model, tmp / "model.safetensors")
        opt_meta: dict[str, Any] = {}
        if optimizer is not None:
            tensors, opt_meta = _optimizer_tensors(optimizer)
            save_file(tensors, str(tmp / "optimizer.safetensors"))
        rng = {"generator": generator.get_state(), "torch_cpu": torch.get_rng_state()}
        rng.update({f"extra.{name}": t.detach().to("cpu").contiguous() for name, t in (extra_rng or {}).items()})
        save_file(rng, str(tmp / "rng.safetensors"))
        payload = {"format_version": FORMAT_VERSION, **state, "optimizer": opt_meta}
        (tmp / "state.json").write_text(json.dumps(payload, indent=1, default=_json_default, allow_nan=False))


def load_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator,
    fingerprint: dict[str, Any],
) -> dict[str, Any]:
    """Restore model, optimiser and RNG states; returns the saved ``state`` dict.

    The extra generator states saved with ``extra_rng`` come back in ``state["extra_rng"]``
    (name -> uint8 state tensor).

    Raises:
        CheckpointError: missing files, a newer format, or a run fingerprint that differs from
            ``fingerprint`` (the message lists the differing keys).
    """
    if not (path / "state.json").is_file():
        raise CheckpointError(f"no checkpoint at {path} (state.json is missing)")
    state = json.loads((path / "state.json").read_text())
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version!r}; this graph-rec reads up to {FORMAT_VERSION}")
    saved = state.get("fingerprint", {})
    differ = sorted(k for k in set(saved) | set(fingerprint) if saved.get(k) != fingerprint.get(k))
    if differ:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {fingerprint.get(k)!r}" for k in differ[:6])
        raise CheckpointError(f"cannot resume from {path}: the run differs in {differ} ({detail})")
    load_state_dict(model, path / "model.safetensors")
    if optimizer is not None:
        opt_file = path / "optimizer.safetensors"
        if not opt_file.is_file():
            raise CheckpointError(f"optimizer.safetensors is missing from {path}")
        tensors = load_file(str(opt_file))
        meta = state["optimizer"]
        opt_state: dict[int, dict[str, Any]] = {}
        for key, val in tensors.items():
            _, pid, name = key.split(".", 2)
            opt_state.setdefault(int(pid), {})[name] = val
        for pid, d in meta.get("plain_state", {}).items():
            opt_state.setdefault(int(pid), {}).update(d)
        try:
            optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"the optimiser state in {path} does not fit this model: {exc}") from exc
    rng = load_file(str(path / "rng.safetensors"))
    generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch_cpu"])
    state["extra_rng"] = {k.split(".", 1)[1]: v for k, v in rng.items() if k.startswith("extra.")}
    return state


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
