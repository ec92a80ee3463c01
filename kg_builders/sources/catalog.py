"""The dataset catalog: public data sets, where to fetch them, their checksums and licences.

The catalog is a JSON file, by default ``data/catalog.json`` at the repository's root (``data/`` is
not a Python package; nothing there is imported). :func:`load_catalog` reads and validates it
into frozen dataclasses; :func:`kg_builders.sources.download.fetch_dataset` downloads an entry.

File layout::

    {"format_version": 1,
     "datasets": [
       {"name": "ml-latest-small", "description": "...", "format": "movielens",
        "homepage": "https://...", "citation": "...",
        "licence": {"text": "...", "url": "https://..."},
        "checksum_source": "where the sha256 values come from",
        "note": null,          # optional; required when a file has no sha256
        "root": "ml-latest-small",   # optional, default ".": the folder holding the files
        "files": [{"url": "https://...", "sha256": "64 hex digits or null", "size": 978202,
                   "filename": "ml-latest-small.zip", "archive": "zip", "extract_to": "."}]}]}

Unknown keys are refused with the list of valid ones, so a misspelled key is an error, not a
silently ignored setting.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from kg_builders.errors import ConfigError

logger = logging.getLogger(__name__)

#: the catalog format this module reads
CATALOG_FORMAT_VERSION = 1
#: archive kinds :func:`~kg_builders.sources.download.fetch_dataset` can unpack (``None``: a plain file)
ARCHIVES = ("zip",)

_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*\Z")
_TOP_KEYS = {"format_version": True, "datasets": True}
_LICENCE_KEYS = {"text": True, "url": True}
_FILE_KEYS = {"url": True, "sha256": True, "size": False, "filename": True, "archive": False, "extract_to": False}
_DATASET_KEYS = {
    "name": True,
    "description": True,
    "files": True,
    "licence": True,
    "citation": True,
    "format": True,
    "homepage": True,
    "checksum_source": True,
    "note": False,
    "root": False,
}


def default_catalog_path() -> Path:
    """The repository's ``data/catalog.json`` (found relative to this file)."""
    return Path(__file__).resolve().parents[2] / "data" / "catalog.json"


@dataclass(frozen=True)
class Licence:
    """The terms a data set is published under: a short summary and where to read them in full."""

    text: str
    url: str


@dataclass(frozen=True)
class FileEntry:
    """One file of a data set.

    Attributes:
        url: where to download it (http or https).
        sha256: the expected SHA-256 of the downloaded bytes (64 lowercase hex digits), or ``None``
            where none is published; such a file is only fetched when the caller allows it.
        size: the size in bytes, where known.
        filename: the name the download is saved under (no folders).
        archive: ``"zip"`` to unpack it, ``None`` to keep the file as it is.
        extract_to: the folder, relative to the data set's folder, that receives the file or the
            archive's contents (``"."``: the data set's folder itself).
    """

    url: str
    sha256: str | None
    filename: str
    size: int | None = None
    archive: str | None = None
    extract_to: str = "."


@dataclass(frozen=True)
class DatasetEntry:
    """One public data set.

    Attributes:
        name: the catalog key, e.g. ``"ml-latest-small"``.
        description: what it holds.
        files: the files to download, in order.
        licence: its terms of use.
        citation: what to cite when using it.
        format: which reader of ``kg_builders.sources`` reads it: a name of
            ``kg_builders.sources.auto.FORMATS`` (e.g. ``"movielens"``) or ``"kg_triples"``.
        homepage: the publisher's page.
        checksum_source: where the sha256 values come from.
        note: anything a user must know before fetching it (required when a file has no sha256).
        root: the folder, relative to the data set's folder, that holds the files once fetched
            (e.g. the top folder of a zip archive).
    """

    name: str
    description: str
    files: tuple[FileEntry, ...]
    licence: Licence
    citation: str
    format: str
    homepage: str
    checksum_source: str
    note: str | None = None
    root: str = "."

    @property
    def verified(self) -> bool:
        """Whether every file has a published sha256."""
        return all(f.sha256 is not None for f in self.files)


