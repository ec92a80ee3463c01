"""Checksum-verified downloads of catalog data sets, with a local cache.

:func:`fetch_dataset` downloads every file of a :class:`~kg_builders.sources.catalog.DatasetEntry`
into ``cache_dir/<name>/``, unpacks archives, and returns the folder that holds the data. Each
download streams into a temporary file next to its destination while it is hashed; the SHA-256 is
checked *before* the file is renamed into place, so a wrong or truncated download leaves nothing
behind. Archives are unpacked, entry by entry, into a temporary folder whose entries are then
renamed into place; an entry with an absolute path or ``..`` (zip-slip), a symbolic link, or a path
into the marker folder ``.graph-rec/`` makes the whole archive refused. Backslashes in entry names
(zips made by Windows tools) are folder separators.

Cache layout::

    cache_dir/<name>/                 the data set's folder
        <extract_to>/<files>          the files, or the archives' contents
        .graph-rec/<filename>.json    one marker per catalog file: the verified sha256 and the
                                      paths it produced; a second fetch that finds the marker
                                      and the paths makes no request

Only ``http`` and ``https`` URLs are fetched, with the standard library (:mod:`urllib`). A URL
may hold ``user:password@``; it is sent as HTTP basic authentication (not forwarded on
redirects) and always logged and reported with the password masked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import logging
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from tqdm.auto import tqdm

from kg_builders._files import atomic_file
from kg_builders.errors import ConfigError, DownloadError
from kg_builders.sources.catalog import Catalog, DatasetEntry, FileEntry, load_catalog

logger = logging.getLogger(__name__)

#: the folder, inside a data set's cache folder, that holds the markers
MARKER_DIR = ".graph-rec"
MARKER_FORMAT_VERSION = 1
CHUNK_SIZE = 1 << 20
USER_AGENT = "graph-rec-download"
_SECRET_QUERY_KEYS = {
    "sig",
    "signature",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
}


def redact_url(url: str) -> str:
    """``url`` with the password of ``user:password@`` and secret-looking query values masked.

    Query parameters such as ``sig``, ``token``, ``key`` or ``X-Amz-Signature`` get ``***``.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if parts.username is not None or parts.password is not None:
        userinfo = parts.username or ""
        if parts.password is not None:
            userinfo += ":***"
        netloc = f"{userinfo}@{host}" + (f":{port}" if port is not None else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _request(url: str) -> urllib.request.Request:
    """A GET request for ``url``; credentials in the URL become a basic-auth header."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadError(f"only http(s) URLs can be downloaded, got {redact_url(url)!r}")
    auth = None
    if parts.username is not None:
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        user, password = unquote(parts.username), unquote(parts.password or "")
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if auth is not None:
        # not copied onto a redirected request, so credentials never reach another host
        req.add_unredirected_header("Authorization", auth)
    return req


def _stream(
    url: str,
    dest: Path,
    *,
    sha256: str | None,
    timeout: float,
    progress: bool,
    size: int | None,
) -> str:
    """Download ``url`` to ``dest`` via a temporary sibling; return the actual SHA-256."""
    shown = redact_url(url)
    req = _request(url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.part-", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    received = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            logger.info("downloading %s to %s", shown, dest)
            try:
                response = urllib.request.urlopen(req, timeout=timeout)
            except urllib.error.HTTPError as exc:
                exc.close()
                raise DownloadError(f"download of {shown} failed: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                raise DownloadError(f"download of {shown} failed: {reason}") from exc
            with response:
                header = response.headers.get("Content-Length")
                length = int(header) if header is not None and header.isdigit() else None
                if length is not None and size is not None and length != size:
                    raise DownloadError(
                        f"download of {shown} refused: the server announces {length} bytes; the catalog expects {size}"
                    )
                with tqdm(
                    total=length or size,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=not progress,
                ) as bar:
                    try:
                        while chunk := response.read(CHUNK_SIZE):
                            digest.update(chunk)
                            fh.write(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                    except (http.client.HTTPException, OSError) as exc:
                        raise DownloadError(f"download of {shown} failed after {received} bytes: {exc!r}") from exc
            if length is not None and received != length:
                raise DownloadError(
                    f"download of {shown} is incomplete: received {received} of {length} bytes "
                    "(the connection closed early)"
                )
            if size is not None and received != size:
                raise DownloadError(f"download of {shown} has {received} bytes; the catalog expects {size}")
            fh.flush()
            os.fsync(fh.fileno())
        actual = digest.hexdigest()
        if sha256 is not None and actual != sha256.lower():
            raise DownloadError(
                f"checksum mismatch for {shown}: expected sha256 {sha256.lower()}, got {actual}; the file was discarded"
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if sha256 is None:
        logger.warning("downloaded %s WITHOUT checksum verification; its sha256 is %s", shown, actual)
    return actual


def download_file(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None,
    timeout: float = 60,
    progress: bool = False,
    size: int | None = None,
) -> Path:
    """Download ``url`` to ``dest``, verifying its SHA-256 before it appears there.

    The bytes stream into a temporary file in ``dest``'s folder while they are hashed; only a
    complete download with the expected hash is renamed to ``dest`` (replacing a file already
    there). On any failure the temporary file is removed and ``dest`` is untouched.

    Args:
        url: an http(s) URL; ``user:password@`` is sent as basic auth and masked in messages.
        dest: the file to write.
        sha256: the expected hex digest; ``None`` skips verification (logged as a warning with
            the actual digest). :func:`fetch_dataset` only passes ``None`` when the caller allowed it.
        timeout: seconds to wait for the connection and for each read.
        progress: show a tqdm progress bar.
        size: the expected size in bytes, where known.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DownloadError: an HTTP error, a network error (the cause is chained), a transfer shorter
            than its Content-Length, a size or checksum mismatch. The message names the URL.
    """
    if sha256 is not None:
        sha256 = _check_sha256(sha256, what="sha256")
    dest = Path(dest)
    _stream(url, dest, sha256=sha256, timeout=timeout, progress=progress, size=size)
    return dest


def _check_sha256(value: object, *, what: str) -> str:
    text = value.lower() if isinstance(value, str) else ""
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ConfigError(f"{what} must be 64 hex digits, got {value!r}")
    return text


#: what zipfile raises for a damaged entry: a bad CRC or header, a truncated or corrupt stream
#: (zlib.error; lzma's LZMAError), an encrypted entry (RuntimeError), an unknown method (NotImplementedError)
_UNPACK_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    OSError,
    EOFError,
    zlib.error,
    RuntimeError,
    NotImplementedError,
)
with contextlib.suppress(ImportError):  # Python may be built without lzma; zipfile then refuses the method
    import lzma

    _UNPACK_ERRORS += (lzma.LZMAError,)


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath:
    """The entry's path with ``\\`` read as a folder separator (zips made by Windows tools)."""
    return PurePosixPath(info.filename.replace("\\", "/"))


def _is_folder(info: zipfile.ZipInfo) -> bool:
    return info.filename.endswith(("/", "\\"))


def _is_marker_dir(name: str) -> bool:
    """Whether a path component names the marker folder (also as case-insensitive file systems see it)."""
    return name.rstrip(". ").casefold() == MARKER_DIR.casefold()


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry must not be extracted, or ``None`` when it is safe."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path (zip-slip)"
    if ".." in parts:
        return "'..' in its path (zip-slip)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    rel = _member_path(info)
    if not rel.parts and not _is_folder(info):  # a folder entry './' is the top folder itself
        return "an empty path"
    if rel.parts and _is_marker_dir(rel.parts[0]):
        return f"a path into the cache's marker folder {MARKER_DIR!r}, which only graph-rec writes"
    return None


def _extract_zip(archive: Path, dest_dir: Path, *, shown_url: str) -> list[PurePosixPath]:
    """Unpack ``archive`` into ``dest_dir`` via a temporary folder; return the files (relative)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{shown_url} is not a valid zip archive: {exc}") from exc
    with zf:
        members = zf.infolist()
        for info in members:
            why = _unsafe_member(info)
            if why is not None:
                raise DownloadError(
                    f"refusing to unpack {shown_url}: entry {info.filename!r} has {why}; nothing was extracted"
                )
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_dir))
        files: dict[PurePosixPath, None] = {}  # ordered, without repeats
        try:
            root = tmp.resolve()
            for info in members:
                rel = _member_path(info)
                out = tmp.joinpath(*rel.parts)
                if not out.resolve().is_relative_to(root):
                    raise DownloadError(f"refusing to unpack {shown_url}: entry {info.filename!r} escapes the target")
                try:
                    if _is_folder(info):
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK_SIZE)
                except _UNPACK_ERRORS as exc:
                    raise DownloadError(
                        f"unpacking {shown_url} failed at entry {info.filename!r}: {exc}; nothing was kept"
                    ) from exc
                files[rel] = None
            for entry in sorted(tmp.iterdir()):
                target = dest_dir / entry.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                os.replace(entry, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return list(files)


def _marker_path(base: Path, f: FileEntry) -> Path:
    return base / MARKER_DIR / f"{f.filename}.json"


def _cached_paths(base: Path, f: FileEntry, expected: str | None) -> bool:
    """Whether the marker of ``f`` matches ``expected`` and every path it lists exists."""
    marker = _marker_path(base, f)
    if not marker.is_file():
        return False
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("ignoring unreadable download marker %s (%s); downloading again", marker, exc)
        return False
    if not isinstance(record, dict) or record.get("format_version") != MARKER_FORMAT_VERSION:
        logger.warning("ignoring download marker %s of an unknown format; downloading again", marker)
        return False
    same = (
        record.get("filename") == f.filename
        and record.get("archive") == f.archive
        and record.get("extract_to") == f.extract_to
        and (expected is None or record.get("sha256") == expected)
    )
    if not same:
        logger.info("cached %s does not match the catalog entry; downloading again", f.filename)
        return False
    paths = record.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return False
    missing = [p for p in paths if not (base / p).is_file()]
    if missing:
        logger.info(
            "cached %s is missing %d file(s) (e.g. %s); downloading again", f.filename, len(missing), missing[0]
        )
        return False
    return True


def _fetch_file(base: Path, f: FileEntry, expected: str | None, *, timeout: float, progress: bool) -> None:
    marker = _marker_path(base, f)
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()  # a failed refetch must not leave an old marker vouching for new files
    target_dir = base / f.extract_to
    shown = redact_url(f.url)
    if f.archive is None:
        dest = target_dir / f.filename
        actual = _stream(f.url, dest, sha256=expected, timeout=timeout, progress=progress, size=f.size)
        paths = [PurePosixPath(f.extract_to, f.filename)]
    elif f.archive == "zip":
        archive = base / MARKER_DIR / "downloads" / f.filename
        try:
            actual = _stream(f.url, archive, sha256=expected, timeout=timeout, progress=progress, size=f.size)
            logger.info("unpacking %s into %s", f.filename, target_dir)
            files = _extract_zip(archive, target_dir, shown_url=shown)
        finally:
            with contextlib.suppress(FileNotFoundError):
                archive.unlink()
        paths = [PurePosixPath(f.extract_to, p) for p in files]
    else:  # the catalog validates archive kinds; a hand-made FileEntry may not
        raise ConfigError(f"{f.filename}: archive {f.archive!r} is not supported; valid: ['zip', None]")
    record = {
        "format_version": MARKER_FORMAT_VERSION,
        "url": shown,
        "filename": f.filename,
        "sha256": actual,
        "verified": expected is not None,
        "archive": f.archive,
        "extract_to": f.extract_to,
        "paths": [p.as_posix() for p in paths],
    }
    with atomic_file(marker, "w") as fh:
        json.dump(record, fh, indent=2)


def _expected_hashes(entry: DatasetEntry, sha256_override: str | Mapping[str, str] | None) -> dict[str, str | None]:
    names = [f.filename for f in entry.files]
    expected: dict[str, str | None] = {f.filename: f.sha256 for f in entry.files}
    if sha256_override is None:
        return expected
    if isinstance(sha256_override, str):
        if len(names) != 1:
            raise ConfigError(
                f"{entry.name} has {len(names)} files; pass sha256_override as a mapping filename -> sha256 "
                f"(filenames: {names})"
            )
        expected[names[0]] = _check_sha256(sha256_override, what="sha256_override")
        return expected
    if not isinstance(sha256_override, Mapping):
        raise ConfigError(f"sha256_override must be a str, a mapping or None, got {type(sha256_override).__name__}")
    unknown = sorted(set(sha256_override) - set(names))
    if unknown:
        raise ConfigError(f"sha256_override names unknown file(s) {unknown} of {entry.name}; valid: {names}")
    for name, value in sha256_override.items():
        expected[name] = _check_sha256(value, what=f"sha256_override[{name!r}]")
    return expected


def is_cached(entry: DatasetEntry, cache_dir: str | Path) -> bool:
    """Whether every file of ``entry`` is in ``cache_dir``, verified (its marker names the catalog's
    sha256 and the paths it unpacked exist): :func:`fetch_dataset` then reads it with no request.
    An empty or half-fetched folder of that name is not cached."""
    base = Path(cache_dir) / entry.name
    return all(_cached_paths(base, f, f.sha256) for f in entry.files)


def _check_inside(base: Path, rel: str, *, what: str) -> None:
    """Refuse a catalog path that would leave the data set's folder (hand-made entries are not validated)."""
    resolved = base.resolve()
    if PurePosixPath(rel).is_absolute() or not (resolved / rel).resolve().is_relative_to(resolved):
        raise ConfigError(f"{what}: path {rel!r} leaves the data set's folder {base}")


def _check_not_markers(base: Path, rel: str, *, what: str) -> None:
    """Refuse a catalog path (already inside ``base``) that would put downloaded files among the markers."""
    parts = (base / rel).resolve().relative_to(base.resolve()).parts
    if parts and _is_marker_dir(parts[0]):
        raise ConfigError(f"{what}: path {rel!r} is inside the cache's marker folder {MARKER_DIR!r}")


def fetch_dataset(
    name_or_entry: str | DatasetEntry,
    *,
    cache_dir: str | Path,
    catalog: Catalog | None = None,
    allow_unverified: bool = False,
    sha256_override: str | Mapping[str, str] | None = None,
    timeout: float = 60,
    progress: bool = False,
) -> Path:
    """Download (or find in the cache) every file of a catalog data set; return its folder.

    A file whose marker records the expected sha256 and whose files all exist is not downloaded
    again (no request is made). Otherwise it is downloaded, verified, and unpacked if it is an
    archive; the marker is written last, so an interrupted fetch is simply redone.

    Args:
        name_or_entry: a data set name in ``catalog``, or a :class:`DatasetEntry`.
        cache_dir: the cache root; the data set goes to ``cache_dir/<name>/``.
        catalog: where to look a name up; default: :func:`~kg_builders.sources.catalog.load_catalog`.
        allow_unverified: fetch files that have no sha256 in the catalog (their actual sha256 is
            logged and recorded in the marker).
        sha256_override: the expected sha256 to use instead of the catalog's: a hex string for a
            data set with one file, or a mapping filename -> hex string.
        timeout: seconds to wait for each connection and read.
        progress: show a tqdm progress bar per file.

    Returns:
        ``cache_dir/<name>/<root>``: the folder holding the data set's files.

    Raises:
        ConfigError: an unknown data set name (the valid ones are listed), a bad override, or a
            catalog path outside the data set's folder or inside its marker folder.
        DownloadError: a file has no sha256 and ``allow_unverified`` is false (the entry's note
            says why), a download failed or did not match its checksum, or an archive was refused
            or an entry of it could not be unpacked (damaged, encrypted, an unsupported method).
    """
    if isinstance(name_or_entry, DatasetEntry):
        entry = name_or_entry
    elif isinstance(name_or_entry, str):
        entry = (catalog if catalog is not None else load_catalog()).get(name_or_entry)
    else:
        raise ConfigError(
            f"name_or_entry must be a data set name or a DatasetEntry, got {type(name_or_entry).__name__}"
        )
    if timeout <= 0:
        raise ConfigError(f"timeout must be positive, got {timeout}")
    expected = _expected_hashes(entry, sha256_override)
    unverified = [name for name, sha in expected.items() if sha is None]
    if unverified and not allow_unverified:
        note = f" Note: {entry.note}" if entry.note else ""
        raise DownloadError(
            f"{entry.name}: no sha256 is known for {unverified}, so the download cannot be verified; pass "
            f"sha256_override=... (a checksum you trust) or allow_unverified=True.{note}"
        )
    base = Path(cache_dir) / entry.name
    for rel in [entry.root, *(f.extract_to for f in entry.files), *(f.filename for f in entry.files)]:
        _check_inside(base, rel, what=entry.name)
    for f in entry.files:  # what lands in the marker folder could vouch for another file
        written = f.extract_to if f.archive is not None else PurePosixPath(f.extract_to, f.filename).as_posix()
        _check_inside(base, written, what=entry.name)
        _check_not_markers(base, written, what=entry.name)
    for f in entry.files:
        sha = expected[f.filename]
        if _cached_paths(base, f, sha):
            logger.debug("%s/%s is cached", entry.name, f.filename)
            continue
        _fetch_file(base, f, sha, timeout=timeout, progress=progress)
    root = base / entry.root
    if not root.is_dir():
        raise DownloadError(
            f"{entry.name}: the files were fetched but its root folder {root} does not exist; the catalog's "
            f"'root' ({entry.root!r}) does not match the archive's layout"
        )
    return root
