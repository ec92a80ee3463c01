"""The error tree (defined in kg_builders.errors, the lowest layer, and re-exported here)."""

from kg_builders.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DownloadError,
    ExportError,
    GraphRecError,
    MissingDependencyError,
    NotFittedError,
    SchemaError,
    UnknownIdError,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DownloadError",
    "ExportError",
    "GraphRecError",
    "MissingDependencyError",
    "NotFittedError",
    "SchemaError",
    "UnknownIdError",
]
