"""Batch inference: the top-``k`` of every user written to Parquet, in bounded memory, resumable.

:func:`score_all` ranks users ``chunk_users`` at a time with the recommender's own ranking
(:meth:`~graph_rec.recommender.Recommender.recommend_indices`, the code behind ``recommend_batch``)
and writes one Parquet part per chunk::

    out_dir/
        part-00000.parquet      columns user (string), rank (int32, 1-based), item (string),
        part-00001.parquet      score (float32); the rows of a user are consecutive, best first
        ...
        _manifest.json          format version, model fingerprint, k, exclude_seen, chunk_users,
                                the user list's hash and count, and every finished part with its
                                user and row counts and sha256

The manifest's leading underscore makes Parquet readers skip it (pyarrow, pandas, Spark and
DuckDB ignore ``_``- and ``.``-prefixed files), so the folder itself reads as one data set:
``pd.read_parquet(out_dir)``. Outputs written before it was renamed (``manifest.json``) are
read, resumed and overwritten as well; a resume renames their manifest.

A part is written to a temporary sibling and renamed; the manifest is rewritten (atomically) after
each part. An interrupted run is resumed by calling :func:`score_all` again with the same
arguments: parts the manifest lists are checked (file present, sha256 equal) and skipped, a
leftover temporary file is removed, and a part file the manifest does not list is written again.
A run against the same ``out_dir`` with another model, ``k``, ``exclude_seen``, ``chunk_users``
or user list is refused (naming what differs) unless ``overwrite=True``.

Memory: only one chunk is scored at a time; the peak is the chunk's score matrix, about
``chunk_users * num_items * 4`` bytes (10,000 users x 1,000,000 items: 40 GB; x 20,000 items:
0.8 GB), plus its top-``k`` and the Parquet table of the chunk (``chunk_users * k`` rows).

:func:`read_scores` reads a finished ``out_dir`` back as one pandas DataFrame, after checking the
manifest and the parts' checksums.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graph_rec.data import hash_tensor, positive_int
from graph_rec.errors import ConfigError, DataError, UnknownIdError
from graph_rec.recommender import Recommender
from kg_builders import __version__
from kg_builders._files import atomic_file, check_output_dir, sha256_file

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "_manifest.json"
#: the manifest's name before 2026-12-06 (read, and renamed on resume)
LEGACY_MANIFEST = "manifest.json"
COLUMNS = ("user", "rank", "item", "score")
_PART = re.compile(r"^part-(\d{5,})\.parquet\Z")
_TEMP = re.compile(r"^\.(part-\d{5,}\.parquet|_?manifest\.json)\.tmp-")
# the settings that must match for a resume; anything else in the manifest is a record
_CONFIG_KEYS = ("model", "k", "exclude_seen", "chunk_users", "users", "compression")


@dataclass(frozen=True)
class ScoreAllResult:
    """What :func:`score_all` did.

    Attributes:
        out_dir: the output directory.
        parts: Parquet parts in the output (all of them, resumed ones included).
        rows: rows in the output.
        users: users in the output.
        resumed: parts found done and kept (not rescored) by this call.
        seconds: wall time of this call.
        users_per_second: users scored by this call per second (resumed users not counted).
    """

    out_dir: Path
    parts: int
    rows: int
    users: int
    resumed: int
    seconds: float
    users_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "parts": self.parts,
            "rows": self.rows,
            "users": self.users,
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
            "users_per_second": round(self.users_per_second, 1),
        }


# ---------------------------------------------------------------------------------- helpers
def _hash_strings(values: Sequence[str]) -> str:
    """sha256 of a list of strings (JSON-encoded, so no separator can be forged)."""
    return hashlib.sha256(json.dumps(list(values), ensure_ascii=False).encode("utf-8")).hexdigest()


def model_fingerprint(recommender: Recommender) -> str:
    """A sha256 of everything the recommender's rankings depend on.

    The model's name, settings and state dict (bit-exact after :meth:`Recommender.load`), the
    data view and the buffers the model rebuilds from the graph (its propagation's edges and the
    node features, which the state dict leaves out), the user and item ids, the seen-items matrix
    and the representations of users and items added by cold start (saved as they are). Equal for a recommender and its saved-and-loaded copy; different
    after retraining, another ``add_item`` or another model.
    """
    return _fingerprint(recommender, recommender._snap)


def _fingerprint(recommender: Recommender, snap: Any) -> str:
    """:func:`model_fingerprint` with the serving snapshot ``snap`` (the one a job ranks on)."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            {"name": recommender.model_name, "settings": recommender.model_settings}, sort_keys=True, default=str
        ).encode()
    )
    state = recommender.model.state_dict()
    for name, t in sorted(state.items()):
        h.update(name.encode() + b"=")
        hash_tensor(h, t)
    # what the model rebuilds from the graph and the view rather than saves (the same weights
    # over a view without one relation rank differently)
    h.update(json.dumps(recommender.data.config.to_dict(), sort_keys=True, default=str).encode())
    if isinstance(recommender.model, torch.nn.Module):
        for name, t in sorted(recommender.model.named_buffers()):
            if name not in state:
                h.update(b"buffer:" + name.encode() + b"=")
                hash_tensor(h, t)
    # the serving snapshot (same layer, read-only): the ids, the seen matrix and the added rows
    nu, ni = recommender.data.num_users, recommender.data.num_items
    h.update(_hash_strings(snap.user_ids[: snap.num_users]).encode())
    h.update(_hash_strings(snap.item_ids[: snap.num_items]).encode())
    hash_tensor(h, snap.seen_ptr[: snap.num_users + 1])
    hash_tensor(h, snap.seen_idx[: int(snap.seen_ptr[snap.num_users])])
    if snap.user_repr is not None:
        hash_tensor(h, snap.user_repr[nu : snap.num_users])
        hash_tensor(h, snap.item_repr[ni : snap.num_items])
    return h.hexdigest()


