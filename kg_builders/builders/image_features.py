"""Image features for item nodes: a vision-model encoder, precomputed vectors, and the feature builder.

Two sources give an item its image vector:

- :class:`ImageEncoder` runs any Hugging Face vision model (CLIP, SigLIP or anything else with
  ``get_image_features``; a ``*WithProjection`` vision tower; ViT or any ``AutoModel`` that takes
  ``pixel_values``) on images given as arrays, PIL images, file paths or encoded bytes.
- :func:`load_image_vectors` reads vectors computed elsewhere from ``.npy`` (with a sidecar id
  file) or Parquet, keyed by item id.

:class:`ImageFeatureBuilder` puts either into the graph's ``item`` feature slot with a row mask:
items without an image (or whose image does not decode, when the caller chose to skip those) have
mask ``False``; their rows hold zeros that must not be read as features.

Preprocessing follows the model's ``preprocessor_config.json``. With ``preprocess="processor"``
it goes through ``transformers.AutoImageProcessor``, which needs Pillow or torchvision;
``preprocess="torch"`` applies the same settings (resize, centre crop, rescale, normalise) with
``torch.nn.functional.interpolate`` and needs neither; ``"auto"`` takes the first when Pillow or
torchvision is installed and the second otherwise (logged, and part of :meth:`ImageEncoder.fingerprint`,
since the two resize implementations differ by rounding). Encoded bytes and image files other
than ``.npy`` need Pillow to decode.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from kg_builders._optional import require
from kg_builders.builders.text_encoder import check_finite, hub_commit, identity_of, package_version
from kg_builders.errors import ConfigError, DataError, MissingDependencyError, SchemaError
from kg_builders.tables import Tables

logger = logging.getLogger(__name__)

#: how the bytes of common encoded image formats begin (used to tell "needs Pillow" from "garbage")
_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_NPY_MAGIC = b"\x93NUMPY"
#: PIL resampling codes -> torch interpolation modes (LANCZOS 1, BOX 4, HAMMING 5 have no torch twin)
_TORCH_RESAMPLE = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}
#: processor settings that change the pixels and that the torch preprocessing does not implement
_UNSUPPORTED_PROCESSOR_KEYS = ("crop_pct", "do_pad", "pad_size", "size_divisor", "do_flip_channel_order")
_DTYPES = ("auto", "float32", "float16", "bfloat16")
_VECTOR_SUFFIXES = (".npy", ".parquet", ".pq")


@dataclass(frozen=True, eq=False)
class ImageEncodeResult:
    """Image vectors with a row mask.

    Attributes:
        vectors: ``[n, dim]`` float32; rows whose mask is ``False`` are zeros and carry no information.
        mask: ``[n]`` bool, ``True`` where the row holds a real image vector.
        skipped: images that did not decode and were skipped (``on_bad_image="skip"``).
        failed: ``(index, reason)`` of each skipped image, in input order.
        seconds: wall time.
        missing: rows with no image at all (``None`` input, or no vector in a precomputed file).
    """

    vectors: np.ndarray
    mask: np.ndarray
    skipped: int
    failed: list[tuple[int, str]]
    seconds: float
    missing: int = 0

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


# ------------------------------------------------------------------------------ decoding
def _pil_image_module() -> Any | None:
    """``PIL.Image`` when Pillow is installed, else ``None`` (imported lazily, never required here)."""
    if importlib.util.find_spec("PIL") is None:
        return None
    import PIL.Image

    return PIL.Image


def _is_pil_image(obj: Any) -> bool:
    mod = sys.modules.get("PIL.Image")
    return mod is not None and isinstance(obj, mod.Image)


def _as_rgb_uint8(arr: np.ndarray) -> np.ndarray:
    """Check an image array and return it as ``[H, W, 3]`` uint8.

    Accepts ``[H, W]`` (grey), ``[H, W, 1]``, ``[H, W, 3]`` and ``[H, W, 4]`` (alpha dropped); integer
    values in 0..255 or floats in [0, 1].

    Raises:
        ValueError: with the reason, for any other shape, dtype or value range.
    """
    if arr.dtype == object or arr.dtype.kind not in "uif":
        raise ValueError(f"image array must hold numbers, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"image array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {list(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image array is empty: {list(arr.shape)}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError("image array has NaN or infinite values")
        if arr.min() < 0.0 or arr.max() > 1.0:
            raise ValueError("a float image array must have values in [0, 1]")
        return np.rint(arr.astype(np.float64) * 255.0).astype(np.uint8)
    if arr.min() < 0 or arr.max() > 255:
        raise ValueError("an integer image array must have values in 0..255")
    return arr.astype(np.uint8)


def _pil_to_rgb(img: Any) -> np.ndarray:
    """A PIL image as ``[H, W, 3]`` uint8; 16-bit grey scaled to 8 bits, float grey read in [0, 1].

    Pillow's ``convert("RGB")`` clips the values of the modes ``I;16``, ``I`` and ``F`` at 255: a
    16-bit grey PNG would become nearly white and a float TIFF nearly black.

    Raises:
        ValueError: a 32-bit image with values past 16 bits, or a float image outside [0, 1].
    """
    if img.mode.startswith("I;16") or img.mode == "I":
        arr = np.asarray(img).astype(np.int64)
        # 16-bit grey; mode I (older Pillow's 16-bit PNG, or 32 bits) only when its values pass 8 bits
        if arr.size and arr.min() >= 0 and arr.max() <= 65535 and (img.mode != "I" or arr.max() > 255):
            arr = np.rint(arr / 257.0).astype(np.uint8)
        return _as_rgb_uint8(arr)
    if img.mode == "F":
        return _as_rgb_uint8(np.asarray(img))
    return _as_rgb_uint8(np.asarray(img.convert("RGB")))


def _decode_bytes(data: bytes) -> np.ndarray:
    """Decode ``.npy`` bytes (no pickle) or an encoded image (PNG, JPEG, ... through Pillow).

    Raises:
        ValueError: the bytes are not a readable image.
        MissingDependencyError: the bytes look like an encoded image and Pillow is not installed.
    """
    if not data:
        raise ValueError("empty image bytes")
    if data.startswith(_NPY_MAGIC):
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"unreadable .npy image data ({exc})") from exc
        if not isinstance(arr, np.ndarray):
            raise ValueError(".npy image data holds no single array")
        return _as_rgb_uint8(arr)
    pil = _pil_image_module()
    if pil is None:
        for magic, name in _IMAGE_SIGNATURES:
            if data.startswith(magic):
                raise MissingDependencyError(
                    f"decoding {name} images needs Pillow: pip install pillow (or pass arrays or .npy files)"
                )
        raise ValueError("not a recognised image format (expected .npy data, or PNG/JPEG/... with Pillow installed)")
    try:
        with pil.open(io.BytesIO(data)) as img:
            from PIL import ImageOps

            # a photo stored sideways with an EXIF orientation tag is encoded upright (as transformers' load_image)
            return _pil_to_rgb(ImageOps.exif_transpose(img))
    except pil.UnidentifiedImageError as exc:  # the same message with or without Pillow
        raise ValueError("not a recognised image format (expected .npy data or an image Pillow reads)") from exc
    except pil.DecompressionBombError as exc:  # (an Exception of its own: it aborted the whole encode)
        raise ValueError(f"image too large to decode safely ({exc})") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"image does not decode ({type(exc).__name__}: {exc})") from exc


def _to_array(image: Any) -> tuple[np.ndarray, str | None]:
    """One input image -> (``[H, W, 3]`` uint8, the file it came from).

    Raises:
        ValueError: an unreadable image, with the reason.
        MissingDependencyError: decoding it needs Pillow.
    """
    if isinstance(image, np.ndarray):
        return _as_rgb_uint8(image), None
    if _is_pil_image(image):
        return _pil_to_rgb(image), None
    if isinstance(image, bytes | bytearray | memoryview):
        return _decode_bytes(bytes(image)), None
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read image file ({exc.strerror or exc})") from exc
        return _decode_bytes(data), str(path)
    raise ValueError(f"unsupported image input of type {type(image).__name__}")


# ------------------------------------------------------------------------------ preprocessing in torch
def _size_of(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    raise ConfigError(f"processor setting {name!r} must be an int or {{'height', 'width'}}, got {value!r}")


def _resize_target(h: int, w: int, size: Any, *, crops: bool) -> tuple[int, int]:
    """The output ``(height, width)`` of a processor's resize step, as transformers computes it."""
    if isinstance(size, int):
        size = {"shortest_edge": size} if crops else {"height": size, "width": size}
    if not isinstance(size, dict):
        raise ConfigError(f"processor setting 'size' must be an int or a dict, got {size!r}")
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        short, long = (w, h) if w <= h else (h, w)
        new_short = int(size["shortest_edge"])
        new_long = int(new_short * long / short)
        max_size = size.get("longest_edge")
        if max_size is not None and new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), int(max_size)
        return (new_long, new_short) if w <= h else (new_short, new_long)
    raise ConfigError(f"processor setting 'size' {size!r} is not supported by preprocess='torch'")


