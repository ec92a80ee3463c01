"""Checkpoints as directories of safetensors + JSON, written atomically, loaded without unpickling.

A checkpoint directory holds:

* ``model.safetensors``: the model's state dict;
* ``best.safetensors``: the best epoch's state dict so far (when there is one);
* ``optimizer.safetensors``: every tensor of the optimiser state, keyed ``state.<param>.<name>``;
* ``rng.safetensors``: the sampling generator's and torch's global CPU RNG states (uint8), the
  CUDA generator's on a GPU run, and any extra generator states (``extra.<name>``, e.g. each rank's neighbour-sampling generator);
* ``state.json``: format version, epoch, optimiser hyper-parameters (``param_groups``), the
  non-tensor optimiser state, early-stopping counters, the history so far, and a fingerprint of
  the run (model, configs, data shape) that a resume must match, and the SHA-256 of each
  safetensors file (``files``), checked before anything is read.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from graph_rec.errors import CheckpointError
from kg_builders._files import atomic_dir, save_safetensors

FORMAT_VERSION = 1


def save_state_dict(module: nn.Module | dict[str, torch.Tensor], path: Path) -> None:
    """``module.state_dict()`` (or a state dict) to a safetensors file (contiguous CPU copies)."""
    _save_tensors(module if isinstance(module, dict) else module.state_dict(), path)


def _save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    save_safetensors({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, path)


def _device_of(module: nn.Module) -> torch.device:
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def load_state_dict(module: nn.Module, path: Path) -> None:
    """Load a safetensors state dict into ``module``; a missing or unexpected key is a CheckpointError."""
    state = _read_safetensors(path)
    _check_fits(module, state, path)
    device = _device_of(module)
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
    best: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a resumable checkpoint directory atomically (replacing the previous one).

    ``extra_rng`` maps names to further generator states (``Generator.get_state()``) to keep; for a
    model on a CUDA device that device's generator state is kept too (GPU dropout draws from it). ``best``, the
    best epoch's state dict, goes into the same directory (``best.safetensors``), so the best
    weights and the counters that name their epoch are replaced together.
    """
    with atomic_dir(path, overwrite=True) as tmp:
        save_state_dict(model, tmp / "model.safetensors")
        if best is not None:
            _save_tensors(best, tmp / "best.safetensors")
        opt_meta: dict[str, Any] = {}
        if optimizer is not None:
            tensors, opt_meta = _optimizer_tensors(optimizer)
            save_safetensors(tensors, tmp / "optimizer.safetensors")
        rng = {"generator": generator.get_state(), "torch_cpu": torch.get_rng_state()}
        device = _device_of(model)
        if device.type == "cuda":
            rng["torch_cuda"] = torch.cuda.get_rng_state(device)
        rng.update({f"extra.{name}": t for name, t in (extra_rng or {}).items()})
        _save_tensors(rng, tmp / "rng.safetensors")
        # safetensors checks its header but not the tensor bytes: a checksum per file does
        files = {f.name: file_sha256(f) for f in sorted(tmp.glob("*.safetensors"))}
        payload = {"format_version": FORMAT_VERSION, **state, "optimizer": opt_meta, "files": files}
        (tmp / "state.json").write_text(json.dumps(_finite(payload), indent=1, default=_json_default, allow_nan=False))


def load_checkpoint(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator,
    fingerprint: dict[str, Any],
) -> dict[str, Any]:
    """Restore model, optimiser and RNG states; returns the saved ``state`` dict.

    A CUDA generator state saved by a run on the GPU is restored when the model is on a CUDA
    device (a run resumed on another kind of device goes on, but not bit for bit).

    Every file is read and checked before anything is restored, so a damaged checkpoint leaves the
    model, optimiser and generators as they were. The extra generator states saved with
    ``extra_rng`` come back in ``state["extra_rng"]`` (name -> uint8 state tensor), the best
    epoch's state dict in ``state["best_state"]`` (None in a checkpoint without one).

    Raises:
        CheckpointError: missing or damaged files, a newer format, or a run fingerprint that
            differs from ``fingerprint`` (the message names each differing setting, e.g.
            ``train.lr: 0.002 saved, 0.004 now``).
    """
    if not (path / "state.json").is_file():
        left = sorted(path.parent.glob(f".{path.name}.old-*"))
        hint = (
            f"; an interrupted save left {left[-1]}: rename it to {path.name} to resume from it"
            if left
            else "; a run stopped before its first evaluation has none: start it again (--overwrite)"
        )
        raise CheckpointError(f"no checkpoint at {path} (state.json is missing){hint}")
    try:
        state = json.loads((path / "state.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path / 'state.json'} is damaged: {exc}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path / 'state.json'} is damaged: not a JSON object")
    version = state.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version!r}; this graph-rec reads up to {FORMAT_VERSION}")
    saved_fp = state.get("fingerprint", {})
    differ = differences(saved_fp, _as_of(saved_fp, fingerprint))
    if differ:
        raise CheckpointError(f"cannot resume from {path}: the run differs ({listed(differ)})")
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path / 'state.json'} is damaged: it has no {missing}")
    _check_files(path, state.get("files"))
    model_state = _read_safetensors(path / "model.safetensors")
    _check_fits(model, model_state, path / "model.safetensors")
    opt_state: dict[str, Any] | None = None
    if optimizer is not None:
        tensors = _read_safetensors(path / "optimizer.safetensors")
        meta = state.get("optimizer") or {}
        if "param_groups" not in meta:
            raise CheckpointError(f"{path / 'state.json'} is damaged: it has no optimiser param_groups")
        per_param: dict[int, dict[str, Any]] = {}
        try:
            for key, val in tensors.items():
                _, pid, name = key.split(".", 2)
                per_param.setdefault(int(pid), {})[name] = val
            for pid, d in meta.get("plain_state", {}).items():
                per_param.setdefault(int(pid), {}).update(d)
        except (ValueError, AttributeError) as exc:
            raise CheckpointError(f"the optimiser state in {path} is damaged: {exc}") from exc
        opt_state = {"state": per_param, "param_groups": meta["param_groups"]}
    best = _read_safetensors(path / "best.safetensors") if (path / "best.safetensors").is_file() else None
    if best is not None:
        _check_fits(model, best, path / "best.safetensors")
    rng = _read_safetensors(path / "rng.safetensors")
    for key in ("generator", "torch_cpu"):
        if key not in rng:
            raise CheckpointError(f"{path / 'rng.safetensors'} is damaged: it has no {key!r} state")
    # everything read and checked: restore
    if optimizer is not None:
        before = optimizer.state_dict()
        try:
            optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError, TypeError) as exc:
            optimizer.load_state_dict(before)
            raise CheckpointError(f"the optimiser state in {path} does not fit this model: {exc}") from exc
    device = _device_of(model)
    model.load_state_dict({k: v.to(device) for k, v in model_state.items()})
    generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch_cpu"])
    if "torch_cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["torch_cuda"], device)
    state["extra_rng"] = {k.split(".", 1)[1]: v for k, v in rng.items() if k.startswith("extra.")}
    state["best_state"] = best
    return state


