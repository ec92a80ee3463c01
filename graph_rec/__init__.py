"""graph-rec: graph-based, knowledge-enhanced recommendation on a typed knowledge graph.

Learning and serving live here; building the graph lives in :mod:`kg_builders`.
"""

from graph_rec.errors import GraphRecError
from kg_builders import __version__

__all__ = ["GraphRecError", "__version__"]