@dataclass(frozen=True)
class _TorchPreprocessor:
    """The resize / centre-crop / rescale / normalise steps of a Hugging Face image processor, in torch."""

    settings: dict[str, Any]

    def __post_init__(self) -> None:
        s = self.settings
        bad = [k for k in _UNSUPPORTED_PROCESSOR_KEYS if s.get(k)]
        if bad:
            raise ConfigError(
                f"the processor settings {bad} are not implemented by preprocess='torch'; "
                "install Pillow or torchvision and use preprocess='processor'"
            )
        if s.get("do_resize", True):
            if "size" not in s:
                raise ConfigError("processor config has do_resize but no 'size'")
            if int(s.get("resample", 2)) not in _TORCH_RESAMPLE:
                raise ConfigError(
                    f"resampling filter {s.get('resample')} has no torch equivalent (supported: "
                    f"{sorted(_TORCH_RESAMPLE)} = nearest, bilinear, bicubic); use preprocess='processor'"
                )
        if s.get("do_center_crop", False) and "crop_size" not in s:
            raise ConfigError("processor config has do_center_crop but no 'crop_size'")
        if s.get("do_normalize", True) and ("image_mean" not in s or "image_std" not in s):
            raise ConfigError("processor config has do_normalize but no 'image_mean' / 'image_std'")

    def __call__(self, images: list[np.ndarray]) -> Any:
        """``[H, W, 3]`` uint8 arrays -> ``pixel_values`` ``[n, 3, h, w]`` float32."""
        import torch
        import torch.nn.functional as F

        s = self.settings
        crops = bool(s.get("do_center_crop", False))
        out = []
        for arr in images:
            x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].to(torch.float32)  # [1, 3, H, W]
            if s.get("do_resize", True):
                th, tw = _resize_target(x.shape[2], x.shape[3], s["size"], crops=crops)
                if (th, tw) != tuple(x.shape[2:]):
                    mode = _TORCH_RESAMPLE[int(s.get("resample", 2))]
                    kwargs = {} if mode == "nearest-exact" else {"align_corners": False, "antialias": True}
                    x = F.interpolate(x, size=(th, tw), mode=mode, **kwargs)
                    x = x.round().clamp(0.0, 255.0)  # Pillow resizes uint8 images
            if crops:
                ch, cw = _size_of(s["crop_size"], "crop_size")
                h, w = x.shape[2], x.shape[3]
                if h < ch or w < cw:  # transformers pads with zeros first
                    ph, pw = max(ch - h, 0), max(cw - w, 0)
                    x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
                    h, w = x.shape[2], x.shape[3]
                top, left = (h - ch) // 2, (w - cw) // 2
                x = x[:, :, top : top + ch, left : left + cw]
            if s.get("do_rescale", True):
                x = x * float(s.get("rescale_factor", 1 / 255))
            if s.get("do_normalize", True):
                mean = torch.tensor(s["image_mean"], dtype=torch.float32).view(1, -1, 1, 1)
                std = torch.tensor(s["image_std"], dtype=torch.float32).view(1, -1, 1, 1)
                x = (x - mean) / std
            out.append(x)
        shapes = {tuple(t.shape) for t in out}
        if len(shapes) != 1:
            raise ConfigError(
                f"the processor settings give images of different sizes {sorted(shapes)}; set a fixed "
                "'size' or a 'crop_size'"
            )
        return torch.cat(out, dim=0)


