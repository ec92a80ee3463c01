"""Atomic writes: build in a temporary sibling, then rename, so a crash leaves nothing half-written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kg_builders.errors import ConfigError


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` when the block succeeds.

    On an exception the temporary directory is removed and ``path`` is untouched.

    Args:
        path: the final directory.
        overwrite: replace an existing ``path``; otherwise an existing non-empty one is an error.
    """
    final = Path(path)
    if final.is_symlink() and final.is_dir():  # a link to a folder (a scratch disk): replace what it names
        final = final.resolve()
    if final.exists() and not overwrite and (not final.is_dir() or any(final.iterdir())):
        raise ConfigError(f"{final} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the result private to this user
    try:
        yield tmp
        _fsync_tree(tmp)  # the files' bytes on disk before the rename makes them the directory's
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    try:
        if final.exists() or final.is_symlink():  # moved aside under a unique name (never a leftover's)
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            old.rmdir()
            os.replace(final, old)
        os.replace(tmp, final)
    except OSError:
        if old is not None and (old.exists() or old.is_symlink()) and not (final.exists() or final.is_symlink()):
            os.replace(old, final)  # the new directory could not take its place: put the old one back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(final.parent)  # the rename itself survives a power cut
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename into it) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows: a directory cannot be opened, and its renames are durable already
        return
    try:
        with contextlib.suppress(OSError):  # some file systems (network mounts) refuse fsync on a directory
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every directory (deepest first), so a rename of ``root`` publishes whole files."""
    dirs = []
    for folder, _, files in os.walk(root):
        dirs.append(Path(folder))
        for name in files:
            path = Path(folder) / name
            if path.is_symlink():
                continue
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    for folder in reversed(dirs):
        _fsync_dir(folder)


def check_output_dir(path: str | Path) -> None:
    """A ConfigError when a directory cannot be made at ``path`` because it, or a folder above it, is a file."""
    final = Path(path)
    blocked = next((p for p in (final, *final.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ConfigError(f"cannot write to {final}: {blocked} is a file, not a directory")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make the result private to this user
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_safetensors(tensors: dict, path: str | Path) -> None:
    """``safetensors.torch.save_file`` through a temporary sibling, with the umask's permissions.

    ``tensors``: torch tensors, or NumPy arrays (all of one kind). (safetensors itself creates
    files 0600, so saved graphs, runs and models were private to their writer, next to the JSON
    files of the same directory.)
    """
    import numpy as np

    if any(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file

    final = Path(path)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    try:
        save_file(tensors, str(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in blocks (files of any size)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