@dataclass(frozen=True)
class Catalog:
    """The data sets of a catalog file, by name."""

    datasets: tuple[DatasetEntry, ...]
    path: Path | None = None

    def __post_init__(self) -> None:
        names = [d.name for d in self.datasets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"catalog {self._where()}has duplicate data set name(s): {dup}")

    def _where(self) -> str:
        return f"{self.path} " if self.path is not None else ""

    def names(self) -> list[str]:
        """The data set names, in catalog order."""
        return [d.name for d in self.datasets]

    def get(self, name: str) -> DatasetEntry:
        """The entry called ``name``.

        Raises:
            ConfigError: no such data set; the message lists the valid names.
        """
        for d in self.datasets:
            if d.name == name:
                return d
        raise ConfigError(f"unknown data set {name!r}; valid: {self.names()}")

    def __contains__(self, name: object) -> bool:
        return any(d.name == name for d in self.datasets)

    def __iter__(self) -> Iterator[DatasetEntry]:
        return iter(self.datasets)

    def __len__(self) -> int:
        return len(self.datasets)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate a catalog file.

    Args:
        path: the JSON file; default: the repository's ``data/catalog.json``.

    Raises:
        ConfigError: the file is missing or not valid JSON, or an entry has an unknown or missing
            key or a bad value (the message names the data set, the key and the valid keys).
    """
    p = Path(path) if path is not None else default_catalog_path()
    if not p.is_file():
        if path is None:
            raise ConfigError(
                f"the dataset catalog was not found at {p} (it ships with the repository, not with an "
                "installed package); pass the path of a catalog.json, e.g. load_catalog(path=...)"
            )
        raise ConfigError(f"catalog file {p} does not exist")
    data = p.read_bytes()
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{p}: not UTF-8 at line {line}: bytes {data[exc.start : exc.end]!r}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from exc
    return parse_catalog(raw, path=p)


def parse_catalog(raw: Any, *, path: Path | None = None) -> Catalog:
    """Validate a catalog already parsed from JSON (see the module docstring for its layout).

    Raises:
        ConfigError: as :func:`load_catalog`.
    """
    where = str(path) if path is not None else "catalog"
    top = _check_keys(raw, _TOP_KEYS, where)
    version = top["format_version"]
    if version != CATALOG_FORMAT_VERSION:
        raise ConfigError(
            f"{where}: format_version {version!r} is not supported; this version of graph-rec reads "
            f"format_version {CATALOG_FORMAT_VERSION}"
        )
    datasets = top["datasets"]
    if not isinstance(datasets, list):
        raise ConfigError(f"{where}: 'datasets' must be a list, got {type(datasets).__name__}")
    entries = tuple(_parse_dataset(d, f"{where}: datasets[{i}]") for i, d in enumerate(datasets))
    return Catalog(datasets=entries, path=path)


def _check_keys(obj: Any, keys: Mapping[str, bool], where: str) -> dict[str, Any]:
    """Check ``obj`` is a dict whose keys are among ``keys`` and hold every required one."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(keys))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid: {sorted(keys)}")
    missing = sorted(k for k, required in keys.items() if required and k not in obj)
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    return obj


def _text(obj: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
    return value


def _url(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = _text(obj, key, where)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where}: {key!r} must be an http(s) URL, got {value!r}")
    return value


def _relative_dir(obj: Mapping[str, Any], key: str, where: str) -> str:
    """A folder inside the data set's folder: relative, POSIX, without '..'."""
    value = obj.get(key, ".")
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key!r} must be a relative folder such as '.', got {value!r}")
    pure = PurePosixPath(value)
    if pure.is_absolute() or "\\" in value or ".." in pure.parts or re.match(r"^[A-Za-z]:", value):
        raise ConfigError(f"{where}: {key!r} must be a relative folder without '..', got {value!r}")
    return pure.as_posix()


def _parse_file(obj: Any, where: str) -> FileEntry:
    f = _check_keys(obj, _FILE_KEYS, where)
    url = _url(f, "url", where)
    sha = f["sha256"]
    if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha)):
        raise ConfigError(f"{where}: 'sha256' must be 64 lowercase hex digits or null, got {sha!r}")
    size = f.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ConfigError(f"{where}: 'size' must be a non-negative integer or null, got {size!r}")
    filename = _text(f, "filename", where)
    if "/" in filename or "\\" in filename or filename in (".", "..") or filename.startswith("."):
        raise ConfigError(
            f"{where}: 'filename' must be a plain file name (no folders, no leading dot), got {filename!r}"
        )
    archive = f.get("archive")
    if archive is not None and archive not in ARCHIVES:
        raise ConfigError(f"{where}: 'archive' must be one of {list(ARCHIVES)} or null, got {archive!r}")
    return FileEntry(
        url=url,
        sha256=sha,
        size=size,
        filename=filename,
        archive=archive,
        extract_to=_relative_dir(f, "extract_to", where),
    )


def _parse_dataset(obj: Any, where: str) -> DatasetEntry:
    d = _check_keys(obj, _DATASET_KEYS, where)
    name = _text(d, "name", where)
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}: 'name' must match {_NAME.pattern} (lowercase, digits, '.', '_', '-'), got {name!r}"
        )
    where = f"{where} ({name})"
    files_raw = d["files"]
    if not isinstance(files_raw, list) or not files_raw:
        raise ConfigError(f"{where}: 'files' must be a non-empty list")
    files = tuple(_parse_file(f, f"{where}: files[{i}]") for i, f in enumerate(files_raw))
    filenames = [f.filename for f in files]
    dup = sorted({n for n in filenames if filenames.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: duplicate filename(s) {dup}")
    licence_raw = _check_keys(d["licence"], _LICENCE_KEYS, f"{where}: licence")
    licence = Licence(
        text=_text(licence_raw, "text", f"{where}: licence"), url=_url(licence_raw, "url", f"{where}: licence")
    )
    note = _text(d, "note", where, optional=True)
    if note is None and any(f.sha256 is None for f in files):
        raise ConfigError(f"{where}: a file has no sha256, so the entry needs a 'note' saying why and what to do")
    return DatasetEntry(
        name=name,
        description=_text(d, "description", where),
        files=files,
        licence=licence,
        citation=_text(d, "citation", where),
        format=_text(d, "format", where),
        homepage=_url(d, "homepage", where),
        checksum_source=_text(d, "checksum_source", where),
        note=note,
        root=_relative_dir(d, "root", where),
    )
