"""Text features for every node of a graph: node texts (templates) -> a text encoder -> a feature slot.

:class:`TextFeatureBuilder` renders the text of each node with
:func:`~kg_builders.builders.node_text.node_texts`, encodes it with a
:class:`~kg_builders.builders.text_encoder.TextEncoder` (through the on-disk
:class:`~kg_builders.builders.feature_cache.FeatureCache` when ``cache_dir`` is set) and fills the
feature slot ``graph.features[node_type][slot]`` ``[num_nodes, dim]`` with its row mask.

Unlike the table builders, it works on a built graph and CHANGES it: filling a feature slot
through ``graph.set_features`` is the one change a graph allows after it is built. It also
records itself in ``graph.recipe`` (encoder settings and fingerprint, template id), so a saved
graph says how its features were made.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kg_builders.builders.node_text import NODE_TYPES, NodeTextTemplates, node_texts
from kg_builders.errors import ConfigError, DataError, SchemaError
from kg_builders.fragment import check_name, plain_value, settings_of

if TYPE_CHECKING:
    from kg_builders.builders.text_encoder import TextEncoder

logger = logging.getLogger(__name__)


@dataclass
class NodeTypeFeatures:
    """What happened to one node type's texts.

    Attributes:
        count: nodes of the type.
        encoded: rows filled with a vector (mask True).
        empty: nodes whose text is empty (not encoded; mask False).
        skipped: texts the encoder refused and masked (``on_bad_text="skip"``).
        truncated: texts longer than the encoder's ``max_length`` (cut).
        cache_hits, cache_misses, cache_corrupt: feature-cache counts (0 without a cache).
        seconds: wall time of encoding this type (with the cache look-up; 0 when nothing to encode).
    """

    count: int = 0
    encoded: int = 0
    empty: int = 0
    skipped: int = 0
    truncated: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_corrupt: int = 0
    seconds: float = 0.0


@dataclass
class FeatureReport:
    """The outcome of :meth:`TextFeatureBuilder.build`.

    Attributes:
        slot: the feature slot filled.
        dim: the vector dimension.
        encoder: the encoder's fingerprint.
        template_id: the node-text templates' id.
        node_types: node type -> :class:`NodeTypeFeatures`.
        absent: requested node types the graph does not have (nothing to encode).
        seconds: total wall time (texts and encoding).
    """

    slot: str
    dim: int
    encoder: str
    template_id: str
    node_types: dict[str, NodeTypeFeatures] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def total(self, name: str) -> int:
        """Sum of one count (``encoded``, ``cache_hits``, ...) over node types."""
        return int(sum(getattr(v, name) for v in self.node_types.values()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_text(self) -> str:
        """A human summary, the way the CLI prints it."""
        lines = [f"text features '{self.slot}' [{self.dim}-d] by {self.encoder}, templates {self.template_id}"]
        lines.append(
            f"    {'node type':<12} {'nodes':>8} {'encoded':>8} {'empty':>6} {'skipped':>7} "
            f"{'truncated':>9} {'cache hit':>9} {'miss':>7} {'seconds':>8}"
        )
        for t, r in self.node_types.items():
            lines.append(
                f"    {t:<12} {r.count:>8,} {r.encoded:>8,} {r.empty:>6,} {r.skipped:>7,} {r.truncated:>9,} "
                f"{r.cache_hits:>9,} {r.cache_misses:>7,} {r.seconds:>8.2f}"
            )
        if self.absent:
            lines.append(f"    not in the graph: {', '.join(self.absent)}")
        corrupt = self.total("cache_corrupt")
        if corrupt:
            lines.append(f"    corrupt cache entries recomputed: {corrupt:,}")
        lines.append(f"    {self.seconds:.2f} s")
        return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class TextFeatureBuilder:
    """Encodes the text of every node of the chosen types into the feature slot ``slot``.

    Empty node texts (an item without a catalogue entry, say) are not encoded: their rows are
    zeros with mask False, and counted as ``empty``. Rows the encoder skips (``on_bad_text=
    "skip"``) are masked too. With ``cache_dir``, vectors come from and go to a
    :class:`~kg_builders.builders.feature_cache.FeatureCache` keyed on the encoder's fingerprint,
    the template id and each text, so a rebuild only encodes texts it has not seen.

    Args:
        encoder: a :class:`~kg_builders.builders.text_encoder.TextEncoder` (anything with
            ``encode(texts, progress=...)``, ``dim`` and ``fingerprint()``).
        templates: how node texts are made.
        node_types: the node types to encode; those the graph lacks are reported as absent.
        slot: the feature slot name (snake_case).
        cache_dir: the feature cache folder; ``None`` encodes everything every time.
    """

    encoder: TextEncoder
    templates: NodeTextTemplates = field(default_factory=NodeTextTemplates)
    node_types: tuple[str, ...] = ("user", "item", "tag", "entity")
    slot: str = "text"
    cache_dir: str | Path | None = None

    def __post_init__(self) -> None:
        for name in ("encode", "fingerprint"):
            if not callable(getattr(self.encoder, name, None)):
                raise ConfigError(
                    f"encoder must have encode(texts) and fingerprint(); {type(self.encoder).__name__} lacks {name}"
                )
        if not isinstance(self.templates, NodeTextTemplates):
            raise ConfigError(f"templates must be a NodeTextTemplates, got {type(self.templates).__name__}")
        types = (self.node_types,) if isinstance(self.node_types, str) else tuple(self.node_types)
        unknown = [t for t in types if t not in NODE_TYPES]
        if not types or unknown or len(set(types)) != len(types):
            raise ConfigError(
                f"node_types must be distinct names from {list(NODE_TYPES)}, got {list(self.node_types)!r}"
            )
        object.__setattr__(self, "node_types", types)
        check_name(self.slot, "feature slot")
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, Path)):
            raise ConfigError(f"cache_dir must be a path or None, got {self.cache_dir!r}")

    def settings(self) -> dict[str, Any]:
        """The builder's settings, JSON-serialisable (the encoder and templates nested)."""
        enc = self.encoder
        own = getattr(enc, "settings", None)
        encoder = {"builder": type(enc).__name__, "settings": plain_value(own())} if callable(own) else settings_of(enc)
        return {
            "encoder": encoder,
            "templates": {"builder": type(self.templates).__name__, "settings": self.templates.to_dict()},
            "node_types": list(self.node_types),
            "slot": self.slot,
            "cache_dir": plain_value(self.cache_dir),
        }

    def build(self, graph: Any, *, progress: bool = False) -> FeatureReport:
        """Fill ``graph.features[t][slot]`` for each node type ``t``; MUTATES ``graph``.

        Every node type is encoded before the graph is touched, so an encoder error leaves the
        graph as it was. A previous recipe entry of this builder for the same slot is replaced.

        Args:
            graph: a :class:`~kg_builders.graph.KnowledgeGraph` (filled through ``set_features``).
            progress: show the encoder's progress bar (one per node type).

        Returns:
            the :class:`FeatureReport` (also summarised in the graph's recipe).

        Raises:
            SchemaError: ``graph`` is not a knowledge graph; the encoder returned the wrong shape.
        """
        for name in ("node_ids", "node_attrs", "edges", "set_features", "recipe"):
            if not hasattr(graph, name):
                raise SchemaError(f"TextFeatureBuilder needs a KnowledgeGraph; {type(graph).__name__} lacks {name!r}")
        t0 = time.perf_counter()
        template_id = self.templates.template_id()
        fingerprint = self.encoder.fingerprint()
        present = [t for t in self.node_types if t in graph.node_ids]
        absent = [t for t in self.node_types if t not in graph.node_ids]
        texts = node_texts(graph, self.templates, node_types=present)
        cache = None
        if self.cache_dir is not None:
            from kg_builders.builders.feature_cache import FeatureCache

            cache = FeatureCache(self.cache_dir)
        done = {}
        for t in present:
            try:
                done[t] = self._encode_type(texts[t], cache, template_id, progress=progress)
            except DataError as exc:  # the encoder's index is among the non-empty texts: name the node
                index = getattr(exc, "index", None)
                if index is None:
                    raise
                node = [i for i, x in enumerate(texts[t]) if x][index]
                why = exc.reason.removeprefix(f"text at index {index} ")
                raise DataError(f"the text of {t} {graph.node_ids[t][node]!r} {why}", field="text") from exc
        dims = {v.shape[1] for _, v, _, _ in done.values() if v is not None}
        if len(dims) > 1:
            raise SchemaError(f"the encoder returned vectors of different dimensions {sorted(dims)}")
        dim = dims.pop() if dims else int(self.encoder.dim)  # the model is not loaded when the cache has all
        report = FeatureReport(slot=self.slot, dim=dim, encoder=fingerprint, template_id=template_id, absent=absent)
        for t, (rows, vectors, got, counts) in done.items():  # graph changes only once everything is encoded
            n = counts.count
            values = np.zeros((n, dim), np.float32)
            mask = np.zeros(n, bool)
            if vectors is not None:
                values[rows] = np.where(got[:, None], vectors, 0.0)
                mask[rows] = got
            counts.encoded = int(mask.sum())
            graph.set_features(t, self.slot, values, mask)
            report.node_types[t] = counts
        report.seconds = round(time.perf_counter() - t0, 4)
        self._record(graph, report)
        logger.info(
            "text features %r: %d of %d nodes encoded in %.2f s (cache hits %d, misses %d)",
            self.slot,
            report.total("encoded"),
            report.total("count"),
            report.seconds,
            report.total("cache_hits"),
            report.total("cache_misses"),
        )
        return report

    def _encode_type(
        self, texts: Sequence[str], cache: Any, template_id: str, *, progress: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, NodeTypeFeatures]:
        """Encode the non-empty ``texts``: their rows, vectors ``[m, dim]``, mask ``[m]`` and counts."""
        t0 = time.perf_counter()
        n = len(texts)
        rows = np.fromiter((i for i, x in enumerate(texts) if x), np.int64)
        todo = [texts[i] for i in rows.tolist()]
        out = NodeTypeFeatures(count=n, empty=n - len(rows))
        if not todo:
            return rows, None, None, out
        if cache is not None:
            result, stats = cache.encode_cached(self.encoder, todo, template_id=template_id, progress=progress)
            out.cache_hits, out.cache_misses, out.cache_corrupt = int(stats.hits), int(stats.misses), int(stats.corrupt)
        else:
            result = self.encoder.encode(todo, progress=progress)
        vectors = np.asarray(result.vectors, dtype=np.float32)
        got = np.asarray(result.mask, dtype=bool)
        if vectors.ndim != 2 or vectors.shape[0] != len(todo) or got.shape != (len(todo),):
            raise SchemaError(
                f"the encoder returned vectors {list(vectors.shape)} and mask {list(got.shape)} for {len(todo)} texts"
            )
        out.skipped, out.truncated = int(result.skipped), int(result.truncated)
        out.seconds = round(time.perf_counter() - t0, 4)
        return rows, vectors, got, out

    def _record(self, graph: Any, report: FeatureReport) -> None:
        """Replace this slot's previous recipe entry (if any) with one describing this build."""
        entry = {
            "builder": type(self).__name__,
            "settings": self.settings(),
            "info": {
                "slot": self.slot,
                "encoder_fingerprint": report.encoder,
                **({"encoder_identity": self.encoder.identity()} if hasattr(self.encoder, "identity") else {}),
                "template_id": report.template_id,
                "dim": report.dim,
                "node_types": {
                    t: {k: getattr(r, k) for k in ("count", "encoded", "empty", "skipped", "truncated")}
                    for t, r in report.node_types.items()
                },
                "absent": list(report.absent),
            },
        }
        entry = json.loads(json.dumps(entry))
        kept = [
            r
            for r in graph.recipe
            if not (r.get("builder") == entry["builder"] and r.get("info", {}).get("slot") == self.slot)
        ]
        graph.recipe[:] = [*kept, entry]


__all__ = ["FeatureReport", "NodeTypeFeatures", "TextFeatureBuilder"]
