"""Knowledge exploration: one store protocol, an embedded (networkx) store and a Neo4j store."""

from graph_rec.explore.store import EXPLANATION_COLUMNS, RECOMMENDATION_COLUMNS, KnowledgeStore
from graph_rec.explore.types import Edge, Explanation, Neighbour, NodeRef, Path, Recommendation, Subgraph

__all__ = [
    "EXPLANATION_COLUMNS",
    "RECOMMENDATION_COLUMNS",
    "Edge",
    "Explanation",
    "KnowledgeStore",
    "Neighbour",
    "NodeRef",
    "Path",
    "Recommendation",
    "Subgraph",
]