# ------------------------------------------------------------------------------ model identity
@functools.lru_cache(maxsize=32)
def _dir_digest(path: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    """sha256 over the names and contents of the files in ``stamp`` (cached per size and mtime)."""
    h = hashlib.sha256()
    for name, _, _ in stamp:
        h.update(name.encode() + b"\0")
        with open(os.path.join(path, name), "rb") as fh:
            for block in iter(functools.partial(fh.read, 1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _local_digest(path: Path) -> str:
    stamp = tuple(
        sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file() and p.name[0] != "."
        )
    )
    return _dir_digest(str(path), stamp)


# ------------------------------------------------------------------------------ the encoder
@dataclass(frozen=True, kw_only=True)
class ImageEncoder:
    """Encodes images with a Hugging Face vision model into ``[n, dim]`` vectors.

    Pooling follows the model: ``get_image_features`` where the model has it (CLIP, SigLIP, ...: the
    vision tower's pooled output through the projection), ``image_embeds`` for a
    ``*VisionModelWithProjection`` checkpoint, else ``pooler_output`` (flattened), else the mean of
    ``last_hidden_state`` over tokens (or over the spatial grid for convolutional models).

    The model loads on first use and stays loaded with the encoder.

    Args:
        model: a Hugging Face hub id or a local directory (config, weights, ``preprocessor_config.json``);
            a path object is accepted.
        revision: hub revision (branch, tag or commit); ``None`` is the default branch.
        batch_size: images per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` takes CUDA when available.
        dtype: ``"auto"`` (float32 on CPU; bfloat16, or float16 where bf16 is unsupported, on GPU),
            ``"float32"``, ``"float16"`` or ``"bfloat16"`` (half precision on GPU only).
        local_files_only: never download; the model must be a local path or in the local cache.
        normalize: L2-normalise each vector.
        on_bad_image: an image that does not decode raises :class:`DataError` (``"raise"``) or is
            counted and masked (``"skip"``).
        preprocess: ``"processor"`` (``AutoImageProcessor``: needs Pillow or torchvision),
            ``"torch"`` (the processor's settings applied in torch) or ``"auto"`` (see the module doc).
    """

    model: str
    revision: str | None = None
    batch_size: int = 32
    device: str | None = None
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    local_files_only: bool = False
    normalize: bool = True
    on_bad_image: Literal["raise", "skip"] = "skip"
    preprocess: Literal["auto", "processor", "torch"] = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.model, os.PathLike):
            object.__setattr__(self, "model", os.fspath(self.model))
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a hub id or a local path, got {self.model!r}")
        for name in ("normalize", "local_files_only"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"dtype must be one of {list(_DTYPES)}, got {self.dtype!r}")
        if self.on_bad_image not in ("raise", "skip"):
            raise ConfigError(f"on_bad_image must be 'raise' or 'skip', got {self.on_bad_image!r}")
        if self.preprocess not in ("auto", "processor", "torch"):
            raise ConfigError(f"preprocess must be 'auto', 'processor' or 'torch', got {self.preprocess!r}")
        object.__setattr__(self, "_state", {})

    # -------------------------------------------------------------- loading
    def _torch_device(self) -> Any:
        import torch

        if self.device is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(self.device)
        except RuntimeError as exc:
            raise ConfigError(f"bad device {self.device!r}: {exc}") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} was asked for but CUDA is not available")
        return dev

    def _torch_dtype(self, device: Any) -> Any:
        import torch

        if self.dtype == "auto":
            if device.type != "cuda":
                return torch.float32
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.dtype != "float32" and device.type != "cuda":
            raise ConfigError(f"dtype {self.dtype!r} is for GPUs only; use 'float32' or 'auto' on {device.type}")
        return getattr(torch, self.dtype)

    def _spec(self) -> dict[str, Any]:
        """Config, processor settings and pooling, without loading weights (cached)."""
        state = self._state  # type: ignore[attr-defined]
        if "spec" in state:
            return state["spec"]
        path = Path(self.model).expanduser()
        if not path.is_dir() and (
            path.exists() or self.model.startswith((".", "~", os.sep)) or os.path.isabs(self.model)
        ):
            raise ConfigError(
                f"vision model path {self.model!r} is not a model folder (it does not exist or is a file)"
            )
        local = path.is_dir()
        source = str(path) if local else self.model
        transformers = require("transformers")
        from transformers.image_processing_base import ImageProcessingMixin

        # a hub model's revision resolved once: the config, the processor and the weights loaded are
        # that commit's, the one the fingerprint names (a push between two reads cannot mix them)
        commit = None if local else hub_commit(source, revision=self.revision, local_files_only=self.local_files_only)
        kwargs = {"revision": None if local else (commit or self.revision), "local_files_only": self.local_files_only}
        try:
            config = transformers.AutoConfig.from_pretrained(source, **kwargs)
            proc_settings, _ = ImageProcessingMixin.get_image_processor_dict(source, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load vision model {self.model!r}: {exc}") from exc
        archs = list(getattr(config, "architectures", None) or [])
        cls_name = next(
            (a for a in archs if a.endswith("WithProjection") and "Vision" in a and hasattr(transformers, a)), None
        )
        backend = self.preprocess
        if backend == "auto":
            from transformers.utils import is_torchvision_available, is_vision_available

            backend = "processor" if (is_vision_available() or is_torchvision_available()) else "torch"
            if backend == "torch":
                logger.info("Pillow and torchvision are not installed: preprocessing %r in torch", self.model)
        spec = {
            "source": source,
            "local": local,
            "config": config,
            "model_class": cls_name or "AutoModel",
            "processor_settings": proc_settings,
            "backend": backend,
            "revision": kwargs["revision"],
            "weights": f"sha256:{_local_digest(path)}"
            if local
            else f"{self.model}@{commit or self.revision or 'default'}",
        }
        state["spec"] = spec
        return spec

    def _load(self) -> dict[str, Any]:
        """Load the weights and the preprocessor once; returns the cached state."""
        state = self._state  # type: ignore[attr-defined]
        if "model" in state:
            return state
        spec = self._spec()
        transformers = require("transformers")
        import torch

        device = self._torch_device()
        dtype = self._torch_dtype(device)
        cls = getattr(transformers, spec["model_class"])
        kwargs = {"revision": spec["revision"], "local_files_only": self.local_files_only}
        try:
            model = cls.from_pretrained(spec["source"], dtype=dtype, **kwargs)
            if spec["backend"] == "processor":
                processor = transformers.AutoImageProcessor.from_pretrained(spec["source"], **kwargs)
            else:
                processor = _TorchPreprocessor(dict(spec["processor_settings"]))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load vision model {self.model!r}: {exc}") from exc
        except ImportError as exc:
            raise MissingDependencyError(
                f"the image processor of {self.model!r} needs Pillow or torchvision ({exc}); "
                "pip install pillow, or pass preprocess='torch'"
            ) from exc
        model.eval().to(device)
        if hasattr(model, "get_image_features"):
            pooling = "get_image_features"
        elif spec["model_class"] != "AutoModel":
            pooling = "image_embeds"
        else:
            pooling = "pooler_output|mean"
        state.update(model=model, processor=processor, device=device, dtype=dtype, pooling=pooling, torch=torch)
        logger.info(
            "loaded vision model %r (%s, pooling %s, preprocess %s) on %s in %s",
            self.model,
            type(model).__name__,
            pooling,
            spec["backend"],
            device,
            dtype,
        )
        return state

    # -------------------------------------------------------------- identity
    def settings(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable (for graph recipes and reports)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def fingerprint(self) -> str:
        """sha256 of what determines the vectors: weights, pooling, preprocessing, dtype, normalisation.

        A local model directory is identified by the contents of its files, a hub model by its
        resolved commit (or the revision asked for).
        """
        return hashlib.sha256(json.dumps(self._payload(), sort_keys=True, default=str).encode()).hexdigest()

    def identity(self) -> str:
        """:meth:`fingerprint` without the ``transformers`` version (see ``TextEncoder.identity``)."""
        return identity_of(self._payload())

    def identities(self) -> tuple[str, ...]:
        """:meth:`identity`, and the identity graphs built before 2026-12-07 recorded (the dtype kept)."""
        payload = self._payload()
        return identity_of(payload), identity_of(payload, machine=True)

    def _payload(self) -> dict[str, Any]:
        spec = self._spec()
        dtype = self._torch_dtype(self._torch_device())
        payload = {
            "kind": "image-encoder",
            "weights": spec["weights"],
            "model_class": spec["model_class"],
            "preprocess": spec["backend"],
            "processor_settings": spec["processor_settings"],
            "dtype": str(dtype),
            "normalize": self.normalize,
            "transformers": package_version("transformers"),
        }
        return payload

    @property
    def dim(self) -> int:
        """The output dimension (one forward pass on a blank image, the first time)."""
        state = self._load()
        if "dim" not in state:
            state["dim"] = int(self._forward([np.zeros((8, 8, 3), dtype=np.uint8)]).shape[1])
        return state["dim"]

    # -------------------------------------------------------------- encoding
    def _forward(self, arrays: list[np.ndarray]) -> np.ndarray:
        state = self._load()
        torch = state["torch"]
        model, processor = state["model"], state["processor"]
        if isinstance(processor, _TorchPreprocessor):
            pixels = processor(arrays)
        else:
            # the arrays are [H, W, 3]: said, not guessed (a processor reads a 1- or 3-pixel-tall image as channels-first)
            pixels = processor(images=arrays, return_tensors="pt", input_data_format="channels_last")["pixel_values"]
        pixels = pixels.to(state["device"], dtype=state["dtype"])
        with torch.inference_mode():
            pooling = state["pooling"]
            if pooling == "get_image_features":
                out = model.get_image_features(pixel_values=pixels)
                if not torch.is_tensor(out):  # transformers >= 5 returns the output with the projected pooler
                    out = out.pooler_output
            else:
                res = model(pixel_values=pixels)
                if pooling == "image_embeds":
                    out = res.image_embeds
                elif getattr(res, "pooler_output", None) is not None:
                    out = res.pooler_output.reshape(pixels.shape[0], -1)
                else:
                    hidden = res.last_hidden_state
                    out = hidden.mean(dim=1) if hidden.ndim == 3 else hidden.flatten(2).mean(dim=2)
            out = out.float()
            if self.normalize:
                out = torch.nn.functional.normalize(out, p=2.0, dim=1)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def encode(
        self,
        images: Sequence[Any],
        *,
        ids: Sequence[str] | None = None,
        progress: bool = False,
    ) -> ImageEncodeResult:
        """Encode images; ``None`` entries give masked rows.

        Args:
            images: one entry per row: a ``numpy`` array (``[H, W, 3]`` uint8, grey, RGBA or floats in
                [0, 1]), a PIL image, a file path (``.npy``, or any format Pillow reads: EXIF orientation
                applied, 16-bit grey scaled to 8 bits), encoded bytes, or ``None`` for "no image".
            ids: names of the rows (e.g. item ids), used in error messages.
            progress: show a tqdm bar over batches.

        Returns:
            :class:`ImageEncodeResult` with ``vectors`` ``[len(images), dim]``.

        Raises:
            DataError: an image does not decode and ``on_bad_image="raise"``.
            ConfigError: the model cannot be loaded.
            MissingDependencyError: an encoded image needs Pillow.
        """
        t0 = time.perf_counter()
        if isinstance(images, pd.Series):
            images = images.tolist()
        if isinstance(images, str | bytes | np.ndarray) or not isinstance(images, Sequence):
            raise ConfigError(f"images must be a sequence (one entry per row), got {type(images).__name__}")
        if ids is not None and len(ids) != len(images):
            raise ConfigError(f"ids has {len(ids)} entries for {len(images)} images")
        n = len(images)
        arrays: list[np.ndarray] = []
        rows: list[int] = []
        failed: list[tuple[int, str]] = []
        missing = 0
        for i, image in enumerate(images):
            if image is None:
                missing += 1
                continue
            try:
                arr, _ = _to_array(image)
            except ValueError as exc:
                name = f"image {i}" + (f" (id {ids[i]!r})" if ids is not None else "")
                src = str(image) if isinstance(image, str | os.PathLike) else None
                if self.on_bad_image == "raise":
                    raise DataError(f"{name}: {exc}", file=src, field="image") from exc
                failed.append((i, f"{name}: {exc}" + (f" [{src}]" if src else "")))
                continue
            arrays.append(arr)
            rows.append(i)
        if failed:
            logger.warning("skipped %d image(s) that do not decode; first: %s", len(failed), failed[0][1])
        dim = self.dim
        vectors = np.zeros((n, dim), dtype=np.float32)
        mask = np.zeros(n, dtype=bool)
        starts = range(0, len(arrays), self.batch_size)
        bar = None
        if progress and arrays:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(arrays), desc="encoding images", unit="img")
        for s in starts:
            batch = arrays[s : s + self.batch_size]
            idx = np.asarray(rows[s : s + self.batch_size], dtype=np.int64)
            vectors[idx] = self._forward(batch)
            mask[idx] = True
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        try:
            check_finite(vectors, "image")
        except DataError as exc:
            if ids is None:
                raise
            i = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
            src = images[i] if isinstance(images[i], str | os.PathLike) else None
            raise DataError(f"{exc.reason} (id {ids[i]!r})", file=src, field="vector") from exc
        seconds = time.perf_counter() - t0
        logger.info(
            "encoded %d image(s) in %.2f s (%d without image, %d skipped)", len(arrays), seconds, missing, len(failed)
        )
        return ImageEncodeResult(vectors, mask, len(failed), failed, round(seconds, 4), missing)


# ------------------------------------------------------------------------------ precomputed vectors
def _sidecar_ids(path: Path) -> tuple[list[str], Path]:
    stem = path.with_suffix("")
    candidates = [Path(f"{stem}.ids.json"), Path(f"{stem}.ids.txt")]
    found = [p for p in candidates if p.is_file()]
    if not found:
        raise DataError(
            f"no id file next to the vectors: expected {candidates[0].name} or {candidates[1].name}", file=path
        )
    if len(found) > 1:
        raise DataError(f"both {found[0].name} and {found[1].name} exist; keep one", file=path)
    ids_path = found[0]
    if ids_path.suffix == ".json":
        try:
            ids = json.loads(ids_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not valid JSON ({exc})", file=ids_path) from exc
        if not isinstance(ids, list):
            raise DataError("must hold a JSON list of item ids", file=ids_path)
        for k, v in enumerate(ids):
            if not isinstance(v, str | int) or isinstance(v, bool) or str(v).strip() == "":
                raise DataError(f"entry {k} is not an item id: {v!r}", file=ids_path)
        return [str(v) for v in ids], ids_path
    try:
        lines = ids_path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc})", file=ids_path) from exc
    while lines and not lines[-1].strip():
        lines.pop()
    for k, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataError("empty item id", file=ids_path, line=k)
    return [line.strip() for line in lines], ids_path


