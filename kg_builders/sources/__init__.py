"""Source readers: local files -> :class:`~kg_builders.tables.Tables` with raw string ids.

Every reader goes through :func:`kg_builders.sources._reader.read_delimited` (or rdflib/pyarrow for
RDF and Parquet) and takes ``on_error="raise"`` (a :class:`~kg_builders.errors.DataError` naming
file, line and field) or ``on_error="skip"`` (bad rows dropped and listed in ``Tables.issues``).
"""

from kg_builders.sources.generic import load_generic
from kg_builders.sources.kg_triples import load_kg_triples
from kg_builders.sources.lastfm import load_hetrec_lastfm
from kg_builders.sources.lightgcn import detect_lightgcn_layout, load_lightgcn
from kg_builders.sources.movielens import (
    detect_movielens_flavour,
    load_movie_wiki,
    load_movielens,
    load_movielens_100k_split,
)
from kg_builders.sources.rdf_source import load_rdf

# One name per line, grouped by module, so other readers' exports can be added without conflicts.
__all__ = [
    # generic.py
    "load_generic",
    # kg_triples.py
    "load_kg_triples",
    # lastfm.py
    "load_hetrec_lastfm",
    # lightgcn.py
    "detect_lightgcn_layout",
    "load_lightgcn",
    # movielens.py
    "detect_movielens_flavour",
    "load_movie_wiki",
    "load_movielens",
    "load_movielens_100k_split",
    # rdf_source.py
    "load_rdf",
]
