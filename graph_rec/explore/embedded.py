"""The embedded knowledge store: the knowledge graph as an in-process networkx graph, no server.

:class:`EmbeddedStore` answers every question of :class:`~graph_rec.explore.store.KnowledgeStore`
from a ``networkx.MultiDiGraph`` laid out as :func:`kg_builders.export.networkx_graph.to_networkx`
makes it (nodes keyed ``(node_type, node_id)``, one edge per stored edge with its ``relation`` and
``weight``), without the feature vectors, plus the model's stored recommendations and explanation
paths kept as plain Python objects.

Path search (:meth:`EmbeddedStore.paths`) enumerates simple paths one hop count at a time
(1, 2, ... ``max_hops``). For a hop count ``h`` it runs a depth-first search from the source whose
children are visited in ``(type, id)`` order, so node sequences come out in the contract's order
(:mod:`graph_rec.explore.types`) and the search stops as soon as ``limit`` paths are found. The
search is pruned by the distance to the target (a breadth-first search from the target, edges
followed either way, ``max_hops - 2`` levels deep): a node reached with ``r`` edges left is only
entered when it lies within ``r`` hops of the target, and the candidates at a node are found from the
smaller side, its neighbours or the target's neighbourhood of that radius. For 3 hops between a user
and an item this means one adjacency check per pair of (neighbour of the source, neighbour of the
target) at most. The work of one search is capped at :data:`MAX_PATH_STEPS` adjacency checks;
beyond that it raises :class:`~graph_rec.errors.ConfigError` (ask for fewer hops) rather than
return an incomplete or unordered answer.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from graph_rec.errors import ConfigError, SchemaError, UnknownIdError
from graph_rec.explore.types import Edge, Neighbour, NodeRef, Path, Recommendation, Subgraph, sort_paths
from kg_builders.export.frames import read_explanations, read_recommendations
from kg_builders.export.networkx_graph import NODE_KEYS, to_networkx
from kg_builders.graph import KnowledgeGraph

if TYPE_CHECKING:
    import networkx as nx

logger = logging.getLogger(__name__)

#: the most adjacency checks one :meth:`EmbeddedStore.paths` search may make before it gives up
MAX_PATH_STEPS = 5_000_000
#: keys :meth:`EmbeddedStore.node` adds to a node's attributes
NODE_RESERVED = ("type", "id")
DIRECTIONS = ("out", "in", "both")

NodeKey = tuple[str, str]


class EmbeddedStore:
    """A :class:`~graph_rec.explore.store.KnowledgeStore` over an in-process networkx graph.

    Args:
        kg: the knowledge graph (its feature vectors are not kept).
        recommendations: stored recommendations, columns
            :data:`~graph_rec.explore.store.RECOMMENDATION_COLUMNS` (``user_id, item_id, score,
            rank, model``); ``None`` stores none.
        explanations: stored explanation paths, columns
            :data:`~graph_rec.explore.store.EXPLANATION_COLUMNS` (``user_id, item_id, rank,
            contribution, path``; ``path`` is the JSON text of :meth:`Path.to_dict`); ``None``
            stores none.

    Raises:
        SchemaError: a frame lacks columns (named); a node attribute is named ``type`` or ``id``
            (or clashes with a networkx key); a frame names a node type the graph does not have.
        DataError: a frame has missing ids, missing or non-numeric scores, non-numeric
            contributions, ranks that are not positive integers, a ``path`` that is not the JSON
            of a path, a recommendation given twice (same user, item and model) or an explanation
            rank given twice for a pair (``line`` is the 1-based row).
        UnknownIdError: a frame names users or items, or an explanation path names nodes, that
            are not in ``kg`` (listed).
        MissingDependencyError: networkx is not installed.

    Missing contributions (``None``, NaN) are kept as ``None`` (they rank as 0 in :meth:`why`).
    The checks follow :func:`kg_builders.export.neo4j_db.write_neo4j` (missing columns, unknown
    ids, path nodes, duplicates), so the two stores are built from the same frames.

    Example:
        >>> store = EmbeddedStore(kg, recommendations=recs)  # doctest: +SKIP
        >>> store.paths(NodeRef("user", "1"), NodeRef("item", "296"), max_hops=3, limit=5)  # doctest: +SKIP
    """

    def __init__(
        self,
        kg: KnowledgeGraph,
        *,
        recommendations: pd.DataFrame | None = None,
        explanations: pd.DataFrame | None = None,
    ) -> None:
        for t, attrs in kg.node_attrs.items():
            clash = [a for a in attrs if a in NODE_RESERVED]
            if clash:
                raise SchemaError(f"node attribute(s) {t}.{clash} clash with the keys the store adds {NODE_RESERVED}")
        # the same layout as to_networkx, without feature vectors and masks (they can be large)
        bare = KnowledgeGraph(kg.node_ids, kg.edges, node_attrs=kg.node_attrs, report=kg.report, recipe=kg.recipe)
        self._g = to_networkx(bare)
        self._succ, self._pred = self._g.succ, self._g.pred
        self._node_types = set(kg.node_types)
        self._recs = self._read_recommendations(recommendations)
        self._expl = self._read_explanations(explanations)
        logger.info(
            "embedded store: %d nodes, %d edges, %d users with recommendations, %d explained pairs",
            self._g.number_of_nodes(),
            self._g.number_of_edges(),
            len(self._recs),
            len(self._expl),
        )

    # ----------------------------------------------------------------- properties
    @property
    def graph(self) -> nx.MultiDiGraph:
        """The networkx graph the store answers from (layout of ``to_networkx``, no features).

        It is the store's own graph, not a copy: changing it changes the answers.
        """
        return self._g

    def __repr__(self) -> str:
        return (
            f"EmbeddedStore({self._g.number_of_nodes()} nodes, {self._g.number_of_edges()} edges, "
            f"{len(self._recs)} users with recommendations, {len(self._expl)} explained pairs)"
        )

    # ----------------------------------------------------------------- the protocol
    def node(self, ref: NodeRef) -> dict[str, Any]:
        """The node's stored attributes with ``type`` and ``id`` (no feature vectors, no ``None`` values).

        Raises:
            UnknownIdError: ``ref`` is not a node of the graph.
        """
        key = self._key(ref)
        data = self._g.nodes[key]
        out: dict[str, Any] = {"type": ref.type, "id": ref.id}
        out.update({k: copy.deepcopy(v) for k, v in data.items() if k not in NODE_KEYS})
        return out

    def neighbours(
        self,
        ref: NodeRef,
        *,
        relation: str | None = None,
        direction: Literal["out", "in", "both"] = "both",
        limit: int | None = None,
    ) -> list[Neighbour]:
        """Edges at ``ref``, by ``(relation, direction, node.type, node.id)`` (then weight), at most ``limit``.

        A self-loop is both an ``"out"`` and an ``"in"`` edge, so ``"both"`` lists it twice.

        Raises:
            UnknownIdError: ``ref`` is not a node of the graph.
            ConfigError: ``direction`` is not ``out``, ``in`` or ``both``; ``limit`` is not a
                positive integer (or ``None``).
        """
        if direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if limit is not None:
            _check_positive("limit", limit)
        key = self._key(ref)
        out: list[Neighbour] = []
        sides = [("out", self._succ), ("in", self._pred)]
        for side, adj in sides:
            if direction not in (side, "both"):
                continue
            for other, edges in adj[key].items():
                node = NodeRef(*other)
                for data in edges.values():
                    rel = data["relation"]
                    if relation is None or rel == relation:
                        out.append(Neighbour(node, rel, side, float(data["weight"])))  # type: ignore[arg-type]
        out.sort(key=lambda n: (n.relation, n.direction, n.node.type, n.node.id, n.weight))
        return out if limit is None else out[:limit]

    def subgraph(self, refs: Sequence[NodeRef], *, hops: int = 1, limit: int = 10_000) -> Subgraph:
        """Nodes within ``hops`` of any of ``refs`` (edges followed either way) and every edge among them.

        Nodes are sorted by ``(type, id)``, edges by ``(source, relation, target, weight)``.

        Raises:
            UnknownIdError: a ref is not a node of the graph.
            ConfigError: more than ``limit`` nodes (ask for fewer hops); ``hops`` or ``limit`` is
                not a positive integer.
        """
        _check_positive("hops", hops)
        _check_positive("limit", limit)
        start = list(dict.fromkeys(self._keys(refs)))
        found = set(start)
        too_many = ConfigError(
            f"the subgraph within {hops} hop(s) of {len(start)} node(s) has more than {limit} nodes; "
            "ask for fewer hops or raise limit"
        )
        if len(found) > limit:
            raise too_many
        frontier = start
        for _ in range(hops):
            nxt: list[NodeKey] = []
            for u in frontier:
                for v in itertools.chain(self._succ[u], self._pred[u]):
                    if v not in found:
                        found.add(v)
                        nxt.append(v)
                        if len(found) > limit:
                            raise too_many
            if not nxt:
                break
            frontier = nxt
        edges = [
            Edge(NodeRef(*u), data["relation"], NodeRef(*v), float(data["weight"]))
            for u in found
            for v, parallel in self._succ[u].items()
            if v in found
            for data in parallel.values()
        ]
        edges.sort(key=lambda e: (e.source, e.relation, e.target, e.weight))
        return Subgraph(nodes=tuple(NodeRef(*k) for k in sorted(found)), edges=tuple(edges))

    def paths(self, source: NodeRef, target: NodeRef, *, max_hops: int = 3, limit: int = 10) -> list[Path]:
        """Simple paths ``source`` to ``target`` of at most ``max_hops`` edges (either way), the first ``limit``.

        The order is :meth:`Path.sort_key` (hops, node sequence, relations, directions). Parallel
        edges of different relations or directions give distinct paths; a path from a node to
        itself is not simple, so ``source == target`` gives ``[]``. The search is described in the
        module docstring.

        Raises:
            UnknownIdError: ``source`` or ``target`` is not a node of the graph.
            ConfigError: ``max_hops`` or ``limit`` is not a positive integer; the search needed more
                than :data:`MAX_PATH_STEPS` adjacency checks (ask for fewer hops).
        """
        _check_positive("max_hops", max_hops)
        _check_positive("limit", limit)
        s, t = self._key(source), self._key(target)
        if s == t:
            return []
        search = _PathSearch(self._succ, self._pred, s, t, max_hops, limit)
        return search.run()

    def recommendations(self, user_id: str, *, k: int = 10) -> list[Recommendation]:
        """The stored top-``k`` recommendations of a user, by rank (empty if none were stored).

        Raises:
            UnknownIdError: ``user_id`` is not a user of the graph.
            ConfigError: ``k`` is not a positive integer.
        """
        _check_positive("k", k)
        self._key(NodeRef("user", user_id))
        return list(self._recs.get(user_id, [])[:k])

    def why(self, user_id: str, item_id: str, *, limit: int = 5) -> list[Path]:
        """The stored explanation paths of the pair by contribution; else graph paths (3 hops at most).

        Raises:
            UnknownIdError: the user or the item is not a node of the graph.
            ConfigError: ``limit`` is not a positive integer.
        """
        _check_positive("limit", limit)
        user, item = NodeRef("user", user_id), NodeRef("item", item_id)
        self._key(user)
        self._key(item)
        stored = self._expl.get((user_id, item_id))
        if stored:
            return list(stored[:limit])
        return self.paths(user, item, max_hops=3, limit=limit)

    def close(self) -> None:
        """Nothing to release (the graph lives in this process)."""

    # ----------------------------------------------------------------- helpers
    def _key(self, ref: NodeRef) -> NodeKey:
        if not isinstance(ref, NodeRef):
            raise ConfigError(f"expected a NodeRef, got {type(ref).__name__} {ref!r}")
        key = (ref.type, ref.id)
        if key not in self._g:
            raise UnknownIdError(ref.type, [ref.id])
        return key

    def _keys(self, refs: Iterable[NodeRef]) -> list[NodeKey]:
        refs = list(refs)
        for ref in refs:
            if not isinstance(ref, NodeRef):
                raise ConfigError(f"expected NodeRefs, got {type(ref).__name__} {ref!r}")
        unknown = [r for r in refs if (r.type, r.id) not in self._g]
        if unknown:
            kind = unknown[0].type
            raise UnknownIdError(kind, list(dict.fromkeys(r.id for r in unknown if r.type == kind)))
        return [(r.type, r.id) for r in refs]

    def _check_known(self, node_type: str, ids: Iterable[str]) -> None:
        if node_type not in self._node_types:
            raise SchemaError(f"the graph has no {node_type!r} nodes; node types: {sorted(self._node_types)}")
        unknown = [i for i in dict.fromkeys(ids) if (node_type, i) not in self._g]
        if unknown:
            raise UnknownIdError(node_type, unknown)

    def _read_recommendations(self, df: pd.DataFrame | None) -> dict[str, list[Recommendation]]:
        if df is None:
            return {}
        out: dict[str, list[Recommendation]] = {}
        for r in read_recommendations(df, self._check_known):
            out.setdefault(r.user_id, []).append(Recommendation(r.user_id, r.item_id, r.score, r.rank, r.model))
        for recs in out.values():
            recs.sort(key=lambda r: (r.rank, r.item_id, r.model))
        return out

    def _read_explanations(self, df: pd.DataFrame | None) -> dict[tuple[str, str], list[Path]]:
        if df is None:
            return {}
        grouped: dict[tuple[str, str], list[Path]] = {}
        for r in read_explanations(df, self._check_known):
            nodes = tuple(NodeRef(t, i) for t, i in zip(r.node_types, r.node_ids, strict=True))
            path = Path(
                nodes=nodes, relations=tuple(r.relations), forward=tuple(r.forward), contribution=r.contribution
            )
            grouped.setdefault((r.user_id, r.item_id), []).append(path)
        return {pair: sort_paths(paths, by_contribution=True) for pair, paths in grouped.items()}


class _PathSearch:
    """One :meth:`EmbeddedStore.paths` query: hop count by hop count, children in ``(type, id)`` order."""

    def __init__(self, succ: Any, pred: Any, source: NodeKey, target: NodeKey, max_hops: int, limit: int) -> None:
        self.succ, self.pred = succ, pred
        self.source, self.target = source, target
        self.max_hops, self.limit = max_hops, limit
        self.steps = 0
        self.found: list[Path] = []
        # dist: hops from the target (edges either way), up to max_hops - 2; within[k]: the nodes with
        # dist <= k. A node entered with r edges left must lie within r hops of the target.
        self.dist: dict[NodeKey, int] = {target: 0}
        self.within: list[list[NodeKey]] = [[target]]
        # complete: the search reached every node connected to the target (within[-1] is all of them)
        self.complete = False
        frontier = [target]
        for k in range(1, max_hops - 1):
            nxt = []
            for u in frontier:
                for v in itertools.chain(succ[u], pred[u]):
                    self._step()
                    if v not in self.dist:
                        self.dist[v] = k
                        nxt.append(v)
            if not nxt:
                self.complete = True
                break
            self.within.append(self.within[-1] + nxt)
            frontier = nxt

    def run(self) -> list[Path]:
        hops_max = self.max_hops
        if self.complete:
            if self.source not in self.dist:
                return []  # not connected to the target
            hops_max = min(hops_max, len(self.within[-1]) - 1)  # a simple path visits each node once
        for hops in range(1, hops_max + 1):
            self._step()
            self._walk([self.source], {self.source}, hops)
            if len(self.found) >= self.limit:
                break
        return self.found[: self.limit]

    def _step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_PATH_STEPS:
            raise ConfigError(
                f"path search from {':'.join(self.source)} to {':'.join(self.target)} within {self.max_hops} hops "
                f"needed more than {MAX_PATH_STEPS:,} adjacency checks; ask for fewer hops"
            )

    def _walk(self, trail: list[NodeKey], on_trail: set[NodeKey], hops: int) -> None:
        u = trail[-1]
        left = hops - len(trail) + 1  # edges still to go from u
        succ_u, pred_u = self.succ[u], self.pred[u]
        if left == 1:
            self._step()
            if self.target in succ_u or self.target in pred_u:
                self._emit([*trail, self.target])
            return
        radius = left - 1  # the next node must lie within this many hops of the target
        degree = len(succ_u) + len(pred_u)
        if radius < len(self.within) or self.complete:
            ring = self.within[min(radius, len(self.within) - 1)]
            if len(ring) < degree:
                self._step(len(ring))
                cands = {v for v in ring if v in succ_u or v in pred_u}
            else:
                self._step(degree)
                cands = {v for v in itertools.chain(succ_u, pred_u) if self.dist.get(v, radius + 1) <= radius}
        else:  # beyond the computed distances: every neighbour is a candidate
            self._step(degree)
            cands = set(itertools.chain(succ_u, pred_u))
        for v in sorted(cands - on_trail - {self.target}):
            trail.append(v)
            on_trail.add(v)
            self._walk(trail, on_trail, hops)
            trail.pop()
            on_trail.discard(v)
            if len(self.found) >= self.limit:
                return

    def _emit(self, trail: list[NodeKey]) -> None:
        options = []
        for a, b in itertools.pairwise(trail):
            fwd = {(d["relation"], True) for d in self.succ[a].get(b, {}).values()}
            bwd = {(d["relation"], False) for d in self.pred[a].get(b, {}).values()}
            options.append(fwd | bwd)
        nodes = tuple(NodeRef(*k) for k in trail)
        labels = sorted(
            (tuple(r for r, _ in combo), tuple(f for _, f in combo)) for combo in itertools.product(*options)
        )
        self.found.extend(Path(nodes=nodes, relations=rels, forward=fwd) for rels, fwd in labels)


# --------------------------------------------------------------------- argument and frame checks
def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
