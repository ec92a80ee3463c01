"""Exporters of a :class:`~kg_builders.graph.KnowledgeGraph`: pure ``to_*`` functions returning new objects.

- :func:`to_hetero_data`, :func:`to_homogeneous`: PyTorch Geometric tensors.
- :func:`to_networkx` / :func:`from_networkx`: a networkx ``MultiDiGraph``, and back.
- :func:`to_rdf` / :func:`from_rdf`: an rdflib ``Graph`` in the :data:`GR` vocabulary, and back;
  :func:`write_rdf` writes a file (N-Triples streamed without an rdflib store, Turtle through rdflib).
- :func:`write_neo4j` / :func:`read_neo4j` (I/O): a Neo4j database over Bolt (:class:`Neo4jSettings`),
  with embeddings, recommendations and explanation paths, and back; :func:`count_neo4j`, :func:`clear_neo4j`.

The heavy libraries (torch_geometric, networkx, rdflib) are imported when a function is called.
"""

from typing import Any

from kg_builders.export.hetero import HomogeneousView, to_hetero_data, to_homogeneous
from kg_builders.export.neo4j_db import (
    Neo4jSettings,
    Neo4jWriteReport,
    clear_neo4j,
    count_neo4j,
    read_neo4j,
    write_neo4j,
)
from kg_builders.export.networkx_graph import from_networkx, to_networkx
from kg_builders.export.rdf_graph import from_rdf, rdf_format_for, rdf_triples, to_rdf, write_rdf


def __getattr__(name: str) -> Any:
    # GR is an rdflib Namespace, made on first use so that importing this package does not import rdflib
    if name == "GR":
        from kg_builders.export import rdf_graph

        return rdf_graph.GR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GR",
    "HomogeneousView",
    "Neo4jSettings",
    "Neo4jWriteReport",
    "clear_neo4j",
    "count_neo4j",
    "from_networkx",
    "from_rdf",
    "rdf_format_for",
    "rdf_triples",
    "read_neo4j",
    "to_hetero_data",
    "to_homogeneous",
    "to_networkx",
    "to_rdf",
    "write_neo4j",
    "write_rdf",
]
