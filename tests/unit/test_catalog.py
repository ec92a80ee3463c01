"""The dataset catalog: the shipped data/catalog.json and the validation of catalog files."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from kg_builders.errors import ConfigError
from kg_builders.sources.catalog import Catalog, DatasetEntry, default_catalog_path, load_catalog, parse_catalog

REPO_CATALOG = Path(__file__).resolve().parents[2] / "data" / "catalog.json"
HEX64 = re.compile(r"^[0-9a-f]{64}$")

MINIMAL = {
    "format_version": 1,
    "datasets": [
        {
            "name": "tiny",
            "description": "a tiny data set",
            "format": "movielens",
            "homepage": "https://example.org/tiny",
            "citation": "Nobody. 2024. Tiny.",
            "licence": {"text": "research use", "url": "https://example.org/licence"},
            "checksum_source": "computed by hand",
            "files": [
                {
                    "url": "https://example.org/tiny.zip",
                    "sha256": "0" * 64,
                    "size": 10,
                    "filename": "tiny.zip",
                    "archive": "zip",
                    "extract_to": ".",
                }
            ],
        }
    ],
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_default_path_is_the_repository_catalog() -> None:
    assert default_catalog_path() == REPO_CATALOG
    assert REPO_CATALOG.is_file()


def test_real_catalog_loads_with_expected_entries() -> None:
    catalog = load_catalog()
    assert isinstance(catalog, Catalog)
    expected = {
        "ml-latest-small",
        "ml-100k",
        "ml-1m",
        "ml-20m",
        "ml-25m",
        "hetrec2011-lastfm-2k",
        "lightgcn-lastfm",
        "kg-movie",
        "kg-book",
        "mind-small",
    }
    assert expected <= set(catalog.names())
    assert len(catalog) == len(catalog.names())
    small = catalog.get("ml-latest-small")
    assert small.format == "movielens"
    assert small.root == "ml-latest-small"
    (f,) = small.files
    assert f.url == "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
    assert f.size == 978202
    assert f.sha256 == "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"
    assert f.archive == "zip"
    kg = catalog.get("kg-movie")
    assert [x.filename for x in kg.files] == ["item_index2entity_id.txt", "kg.txt"]
    assert all("/d6bb77c426960bc04f5d88c39f09d87a844776b4/" in x.url for x in kg.files)
    assert all(x.archive is None for x in kg.files)


def test_every_file_has_a_sha256_or_an_explicit_null_with_a_note() -> None:
    raw = json.loads(REPO_CATALOG.read_text(encoding="utf-8"))
    catalog = load_catalog()
    for d_raw, entry in zip(raw["datasets"], catalog, strict=True):
        assert entry.licence.text and entry.licence.url.startswith("https://")
        assert entry.citation and entry.checksum_source and entry.homepage.startswith("https://")
        for f_raw, f in zip(d_raw["files"], entry.files, strict=True):
            assert "sha256" in f_raw, f"{entry.name}/{f.filename} must state its sha256 (or null)"
            if f.sha256 is None:
                assert f_raw["sha256"] is None
                assert entry.note and "sha256" in entry.note, entry.name
            else:
                assert HEX64.match(f.sha256), (entry.name, f.filename)
            assert f.url.startswith("https://")
    unverified = [d.name for d in catalog if not d.verified]
    assert unverified == ["mind-small"]


def test_unknown_name_lists_valid_names() -> None:
    catalog = load_catalog()
    with pytest.raises(ConfigError, match="unknown data set 'ml-99k'") as info:
        catalog.get("ml-99k")
    assert "ml-100k" in str(info.value) and "kg-book" in str(info.value)
    assert "ml-100k" in catalog and "ml-99k" not in catalog


def test_minimal_catalog_round_trip(tmp_path: Path) -> None:
    catalog = load_catalog(write(tmp_path, MINIMAL))
    entry = catalog.get("tiny")
    assert isinstance(entry, DatasetEntry)
    assert entry.files[0].extract_to == "."
    assert entry.root == "."
    assert entry.note is None
    assert catalog.path == tmp_path / "catalog.json"


@pytest.mark.parametrize(
    ("where", "key"),
    [("top", "extra"), ("dataset", "licence_url"), ("file", "md5"), ("licence", "name")],
)
def test_unknown_keys_are_refused_with_valid_keys(tmp_path: Path, where: str, key: str) -> None:
    data = copy.deepcopy(MINIMAL)
    target = {
        "top": data,
        "dataset": data["datasets"][0],
        "file": data["datasets"][0]["files"][0],
        "licence": data["datasets"][0]["licence"],
    }[where]
    target[key] = "x"
    with pytest.raises(ConfigError, match=rf"unknown key\(s\) \['{key}'\]; valid: \[") as info:
        load_catalog(write(tmp_path, data))
    valid = {"top": "datasets", "dataset": "checksum_source", "file": "sha256", "licence": "url"}[where]
    assert f"'{valid}'" in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha256": "ABC"}, "64 lowercase hex"),
        ({"sha256": "A" * 64}, "64 lowercase hex"),
        ({"size": -1}, "non-negative integer"),
        ({"archive": "tar"}, "'archive' must be one of"),
        ({"extract_to": "../up"}, "without '..'"),
        ({"extract_to": "/abs"}, "without '..'"),
        ({"filename": "a/b.zip"}, "plain file name"),
        ({"url": "ftp://example.org/x"}, "http"),
    ],
)
def test_bad_file_values_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    data = copy.deepcopy(MINIMAL)
    data["datasets"][0]["files"][0].update(change)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_catalog(write(tmp_path, data))
    assert "tiny" in str(info.value)


def test_null_sha256_needs_a_note(tmp_path: Path) -> None:
    data = copy.deepcopy(MINIMAL)
    data["datasets"][0]["files"][0]["sha256"] = None
    with pytest.raises(ConfigError, match="needs a 'note'"):
        load_catalog(write(tmp_path, data))
    data["datasets"][0]["note"] = "no checksum is published; pass sha256_override"
    entry = load_catalog(write(tmp_path, data)).get("tiny")
    assert entry.files[0].sha256 is None and not entry.verified


def test_missing_key_and_duplicates_are_refused(tmp_path: Path) -> None:
    data = copy.deepcopy(MINIMAL)
    del data["datasets"][0]["citation"]
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['citation'\]"):
        load_catalog(write(tmp_path, data))
    data = copy.deepcopy(MINIMAL)
    data["datasets"].append(copy.deepcopy(data["datasets"][0]))
    with pytest.raises(ConfigError, match="duplicate data set name"):
        load_catalog(write(tmp_path, data))


def test_bad_files_give_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_catalog(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 1,\n "datasets": [}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON.*line 2"):
        load_catalog(bad)
    with pytest.raises(ConfigError, match="format_version 2 is not supported"):
        parse_catalog({"format_version": 2, "datasets": []})
