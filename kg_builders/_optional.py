"""Import optional heavy libraries lazily, with a message naming the pip extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from kg_builders.errors import MissingDependencyError

#: module name -> the extra of ``graph-rec`` that installs it
EXTRAS: dict[str, str] = {
    "transformers": "text",
    "spacy": "spacy",
    "rdflib": "rdf",
    "neo4j": "neo4j",
    "networkx": "graph",
    "torch_geometric": "graph",
    "pyarrow": "parquet",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra.

    Args:
        module: dotted module name, e.g. ``"rdflib"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        hint = f"pip install 'graph-rec[{extra}]'" if extra else f"pip install {top}"
        raise MissingDependencyError(f"{module!r} is required for this feature: {hint}") from exc
