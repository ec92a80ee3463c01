"""What a builder returns: nodes and edges in raw ids, before indices are assigned.

Builders never see indices; :func:`kg_builders.graph.build_graph` merges fragments into one
:class:`~kg_builders.graph.KnowledgeGraph` and assigns contiguous indices per node type.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kg_builders.errors import SchemaError
from kg_builders.tables import Tables

EdgeType = tuple[str, str, str]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def check_name(name: str, what: str) -> str:
    """Node types and relations are snake_case: ``^[a-z][a-z0-9_]*$``, the whole name (``$`` alone
    would let a trailing newline through into file keys and Neo4j labels)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SchemaError(f"{what} {name!r} must match ^[a-z][a-z0-9_]*$ (snake_case)")
    if name.startswith("rev_"):
        raise SchemaError(f"{what} {name!r} may not start with 'rev_' (reserved for reverse edges)")
    return name


def relation_name(raw: str) -> str:
    """Map a raw relation label (``film.film.director``, a URI) to a snake_case relation.

    Deterministic: lower-case; for URIs, the last path or fragment segment; runs of other
    characters become ``_``; a leading digit gets ``r_``.
    """
    s = str(raw).strip()
    if "://" in s or s.startswith("urn:"):
        s = re.split(r"[/#:]", s.rstrip("/#"))[-1]
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
    s = re.sub(r"[^a-z0-9]+", "_", s).strip("_")
    if not s:
        s = "related_to"
    if s[0].isdigit():
        s = "r_" + s
    if s.startswith("rev_"):
        s = "x" + s
    return s


@dataclass
class NodeBlock:
    """Nodes of one type: raw ids in order, and per-node attributes (JSON-serialisable values)."""

    ids: list[str]
    attrs: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for k, v in self.attrs.items():
            if len(v) != len(self.ids):
                raise SchemaError(f"attribute {k!r} has {len(v)} values for {len(self.ids)} nodes")


@dataclass
class EdgeBlock:
    """Edges of one type in raw ids: ``src[i] -> dst[i]`` with ``weight[i]`` and numeric attrs."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    attrs: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.src = np.asarray(self.src, dtype=object)
        self.dst = np.asarray(self.dst, dtype=object)
        self.weight = np.asarray(self.weight, dtype=np.float32)
        n = len(self.src)
        if len(self.dst) != n or len(self.weight) != n:
            raise SchemaError("src, dst and weight must have the same length")
        for k, v in self.attrs.items():
            if len(v) != n:
                raise SchemaError(f"edge attribute {k!r} has {len(v)} values for {n} edges")


@dataclass
class Dropped:
    """Rows a builder left out, and why (counted in the build report)."""

    stage: str
    reason: str
    count: int
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "reason": self.reason, "count": self.count, "examples": self.examples}


@dataclass
class GraphFragment:
    """A builder's output: node blocks per type, edge blocks per edge type, drops, and settings."""

    nodes: dict[str, NodeBlock] = field(default_factory=dict)
    edges: dict[EdgeType, EdgeBlock] = field(default_factory=dict)
    dropped: list[Dropped] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for t in self.nodes:
            check_name(t, "node type")
        for s, r, d in self.edges:
            check_name(s, "node type")
            check_name(r, "relation")
            check_name(d, "node type")


class Builder(Protocol):
    """A frozen dataclass whose fields are its settings; ``build`` never mutates ``tables``."""

    def build(self, tables: Tables) -> GraphFragment: ...


_SPACE = re.compile(r"\s+")


def normalise_key(text: str) -> str:
    """The dedup key of a name or tag: NFKC, case-folded, whitespace collapsed and trimmed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", str(text))).strip().casefold()


def settings_of(builder: Any) -> dict[str, Any]:
    """A builder's recipe entry: its class name and its dataclass fields, JSON-serialisable."""
    if dataclasses.is_dataclass(builder):
        fields = {}
        for f in dataclasses.fields(builder):
            if not f.init:  # internal state, not a setting
                continue
            v = getattr(builder, f.name)
            fields[f.name] = settings_of(v) if dataclasses.is_dataclass(v) else plain_value(v)
        return {"builder": type(builder).__name__, "settings": fields}
    return {"builder": type(builder).__name__, "settings": {}}


def plain_value(v: Any) -> Any:
    """A JSON-friendly copy of a setting value (paths as strings, other objects by repr)."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, np.generic):  # a NumPy scalar: its Python value, not its repr
        return v.item()
    if isinstance(v, (list, tuple)):
        return [plain_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain_value(x) for k, x in v.items()}
    if isinstance(v, Path):
        return str(v)
    return repr(v)


def plain(v: Any) -> Any:
    """A copy of ``v`` made of Python values: numpy scalars unwrapped, tuples and arrays as lists."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v