def _read_npy(path: Path) -> tuple[list[str], np.ndarray, dict[int, str]]:
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(
            f"not a plain numeric .npy array (pickled object arrays are refused): {exc}", file=path
        ) from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"unreadable .npy file ({exc})", file=path) from exc
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.dtype.kind not in "fiu":
        shape = list(getattr(arr, "shape", []))
        raise DataError(
            f"must hold a numeric [num_items, dim] array, got {getattr(arr, 'dtype', '?')} {shape}", file=path
        )
    ids, ids_path = _sidecar_ids(path)
    if len(ids) != arr.shape[0]:
        raise DataError(f"{ids_path.name} lists {len(ids)} ids for {arr.shape[0]} vectors", file=path)
    rows = {k: f"row {k + 1} ({ids_path.name} line {k + 1})" for k in range(len(ids))}
    return ids, arr.astype(np.float32), rows


def _read_parquet(path: Path) -> tuple[list[str], np.ndarray, dict[int, str], list[bool]]:
    pq = require("pyarrow.parquet")
    try:
        df = pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses for bad files
        raise DataError(f"unreadable Parquet file ({type(exc).__name__}: {exc})", file=path) from exc
    if "item_id" not in df.columns:
        raise DataError(f"needs an 'item_id' column; it has {list(df.columns)}", file=path, field="item_id")
    if df["item_id"].isna().any():
        row = int(np.flatnonzero(df["item_id"].isna().to_numpy())[0]) + 1
        raise DataError(f"missing item_id in row {row}", file=path, field="item_id")
    ids = [str(v) for v in df["item_id"]]
    present = [True] * len(ids)
    if "vector" in df.columns:
        others = [c for c in df.columns if c not in ("item_id", "vector")]
        if others:
            raise DataError(f"has a 'vector' column and also {others}; keep item_id and vector", file=path)
        values = df["vector"].tolist()
        lengths = [None if v is None else len(v) for v in values]
        known = [n for n in lengths if n is not None]
        if not known:
            return ids, np.zeros((len(ids), 0), dtype=np.float32), {}, [False] * len(ids)
        dim = int(pd.Series(known).mode().iloc[0])
        out = np.zeros((len(ids), dim), dtype=np.float32)
        for k, v in enumerate(values):
            if v is None:
                present[k] = False
                continue
            if len(v) != dim:
                raise DataError(
                    f"item {ids[k]!r} (row {k + 1}) has a vector of dimension {len(v)}; the others have {dim}",
                    file=path,
                    field="vector",
                )
            try:
                out[k] = np.asarray(v, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise DataError(
                    f"item {ids[k]!r} (row {k + 1}): not numbers ({exc})", file=path, field="vector"
                ) from exc
    else:
        cols = [c for c in df.columns if c != "item_id"]
        if not cols:
            raise DataError("needs a 'vector' column or one numeric column per dimension", file=path)
        bad = [c for c in cols if not pd.api.types.is_numeric_dtype(df[c])]
        if bad:
            raise DataError(f"dimension columns must be numeric; {bad} are not", file=path, field=str(bad[0]))
        out = df[cols].to_numpy(dtype=np.float32, na_value=np.nan)
    rows = {k: f"row {k + 1}" for k in range(len(ids))}
    return ids, out, rows, present


def load_image_vectors(
    path: str | Path,
    *,
    item_ids: Sequence[str],
    expected_dim: int | None = None,
) -> ImageEncodeResult:
    """Read precomputed image vectors and align them to ``item_ids``.

    Formats:
        - ``.npy``: a numeric ``[num_vectors, dim]`` array (read with ``allow_pickle=False``) and a
          sidecar id file next to it, ``<name>.ids.json`` (a JSON list) or ``<name>.ids.txt`` (one id
          per line), in the row order of the array.
        - ``.parquet`` / ``.pq``: an ``item_id`` column and either a list column ``vector`` (a null
          vector means "no image") or one numeric column per dimension.

    Items of ``item_ids`` without a vector get mask ``False``; vectors of ids not in ``item_ids``
    are ignored (counted in the log).

    Args:
        path: the vectors file.
        item_ids: the rows of the result, in order.
        expected_dim: when given, every vector must have this dimension.

    Returns:
        :class:`ImageEncodeResult` ``[len(item_ids), dim]`` with ``missing`` counting masked rows.

    Raises:
        DataError: a missing or unreadable file, an id file that does not match, a duplicated id,
            a vector of the wrong dimension or with NaN / infinite values (naming the file, the
            item id and its row).
        ConfigError: an unsupported file suffix.
    """
    t0 = time.perf_counter()
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in _VECTOR_SUFFIXES:
        raise ConfigError(f"unsupported vectors file {p.name!r}; supported suffixes: {list(_VECTOR_SUFFIXES)}")
    if not p.is_file():
        raise DataError("file not found", file=p)
    if expected_dim is not None and (
        isinstance(expected_dim, bool) or not isinstance(expected_dim, int) or expected_dim < 1
    ):
        raise ConfigError(f"expected_dim must be a positive int, got {expected_dim!r}")
    if suffix == ".npy":
        ids, arr, rows = _read_npy(p)
        present = [True] * len(ids)
    else:
        ids, arr, rows, present = _read_parquet(p)
    dup = pd.Index(ids)[pd.Index(ids).duplicated()]
    if len(dup):
        raise DataError(f"item id(s) listed more than once: {sorted(set(dup))[:5]}", file=p, field="item_id")
    dim = int(arr.shape[1])
    if dim == 0 and any(present):
        raise DataError("the vectors have dimension 0", file=p, field="vector")
    if expected_dim is not None and any(present) and dim != expected_dim:
        first = present.index(True)
        raise DataError(
            f"item {ids[first]!r} ({rows[first]}) has a vector of dimension {dim}; expected {expected_dim}",
            file=p,
            field="vector",
        )
    if dim == 0 and expected_dim is not None:
        dim = expected_dim
    finite = np.isfinite(arr).all(axis=1) if arr.shape[1] else np.ones(len(ids), dtype=bool)
    bad = [k for k in np.flatnonzero(~finite) if present[k]]
    if bad:
        k = int(bad[0])
        raise DataError(
            f"item {ids[k]!r} ({rows[k]}) has NaN or infinite values ({len(bad)} vector(s) in all)",
            file=p,
            field="vector",
        )
    wanted = [str(i) for i in item_ids]
    pos = pd.Index(ids).get_indexer(wanted)
    have = pos >= 0
    have[have] = np.asarray(present, dtype=bool)[pos[have]] if len(present) else False
    vectors = np.zeros((len(wanted), dim), dtype=np.float32)
    if dim and have.any():
        vectors[have] = arr[pos[have]]
    extra = len(set(ids) - set(wanted))
    if extra:
        logger.info("%s: %d vector(s) for ids that are not among the %d items, ignored", p, extra, len(wanted))
    seconds = time.perf_counter() - t0
    return ImageEncodeResult(vectors, have, 0, [], round(seconds, 4), int((~have).sum()))


# ------------------------------------------------------------------------------ the builder
@dataclass(frozen=True, kw_only=True)
class ImageFeatureBuilder:
    """Fills the graph's ``item`` feature slot ``slot`` with image vectors and a row mask.

    Give exactly one of ``encoder`` (encodes ``tables.images``: columns item_id and image) or
    ``vectors_path`` (precomputed vectors, see :func:`load_image_vectors`).

    Args:
        encoder: an :class:`ImageEncoder`.
        vectors_path: a ``.npy`` or Parquet file of vectors keyed by item id.
        slot: the feature slot name.
    """

    encoder: ImageEncoder | None = None
    vectors_path: str | None = None
    slot: str = "image"

    def __post_init__(self) -> None:
        if (self.encoder is None) == (self.vectors_path is None):
            raise ConfigError("give exactly one of encoder and vectors_path")
        if self.encoder is not None and not isinstance(self.encoder, ImageEncoder):
            raise ConfigError(f"encoder must be an ImageEncoder, got {type(self.encoder).__name__}")
        if not isinstance(self.slot, str) or not self.slot.isidentifier():
            raise ConfigError(f"slot must be a snake_case name, got {self.slot!r}")

    def settings(self) -> dict[str, Any]:
        """The builder's settings, JSON-serialisable (the encoder's nested)."""
        encoder = None
        if self.encoder is not None:
            encoder = {"builder": type(self.encoder).__name__, "settings": self.encoder.settings()}
        return {"encoder": encoder, "vectors_path": self.vectors_path, "slot": self.slot}

    def _record(self, graph: Any, info: dict[str, Any]) -> None:
        """Replace this slot's previous recipe entry (if any) with one describing this build."""
        entry = json.loads(json.dumps({"builder": type(self).__name__, "settings": self.settings(), "info": info}))
        kept = [
            r
            for r in graph.recipe
            if not (r.get("builder") == entry["builder"] and r.get("info", {}).get("slot") == self.slot)
        ]
        graph.recipe[:] = [*kept, entry]

    def build(self, graph: Any, tables: Tables | None, *, progress: bool = False) -> dict[str, Any]:
        """Compute the vectors and store them with ``graph.set_features("item", slot, vectors, mask)``.

        MUTATES ``graph``: its feature slot, and its recipe (an entry with these settings and the
        returned summary, replacing an earlier entry of this builder for the same slot). Nothing
        changes when encoding or reading fails.

        Args:
            graph: a knowledge graph (anything with ``node_ids``, ``set_features`` and ``recipe``).
            tables: the tables; ``tables.images`` is read when encoding.
            progress: show a progress bar while encoding.

        Returns:
            What was done: counts of items with a vector, without an image, skipped; the first
            failures by item id; the dimension; the encoder's fingerprint or the vectors file.

        Raises:
            SchemaError: ``graph`` is not a knowledge graph or has no ``item`` nodes, or there is no
                images table to encode.
            DataError: as :meth:`ImageEncoder.encode` and :func:`load_image_vectors` raise it, or a
                duplicated item id in the images table.
        """
        for name in ("node_ids", "set_features", "recipe"):
            if not hasattr(graph, name):
                raise SchemaError(f"ImageFeatureBuilder needs a KnowledgeGraph; {type(graph).__name__} lacks {name!r}")
        node_ids = graph.node_ids
        if "item" not in node_ids:
            raise SchemaError("the graph has no 'item' nodes to give image features")
        item_ids = [str(i) for i in node_ids["item"]]
        info: dict[str, Any] = {"slot": self.slot, "items": len(item_ids)}
        if self.vectors_path is not None:
            res = load_image_vectors(self.vectors_path, item_ids=item_ids)
            info["source"] = "vectors"
            info["file"] = str(self.vectors_path)
        else:
            images = tables.images if tables is not None else None
            if images is None:
                raise SchemaError("the tables have no images table to encode (columns item_id, image)")
            keys = images["item_id"].astype(str)
            dup = keys[keys.duplicated()]
            if len(dup):
                raise DataError(f"images table has several images for item(s) {sorted(set(dup))[:5]}", field="item_id")
            by_item = dict(zip(keys, images["image"], strict=True))
            unused = len(set(by_item) - set(item_ids))
            if unused:
                logger.info("%d image(s) belong to items that are not in the graph, ignored", unused)
            res = self.encoder.encode([by_item.get(i) for i in item_ids], ids=item_ids, progress=progress)
            info["source"] = "encoder"
            info["model"] = self.encoder.model
            info["fingerprint"] = self.encoder.fingerprint()
            info["encoder_identity"] = self.encoder.identity()
            info["images_without_item"] = unused
        graph.set_features("item", self.slot, res.vectors, res.mask)
        info.update(
            dim=res.dim,
            with_vector=int(res.mask.sum()),
            missing=res.missing,
            skipped=res.skipped,
            failed=[{"item_id": item_ids[i], "reason": r} for i, r in res.failed[:10]],
            seconds=res.seconds,
        )
        self._record(graph, info)
        logger.info(
            "item.%s: %d/%d items with an image vector (dim %d), %d without image, %d skipped",
            self.slot,
            info["with_vector"],
            len(item_ids),
            info["dim"],
            res.missing,
            res.skipped,
        )
        return info


__all__ = [
    "ImageEncodeResult",
    "ImageEncoder",
    "ImageFeatureBuilder",
    "load_image_vectors",
]