#: fingerprint keys added after checkpoints were first written: a checkpoint without one is not
#: compared on it (the data digest of 2026-12-07, the node-feature digest; counts and configs are
#: still compared)
_LATER_KEYS = (("data", "sha256"), ("data", "features"))
#: whole fingerprint sections added later, likewise (the validation settings)
_LATER_SECTIONS = ("eval",)


def _as_of(saved: Any, now: dict[str, Any]) -> dict[str, Any]:
    """``now`` without the :data:`_LATER_KEYS` and :data:`_LATER_SECTIONS` that the ``saved`` fingerprint predates."""
    if not isinstance(saved, dict):
        return now
    out = {k: v for k, v in now.items() if k in saved or k not in _LATER_SECTIONS}
    for section, key in _LATER_KEYS:
        if isinstance(out.get(section), dict) and isinstance(saved.get(section), dict) and key not in saved[section]:
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return out


#: the keys of ``state.json`` a resume reads
_STATE_KEYS = ("epoch", "bad_evals", "best_score", "best_epoch", "best_valid", "seconds", "seconds_to_best", "history")


def differences(saved: Any, now: Any, prefix: str = "", *, labels: tuple[str, str] = ("saved", "now")) -> list[str]:
    """Each leaf where two nested settings mappings differ, as ``"a.b: X saved, Y now"`` (``labels``)."""
    a, b = labels
    if isinstance(saved, dict) and isinstance(now, dict):
        out: list[str] = []
        for key in sorted(set(saved) | set(now), key=str):
            name = f"{prefix}{key}"
            if key not in saved:
                out.append(f"{name}: absent {a}, {now[key]!r} {b}")
            elif key not in now:
                out.append(f"{name}: {saved[key]!r} {a}, absent {b}")
            else:
                out += differences(saved[key], now[key], f"{name}.", labels=labels)
        return out
    if _plain(saved) == _plain(now):
        return []
    return [f"{prefix.rstrip('.') or 'value'}: {saved!r} {a}, {now!r} {b}"]


def listed(differ: list[str], limit: int = 8) -> str:
    """The first ``limit`` of :func:`differences`' lines joined by ``"; "``, and how many more there are."""
    return "; ".join(differ[:limit]) + (f"; and {len(differ) - limit} more" if len(differ) > limit else "")


def _plain(v: Any) -> Any:
    """JSON's view of a value (tuples are lists once saved)."""
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_files(path: Path, files: Any) -> None:
    """Each file ``state.json`` lists (name -> SHA-256) is present with those bytes.

    Checkpoints written before the checksums were kept list none and are read as they are.
    """
    if files is None:
        return
    if not isinstance(files, dict):
        raise CheckpointError(f"{path / 'state.json'} is damaged: 'files' is not a mapping")
    for name, digest in files.items():
        f = path / str(name)
        if not f.is_file():
            raise CheckpointError(f"{name} is missing from {path}")
        if file_sha256(f) != digest:
            raise CheckpointError(f"{f} is damaged: its bytes do not match the checksum in state.json")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path.name} is missing from {path.parent}")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"cannot read {path}: {exc}") from exc


def _check_fits(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{path} does not fit this model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"shape mismatch {[(k, list(state[k].shape), list(expected[k].shape)) for k in wrong[:5]]}"
        )


def _finite(o: Any) -> Any:
    """``o`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return _finite(o.tolist())
    if hasattr(o, "item"):
        return _finite(o.item())
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