def _part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_file(path, "w") as fh:
        fh.write(json.dumps(payload, indent=2, allow_nan=False))


def _write_part(table: Any, path: Path, compression: str) -> str:
    """Write ``table`` to ``path`` through a temporary sibling and a rename; its sha256."""
    import pyarrow.parquet as pq

    with atomic_file(path, "wb") as fh:
        pq.write_table(table, fh, compression=compression)
    return sha256_file(path)


def _legacy_manifest(out_dir: Path) -> Path | None:
    """``out_dir/manifest.json`` when score_all wrote it (an older output), else None: a file of
    that name that is not ours (another tool's manifest) is never read, replaced or deleted."""
    path = out_dir / LEGACY_MANIFEST
    try:
        ours = json.loads(path.read_text()).get("kind") == "graph_rec.score_all"
    except (OSError, ValueError, AttributeError):
        return None
    return path if ours else None


def _read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / MANIFEST
    if not path.is_file():
        path = _legacy_manifest(out_dir)
    if path is None or not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int):
        raise DataError(f"{path} is not a score_all manifest (no format_version)")
    if version > FORMAT_VERSION:
        raise DataError(
            f"{path} was written in format {version}; this graph-rec {__version__} reads up to {FORMAT_VERSION}: "
            "upgrade graph-rec"
        )
    return manifest


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    for key in _CONFIG_KEYS:
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "model":
            out.append(
                f"model: the output was made by {a.get('name') if isinstance(a, dict) else a!r} with fingerprint "
                f"{(a or {}).get('fingerprint', '?')[:12]}..., this is {b['name']!r} with {b['fingerprint'][:12]}... "
                "(another model, or the same one retrained or changed by add_item/add_user)"
            )
        elif key == "users":
            out.append(
                f"users: the output holds {(a or {}).get('count')} users (list sha256 "
                f"{(a or {}).get('sha256', '?')[:12]}...), now {b['count']} ({b['sha256'][:12]}...)"
            )
        else:
            out.append(f"{key}: {a!r} in the output, {b!r} now")
    return out


