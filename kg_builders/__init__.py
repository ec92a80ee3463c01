"""kg_builders: raw files -> typed tables -> KnowledgeGraph -> exports. Knows nothing of models."""

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

__version__ = "0.1.0"

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
    "__version__",
]
