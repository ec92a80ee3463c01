"""Source readers: local files -> :class:`~kg_builders.tables.Tables` with raw string ids.

Every reader goes through :func:`kg_builders.sources._reader.read_delimited` (or rdflib/pyarrow for
RDF and Parquet) and takes ``on_error="raise"`` (a :class:`~kg_builders.errors.DataError` naming
file, line and field) or ``on_error="skip"`` (bad rows dropped and listed in ``Tables.issues``).
"""

from kg_builders.sources.auto import detect_format, load_dataset
from kg_builders.sources.catalog import Catalog, DatasetEntry, FileEntry, Licence, load_catalog
from kg_builders.sources.download import download_file, fetch_dataset
from kg_builders.sources.generic import load_generic
from kg_builders.sources.kg_triples import load_kg_triples
from kg_builders.sources.lastfm import load_hetrec_lastfm
from kg_builders.sources.lightgcn import detect_lightgcn_layout, load_lightgcn
from kg_builders.sources.mind import load_mind_news
from kg_builders.sources.movielens import (
    detect_movielens_flavour,
    load_movie_wiki,
    load_movielens,
    load_movielens_100k_split,
)
from kg_builders.sources.rdf_source import load_rdf
from kg_builders.sources.synthetic import make_synthetic_world, synthetic_vocabulary

# One name per line, grouped by module, so other readers' exports can be added without conflicts.
__all__ = [
    # auto.py
    "detect_format",
    "load_dataset",
    # catalog.py
    "Catalog",
    "DatasetEntry",
    "FileEntry",
    "Licence",
    "load_catalog",
    # download.py
    "download_file",
    "fetch_dataset",
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
    # mind.py
    "load_mind_news",
    # rdf_source.py
    "load_rdf",
    # synthetic.py
    "make_synthetic_world",
    "synthetic_vocabulary",
]