def _remove_ours(out_dir: Path) -> int:
    """Delete the parts, temporary files and the manifest of a previous run (nothing else)."""
    n = 0
    legacy = _legacy_manifest(out_dir)
    for p in out_dir.iterdir():
        if p.is_file() and (_PART.match(p.name) or _TEMP.match(p.name) or p.name == MANIFEST or p == legacy):
            p.unlink()
            n += 1
    return n


def _chunk_table(user_ids: Sequence[str], scores: torch.Tensor, items: torch.Tensor, item_ids: Any) -> Any:
    """A pyarrow Table of one chunk: ``scores``/``items`` ``[B, k]``; ``-inf`` columns dropped."""
    import pyarrow as pa

    keep = torch.isfinite(scores)
    counts = keep.sum(dim=1).numpy()
    k = scores.shape[1]
    rank = torch.arange(1, k + 1, dtype=torch.int32).expand(scores.shape[0], k)[keep]
    item_idx = items[keep].numpy()
    users = pa.array(list(user_ids), type=pa.string())
    return pa.table(
        {
            "user": users.take(pa.array(np.repeat(np.arange(len(user_ids)), counts))),
            "rank": pa.array(rank.numpy(), type=pa.int32()),
            "item": item_ids.take(pa.array(item_idx)),
            "score": pa.array(scores[keep].to(torch.float32).numpy(), type=pa.float32()),
        }
    )


def _check_users(known: Sequence[str], users: Sequence[str] | None) -> list[str]:
    if users is None:
        return list(known)
    if isinstance(users, str):
        raise ConfigError("users must be a list of user ids, not one string")
    users = [str(u) for u in users]
    if not users:
        raise ConfigError("users is empty: pass None to score every user")
    index = set(known)
    unknown = [u for u in users if u not in index]
    if unknown:
        raise UnknownIdError("user", unknown, hint="score_all scores known users only; fold new ones in with add_user")
    if len(set(users)) != len(users):
        seen: set[str] = set()
        dup = [u for u in users if u in seen or seen.add(u)]
        raise ConfigError(f"users lists {len(dup)} id(s) more than once, e.g. {dup[:5]}")
    return users


