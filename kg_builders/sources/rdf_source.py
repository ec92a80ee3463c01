"""Reader for an external knowledge graph in RDF (Turtle, N-Triples, RDF/XML, JSON-LD), via rdflib.

Statements are split in two tables:

- ``triples`` (head, relation, tail): statements whose object is a resource. IRIs are written as
  plain strings (``http://www.wikidata.org/entity/Q42``), blank nodes as ``_:<id>``; the predicate
  IRI is the relation.
- literal triples (subject, predicate, value, datatype, lang): statements whose object is a
  literal; ``value`` is the lexical form, ``datatype`` the datatype IRI and ``lang`` the language
  tag (missing when the literal has none).

Both are sorted, so the result does not depend on rdflib's iteration order.

``item_entities`` (item_id, entity_id) tells which resource each recommender item is: either a
given table (``item_map``), or the resources carrying an item-id predicate (``item_predicate``,
e.g. ``ex:itemId "42"``: the object's lexical form is the item id, the subject the entity); the
statements of that predicate are left out of the literal triples.

Citation: rdflib, https://github.com/RDFLib/rdflib (RDF 1.1 Concepts and Abstract Syntax, W3C
Recommendation, 2014, https://www.w3.org/TR/rdf11-concepts/).
"""

from __future__ import annotations

import json
import logging
import xml.sax
from pathlib import Path
from typing import Any

import pandas as pd

from kg_builders._optional import require
from kg_builders.errors import ConfigError, DataError
from kg_builders.sources._reader import check_on_error, decode_file
from kg_builders.tables import validate

logger = logging.getLogger(__name__)

#: file suffix -> rdflib format name
FORMATS: dict[str, str] = {
    ".ttl": "turtle",
    ".nt": "nt",
    ".rdf": "xml",
    ".xml": "xml",
    ".owl": "xml",
    ".jsonld": "json-ld",
}
LITERAL_COLUMNS = ["subject", "predicate", "value", "datatype", "lang"]


