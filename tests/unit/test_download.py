"""Checksum-verified downloads against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import logging
import socket
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kg_builders.errors import ConfigError, DownloadError
from kg_builders.sources.catalog import DatasetEntry, FileEntry, Licence, parse_catalog
from kg_builders.sources.download import MARKER_DIR, download_file, fetch_dataset, is_cached, redact_url

LICENCE = Licence(text="test data", url="https://example.org/licence")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


@dataclass
class Server:
    """A local HTTP server: ``routes`` maps a path to ``(body, mode)``; ``hits`` counts requests."""

    base: str
    routes: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    auth: list[str | None] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(base="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            state.hits[self.path] += 1
            state.auth.append(self.headers.get("Authorization"))
            if self.path not in state.routes:
                self.send_error(404, "Not Found")
                return
            body, mode = state.routes[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if mode == "short":  # announce more than is sent, then close
                self.send_header("Content-Length", str(len(body) + 1000))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def entry(name: str, files: list[FileEntry], *, root: str = ".", note: str | None = None) -> DatasetEntry:
    return DatasetEntry(
        name=name,
        description="test",
        files=tuple(files),
        licence=LICENCE,
        citation="test",
        format="movielens",
        homepage="https://example.org",
        checksum_source="computed in the test",
        note=note,
        root=root,
    )


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_good_file_is_verified_and_cached(server: Server, tmp_path: Path) -> None:
    body = b"user\titem\n1\t2\n" * 100
    server.routes["/data.txt"] = (body, "ok")
    e = entry("plain", [FileEntry(url=server.url("/data.txt"), sha256=sha(body), filename="data.txt", size=len(body))])
    cache = tmp_path / "cache"
    (cache / "plain").mkdir(parents=True)  # an empty folder of that name is not a cached data set
    assert not is_cached(e, cache)
    root = fetch_dataset(e, cache_dir=cache)
    assert root == cache / "plain" and is_cached(e, cache)
    assert (root / "data.txt").read_bytes() == body
    marker = json.loads((root / MARKER_DIR / "data.txt.json").read_text())
    assert marker["sha256"] == sha(body) and marker["verified"] is True
    assert marker["paths"] == ["data.txt"]
    assert server.hits["/data.txt"] == 1
    # second call: the marker and the file are there, so no request is made
    assert fetch_dataset(e, cache_dir=cache) == root
    assert server.hits["/data.txt"] == 1
    # a missing file makes it download again
    (root / "data.txt").unlink()
    fetch_dataset(e, cache_dir=cache)
    assert server.hits["/data.txt"] == 2
    assert (root / "data.txt").read_bytes() == body


def test_zip_is_extracted_and_cached(server: Server, tmp_path: Path) -> None:
    archive = make_zip({"pack/a.txt": b"alpha", "pack/sub/b.txt": b"beta"})
    server.routes["/pack.zip"] = (archive, "ok")
    e = entry(
        "zipped",
        [FileEntry(url=server.url("/pack.zip"), sha256=sha(archive), filename="pack.zip", archive="zip")],
        root="pack",
    )
    cache = tmp_path / "cache"
    root = fetch_dataset(e, cache_dir=cache)
    assert root == cache / "zipped" / "pack"
    assert (root / "a.txt").read_bytes() == b"alpha"
    assert (root / "sub" / "b.txt").read_bytes() == b"beta"
    # the archive itself and the temporary folders are gone
    assert sorted(p.relative_to(cache / "zipped").as_posix() for p in files_under(cache / "zipped")) == [
        f"{MARKER_DIR}/pack.zip.json",
        "pack/a.txt",
        "pack/sub/b.txt",
    ]
    assert fetch_dataset(e, cache_dir=cache) == root
    assert server.hits["/pack.zip"] == 1


def test_wrong_sha256_raises_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    body = b"some bytes"
    server.routes["/f.bin"] = (body, "ok")
    wrong = "f" * 64
    e = entry("bad", [FileEntry(url=server.url("/f.bin"), sha256=wrong, filename="f.bin")])
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError) as info:
        fetch_dataset(e, cache_dir=cache)
    message = str(info.value)
    assert server.url("/f.bin") in message and wrong in message and sha(body) in message
    assert files_under(cache) == []
    # the low-level function too: no destination, no temporary file
    dest = tmp_path / "direct" / "f.bin"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_file(server.url("/f.bin"), dest, sha256=wrong)
    assert files_under(tmp_path / "direct") == []


def test_download_file_replaces_destination_only_when_verified(server: Server, tmp_path: Path) -> None:
    body = b"new content"
    server.routes["/f.bin"] = (body, "ok")
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old content")
    with pytest.raises(DownloadError):
        download_file(server.url("/f.bin"), dest, sha256="0" * 64)
    assert dest.read_bytes() == b"old content"
    assert download_file(server.url("/f.bin"), dest, sha256=sha(body).upper()) == dest
    assert dest.read_bytes() == body
    assert files_under(tmp_path) == [dest]


def test_truncated_transfer_raises_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    body = b"x" * 5000
    server.routes["/short.bin"] = (body, "short")
    cache = tmp_path / "cache"
    for sha256, allow in ((sha(body), False), (None, True)):  # caught by the length check, hash or not
        e = entry("short", [FileEntry(url=server.url("/short.bin"), sha256=sha256, filename="short.bin")], note="test")
        with pytest.raises(DownloadError, match=r"incomplete: received 2500 of 6000 bytes") as info:
            fetch_dataset(e, cache_dir=cache, allow_unverified=allow)
        assert server.url("/short.bin") in str(info.value)
        assert files_under(cache) == []


def test_size_mismatch_is_refused(server: Server, tmp_path: Path) -> None:
    body = b"12345"
    server.routes["/s.bin"] = (body, "ok")
    e = entry("sized", [FileEntry(url=server.url("/s.bin"), sha256=sha(body), filename="s.bin", size=6)])
    with pytest.raises(DownloadError, match="announces 5 bytes; the catalog expects 6"):
        fetch_dataset(e, cache_dir=tmp_path)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("evil", ["../evil.txt", "pack/../../evil.txt", "/abs/evil.txt"])
def test_zip_slip_is_refused(server: Server, tmp_path: Path, evil: str) -> None:
    archive = make_zip({"pack/ok.txt": b"fine", evil: b"gotcha"})
    server.routes["/evil.zip"] = (archive, "ok")
    e = entry("evil", [FileEntry(url=server.url("/evil.zip"), sha256=sha(archive), filename="evil.zip", archive="zip")])
    cache = tmp_path / "a" / "b" / "cache"
    with pytest.raises(DownloadError, match="zip-slip") as info:
        fetch_dataset(e, cache_dir=cache)
    assert repr(evil) in str(info.value)
    assert files_under(tmp_path) == []  # nothing extracted anywhere, the archive removed


def test_unverified_entry_is_refused_unless_allowed(server: Server, tmp_path: Path) -> None:
    body = b"news"
    server.routes["/news.tsv"] = (body, "ok")
    note = "the licence must be accepted first; no checksum is published"
    e = entry("news", [FileEntry(url=server.url("/news.tsv"), sha256=None, filename="news.tsv")], note=note)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="allow_unverified=True") as info:
        fetch_dataset(e, cache_dir=cache)
    assert note in str(info.value)
    assert server.hits["/news.tsv"] == 0
    assert files_under(cache) == []

    root = fetch_dataset(e, cache_dir=cache, allow_unverified=True)
    assert (root / "news.tsv").read_bytes() == body
    marker = json.loads((root / MARKER_DIR / "news.tsv.json").read_text())
    assert marker["verified"] is False and marker["sha256"] == sha(body)
    # an explicit, matching checksum is accepted and finds the cached copy
    assert fetch_dataset(e, cache_dir=cache, sha256_override=sha(body)) == root
    assert server.hits["/news.tsv"] == 1
    # a different expected checksum means the cache does not match: download and fail
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch_dataset(e, cache_dir=cache, sha256_override="1" * 64)
    assert server.hits["/news.tsv"] == 2


def test_sha256_override_must_name_files(server: Server, tmp_path: Path) -> None:
    e = entry(
        "two",
        [
            FileEntry(url=server.url("/a"), sha256="0" * 64, filename="a"),
            FileEntry(url=server.url("/b"), sha256="0" * 64, filename="b"),
        ],
    )
    with pytest.raises(ConfigError, match="has 2 files"):
        fetch_dataset(e, cache_dir=tmp_path, sha256_override="0" * 64)
    with pytest.raises(ConfigError, match=r"unknown file\(s\) \['c'\].*valid: \['a', 'b'\]"):
        fetch_dataset(e, cache_dir=tmp_path, sha256_override={"c": "0" * 64})
    with pytest.raises(ConfigError, match="64 hex digits"):
        fetch_dataset(e, cache_dir=tmp_path, sha256_override={"a": "xyz"})
    assert sum(server.hits.values()) == 0


def test_404_names_the_url(server: Server, tmp_path: Path) -> None:
    e = entry("missing", [FileEntry(url=server.url("/nope.zip"), sha256="0" * 64, filename="nope.zip")])
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch_dataset(e, cache_dir=tmp_path)
    assert server.url("/nope.zip") in str(info.value)
    assert info.value.__cause__ is not None
    assert files_under(tmp_path) == []


def test_connection_refused_chains_the_cause(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.bin"
    with pytest.raises(DownloadError, match="failed") as info:
        download_file(url, tmp_path / "x.bin", sha256="0" * 64, timeout=5)
    assert url in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert files_under(tmp_path) == []


def test_credentials_are_sent_but_never_shown(server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    body = b"private"
    server.routes["/private.bin"] = (body, "ok")
    port = server.base.rsplit(":", 1)[1]
    caplog.set_level(logging.DEBUG, logger="kg_builders")
    download_file(f"http://alice:s3cr3t@127.0.0.1:{port}/private.bin", tmp_path / "p.bin", sha256=sha(body))
    assert server.auth[-1] == "Basic " + base64.b64encode(b"alice:s3cr3t").decode()
    with pytest.raises(DownloadError) as info:
        download_file(f"http://alice:s3cr3t@127.0.0.1:{port}/gone.bin", tmp_path / "g.bin", sha256="0" * 64)
    assert "alice:***@127.0.0.1" in str(info.value)
    assert "s3cr3t" not in str(info.value)
    assert caplog.records and all("s3cr3t" not in r.getMessage() for r in caplog.records)


def test_redact_url_masks_passwords_and_signatures() -> None:
    assert redact_url("https://bob:pw@host.org:8443/a?x=1") == "https://bob:***@host.org:8443/a?x=1"
    assert redact_url("https://host.org/f.zip?sv=2020&sig=abc%2Fdef") == "https://host.org/f.zip?sv=2020&sig=***"
    assert redact_url("https://host.org/f.zip") == "https://host.org/f.zip"


def test_fetch_by_name_through_a_catalog(server: Server, tmp_path: Path) -> None:
    body = b"1 2\n"
    server.routes["/pairs.txt"] = (body, "ok")
    catalog = parse_catalog(
        {
            "format_version": 1,
            "datasets": [
                {
                    "name": "pairs",
                    "description": "d",
                    "format": "lightgcn",
                    "homepage": "https://example.org",
                    "citation": "c",
                    "licence": {"text": "t", "url": "https://example.org/l"},
                    "checksum_source": "test",
                    "files": [{"url": server.url("/pairs.txt"), "sha256": sha(body), "filename": "pairs.txt"}],
                }
            ],
        }
    )
    root = fetch_dataset("pairs", cache_dir=tmp_path, catalog=catalog)
    assert (root / "pairs.txt").read_bytes() == body
    with pytest.raises(ConfigError, match=r"unknown data set 'pair'; valid: \['pairs'\]"):
        fetch_dataset("pair", cache_dir=tmp_path, catalog=catalog)


def test_hand_made_entries_cannot_escape_the_cache(server: Server, tmp_path: Path) -> None:
    bad = entry("esc", [FileEntry(url=server.url("/x"), sha256="0" * 64, filename="x", extract_to="../..")])
    with pytest.raises(ConfigError, match="leaves the data set's folder"):
        fetch_dataset(bad, cache_dir=tmp_path / "cache")
    assert sum(server.hits.values()) == 0


# ------------------------------------------------------------------ archives a review found unpacked wrongly
@pytest.mark.parametrize(
    "planted",
    [
        ".graph-rec/real.csv.json",
        "./.graph-rec/real.csv.json",
        ".graph-rec\\real.csv.json",
        ".Graph-Rec/x",
        ".graph-rec/",
    ],
)
def test_an_archive_cannot_write_the_cache_markers(server: Server, tmp_path: Path, planted: str) -> None:
    real = b"the real, verified file\n"
    forged = {"format_version": 1, "filename": "real.csv", "archive": None, "extract_to": ".", "sha256": sha(real)}
    forged_bytes = b"" if planted.endswith("/") else json.dumps({**forged, "paths": ["real.csv"]}).encode()
    archive = make_zip({"a.csv": b"a\n", "real.csv": b"NOT THE VERIFIED FILE\n", planted: forged_bytes})
    server.routes["/a.zip"] = (archive, "ok")
    server.routes["/real.csv"] = (real, "ok")
    e = entry(
        "planted",
        [
            FileEntry(url=server.url("/a.zip"), sha256=sha(archive), filename="a.zip", archive="zip"),
            FileEntry(url=server.url("/real.csv"), sha256=sha(real), filename="real.csv"),
        ],
    )
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="marker folder") as info:
        fetch_dataset(e, cache_dir=cache)
    assert server.url("/a.zip") in str(info.value) and repr(planted) in str(info.value)
    assert files_under(cache) == []


def test_catalog_paths_into_the_marker_folder_are_refused(server: Server, tmp_path: Path) -> None:
    for f in (
        FileEntry(url=server.url("/x.zip"), sha256="0" * 64, filename="x.zip", archive="zip", extract_to=MARKER_DIR),
        FileEntry(url=server.url("/x.json"), sha256="0" * 64, filename="x.json", extract_to=f"sub/../{MARKER_DIR}"),
    ):
        with pytest.raises(ConfigError, match="marker folder"):
            fetch_dataset(entry("m", [f]), cache_dir=tmp_path)
    assert sum(server.hits.values()) == 0


def damaged_zip(kind: str) -> bytes:
    """A zip whose one entry ``ml/a.csv`` cannot be unpacked: a broken deflate stream, encrypted, or PPMd."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if kind == "deflate" else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("ml/a.csv", "user_id,item_id\n" + "1,1\n" * 2000)
    data = bytearray(buf.getvalue())
    central = data.find(b"PK\x01\x02")
    if kind == "deflate":  # the headers and CRC stay intact; the compressed bytes are flipped
        start = 30 + len("ml/a.csv")
        data[start : start + 40] = bytes(b ^ 0xFF for b in data[start : start + 40])
    elif kind == "encrypted":  # general purpose flag bit 0, in the local and the central header
        data[6:8] = data[central + 8 : central + 10] = (1).to_bytes(2, "little")
    else:  # compression method 98 (PPMd, made by 7-Zip), which zipfile does not support
        data[8:10] = data[central + 10 : central + 12] = (98).to_bytes(2, "little")
    return bytes(data)