# ---------------------------------------------------------------------------------- API
def score_all(
    recommender: Recommender,
    out_dir: str | Path,
    *,
    k: int = 100,
    users: Sequence[str] | None = None,
    chunk_users: int = 10_000,
    exclude_seen: bool = True,
    overwrite: bool = False,
    resume: bool = True,
    progress: bool = False,
    compression: str = "zstd",
) -> ScoreAllResult:
    """Write the top-``k`` items of every user (or of ``users``) to Parquet parts in ``out_dir``.

    The ranking is :meth:`Recommender.recommend_batch`'s: the same items in the same order, with
    the same scores (seen items left out with ``exclude_seen``); a user with fewer than ``k``
    rankable items gets fewer rows. It ranks on the users and items of the moment it starts (one
    serving snapshot, the one its manifest's fingerprint names): items added while it runs are left
    out. See the module docstring for the layout and the resume rules.

    Args:
        recommender: the model to serve.
        out_dir: the output directory (created if missing).
        k: items per user (1 .. number of items).
        users: user ids to score, in this order (default: every user of ``recommender.user_ids``).
        chunk_users: users scored at once and written as one part; the peak memory of scoring is
            about ``chunk_users * num_items * 4`` bytes.
        exclude_seen: leave out each user's training items.
        overwrite: replace an existing output (of any configuration) instead of refusing it.
        resume: keep the finished parts of an interrupted run with the same configuration.
            With ``resume=False`` an existing output is an error unless ``overwrite=True``.
        progress: show a tqdm bar over users.
        compression: Parquet compression codec (``zstd``, ``snappy``, ``gzip``, ``none``).

    Returns:
        A :class:`ScoreAllResult`.

    Raises:
        UnknownIdError: ``users`` names unknown users (nothing is written).
        ConfigError: a bad argument, or an existing output with another configuration (the
            message names the differences) without ``overwrite=True``.
        DataError: a part the manifest lists is missing or its checksum differs (a damaged
            output; rerun with ``overwrite=True``).
    """
    t0 = time.perf_counter()
    # one snapshot for the whole job: users and items added meanwhile (add_item, add_user) are
    # served at once but not mixed into this output, whose manifest names the model it ranked with
    snap = recommender._snap
    catalogue = snap.item_ids[: snap.num_items]
    k, chunk_users = positive_int("k", k), positive_int("chunk_users", chunk_users)
    if k > len(catalogue):
        raise ConfigError(f"k={k} is larger than the catalogue ({len(catalogue)} items)")
    if compression not in ("zstd", "snappy", "gzip", "brotli", "lz4", "none"):
        raise ConfigError(f"compression must be zstd, snappy, gzip, brotli, lz4 or none, got {compression!r}")
    user_list = _check_users(snap.user_ids[: snap.num_users], users)
    out = Path(out_dir)
    check_output_dir(out)  # it, or a folder above it, is a file

    num_parts = -(-len(user_list) // chunk_users)
    config = {
        "model": {"name": recommender.model_name, "fingerprint": _fingerprint(recommender, snap)},
        "k": k,
        "exclude_seen": bool(exclude_seen),
        "chunk_users": chunk_users,
        "users": {"count": len(user_list), "sha256": _hash_strings(user_list)},
        "compression": compression,
    }
    done = _prepare_dir(out, config, overwrite=overwrite, resume=resume)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": "graph_rec.score_all",
        "graph_rec_version": __version__,
        **config,
        "num_items": len(catalogue),
        "columns": {"user": "string", "rank": "int32", "item": "string", "score": "float32"},
        "num_parts": num_parts,
        "parts": sorted(done.values(), key=lambda p: p["index"]),
        "complete": False,
    }
    _write_json(out / MANIFEST, manifest)
    legacy = _legacy_manifest(out)
    if legacy is not None:  # a resumed older output: its manifest is now _manifest.json
        legacy.unlink()

    import pyarrow as pa

    item_ids = pa.array(catalogue, type=pa.string())
    todo = [p for p in range(num_parts) if p not in done]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(user_list), desc="score_all", unit="user")
        bar.update(sum(p["users"] for p in done.values()))
    scored = 0
    try:
        for p in todo:
            chunk = user_list[p * chunk_users : (p + 1) * chunk_users]
            scores, items = recommender._recommend_indices(snap, chunk, k=k, exclude_seen=exclude_seen)
            table = _chunk_table(chunk, scores, items, item_ids)
            del scores, items
            name = _part_name(p)
            sha = _write_part(table, out / name, compression)
            done[p] = {"index": p, "file": name, "users": len(chunk), "rows": table.num_rows, "sha256": sha}
            del table  # only one chunk is ever held
            manifest["parts"] = sorted(done.values(), key=lambda q: q["index"])
            manifest["complete"] = len(done) == num_parts
            _write_json(out / MANIFEST, manifest)
            scored += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
            logger.debug("score_all: wrote %s (%d users, %d rows)", name, len(chunk), done[p]["rows"])
    finally:
        if bar is not None:
            bar.close()
    if not manifest["complete"]:  # nothing left to do (e.g. every part was already there)
        manifest["complete"] = True
        _write_json(out / MANIFEST, manifest)
    seconds = time.perf_counter() - t0
    rows = sum(p["rows"] for p in manifest["parts"])
    logger.info(
        "score_all: %d users, %d rows in %d parts (%d resumed) in %.2f s",
        len(user_list),
        rows,
        num_parts,
        num_parts - len(todo),
        seconds,
    )
    return ScoreAllResult(
        out_dir=out,
        parts=num_parts,
        rows=rows,
        users=len(user_list),
        resumed=num_parts - len(todo),
        seconds=seconds,
        users_per_second=scored / seconds if seconds > 0 else 0.0,
    )