def load_rdf(
    path: str | Path,
    *,
    format: str | None = None,  # rdflib's name for the option
    item_predicate: str | None = None,
    item_map: pd.DataFrame | None = None,
    on_error: str = "raise",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Parse an RDF file into resource triples, literal triples and the item-to-entity table.

    Args:
        path: the RDF file.
        format: an rdflib format name (``turtle``, ``nt``, ``xml``, ``json-ld``, ...); ``None``
            guesses it from the suffix (:data:`FORMATS`).
        item_predicate: the predicate that gives a resource's item id: a full IRI or a prefixed
            name (``ex:itemId``) using a prefix the file declares (JSON-LD alone: where the
            ``@context`` reuses one of rdflib's prefix names, such as ``schema:``, rdflib's IRI wins;
            pass the full IRI there).
        item_map: a table with item_id and entity_id (the entity as its IRI string).
        on_error: ``"raise"`` or ``"skip"``, for an item mapped to two entities (skipping keeps
            the first, by entity IRI order for ``item_predicate`` and by row for ``item_map``, and
            logs a warning). A file that does not parse always raises.

    Returns:
        ``(triples, literals, item_entities)``: ``triples`` with head, relation, tail;
        ``literals`` with subject, predicate, value, datatype, lang; ``item_entities`` with item_id,
        entity_id (empty when neither ``item_predicate`` nor ``item_map`` is given).

    Raises:
        ConfigError: both ``item_predicate`` and ``item_map``, an unknown prefix, or a suffix with
            no known format.
        DataError: the file is missing or does not parse (names the line where rdflib gives one),
            or an item is mapped to two entities.
        SchemaError: ``item_map`` lacks item_id or entity_id.
        MissingDependencyError: rdflib is not installed.
    """
    check_on_error(on_error)
    if item_predicate is not None and item_map is not None:
        raise ConfigError("give item_predicate or item_map, not both")
    p = Path(path)
    fmt = format if format is not None else FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"cannot guess the RDF format of {p.name!r}; pass format= or use a suffix in {sorted(FORMATS)}"
        )
    if not p.is_file():
        raise DataError("file not found", file=p)
    if fmt in ("turtle", "nt", "n3", "trig", "nquads"):  # UTF-8 text by their specs
        decode_file(p, "utf-8")  # an empty file, or bytes that are not UTF-8, named with their line
    rdflib = require("rdflib")
    # no prefixes of rdflib's own: a file's ``schema:`` (http) or ``dc:`` (terms) would otherwise lose
    # to rdflib's (https, elements) and ``item_predicate`` name a predicate the file never uses
    graph = rdflib.Graph(bind_namespaces="none")
    try:
        graph.parse(p, format=fmt)
    except (SyntaxError, ValueError, xml.sax.SAXException, rdflib.exceptions.Error) as exc:
        line, why = _error_line(exc), _message(exc)
        if line is None and fmt == "nt":
            line, why = _ntriples_error(p, rdflib) or (None, why)
        raise DataError(f"not valid {fmt}: {why}", file=p, line=line) from exc

    pred = _resolve(graph, item_predicate, rdflib) if item_predicate is not None else None
    if any(isinstance(t, rdflib.BNode) for triple in graph for t in triple):
        # rdflib labels blank nodes at random on each parse: canonical labels make two loads of one
        # file give the same tables (and a rebuilt graph the same entity ids)
        from rdflib.compare import to_canonical_graph

        graph = to_canonical_graph(graph)
    resources: list[tuple[str, str, str]] = []
    literals: list[tuple[str, str, str, Any, Any]] = []
    mapped: list[tuple[str, str]] = []
    for s, pr, o in graph:
        subject = _node(s, rdflib)
        if pred is not None and pr == pred:
            mapped.append((str(o), subject))
        elif isinstance(o, rdflib.Literal):
            lang = o.language
            dtype = str(o.datatype) if o.datatype is not None else None
            literals.append((subject, str(pr), str(o), dtype, lang))
        else:
            resources.append((subject, str(pr), _node(o, rdflib)))
    triples = pd.DataFrame(sorted(resources), columns=["head", "relation", "tail"], dtype=object)
    lit = pd.DataFrame(
        sorted(literals, key=lambda r: tuple("" if v is None else v for v in r)), columns=LITERAL_COLUMNS, dtype=object
    )
    for col in ("datatype", "lang"):
        lit[col] = lit[col].astype("str")
    validate("triples", triples)

    if item_map is not None:
        validate("item_entities", item_map)
        ie = pd.DataFrame({"item_id": item_map["item_id"].astype(str), "entity_id": item_map["entity_id"].astype(str)})
        ie = ie.drop_duplicates().reset_index(drop=True)
        where = "item_map"
    elif pred is not None:
        ie = pd.DataFrame(sorted(set(mapped)), columns=["item_id", "entity_id"], dtype=object)
        where = f"{p} ({item_predicate})"
        if ie.empty:
            logger.warning("%s: no statement uses the item predicate %s", p, pred)
    else:
        ie = pd.DataFrame({"item_id": pd.Series([], dtype=object), "entity_id": pd.Series([], dtype=object)})
        where = ""
    twice = ie["item_id"].duplicated(keep="first")
    if twice.any():
        rows = ie[ie["item_id"].isin(ie.loc[twice, "item_id"])]
        example = rows.groupby("item_id")["entity_id"].apply(list).head(3).to_dict()
        reason = f"{int(twice.sum())} item(s) mapped to more than one entity, e.g. {example}"
        if on_error == "raise":
            raise DataError(reason, file=where, field="item_id")
        logger.warning("%s: %s; keeping the first entity of each", where, reason)
        ie = ie.loc[~twice].reset_index(drop=True)
    validate("item_entities", ie)
    if len(ie):
        known = set(triples["head"]) | set(triples["tail"]) | set(lit["subject"])
        absent = int((~ie["entity_id"].isin(known)).sum())
        if absent:
            logger.info("%s: %d mapped entit(y/ies) do not occur in the graph", p, absent)
    logger.info("%s: %d resource triples, %d literal triples, %d mapped items", p, len(triples), len(lit), len(ie))
    return triples, lit, ie


def _node(term: Any, rdflib: Any) -> str:
    return term.n3() if isinstance(term, rdflib.BNode) else str(term)


def _resolve(graph: Any, name: str, rdflib: Any) -> Any:
    """The predicate IRI for a full IRI or a prefixed name declared in the file."""
    if "://" in name or name.startswith("urn:"):
        return rdflib.URIRef(name)
    prefix, sep, local = name.partition(":")
    if not sep:
        raise ConfigError(f"item_predicate must be an IRI or a prefixed name like 'ex:itemId', got {name!r}")
    namespaces = dict(graph.namespaces())
    if prefix not in namespaces:
        raise ConfigError(
            f"item_predicate prefix {prefix!r} is not declared in the file; declared: {sorted(namespaces)}"
        )
    return rdflib.URIRef(str(namespaces[prefix]) + local)


def _error_line(exc: BaseException) -> int | None:
    """The 1-based line of a parse error, where the parser reports one.

    A Turtle error found at the end of the file (a statement without its final ``.``) is reported
    by rdflib on the line after the last one; it is given as the last line that has content.
    """
    lines = getattr(exc, "lines", None)  # rdflib's notation3 BadSyntax: 0-based
    if isinstance(lines, int):
        text = exc.args[2] if len(exc.args) == 5 and isinstance(exc.args[2], str) else None
        if text is not None and text.strip():
            return min(lines, text.rstrip().count("\n")) + 1
        return lines + 1
    if isinstance(exc, xml.sax.SAXParseException):
        return exc.getLineNumber()
    if isinstance(exc, json.JSONDecodeError):
        return exc.lineno
    return None


def _ntriples_error(path: Path, rdflib: Any) -> tuple[int, str] | None:
    """``(line, reason)`` of the first line of an N-Triples file that does not parse.

    rdflib's N-Triples parser names neither the line number nor, once it has eaten into it, the
    line; N-Triples is one statement per line, so the file is parsed again line by line (only
    after a failure) to find it.
    """
    from rdflib.plugins.parsers.ntriples import W3CNTriplesParser

    class Discard:  # rdflib's DummySink prints every triple
        def triple(self, *_: Any) -> None:
            """Keep nothing: only whether each line parses matters here."""

    parser = W3CNTriplesParser(sink=Discard())
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        for number, text in enumerate(f, start=1):
            try:
                parser.parsestring(text)
            except (SyntaxError, ValueError, rdflib.exceptions.Error) as exc:
                shown = text.strip()
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                return number, f"{_message(exc).rstrip(': ')} in {shown!r}"
    return None


def _message(exc: BaseException) -> str:
    """The parser's reason, on one line."""
    if isinstance(getattr(exc, "lines", None), int) and len(exc.args) == 5 and isinstance(exc.args[4], str):
        return exc.args[4]  # notation3 BadSyntax(uri, lines, text, position, why)
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