@pytest.mark.parametrize("kind", ["deflate", "encrypted", "ppmd"])
def test_an_entry_that_cannot_be_unpacked_is_a_download_error(server: Server, tmp_path: Path, kind: str) -> None:
    archive = damaged_zip(kind)
    server.routes["/bad.zip"] = (archive, "ok")
    e = entry("bad", [FileEntry(url=server.url("/bad.zip"), sha256=sha(archive), filename="bad.zip", archive="zip")])
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"failed at entry 'ml/a.csv'") as info:
        fetch_dataset(e, cache_dir=cache)
    assert server.url("/bad.zip") in str(info.value) and info.value.__cause__ is not None
    assert files_under(cache) == []


def test_backslashes_in_zip_entries_are_folders(server: Server, tmp_path: Path) -> None:
    archive = make_zip({"data\\ratings.csv": b"1,2\n", "data\\empty\\": b""})  # as Windows tools write them
    server.routes["/bs.zip"] = (archive, "ok")
    e = entry(
        "bs", [FileEntry(url=server.url("/bs.zip"), sha256=sha(archive), filename="bs.zip", archive="zip")], root="data"
    )
    cache = tmp_path / "cache"
    root = fetch_dataset(e, cache_dir=cache)
    assert root == cache / "bs" / "data" and (root / "ratings.csv").read_bytes() == b"1,2\n"
    assert (root / "empty").is_dir()
    assert json.loads((cache / "bs" / MARKER_DIR / "bs.zip.json").read_text())["paths"] == ["data/ratings.csv"]
    assert fetch_dataset(e, cache_dir=cache) == root
    assert server.hits["/bs.zip"] == 1  # the marker's paths are the files on disk: cached


def test_a_half_fetched_folder_is_never_a_reason_to_go_online(tmp_path: Path) -> None:
    """Without download=True a catalog name is read from a verified cache only: no request is made."""
    from graph_rec.runs import resolve_dataset

    (tmp_path / "ml-latest-small").mkdir()  # what an interrupted fetch or a hand-made folder leaves
    with pytest.raises(
        ConfigError,
        match=r"'ml-latest-small' is not a path or a cached data set \(its folder in the cache is incomplete\)",
    ):
        resolve_dataset("ml-latest-small", tmp_path, download=False)
