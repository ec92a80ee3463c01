"""The text of every node of a graph, from configurable templates: what a text encoder reads.

:class:`NodeTextTemplates` holds one template per node type and the options that fill them;
:func:`node_texts` renders one text per node, in node index order:

- ``item``: title, year, genres, its most common tags, its knowledge-graph relations and its
  description (the ``text`` attribute): ``"Alpha (1990). Genres: Drama, Comedy. Tags: funny"``.
- ``tag``: its text.
- ``entity``: name, entity type and its relations in the graph:
  ``"Steven Spielberg (person). film director of: Jaws, E.T."``.
- ``user``: a profile built from the user's interactions IN THE GRAPH (most liked genres, tags,
  entities by summed interaction weight; top titles):
  ``"Likes: Drama, Comedy. Tags: funny, dark. Watched: Alpha, Beta."``.

A graph built by :func:`~kg_builders.graph.build_graph` from
:meth:`Split.train_tables <kg_builders.split.Split.train_tables>` holds training interactions
only, so a user's profile never sees a held-out interaction: everything here reads the graph's
``node_ids``, ``node_attrs`` and ``edges`` and nothing else.

Template syntax: a Python format string with named fields (``{title}``); a part in square
brackets is optional and left out when any field inside it is empty (``"{title}[ ({year})]"``
gives ``"Alpha"`` for an item without a year). ``[[`` and ``]]`` are literal brackets. A missing
attribute is an empty field, never ``"None"``; whitespace runs collapse and separators left
dangling at the start or end are trimmed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kg_builders.errors import ConfigError, SchemaError

logger = logging.getLogger(__name__)

#: bump when the rendering code changes what a template produces (it is part of the template id)
RENDER_VERSION = 2

#: the fields each node type's template may use
FIELDS: dict[str, tuple[str, ...]] = {
    "item": ("id", "title", "year", "genres", "description", "tags", "relations"),
    "tag": ("id", "text", "count", "items"),
    "entity": ("id", "name", "entity_type", "source", "relations"),
    "user": ("id", "genres", "tags", "entities", "titles", "num_items"),
}
NODE_TYPES = tuple(FIELDS)

#: how an edge is read from its destination: ``(item, mentions, entity)`` -> "mentioned in: <items>"
INCOMING_PHRASES: dict[str, str] = {"mentions": "mentioned in", "has_genre": "genre of", "tagged_with": "tag of"}

#: node types whose nodes have a readable label (users have none)
_LABELLED = ("item", "entity", "tag")
#: node types whose label may be a bare id (an entity's name falls back to its id; a tag's too)
_ID_LIKE = ("entity", "tag")

_LEADING = " \t\n.,;:|-"  # separators left at the start when the fields before them are empty
_TRAILING = " \t\n,;:|-"  # ... and at the end (a final "." stays)
_OPEN, _CLOSE = "\x02", "\x03"  # mark field values while rendering


# ------------------------------------------------------------------------------ templates
def _parse(template: str) -> list[tuple[str, bool]]:
    """Split a template into ``(format string, optional)`` parts; ``[[``/``]]`` are literal brackets."""
    parts: list[tuple[str, bool]] = []
    buf: list[str] = []
    optional = False
    i = 0
    while i < len(template):
        ch = template[i]
        if ch in "[]" and template[i : i + 2] == ch * 2:
            buf.append(ch)
            i += 2
            continue
        if ch == "[":
            if optional:
                raise ConfigError(f"template {template!r}: optional parts cannot be nested (position {i})")
            parts.append(("".join(buf), False))
            buf, optional = [], True
        elif ch == "]":
            if not optional:
                raise ConfigError(f"template {template!r}: ']' without '[' at position {i} (write ']]' for a bracket)")
            parts.append(("".join(buf), True))
            buf, optional = [], False
        else:
            buf.append(ch)
        i += 1
    if optional:
        raise ConfigError(f"template {template!r}: '[' is never closed")
    parts.append(("".join(buf), False))
    return [p for p in parts if p[0]]


def _fields_of(fmt: str, template: str) -> list[str]:
    try:
        parsed = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(fmt) if name is not None]
    except ValueError as exc:
        raise ConfigError(f"template {template!r} is not a valid format string: {exc}") from exc
    if any(spec or conv for _, spec, conv in parsed):
        raise ConfigError(f"template {template!r}: fields take no format spec or conversion ({{year}}, not {{year:4}})")
    names = [name for name, _, _ in parsed]
    for name in names:
        if not name or not name.isidentifier():
            raise ConfigError(f"template {template!r}: fields must be named ({{title}}), got {{{name}}}")
    return names


def _render(parts: Sequence[tuple[str, bool, tuple[str, ...]]], values: Mapping[str, str]) -> str:
    """Fill the parts; ``""`` when no field has a value (literal text alone says nothing)."""
    marked = {k: f"{_OPEN}{v}{_CLOSE}" if v else "" for k, v in values.items()}
    out = []
    for fmt, optional, names in parts:
        if optional and any(not values[n] for n in names):
            continue
        out.append(fmt.format_map(marked))
    text = "".join(out)
    first, last = text.find(_OPEN), text.rfind(_CLOSE)
    if first < 0:
        return ""
    head, body, tail = text[:first], text[first : last + 1], text[last + 1 :]
    text = head.lstrip(_LEADING) + body + tail.rstrip(_TRAILING)
    return re.sub(r"\s+", " ", text.replace(_OPEN, "").replace(_CLOSE, "")).strip()


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class NodeTextTemplates:
    """Templates and options for :func:`node_texts`; :meth:`template_id` changes when any of them does.

    Fields a template may use (see :data:`FIELDS`):

    - item: ``id``, ``title``, ``year``, ``genres`` (the ``genres`` attribute, else the names of
      the ``genre_relation`` neighbours), ``description`` (the ``text`` attribute), ``tags`` (top
      ``item_tags`` by ``tag_relation`` edge weight), ``relations`` (see below).
    - tag: ``id``, ``text``, ``count`` (assignments), ``items`` (top ``relation_neighbours``
      titles by ``tag_relation`` edge weight).
    - entity: ``id``, ``name`` (else the id), ``entity_type``, ``source``, ``relations``.
    - user: ``id``, ``genres``, ``tags``, ``entities``, ``titles``, ``num_items``. A user's score
      for a genre, entity or tag is the sum of the weights of their ``interaction_relation`` edges
      to items that have it; their own ``user_tag_relation`` tags rank before tags reached
      through items. ``titles`` are their items by edge weight.

    ``relations`` lists, per edge type touching the node whose other end is an item, entity or
    tag (never a user) and whose relation is not in ``skip_relations``, the top
    ``relation_neighbours`` neighbours: ``"directed by: X"`` for an outgoing edge and
    ``"directed by of: Y"`` for an incoming one (``"mentioned in"``, ``"genre of"``,
    ``"tag of"`` for the usual relations); at most ``relation_types`` relations, joined by
    ``"; "``. Relation names are read with ``_`` as spaces and repeated words dropped
    (``film_film_director`` -> ``film director``).

    Ties everywhere are broken by the neighbour's number of edges in the graph (more first),
    then by its index, so texts are deterministic.

    Args:
        item, tag, entity, user: the templates (syntax in the module docstring).
        item_tags: tags listed per item.
        relation_neighbours: neighbours listed per relation (and titles per tag).
        relation_types: relations listed per node.
        skip_relations: relations never listed under ``relations`` (genres and tags have fields).
        profile_genres, profile_tags, profile_entities, profile_titles: list lengths of user profiles.
        profile_min_weight: interactions with a lower edge weight are left out of profiles
            (``None`` keeps all; e.g. 3.5 keeps only liked movies on a 5-star scale).
        ignore_genres: genre values that mean "none".
        readable_names_only: an entity or tag name without a single letter (a bare
            knowledge-graph id such as ``"2353"``) is treated as missing: never listed, and an
            entity's ``name`` field is empty. Item titles are always kept (``"300"``, ``"1917"``).
        interaction_relation, genre_relation, tag_relation, user_tag_relation: the relation names
            of ``(user, *, item)``, ``(item, *, entity)`` genres, ``(item, *, tag)`` and ``(user, *, tag)``.
        separator: joins the values of a list field.
    """

    item: str = "{title}[ ({year})][. Genres: {genres}][. Tags: {tags}][. {relations}][. {description}]"
    tag: str = "{text}"
    entity: str = "{name}[ ({entity_type})][. {relations}]"
    user: str = "[Likes: {genres}. ][Tags: {tags}. ][Also likes: {entities}. ][Watched: {titles}.]"
    item_tags: int = 5
    relation_neighbours: int = 5
    relation_types: int = 4
    skip_relations: tuple[str, ...] = ("has_genre", "tagged_with")
    profile_genres: int = 3
    profile_tags: int = 5
    profile_entities: int = 5
    profile_titles: int = 5
    profile_min_weight: float | None = None
    ignore_genres: tuple[str, ...] = ("(no genres listed)",)
    readable_names_only: bool = True
    interaction_relation: str = "interacted"
    genre_relation: str = "has_genre"
    tag_relation: str = "tagged_with"
    user_tag_relation: str = "uses_tag"
    separator: str = ", "

    def __post_init__(self) -> None:
        for node_type in NODE_TYPES:
            tpl = getattr(self, node_type)
            if not isinstance(tpl, str):
                raise ConfigError(f"the {node_type} template must be a string, got {type(tpl).__name__}")
            self._parts(node_type)  # raises on a bad template or an unknown field
        for name in (
            "item_tags",
            "relation_neighbours",
            "relation_types",
            "profile_genres",
            "profile_tags",
            "profile_entities",
            "profile_titles",
        ):
            _check_count(name, getattr(self, name))
        for name in ("skip_relations", "ignore_genres"):
            value = getattr(self, name)
            value = (value,) if isinstance(value, str) else tuple(value)
            if not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name} must be a sequence of strings, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if not isinstance(self.readable_names_only, bool):
            raise ConfigError(f"readable_names_only must be a bool, got {self.readable_names_only!r}")
        w = self.profile_min_weight
        if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or not np.isfinite(w)):
            raise ConfigError(f"profile_min_weight must be None or a finite number, got {w!r}")
        for name in ("interaction_relation", "genre_relation", "tag_relation", "user_tag_relation", "separator"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")

    def _parts(self, node_type: str) -> list[tuple[str, bool, tuple[str, ...]]]:
        tpl = getattr(self, node_type)
        out = []
        for fmt, optional in _parse(tpl):
            names = _fields_of(fmt, tpl)
            unknown = sorted(set(names) - set(FIELDS[node_type]))
            if unknown:
                raise ConfigError(
                    f"the {node_type} template {tpl!r} uses unknown field(s) {unknown}; "
                    f"valid: {list(FIELDS[node_type])}"
                )
            out.append((fmt, optional, tuple(names)))
        return out

    def fields_used(self, node_type: str) -> set[str]:
        """The fields the ``node_type`` template uses (only those are computed)."""
        if node_type not in FIELDS:
            raise ConfigError(f"no template for node type {node_type!r}; valid: {list(NODE_TYPES)}")
        return {n for _, _, names in self._parts(node_type) for n in names}

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON-serialisable values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> NodeTextTemplates:
        """Build from a mapping; an unknown key raises :class:`ConfigError` listing the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(settings) - set(valid))
        if unknown:
            raise ConfigError(f"unknown node-text setting(s) {unknown}; valid: {valid}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
        return cls(**values)

    def template_id(self) -> str:
        """A fingerprint of every template and option (and the rendering version): ``"ntt-<16 hex>"``."""
        doc = json.dumps({"render_version": RENDER_VERSION, **self.to_dict()}, sort_keys=True)
        return "ntt-" + hashlib.sha256(doc.encode("utf-8")).hexdigest()[:16]

    def fingerprint(self) -> str:
        """Same as :meth:`template_id`."""
        return self.template_id()


# ------------------------------------------------------------------------------ graph access
def _text(value: Any) -> str:
    """A scalar attribute as text; ``None``/NaN/blank give ``""``; whole floats lose ``.0``."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return re.sub(r"\s+", " ", str(value).replace(_OPEN, "").replace(_CLOSE, "")).strip()


def _values(value: Any) -> list[str]:
    """A list-like attribute (genres) as non-empty strings; a scalar is a one-element list."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [t for t in (_text(v) for v in value) if t]
    t = _text(value)
    return [t] if t else []


def _readable(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def _humanise(relation: str) -> str:
    words = relation.split("_")
    return " ".join(w for i, w in enumerate(words) if w and (i == 0 or w != words[i - 1]))


def _top_k(group: np.ndarray, key: np.ndarray, score: np.ndarray, pop: np.ndarray, k: int) -> dict[int, list[int]]:
    """Per group: the ``k`` keys with the highest score, ties by ``pop`` (higher first), then key.

    Args:
        group, key: int arrays ``[n]``; each (group, key) pair at most once.
        score, pop: float arrays ``[n]``.
    """
    if k == 0 or len(group) == 0:
        return {}
    order = np.lexsort((key, -pop, -score, group))
    g, kk = group[order], key[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    keep = rank < k
    g, kk = g[keep], kk[keep]
    bounds = np.r_[0, np.flatnonzero(np.diff(g)) + 1, len(g)]
    return {int(g[a]): kk[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:], strict=True)}


def _summed(group: np.ndarray, key: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum ``weight`` per (group, key) pair."""
    if len(group) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float64)
    s = pd.DataFrame({"g": group, "k": key, "w": weight}).groupby(["g", "k"], sort=False)["w"].sum()
    return (
        s.index.get_level_values(0).to_numpy(np.int64),
        s.index.get_level_values(1).to_numpy(np.int64),
        s.to_numpy(np.float64),
    )


class _GraphView:
    """Read-only lookups over a duck-typed graph (``node_ids``, ``node_attrs``, ``edges``)."""

    def __init__(self, graph: Any, *, readable_only: bool) -> None:
        for name in ("node_ids", "node_attrs", "edges"):
            if not hasattr(graph, name):
                raise SchemaError(f"node_texts needs a graph with {name!r} (a KnowledgeGraph); got {type(graph)}")
        self.graph = graph
        self.readable_only = readable_only
        self.node_ids: dict[str, list[str]] = graph.node_ids
        self.attrs: dict[str, dict[str, list[Any]]] = graph.node_attrs
        self.edges: dict[tuple[str, str, str], Any] = graph.edges
        self._labels: dict[str, list[str]] = {}
        self._pop: dict[str, np.ndarray] = {}

    def n(self, node_type: str) -> int:
        return len(self.node_ids.get(node_type, ()))

    def attr(self, node_type: str, name: str) -> list[Any]:
        values = self.attrs.get(node_type, {}).get(name)
        return list(values) if values is not None else [None] * self.n(node_type)

    def popularity(self, node_type: str) -> np.ndarray:
        """Edges touching each node of ``node_type``, over all edge types: ``[num_nodes]`` float64."""
        if node_type not in self._pop:
            pop = np.zeros(self.n(node_type), np.float64)
            for (s, _, d), e in self.edges.items():
                ei = np.asarray(e.edge_index)
                if s == node_type:
                    pop += np.bincount(ei[0], minlength=len(pop))
                if d == node_type:
                    pop += np.bincount(ei[1], minlength=len(pop))
            self._pop[node_type] = pop
        return self._pop[node_type]

    def labels(self, node_type: str) -> list[str]:
        """A name per node: item title, tag text, entity name (else its id after the prefix); users: ``""``.

        With ``readable_names_only``, an entity or tag name without a letter (a bare KG id like
        ``"2353"``) is ``""``; item titles are kept as they are (``"300"``, ``"1917"`` are titles).
        """
        if node_type not in self._labels:
            if node_type == "item":
                out = [_text(v) for v in self.attr("item", "title")]
            elif node_type == "tag":
                out = [_text(v) for v in self.attr("tag", "text")]
                out = [t or i for t, i in zip(out, self.node_ids["tag"], strict=True)]
            elif node_type == "entity":
                out = [_text(v) for v in self.attr("entity", "name")]
                out = [t or i.partition(":")[2] or i for t, i in zip(out, self.node_ids["entity"], strict=True)]
            else:
                out = [""] * self.n(node_type)
            if self.readable_only and node_type in _ID_LIKE:
                out = [t if _readable(t) else "" for t in out]
            self._labels[node_type] = out
        return self._labels[node_type]

    def named(self, node_type: str) -> np.ndarray:
        """``[num_nodes]`` bool: which nodes have a non-empty :meth:`labels` entry."""
        return np.fromiter((bool(x) for x in self.labels(node_type)), bool, self.n(node_type))

    def edge_arrays(self, etype: tuple[str, str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        e = self.edges[etype]
        ei = np.asarray(e.edge_index, dtype=np.int64)
        return ei[0], ei[1], np.asarray(e.edge_weight, dtype=np.float64)

    def deduped(self, src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, ...]:
        """One row per (src, dst) pair with the summed weight."""
        return _summed(src, dst, weight)


def _join_labels(labels: list[str], keys: list[int], sep: str) -> str:
    seen: dict[str, None] = {}
    for k in keys:
        if labels[k]:
            seen.setdefault(labels[k], None)
    return sep.join(seen)


# ------------------------------------------------------------------------------ fields
def _neighbour_lists(view: _GraphView, node_type: str, t: NodeTextTemplates) -> dict[int, list[tuple[str, str]]]:
    """Per node: ``(phrase, "a, b")`` for each listed relation, in edge-type order, capped."""
    out: dict[int, list[tuple[str, str]]] = {}
    if t.relation_neighbours == 0 or t.relation_types == 0:
        return out
    for s, r, d in view.edges:
        if r in t.skip_relations:
            continue
        for me, other, outgoing in ((s, d, True), (d, s, False)):
            if me != node_type or other not in _LABELLED:
                continue
            src, dst, w = view.edge_arrays((s, r, d))
            mine, theirs = (src, dst) if outgoing else (dst, src)
            g, k, w = view.deduped(mine, theirs, w)
            ok = view.named(other)[k]
            g, k, w = g[ok], k[ok], w[ok]
            top = _top_k(g, k, w, view.popularity(other)[k], t.relation_neighbours)
            labels = view.labels(other)
            phrase = _humanise(r) if outgoing else INCOMING_PHRASES.get(r, f"{_humanise(r)} of")
            for node, keys in top.items():
                listed = _join_labels(labels, keys, t.separator)
                if listed:
                    out.setdefault(node, []).append((phrase, listed))
    return out


def _relations_field(view: _GraphView, node_type: str, t: NodeTextTemplates) -> list[str]:
    lists = _neighbour_lists(view, node_type, t)
    out = [""] * view.n(node_type)
    for node, rels in lists.items():
        out[node] = "; ".join(f"{phrase}: {listed}" for phrase, listed in rels[: t.relation_types])
    return out


def _item_genres(view: _GraphView, t: NodeTextTemplates) -> list[list[str]]:
    """Genre names per item: the ``genres`` attribute, else the names of its genre-relation neighbours."""
    ignore = set(t.ignore_genres)
    attr = [[g for g in _values(v) if g not in ignore] for v in view.attr("item", "genres")]
    et = ("item", t.genre_relation, "entity")
    if et in view.edges and "entity" in view.node_ids:
        src, dst, _ = view.edge_arrays(et)
        names = view.labels("entity")
        from_edges: list[list[str]] = [[] for _ in range(view.n("item"))]
        for i, e in zip(src.tolist(), dst.tolist(), strict=True):
            if names[e] and names[e] not in ignore and names[e] not in from_edges[i]:
                from_edges[i].append(names[e])
        return [a if a else b for a, b in zip(attr, from_edges, strict=True)]
    return attr


def _item_fields(view: _GraphView, t: NodeTextTemplates, used: set[str]) -> dict[str, list[str]]:
    n = view.n("item")
    f: dict[str, list[str]] = {"id": list(view.node_ids["item"])}
    f["title"] = [_text(v) for v in view.attr("item", "title")]
    f["year"] = [_text(v) for v in view.attr("item", "year")]
    f["description"] = [_text(v) for v in view.attr("item", "text")]
    if "genres" in used:
        f["genres"] = [t.separator.join(g) for g in _item_genres(view, t)]
    if "tags" in used:
        tags = [""] * n
        et = ("item", t.tag_relation, "tag")
        if et in view.edges:
            g, k, w = view.deduped(*view.edge_arrays(et))
            ok = view.named("tag")[k]
            g, k, w = g[ok], k[ok], w[ok]
            labels = view.labels("tag")
            for node, keys in _top_k(g, k, w, view.popularity("tag")[k], t.item_tags).items():
                tags[node] = _join_labels(labels, keys, t.separator)
        f["tags"] = tags
    if "relations" in used:
        f["relations"] = _relations_field(view, "item", t)
    return f


def _tag_fields(view: _GraphView, t: NodeTextTemplates, used: set[str]) -> dict[str, list[str]]:
    n = view.n("tag")
    f: dict[str, list[str]] = {"id": list(view.node_ids["tag"])}
    f["text"] = [_text(v) for v in view.attr("tag", "text")]
    f["count"] = [_text(v) for v in view.attr("tag", "count")]
    if "items" in used:
        items = [""] * n
        et = ("item", t.tag_relation, "tag")
        if et in view.edges and "item" in view.node_ids:
            src, dst, w = view.edge_arrays(et)
            g, k, w = view.deduped(dst, src, w)
            ok = view.named("item")[k]
            g, k, w = g[ok], k[ok], w[ok]
            labels = view.labels("item")
            for node, keys in _top_k(g, k, w, view.popularity("item")[k], t.relation_neighbours).items():
                items[node] = _join_labels(labels, keys, t.separator)
        f["items"] = items
    return f


def _entity_fields(view: _GraphView, t: NodeTextTemplates, used: set[str]) -> dict[str, list[str]]:
    f: dict[str, list[str]] = {"id": list(view.node_ids["entity"])}
    f["name"] = view.labels("entity")
    f["entity_type"] = [_text(v) for v in view.attr("entity", "entity_type")]
    f["source"] = [_text(v) for v in view.attr("entity", "source")]
    if "relations" in used:
        f["relations"] = _relations_field(view, "entity", t)
    return f


def _user_fields(view: _GraphView, t: NodeTextTemplates, used: set[str]) -> dict[str, list[str]]:
    """Profiles from the ``(user, interaction_relation, item)`` edges of the graph (training only)."""
    n = view.n("user")
    f: dict[str, list[str]] = {"id": list(view.node_ids["user"])}
    for name in ("genres", "tags", "entities", "titles"):
        f[name] = [""] * n
    et = ("user", t.interaction_relation, "item")
    if et not in view.edges or "item" not in view.node_ids:
        f["num_items"] = ["0"] * n
        return f
    u, i, w = view.deduped(*view.edge_arrays(et))
    if t.profile_min_weight is not None:
        keep = w >= t.profile_min_weight
        u, i, w = u[keep], i[keep], w[keep]
    f["num_items"] = [str(c) for c in np.bincount(u, minlength=n).tolist()]
    sep = t.separator
    if "titles" in used:
        labels = view.labels("item")
        has_title = view.named("item")[i]
        top = _top_k(u[has_title], i[has_title], w[has_title], view.popularity("item")[i[has_title]], t.profile_titles)
        for user, keys in top.items():
            f["titles"][user] = _join_labels(labels, keys, sep)
    if "genres" in used:
        genres = _item_genres(view, t)
        codes: dict[str, int] = {}
        gi, gg = [], []
        for item, names in enumerate(genres):
            for name in names:
                gi.append(item)
                gg.append(codes.setdefault(name, len(codes)))
        names_by_code = list(codes)
        item_code = pd.DataFrame({"i": np.asarray(gi, np.int64), "g": np.asarray(gg, np.int64)})
        pop = np.bincount(item_code["g"].to_numpy(), minlength=len(codes)).astype(np.float64)
        _profile(f["genres"], u, i, w, item_code, pop, names_by_code, t.profile_genres, sep)
    if "entities" in used and "entity" in view.node_ids:
        parts = []
        for s, r, d in view.edges:
            if s == "item" and d == "entity" and r != t.genre_relation and r not in t.skip_relations:
                src, dst, _ = view.edge_arrays((s, r, d))
                parts.append(pd.DataFrame({"i": src, "g": dst}))
        if parts:
            item_code = pd.concat(parts, ignore_index=True).drop_duplicates()
            item_code = item_code.loc[view.named("entity")[item_code["g"].to_numpy()]]
            _profile(
                f["entities"],
                u,
                i,
                w,
                item_code,
                view.popularity("entity"),
                view.labels("entity"),
                t.profile_entities,
                sep,
            )
    if "tags" in used and "tag" in view.node_ids:
        _user_tags(view, t, f["tags"], u, i, w)
    return f


def _profile(
    out: list[str],
    u: np.ndarray,
    i: np.ndarray,
    w: np.ndarray,
    item_code: pd.DataFrame,
    pop: np.ndarray,
    labels: Sequence[str],
    k: int,
    sep: str,
) -> None:
    """``out[user]`` = the ``k`` codes with the highest summed interaction weight over the user's items."""
    if k == 0 or item_code.empty or len(u) == 0:
        return
    joined = pd.DataFrame({"u": u, "i": i, "w": w}).merge(item_code, on="i", how="inner")
    g, c, s = _summed(joined["u"].to_numpy(np.int64), joined["g"].to_numpy(np.int64), joined["w"].to_numpy())
    for user, keys in _top_k(g, c, s, pop[c], k).items():
        out[user] = _join_labels(list(labels), keys, sep)


def _user_tags(
    view: _GraphView, t: NodeTextTemplates, out: list[str], u: np.ndarray, i: np.ndarray, w: np.ndarray
) -> None:
    """Own tags (``user_tag_relation`` weight) first, then tags of the user's items by summed weight."""
    if t.profile_tags == 0:
        return
    frames = []
    uet = ("user", t.user_tag_relation, "tag")
    if uet in view.edges:
        g, k, s = view.deduped(*view.edge_arrays(uet))
        frames.append(pd.DataFrame({"u": g, "t": k, "own": s, "via": 0.0}))
    iet = ("item", t.tag_relation, "tag")
    if iet in view.edges and len(u):
        src, dst, _ = view.edge_arrays(iet)
        item_tag = pd.DataFrame({"i": src, "t": dst}).drop_duplicates()
        joined = pd.DataFrame({"u": u, "i": i, "w": w}).merge(item_tag, on="i", how="inner")
        g, k, s = _summed(joined["u"].to_numpy(np.int64), joined["t"].to_numpy(np.int64), joined["w"].to_numpy())
        frames.append(pd.DataFrame({"u": g, "t": k, "own": 0.0, "via": s}))
    if not frames:
        return
    scores = pd.concat(frames, ignore_index=True).groupby(["u", "t"], sort=False)[["own", "via"]].sum().reset_index()
    scores = scores.loc[view.named("tag")[scores["t"].to_numpy(np.int64)]]
    if scores.empty:  # no edges, or no listable tag: nothing to rank
        return
    g = scores["u"].to_numpy(np.int64)
    k = scores["t"].to_numpy(np.int64)
    own = scores["own"].to_numpy(np.float64)
    via = scores["via"].to_numpy(np.float64)
    pop = view.popularity("tag")[k]
    order = np.lexsort((k, -pop, -via, -own, g))
    g, k = g[order], k[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    keep = rank < t.profile_tags
    g, k = g[keep], k[keep]
    labels = view.labels("tag")
    bounds = np.r_[0, np.flatnonzero(np.diff(g)) + 1, len(g)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        out[int(g[a])] = _join_labels(labels, k[a:b].tolist(), t.separator)


_FIELD_MAKERS = {"item": _item_fields, "tag": _tag_fields, "entity": _entity_fields, "user": _user_fields}


# ------------------------------------------------------------------------------ public
def node_texts(
    graph: Any,
    templates: NodeTextTemplates | None = None,
    *,
    node_types: Sequence[str] | None = None,
) -> dict[str, list[str]]:
    """One text per node, in node index order, for each node type.

    Reads only ``graph.node_ids``, ``graph.node_attrs`` and ``graph.edges`` (``edge_index``
    ``[2, E]``, ``edge_weight`` ``[E]``); never changes the graph. A node with nothing to say
    (an item without a catalogue entry, say) gets ``""``; empty texts are counted in the log.

    Args:
        graph: a :class:`~kg_builders.graph.KnowledgeGraph` (or anything with those three attributes).
        templates: the templates and options (default :class:`NodeTextTemplates()`).
        node_types: the node types to render (default: every type of the graph that has a
            template); a type the graph lacks gives an empty list.

    Returns:
        node type -> list of ``num_nodes(type)`` strings.

    Raises:
        ConfigError: a requested node type has no template.
        SchemaError: ``graph`` lacks ``node_ids``, ``node_attrs`` or ``edges``.
    """
    t = templates if templates is not None else NodeTextTemplates()
    if not isinstance(t, NodeTextTemplates):
        raise ConfigError(f"templates must be a NodeTextTemplates, got {type(t).__name__}")
    view = _GraphView(graph, readable_only=t.readable_names_only)
    if node_types is None:
        wanted = [nt for nt in view.node_ids if nt in FIELDS]
    else:
        wanted = [node_types] if isinstance(node_types, str) else list(node_types)
        unknown = [nt for nt in wanted if nt not in FIELDS]
        if unknown:
            raise ConfigError(f"no template for node type(s) {unknown}; valid: {list(NODE_TYPES)}")
    out: dict[str, list[str]] = {}
    for nt in wanted:
        if nt not in view.node_ids:
            out[nt] = []
            continue
        used = t.fields_used(nt)
        fields = _FIELD_MAKERS[nt](view, t, used)
        parts = t._parts(nt)
        texts = [_render(parts, {name: fields[name][j] for name in used}) for j in range(view.n(nt))]
        empty = sum(1 for x in texts if not x)
        if empty:
            logger.info("node_texts: %d of %d %s nodes have an empty text", empty, len(texts), nt)
        out[nt] = texts
    return out


def count_empty(texts: Sequence[str]) -> int:
    """How many of ``texts`` are empty or blank."""
    return sum(1 for x in texts if not x.strip())


__all__ = ["FIELDS", "INCOMING_PHRASES", "NODE_TYPES", "NodeTextTemplates", "count_empty", "node_texts"]