def _prepare_dir(out: Path, config: dict[str, Any], *, overwrite: bool, resume: bool) -> dict[int, dict[str, Any]]:
    """Make ``out`` ready; the verified finished parts of a previous run to keep, by index."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = None if overwrite else _read_manifest(out)
    if overwrite:
        removed = _remove_ours(out)
        if removed:
            logger.info("score_all: removed %d files of a previous output in %s", removed, out)
        return {}
    if manifest is None:
        stray = sorted(p.name for p in out.iterdir() if _PART.match(p.name))
        if stray:
            raise ConfigError(
                f"{out} holds Parquet parts {stray[:3]} but no {MANIFEST}: it is not a score_all output; "
                "pass overwrite=True (CLI: --overwrite) to replace them"
            )
        for p in out.iterdir():
            if _TEMP.match(p.name):
                p.unlink()
        return {}
    diff = _differences(manifest, config)
    if diff:
        raise ConfigError(
            f"{out} holds scores made with another configuration: "
            + "; ".join(diff)
            + ". Pass overwrite=True (CLI: --overwrite) to replace them, or another out_dir"
        )
    if not resume:
        raise ConfigError(
            f"{out} already holds scores ({len(manifest.get('parts', []))} parts); pass resume=True to continue "
            "them or overwrite=True (CLI: --overwrite) to start again"
        )
    for p in out.iterdir():  # a crash mid-write leaves a temporary file
        if _TEMP.match(p.name):
            logger.info("score_all: removing the leftover temporary file %s", p)
            p.unlink()
    done: dict[int, dict[str, Any]] = {}
    bad = []
    for part in manifest.get("parts", []):
        path = out / str(part.get("file"))
        if not path.is_file():
            bad.append(f"{part.get('file')} (missing)")
        elif sha256_file(path) != part.get("sha256"):
            bad.append(f"{part.get('file')} (checksum mismatch)")
        else:
            done[int(part["index"])] = dict(part)
    if bad:
        raise DataError(
            f"{out}: parts listed in {MANIFEST} are damaged: {bad[:5]}; the output cannot be resumed: "
            "rerun with overwrite=True (CLI: --overwrite)"
        )
    if done:
        logger.info("score_all: resuming %s: %d parts already done", out, len(done))
    return done


def read_scores(out_dir: str | Path, *, verify: bool = True) -> Any:
    """A finished :func:`score_all` output as one pandas DataFrame (``user, rank, item, score``).

    Args:
        out_dir: the directory :func:`score_all` wrote.
        verify: check every part's sha256 against the manifest.

    Raises:
        DataError: no manifest, an unfinished output, a missing or damaged part, or row counts
            that disagree with the manifest.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    manifest = _read_manifest(out)
    if manifest is None:
        raise DataError(f"{out} has no {MANIFEST}: it is not a score_all output")
    if not manifest.get("complete"):
        raise DataError(
            f"{out} is unfinished ({len(manifest.get('parts', []))} of {manifest.get('num_parts')} parts): "
            "run score_all again with the same arguments to resume it"
        )
    tables = []
    for part in sorted(manifest["parts"], key=lambda p: p["index"]):
        path = out / part["file"]
        if not path.is_file():
            raise DataError(f"{path} is listed in {MANIFEST} but missing")
        if verify and sha256_file(path) != part["sha256"]:
            raise DataError(f"{path}: checksum mismatch: the file was changed after it was written")
        table = pq.read_table(path)
        if table.num_rows != part["rows"] or table.column_names != list(COLUMNS):
            raise DataError(
                f"{path}: {table.num_rows} rows with columns {table.column_names}; the manifest says {part['rows']} "
                f"rows with {list(COLUMNS)}"
            )
        tables.append(table)
    if not tables:  # a recommender without users
        dtypes = ("object", "int32", "object", "float32")
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(COLUMNS, dtypes, strict=True)})
    return pa.concat_tables(tables).to_pandas()


__all__ = ["ScoreAllResult", "model_fingerprint", "read_scores", "score_all"]
