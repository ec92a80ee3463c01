"""The project's error tree.

Every error graph-rec raises on purpose derives from :class:`GraphRecError`, so callers can
catch the family with one ``except``. ``graph_rec.errors`` re-exports these names.
"""

from __future__ import annotations

from pathlib import Path


class GraphRecError(Exception):
    """Base class of every error raised on purpose by graph-rec."""


class ConfigError(GraphRecError, ValueError):
    """A setting is unknown, missing or out of range."""


class DataError(GraphRecError, ValueError):
    """Input data is malformed. Names the file, the 1-based line and the field where known."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason = reason
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        where = []
        if self.file is not None:
            where.append(self.file)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


class SchemaError(GraphRecError, ValueError):
    """A table or graph does not have the columns, node types or edge types required."""


class UnknownIdError(GraphRecError, KeyError):
    """One or more external ids are not known. ``ids`` lists them."""

    def __init__(self, kind: str, ids: list[str], *, hint: str = "") -> None:
        self.kind = kind
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:10])
        more = f" (and {len(self.ids) - 10} more)" if len(self.ids) > 10 else ""
        super().__init__(f"unknown {kind} id(s): {shown}{more}" + (f"; {hint}" if hint else ""))

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class NotFittedError(GraphRecError, RuntimeError):
    """A model or recommender was used before ``fit``."""


class CheckpointError(GraphRecError, OSError):
    """A saved directory is missing files, was tampered with, or has a newer format."""


class DownloadError(GraphRecError, OSError):
    """A download failed or its checksum did not match."""


class ExportError(GraphRecError, RuntimeError):
    """Writing to an external system failed; the driver's error is kept as ``__cause__``."""


class MissingDependencyError(GraphRecError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""
