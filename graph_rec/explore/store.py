"""The knowledge-store protocol: one interface for the embedded store and Neo4j.

Exploration code is written against :class:`KnowledgeStore`; :class:`~graph_rec.explore.embedded.EmbeddedStore`
answers in process from a networkx graph, :class:`~graph_rec.explore.neo4j_store.Neo4jStore` with
Cypher over Bolt. Both hold the same content: the knowledge graph's nodes (with their attributes)
and edges, and optionally the model's recommendations and explanation paths, and both return the
same objects in the same order (:mod:`graph_rec.explore.types`).

Tabular inputs shared by both stores (and by :func:`kg_builders.export.neo4j_db.write_neo4j`):

* recommendations: a DataFrame with columns ``user_id, item_id, score, rank, model``;
* explanations: a DataFrame with columns ``user_id, item_id, rank, contribution, path`` where
  ``path`` is the JSON text of :meth:`~graph_rec.explore.types.Path.to_dict` (``rank`` 1 is the
  largest contribution).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from graph_rec.explore.types import Neighbour, NodeRef, Path, Recommendation, Subgraph
from kg_builders.export.frames import EXPLANATION_COLUMNS, RECOMMENDATION_COLUMNS

__all__ = ["EXPLANATION_COLUMNS", "RECOMMENDATION_COLUMNS", "KnowledgeStore"]


@runtime_checkable
class KnowledgeStore(Protocol):
    """Questions every store answers (orderings: :mod:`graph_rec.explore.types`).

    Unknown nodes raise :class:`~graph_rec.errors.UnknownIdError` naming them; ``limit`` and
    ``hops`` arguments must be positive integers (a :class:`~graph_rec.errors.ConfigError`
    otherwise).
    """

    def node(self, ref: NodeRef) -> dict[str, Any]:
        """The node's stored attributes (``type`` and ``id`` included; no feature vectors)."""
        ...

    def neighbours(
        self,
        ref: NodeRef,
        *,
        relation: str | None = None,
        direction: Literal["out", "in", "both"] = "both",
        limit: int | None = None,
    ) -> list[Neighbour]:
        """Edges at ``ref``, optionally of one relation and one direction; at most ``limit``."""
        ...

    def subgraph(self, refs: Sequence[NodeRef], *, hops: int = 1, limit: int = 10_000) -> Subgraph:
        """Nodes within ``hops`` of any of ``refs`` (edges followed either way) and the edges among them.

        More than ``limit`` nodes is a :class:`~graph_rec.errors.ConfigError` (ask for fewer hops).
        """
        ...

    def paths(self, source: NodeRef, target: NodeRef, *, max_hops: int = 3, limit: int = 10) -> list[Path]:
        """Simple paths from ``source`` to ``target`` of at most ``max_hops`` edges (either way), first ``limit``."""
        ...

    def recommendations(self, user_id: str, *, k: int = 10) -> list[Recommendation]:
        """The stored top-``k`` recommendations of a user (empty if none were stored)."""
        ...

    def why(self, user_id: str, item_id: str, *, limit: int = 5) -> list[Path]:
        """Why this item: the stored explanation paths of the pair (by contribution); when none
        were stored, the graph paths between them (``contribution`` None), at most ``limit``."""
        ...

    def close(self) -> None:
        """Release resources (a no-op for the embedded store)."""
        ...
