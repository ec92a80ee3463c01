"""A content-addressed disk cache of text vectors, so a rebuild re-encodes only changed text.

The key of a text's vector is ``sha256(encoder.fingerprint() + "\\0" + template_id + "\\0" + text)``:
a changed model, encoder setting (see :meth:`TextEncoder.fingerprint`), template or text gives a
new key, so stale vectors are never served.

Layout under ``directory``, one folder per (fingerprint, template) namespace::

    <sha256(fingerprint \\0 template_id)[:32]>/
        manifest.json                 format, fingerprint, template_id, dim, and for each shard
                                      its file name, row count and sha256
        <sha256 of content>.safetensors
                                      "keys" uint8 [rows, 32] (the text keys), "vectors" float32
                                      [rows, dim], "truncated" uint8 [rows]

Each call that encodes something adds one shard holding its misses; past ``max_shards`` shards
the namespace is compacted into one. Every file is written to a temporary sibling and renamed,
the shard before the manifest that lists it, so a crash leaves the previous cache readable (an
unlisted shard is ignored and later removed, and so is a temporary file an hour old). On read
each shard's sha256, header, dtypes and shapes are checked against the manifest; a shard or
manifest that fails is counted as corrupt, dropped and its vectors recomputed, never trusted.
Nothing is pickled.

Several processes may share one cache: ``<directory>/.lock`` is locked (``fcntl.flock``) shared
while a namespace is read and exclusively while one is written; a writer re-reads the manifest
under the lock and adds its shard to what other processes wrote meanwhile. Encoding runs outside
the lock, so two processes may both encode a text that neither had cached.

A lookup reads and verifies every shard of the namespace: about ``4 * dim + 33`` bytes per
cached text (1.6 kB for a 384-d model, 160 MB for 100,000 texts).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from kg_builders._files import atomic_file
from kg_builders.builders.text_encoder import EncodeResult, TextEncoder, check_texts
from kg_builders.errors import ConfigError

try:
    import fcntl
except ImportError:  # not on Linux or macOS (Windows): no lock, so one writer at a time per cache
    fcntl = None

logger = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
#: the inter-process lock file in the cache directory (kept by :meth:`FeatureCache.clear`)
LOCK = ".lock"
#: a temporary file older than this (seconds) was left by a crash; a younger one may be being written
_STALE_TEMP_SECONDS = 3600
_NAMESPACE = re.compile(r"[0-9a-f]{32}")
_SHARD = re.compile(r"[0-9a-f]{32}\.safetensors")
_KEY_BYTES = 32


class _Corrupt(Exception):
    """A cache file failed a check (internal: always turned into a counted recomputation)."""


@dataclass(frozen=True)
class CacheStats:
    """What one :meth:`FeatureCache.encode_cached` call found.

    Attributes:
        hits: texts whose vectors came from the cache.
        misses: texts that were encoded (a text repeated in one call is encoded once, and each
            of its occurrences counts as a miss). ``hits + misses`` is the number of valid texts.
        corrupt: cache files (shards or the manifest) that failed a check and were dropped.
    """

    hits: int
    misses: int
    corrupt: int


def text_key(fingerprint: str, template_id: str, text: str) -> bytes:
    """The 32-byte cache key of one text: ``sha256(fingerprint \\0 template_id \\0 text)``."""
    return _text_keys(fingerprint, template_id, [text])[0]


def _text_keys(fingerprint: str, template_id: str, texts: Sequence[str]) -> list[bytes]:
    prefix = hashlib.sha256(f"{fingerprint}\0{template_id}\0".encode("utf-8", "surrogatepass"))
    keys = []
    for text in texts:
        h = prefix.copy()
        h.update(text.encode("utf-8", "surrogatepass"))
        keys.append(h.digest())
    return keys


def _namespace(fingerprint: str, template_id: str) -> str:
    return hashlib.sha256(f"{fingerprint}\0{template_id}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass
class _Shard:
    file: str
    rows: int
    sha256: str
    keys: np.ndarray  # [rows, 32] uint8
    vectors: np.ndarray  # [rows, dim] float32
    truncated: np.ndarray  # [rows] bool


class FeatureCache:
    """Content-addressed, checksummed on-disk cache of :class:`TextEncoder` vectors.

    Args:
        directory: the cache folder (created on first write).
        max_shards: shards per namespace before they are compacted into one.
    """

    def __init__(self, directory: str | Path, *, max_shards: int = 32) -> None:
        if isinstance(max_shards, bool) or not isinstance(max_shards, int) or max_shards < 1:
            raise ConfigError(f"max_shards must be a positive integer, got {max_shards!r}")
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"cache directory {str(self.directory)!r} is a file")
        self.max_shards = max_shards

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r}, max_shards={self.max_shards})"

    # ------------------------------------------------------------------------ public
    def encode_cached(
        self,
        encoder: TextEncoder,
        texts: Sequence[str],
        *,
        template_id: str = "",
        progress: bool = False,
    ) -> tuple[EncodeResult, CacheStats]:
        """Vectors for ``texts``, encoding only those not in the cache, then storing them.

        Args:
            encoder: the encoder; its :meth:`~TextEncoder.fingerprint` is part of every key, and
                its ``on_bad_text`` decides what an empty or non-string text does.
            texts: the texts, in order.
            template_id: names the template that made the texts (part of every key).
            progress: show the encoder's progress bar for the misses.

        Returns:
            The :class:`EncodeResult` (as :meth:`TextEncoder.encode` would give; ``truncated``
            counts cached texts that were truncated when encoded too, ``seconds`` is the whole
            call) and the :class:`CacheStats`.

        Raises:
            DataError: an empty or non-string text with ``on_bad_text="raise"``.
            ConfigError: a cache written by a newer format, or as :meth:`TextEncoder.encode`.
            OSError: the cache cannot be written (the previous cache stays readable).
        """
        if not isinstance(template_id, str):
            raise ConfigError(f"template_id must be a string, got {template_id!r}")
        t0 = time.perf_counter()
        items, mask = check_texts(texts, on_bad_text=encoder.on_bad_text)
        fingerprint = encoder.fingerprint()
        folder = self.directory / _namespace(fingerprint, template_id)
        rows = np.flatnonzero(mask)
        keys = _text_keys(fingerprint, template_id, [items[i] for i in rows])

        shards, dim, corrupt = self._read(folder, fingerprint, template_id)
        found = self._lookup(shards, keys)
        new, miss_texts, miss_pos = self._encode_misses(encoder, items, rows, keys, found, progress)
        if new is not None and dim is not None and new.dim != dim:
            logger.warning("cache %s holds %d-d vectors but the encoder gives %d-d: all dropped", folder, dim, new.dim)
            shards, corrupt = [], corrupt + 1
            found = [None] * len(keys)
            new, miss_texts, miss_pos = self._encode_misses(encoder, items, rows, keys, found, progress)
        if new is not None:
            dim = new.dim
        if dim is None:
            dim = encoder.dim  # nothing valid to look up or encode

        n = len(items)
        vectors = np.zeros((n, dim), dtype=np.float32)
        truncated_mask = np.zeros(n, dtype=bool)
        hit = np.array([j for j, f in enumerate(found) if f is not None], dtype=np.int64)
        if len(hit):
            where = np.array([found[j] for j in hit], dtype=np.int64).reshape(-1, 2)
            for s in np.unique(where[:, 0]):
                sel = where[:, 0] == s
                vectors[rows[hit[sel]]] = shards[s].vectors[where[sel, 1]]
                truncated_mask[rows[hit[sel]]] = shards[s].truncated[where[sel, 1]]
        if new is not None:
            slot = {k: i for i, k in enumerate(miss_texts)}
            miss = np.asarray(miss_pos, dtype=np.int64)
            src = np.array([slot[keys[j]] for j in miss_pos], dtype=np.int64)
            vectors[rows[miss]] = new.vectors[src]
            truncated_mask[rows[miss]] = new.truncated_mask[src]

        added = None
        if new is not None:
            added = (
                np.frombuffer(b"".join(miss_texts), dtype=np.uint8).reshape(-1, _KEY_BYTES),
                new.vectors,
                new.truncated_mask,
            )
        if added is not None or corrupt:
            self._write(folder, fingerprint, template_id, dim, shards, added)

        stats = CacheStats(hits=len(keys) - len(miss_pos), misses=len(miss_pos), corrupt=corrupt)
        skipped = n - len(rows)
        result = EncodeResult(
            vectors=vectors,
            mask=mask,
            truncated_mask=truncated_mask,
            truncated=int(truncated_mask.sum()),
            skipped=skipped,
            seconds=time.perf_counter() - t0,
        )
        logger.info(
            "feature cache %s: %d hits, %d misses, %d corrupt files, %d skipped texts in %.2f s",
            folder.name,
            stats.hits,
            stats.misses,
            stats.corrupt,
            skipped,
            result.seconds,
        )
        return result, stats

    @staticmethod
    def _lookup(shards: list[_Shard], keys: list[bytes]) -> list[tuple[int, int] | None]:
        """``(shard index, row)`` of each key, None where absent (a later shard wins a repeated key)."""
        index: dict[bytes, tuple[int, int]] = {}
        for s, shard in enumerate(shards):
            rows = shard.keys.view(f"V{_KEY_BYTES}").ravel().tolist()  # bytes of 32
            index.update(zip(rows, ((s, r) for r in range(shard.rows)), strict=True))
        return [index.get(k) for k in keys]

    @staticmethod
    def _encode_misses(
        encoder: TextEncoder,
        items: list[Any],
        rows: np.ndarray,
        keys: list[bytes],
        found: list[tuple[int, int] | None],
        progress: bool,
    ) -> tuple[EncodeResult | None, dict[bytes, str], list[int]]:
        """Encode each distinct missing text once: (result or None, key -> text in result order, miss positions)."""
        miss_pos = [j for j, f in enumerate(found) if f is None]
        miss_texts: dict[bytes, str] = {}
        for j in miss_pos:
            miss_texts.setdefault(keys[j], items[rows[j]])
        if not miss_texts:
            return None, miss_texts, miss_pos
        return encoder.encode(list(miss_texts.values()), progress=progress), miss_texts, miss_pos

    def clear(self) -> None:
        """Remove every namespace this cache wrote (other files in ``directory`` are left alone)."""
        if not self.directory.is_dir():
            return
        removed = 0
        with self._locked(exclusive=True):
            for child in self.directory.iterdir():
                if child.is_dir() and _NAMESPACE.fullmatch(child.name) and (child / MANIFEST).exists():
                    shutil.rmtree(child)
                    removed += 1
        logger.info("cleared %d namespaces from feature cache %s", removed, self.directory)

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        """Hold the cache's inter-process lock: exclusive to write, shared to read.

        ``flock`` on ``<directory>/.lock``, released when the file is closed (also by a crash).
        A shared lock that cannot be taken because the cache is read-only is skipped (logged):
        nobody can be writing to it.
        """
        if fcntl is None:  # no flock here: concurrent writers may lose each other's entries
            yield
            return
        path = self.directory / LOCK
        try:
            fd = os.open(path, (os.O_RDWR if exclusive else os.O_RDONLY) | os.O_CREAT, 0o666)
        except OSError as exc:
            if exclusive or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            logger.info("feature cache %s is read-only (%s): reading it without the lock", self.directory, exc)
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # ---------------------------------------------------------------------- reading
    def _read(self, folder: Path, fingerprint: str, template_id: str) -> tuple[list[_Shard], int | None, int]:
        """The verified shards of a namespace, its dim (None when empty) and the corrupt file count."""
        path = folder / MANIFEST
        if not path.exists():
            return [], None, 0
        with self._locked(exclusive=False):
            if not path.exists():  # cleared meanwhile
                return [], None, 0
            try:
                manifest = self._read_manifest(path, fingerprint, template_id)
            except _Corrupt as exc:
                logger.warning("feature cache manifest %s is corrupt (%s): recomputing its vectors", path, exc)
                return [], None, 1
            dim = manifest["dim"]
            shards: list[_Shard] = []
            corrupt = 0
            for entry in manifest["shards"]:
                try:
                    shards.append(self._read_shard(folder, entry, dim))
                except _Corrupt as exc:
                    corrupt += 1
                    logger.warning(
                        "feature cache shard %s is corrupt (%s): recomputing its vectors", folder / entry["file"], exc
                    )
            return shards, dim, corrupt

    @staticmethod
    def _read_manifest(path: Path, fingerprint: str, template_id: str) -> dict[str, Any]:
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Corrupt(f"not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict):
            raise _Corrupt("not a JSON object")
        fmt = manifest.get("format")
        if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > FORMAT:
            raise ConfigError(
                f"feature cache {path.parent} was written by a newer format ({fmt} > {FORMAT}); "
                "upgrade graph-rec or use another cache directory"
            )
        if fmt != FORMAT:
            raise _Corrupt(f"format {fmt!r}")
        if manifest.get("fingerprint") != fingerprint or manifest.get("template_id") != template_id:
            raise _Corrupt("fingerprint or template_id does not match the namespace")
        dim = manifest.get("dim")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise _Corrupt(f"bad dim {dim!r}")
        entries = manifest.get("shards")
        if not isinstance(entries, list):
            raise _Corrupt("no shard list")
        for e in entries:
            ok = (
                isinstance(e, dict)
                and isinstance(e.get("file"), str)
                and _SHARD.fullmatch(e["file"]) is not None
                and isinstance(e.get("rows"), int)
                and not isinstance(e.get("rows"), bool)
                and e["rows"] >= 1
                and isinstance(e.get("sha256"), str)
                and re.fullmatch(r"[0-9a-f]{64}", e["sha256"]) is not None
            )
            if not ok:
                raise _Corrupt(f"bad shard entry {e!r}")
        if len({e["file"] for e in entries}) != len(entries):
            raise _Corrupt("a shard is listed twice")
        return manifest

    @staticmethod
    def _read_shard(folder: Path, entry: dict[str, Any], dim: int) -> _Shard:
        path = folder / entry["file"]
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise _Corrupt("missing") from exc
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise _Corrupt("sha256 does not match the manifest")
        try:
            tensors = st_load(data)
        except (SafetensorError, ValueError) as exc:
            raise _Corrupt(f"not a safetensors file: {exc}") from exc
        rows = entry["rows"]
        expected = {
            "keys": (np.uint8, (rows, _KEY_BYTES)),
            "vectors": (np.float32, (rows, dim)),
            "truncated": (np.uint8, (rows,)),
        }
        if set(tensors) != set(expected):
            raise _Corrupt(f"tensors {sorted(tensors)}, expected {sorted(expected)}")
        for name, (dtype, shape) in expected.items():
            t = tensors[name]
            if t.dtype != dtype or t.shape != shape:
                raise _Corrupt(f"{name} is {t.dtype} {t.shape}, expected {np.dtype(dtype)} {shape}")
        if not np.isfinite(tensors["vectors"]).all():
            raise _Corrupt("non-finite vectors")
        if tensors["truncated"].max(initial=0) > 1:
            raise _Corrupt("truncated flags other than 0/1")
        return _Shard(
            file=entry["file"],
            rows=rows,
            sha256=entry["sha256"],
            keys=tensors["keys"],
            vectors=tensors["vectors"],
            truncated=tensors["truncated"].astype(bool),
        )

    # ---------------------------------------------------------------------- writing
    @staticmethod
    def _write_shard(folder: Path, keys: np.ndarray, vectors: np.ndarray, truncated: np.ndarray) -> dict[str, Any]:
        data = st_save(
            {
                "keys": np.ascontiguousarray(keys, dtype=np.uint8),
                "vectors": np.ascontiguousarray(vectors, dtype=np.float32),
                "truncated": np.ascontiguousarray(truncated, dtype=np.uint8),
            },
            metadata={"format": str(FORMAT)},
        )
        digest = hashlib.sha256(data).hexdigest()
        name = f"{digest[:32]}.safetensors"
        with atomic_file(folder / name) as fh:
            fh.write(data)
        return {"file": name, "rows": int(keys.shape[0]), "sha256": digest}

    @staticmethod
    def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
        with atomic_file(folder / MANIFEST, "w") as fh:
            json.dump(manifest, fh, indent=1)

    def _current(self, folder: Path, fingerprint: str, template_id: str, dim: int, known: list[_Shard]) -> list[_Shard]:
        """The verified shards the manifest lists now (call under the exclusive lock).

        Shards other processes added since ``known`` was read are read and checked; those in
        ``known`` are not read again. A manifest of another dim, or a corrupt one, gives none.
        """
        path = folder / MANIFEST
        if not path.exists():
            return []
        try:
            manifest = self._read_manifest(path, fingerprint, template_id)
        except _Corrupt:
            return []  # counted when it was read, or written corrupt since: replaced now
        if manifest["dim"] != dim:
            return []  # vectors of another dimension: all dropped (see encode_cached)
        by_file = {(s.file, s.sha256, s.rows): s for s in known}
        current: list[_Shard] = []
        for entry in manifest["shards"]:
            shard = by_file.get((entry["file"], entry["sha256"], entry["rows"]))
            if shard is None:
                try:
                    shard = self._read_shard(folder, entry, dim)
                except _Corrupt as exc:
                    logger.warning("feature cache shard %s is corrupt (%s): dropped", folder / entry["file"], exc)
                    continue
            current.append(shard)
        return current

    def _write(
        self,
        folder: Path,
        fingerprint: str,
        template_id: str,
        dim: int,
        shards: list[_Shard],
        added: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> None:
        """Add a shard of new rows (if any) to the shards listed now and rewrite the manifest.

        Rows whose key a shard listed since ``shards`` was read holds already (another process
        cached the same texts meanwhile; only those shards are searched) are left out, so no key and no shard file is listed twice. Compacts
        past ``max_shards``. Holds the exclusive lock throughout: ``shards`` (read earlier) only
        spares re-reading what is still listed.
        """
        folder.mkdir(parents=True, exist_ok=True)
        with self._locked(exclusive=True):
            known = {id(s) for s in shards}  # ``added`` holds the keys none of these had
            shards = self._current(folder, fingerprint, template_id, dim, shards)
            entries = [{"file": s.file, "rows": s.rows, "sha256": s.sha256} for s in shards]
            since = [s for s in shards if id(s) not in known]  # listed by another process meanwhile
            if added is not None and since:  # it may have cached the same texts
                listed = {k for s in since for k in s.keys.view(f"V{_KEY_BYTES}").ravel().tolist()}
                new = np.array([k not in listed for k in added[0].view(f"V{_KEY_BYTES}").ravel().tolist()], bool)
                # (the same shard listed twice would make the manifest corrupt, and every vector recomputed)
                added = (added[0][new], added[1][new], added[2][new]) if new.any() else None
            if added is not None and len(shards) + 1 > self.max_shards:
                keys = np.concatenate([s.keys for s in shards] + [added[0]])
                vectors = np.concatenate([s.vectors for s in shards] + [added[1]])
                truncated = np.concatenate([s.truncated for s in shards] + [added[2]])
                _, first = np.unique(keys, axis=0, return_index=True)
                first.sort()
                entries = [self._write_shard(folder, keys[first], vectors[first], truncated[first])]
                logger.info(
                    "compacted feature cache %s: %d shards into one of %d rows",
                    folder.name,
                    len(shards) + 1,
                    len(first),
                )
            elif added is not None:
                entries.append(self._write_shard(folder, *added))
            manifest = {
                "format": FORMAT,
                "fingerprint": fingerprint,
                "template_id": template_id,
                "dim": dim,
                "shards": entries,
            }
            self._write_manifest(folder, manifest)
            listed = {e["file"] for e in entries} | {MANIFEST}
            stale = time.time() - _STALE_TEMP_SECONDS
            for child in folder.iterdir():
                if child.name in listed:
                    continue
                with contextlib.suppress(FileNotFoundError):  # renamed or removed by its writer meanwhile
                    if _SHARD.fullmatch(child.name) and child.is_file():
                        child.unlink()  # not listed: corrupt, compacted or left by a crash (shards are written locked)
                    elif child.name.startswith(".") and child.is_file() and child.stat().st_mtime < stale:
                        child.unlink()  # a temporary file left by a crash; a younger one may still be being written
