"""Reader for an external knowledge graph in RDF (Turtle, N-Triples, RDF/XML, JSON-LD, TriG, N-Quads), via rdflib.

The knowledge graph is a set of triples: the statements of every graph in the file (the default
graph and each named graph of TriG, N-Quads or JSON-LD) are read as one graph, their union; the
graph names are dropped, and a statement written in two graphs is one triple.

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
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

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
    ".trig": "trig",
    ".nq": "nquads",
}
#: rdflib's names of the formats that have no prefix declarations: a prefixed item_predicate names
#: none of their prefixes (rdflib's N-Quads parser binds its own into the graph: they never count)
PREFIXLESS = ("nt", "ntriples", "nt11", "application/n-triples", "nquads", "application/n-quads")
LITERAL_COLUMNS = ["subject", "predicate", "value", "datatype", "lang"]
#: rdflib's names of its JSON-LD parser
JSON_LD = ("json-ld", "application/ld+json")


def load_rdf(
    path: str | Path,
    *,
    format: str | None = None,  # rdflib's name for the option
    item_predicate: str | None = None,
    item_map: pd.DataFrame | None = None,
    on_error: str = "raise",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Parse an RDF file into resource triples, literal triples and the item-to-entity table.

    A file with named graphs (TriG, N-Quads, JSON-LD) is read as the union of all its graphs, the
    default one included: graph names are dropped, and a statement in two graphs is one triple.

    Args:
        path: the RDF file.
        format: an rdflib format name (``turtle``, ``nt``, ``xml``, ``json-ld``, ``trig``,
            ``nquads``, ...); ``None`` guesses it from the suffix (:data:`FORMATS`).
        item_predicate: the predicate that gives a resource's item id: a full IRI or a prefixed
            name (``ex:itemId``) using a prefix the file declares (rdflib's own prefixes, such as
            its ``schema:`` for ``https://schema.org/``, never count; N-Triples and N-Quads
            declare none, so there it is a full IRI). Its statements count in every graph of
            the file. In JSON-LD the names are those of the file's ``@context``, expanded as
            rdflib's parser expands a property: a term (``"itemId": "http://example.org/itemId"``
            or ``{"@id": ...}``) names its IRI, a compact IRI ``ex:itemId`` needs ``ex`` to be a
            prefix there (its IRI ends in ``/``, ``#`` or another delimiter, or it sets
            ``"@prefix": true``), and a bare name not defined as a term falls under ``@vocab``. Every ``@context`` object in the file counts
            (the top one, those of nested objects, those scoped to a term or a type); where they
            give the name different IRIs, the one the file's statements use is taken. A context
            given by reference (a URL string, or ``@import``) is read when it is a local file
            (a path relative to the document, or a ``file:`` URL); a remote one is not fetched
            for this, so a name that only it defines is an error naming it: pass the full IRI.
        item_map: a table with item_id and entity_id (the entity as its IRI string).
        on_error: ``"raise"`` or ``"skip"``, for an item mapped to two entities (skipping keeps
            the first, by entity IRI order for ``item_predicate`` and by row for ``item_map``, and
            logs a warning). A file that does not parse always raises.

    Returns:
        ``(triples, literals, item_entities)``: ``triples`` with head, relation, tail;
        ``literals`` with subject, predicate, value, datatype, lang; ``item_entities`` with item_id,
        entity_id (empty when neither ``item_predicate`` nor ``item_map`` is given).

    Raises:
        ConfigError: both ``item_predicate`` and ``item_map``, an unknown prefix or JSON-LD term
            (the message lists the declared ones), a prefixed name in N-Triples or N-Quads, a
            JSON-LD name with two meanings, or a suffix with no known format.
        DataError: the file is missing or does not parse (names the line where rdflib gives one;
            a JSON-LD file whose remote ``@context`` rdflib cannot fetch is one), or an item is
            mapped to two entities.
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
    parsed = rdflib.Graph(bind_namespaces="none")
    try:
        parsed.parse(p, format=fmt)
    except (SyntaxError, ValueError, xml.sax.SAXException, rdflib.exceptions.Error) as exc:
        line, why = _error_line(exc), _message(exc)
        if line is None and fmt == "nt":
            line, why = _ntriples_error(p, rdflib) or (None, why)
        raise DataError(f"not valid {fmt}: {why}", file=p, line=line) from exc
    except OSError as exc:  # JSON-LD: rdflib fetches a remote @context while parsing (urllib's URLError)
        hint = " (a remote @context that cannot be fetched?)" if fmt in JSON_LD else ""
        raise DataError(f"cannot read {fmt}: {_message(exc)}{hint}", file=p) from exc
    graph = _union(parsed, rdflib)

    pred = None
    if item_predicate is not None:
        if fmt in JSON_LD:
            pred = _resolve_jsonld(p, graph, item_predicate, rdflib)
        else:
            declared = None if fmt in PREFIXLESS else dict(parsed.namespaces())
            pred = _resolve(declared, item_predicate, rdflib, fmt=fmt)
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


def _union(parsed: Any, rdflib: Any) -> Any:
    """The statements of every graph of a parse, as one graph (each distinct triple once).

    rdflib parses the default graph of a file into the graph it is given and each named graph
    (TriG, N-Quads, JSON-LD) into another graph of the same store, which that graph does not show:
    the store's union of all its graphs is read instead.
    """
    union = rdflib.Graph(bind_namespaces="none")
    union.addN((s, pr, o, union) for (s, pr, o), _ in parsed.store.triples((None, None, None), context=None))
    return union


def _node(term: Any, rdflib: Any) -> str:
    return term.n3() if isinstance(term, rdflib.BNode) else str(term)


def _is_iri(name: str) -> bool:
    return "://" in name or name.startswith("urn:")


def _resolve(namespaces: dict[str, Any] | None, name: str, rdflib: Any, *, fmt: str) -> Any:
    """The predicate IRI for a full IRI or a prefixed name among the file's prefixes (not JSON-LD).

    ``namespaces`` is ``None`` for a format that has no prefix declarations (:data:`PREFIXLESS`).
    """
    if _is_iri(name):
        return rdflib.URIRef(name)
    prefix, sep, local = name.partition(":")
    if not sep:
        raise ConfigError(
            f"item_predicate must be an IRI or a prefixed name like 'ex:itemId', got {name!r} "
            "(a bare term is read from a JSON-LD @context only)"
        )
    if namespaces is None:
        raise ConfigError(f"item_predicate {name!r}: {fmt} declares no prefixes; pass the full IRI")
    if prefix not in namespaces:
        raise ConfigError(
            f"item_predicate prefix {prefix!r} is not declared in the file; declared: {sorted(namespaces)}"
        )
    return rdflib.URIRef(str(namespaces[prefix]) + local)


def _resolve_jsonld(path: Path, graph: Any, name: str, rdflib: Any) -> Any:
    """The predicate IRI that a name means in a JSON-LD file's own ``@context``.

    rdflib's JSON-LD parser binds its own prefixes (``schema:`` as ``https://schema.org/``) next to
    the file's, so the graph's namespaces cannot tell what the file means by ``schema:``: the
    contexts are read from the file instead, with rdflib's ``Context`` (the class its parser
    expands property names with). Contexts in local files the document names are read too;
    remote ones are not fetched here.

    Raises:
        ConfigError: the name is defined by no local context (the message lists the declared
            prefixes and terms, and any remote context left unread), is a reverse property or a
            keyword alias, or means different IRIs in different contexts, none or several of which
            the file's statements use.
    """
    if _is_iri(name):
        return rdflib.URIRef(name)
    from rdflib.plugins.shared.jsonld.context import UNDEF, Context

    try:  # the parse has succeeded, so this is JSON (UTF-8 by the JSON-LD spec)
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the JSON-LD @context: {_message(exc)}", file=path) from exc
    remote: list[str] = []
    contexts: dict[tuple[int, str, bool], Any] = {}  # (parent, source, propagate) -> context
    base = path.resolve().as_uri()

    def local_parts(source: Any, url: str, seen: frozenset[str]) -> list[Any]:
        """The context objects (and nulls) of a @context value; a local file it names is read."""
        parts: list[Any] = []
        for part in source if isinstance(source, list) else [source]:
            if isinstance(part, dict) and isinstance(part.get("@import"), str):
                parts += local_parts(part["@import"], url, seen)
                part = {k: v for k, v in part.items() if k != "@import"}
            if isinstance(part, str):
                ref = urljoin(url, part)
                loaded = _local_json(ref) if ref not in seen else None
                if isinstance(loaded, dict) and "@context" in loaded:
                    parts += local_parts(loaded["@context"], ref, seen | {ref})
                else:  # a remote URL, or a file that cannot be read: not fetched here
                    remote.append(part)
            elif isinstance(part, dict) or part is None:  # null resets the context
                parts.append(part)
        return parts

    def enter(parent: Any, source: Any, propagate: bool = True) -> Any:
        parts = local_parts(source, base, frozenset())
        key = (id(parent), json.dumps(parts, sort_keys=True, default=str), propagate)
        if key not in contexts:
            contexts[key] = parent.subcontext(parts, propagate) if parts else parent
        return contexts[key]

    def scoped(term: Any) -> Any:
        return None if term is None or term.context is UNDEF else term.context

    def walk(node: Any, ctx: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, ctx)
            return
        if not isinstance(node, dict) or "@value" in node:
            return
        if "@context" in node:
            ctx = enter(ctx, node["@context"])
        types = node.get("@type", [])
        for t in types if isinstance(types, list) else [types]:
            source = scoped(ctx.terms.get(t)) if isinstance(t, str) else None
            if source is not None:
                ctx = enter(ctx, source, propagate=False)
        for key, value in node.items():
            term = ctx.terms.get(key)
            if key == "@context" or (term is not None and term.type == "@json"):
                continue  # a JSON literal holds no node objects
            source = scoped(term)
            walk(value, ctx if source is None else enter(ctx, source))

    root = Context(base=base)
    walk(doc, root)
    meanings: set[str] = set()
    for ctx in {id(c): c for c in contexts.values() if c is not root}.values():
        term = ctx.terms.get(name)
        if term is not None:
            if term.reverse:
                raise ConfigError(
                    f"item_predicate {name!r} is a reverse property (@reverse) in the file's @context; "
                    f"pass the IRI {term.id!r} of the predicate instead"
                )
            iri = term.id
        else:
            prefix, sep, local = name.partition(":")
            if sep:
                ns = ctx.terms.get(prefix)
                iri = ns.id + local if ns is not None and ns.prefix and ns.id else None
            else:
                iri = ctx.vocab + name if ctx.vocab else None
        if iri is not None:
            if iri.startswith("@") or ":" not in iri:
                raise ConfigError(f"item_predicate {name!r} means {iri!r} in the file's @context, not a predicate IRI")
            meanings.add(iri)
    if len(meanings) > 1:
        used = {iri for iri in meanings if (None, rdflib.URIRef(iri), None) in graph}
        if len(used) != 1:
            raise ConfigError(
                f"item_predicate {name!r} means {sorted(meanings)} in different @context parts of the file "
                f"({'none' if not used else 'several'} of them used); pass the full IRI"
            )
        meanings = used
    if meanings:
        iri = meanings.pop()
        if remote and (None, rdflib.URIRef(iri), None) not in graph:
            logger.warning(
                "%s: %r is %s by the local @context; %s and may define it otherwise", path, name, iri, _unread(remote)
            )
        return rdflib.URIRef(iri)
    declared: set[str] = set()
    terms: set[str] = set()
    for ctx in contexts.values():
        for term_name, term in ctx.terms.items():
            if term.id and not term.id.startswith("@"):
                (declared if term.prefix else terms).add(term_name)
    unread = f"; {_unread(remote)}: pass the full IRI" if remote else ""
    prefix, sep, _ = name.partition(":")
    if sep:
        why = f"prefix {prefix!r} is not declared in the file's @context"
        if prefix in terms:
            why += " (it is a term there, but not a prefix: its IRI ends in no '/' or '#' and it sets no \"@prefix\": true)"
    else:
        why = f"{name!r} is not a term of the file's @context, which sets no @vocab"
    raise ConfigError(f"item_predicate {why}; declared: {_listed(declared)}, terms: {_listed(terms)}{unread}")


def _local_json(url: str) -> Any:
    """The JSON of a ``file:`` URL naming a readable file, else ``None`` (other URLs are not fetched)."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    try:
        return json.loads(Path(url2pathname(parts.path)).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _unread(refs: list[str]) -> str:
    return f"the @context(s) {sorted(set(refs))} (remote, or no readable local file) are not read here"


def _listed(names: set[str], most: int = 20) -> str:
    """Sorted names, at most ``most`` of them shown."""
    shown = sorted(names)
    return str(shown) if len(shown) <= most else f"{shown[:most]} and {len(shown) - most} more"


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
