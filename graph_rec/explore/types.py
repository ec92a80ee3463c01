"""Plain, typed results shared by the knowledge stores and the :class:`~graph_rec.recommender.Recommender`.

Every store (the embedded networkx one, Neo4j over Bolt) returns these same objects, so exploration
code runs on either. Nodes are named by ``NodeRef(type, id)``: the node type of the knowledge graph
(``user``, ``item``, ``tag``, ``entity``, ...) and the raw string id.

Orderings are part of the contract (both stores return the same lists for the same data):

* neighbours: by ``(relation, direction, node.type, node.id)``;
* paths: by number of hops, then by the sequence of ``(type, id)`` along the path, then by the
  relations, then by the directions (``False`` before ``True``), so parallel edges give a total order;
* explanation paths: by ``contribution`` (largest first), then as paths;
* recommendations: by ``rank``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["out", "in"]


@dataclass(frozen=True, order=True)
class NodeRef:
    """A node of the knowledge graph: its node type and raw id."""

    type: str
    id: str

    def __str__(self) -> str:
        return f"{self.type}:{self.id}"


@dataclass(frozen=True)
class Neighbour:
    """One edge at a node: the node at its other end, the relation and its stored direction.

    ``direction`` is ``"out"`` when the edge is stored from the queried node to ``node``
    (``(queried)-[relation]->(node)``), ``"in"`` otherwise.
    """

    node: NodeRef
    relation: str
    direction: Direction
    weight: float


@dataclass(frozen=True)
class Path:
    """A simple path through the graph (no node twice), read in the order of ``nodes``.

    ``relations[k]`` names the edge between ``nodes[k]`` and ``nodes[k + 1]``; ``forward[k]`` is
    True when that edge is stored from ``nodes[k]`` to ``nodes[k + 1]``. ``contribution`` is the
    drop of the model's score when the path's edges are removed (explanations only; ``None`` for
    plain graph paths).
    """

    nodes: tuple[NodeRef, ...]
    relations: tuple[str, ...]
    forward: tuple[bool, ...]
    contribution: float | None = None

    def __post_init__(self) -> None:
        if (
            len(self.nodes) < 2
            or len(self.relations) != len(self.nodes) - 1
            or len(self.forward) != len(self.relations)
        ):
            raise ValueError(
                f"a path needs n >= 2 nodes and n - 1 relations and directions; got {len(self.nodes)} nodes, "
                f"{len(self.relations)} relations, {len(self.forward)} directions"
            )

    @property
    def hops(self) -> int:
        return len(self.relations)

    @property
    def kind(self) -> str:
        """The path's type pattern, e.g. ``"user-interacted->item<-interacted-user-interacted->item"``."""
        out = [self.nodes[0].type]
        for node, rel, fwd in zip(self.nodes[1:], self.relations, self.forward, strict=True):
            out.append(f"-{rel}->" if fwd else f"<-{rel}-")
            out.append(node.type)
        return "".join(out)

    def sort_key(self) -> tuple[Any, ...]:
        """Hops, the ``(type, id)`` sequence, the relations, the directions (the contract's path order)."""
        return (self.hops, tuple((n.type, n.id) for n in self.nodes), self.relations, self.forward)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [[n.type, n.id] for n in self.nodes],
            "relations": list(self.relations),
            "forward": list(self.forward),
            "contribution": self.contribution,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Path:
        return cls(
            nodes=tuple(NodeRef(str(t), str(i)) for t, i in d["nodes"]),
            relations=tuple(str(r) for r in d["relations"]),
            forward=tuple(bool(f) for f in d["forward"]),
            contribution=None if d.get("contribution") is None else float(d["contribution"]),
        )

    def __str__(self) -> str:
        out = [str(self.nodes[0])]
        for node, rel, fwd in zip(self.nodes[1:], self.relations, self.forward, strict=True):
            out.append(f" -{rel}-> " if fwd else f" <-{rel}- ")
            out.append(str(node))
        tail = "" if self.contribution is None else f"  ({self.contribution:+.4f})"
        return "".join(out) + tail


@dataclass(frozen=True)
class Edge:
    """A stored edge ``source -[relation]-> target``."""

    source: NodeRef
    relation: str
    target: NodeRef
    weight: float


@dataclass(frozen=True)
class Subgraph:
    """Nodes and the edges among them (sorted: nodes by ``(type, id)``, edges by their fields)."""

    nodes: tuple[NodeRef, ...]
    edges: tuple[Edge, ...]


@dataclass(frozen=True)
class Recommendation:
    """One stored or computed recommendation."""

    user_id: str
    item_id: str
    score: float
    rank: int
    model: str = ""


@dataclass(frozen=True)
class Explanation:
    """Why ``item_id`` scores ``score`` for ``user_id``: paths ranked by their contribution."""

    user_id: str
    item_id: str
    score: float
    paths: tuple[Path, ...] = field(default_factory=tuple)

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "user_id": self.user_id,
                    "item_id": self.item_id,
                    "rank": k + 1,
                    "contribution": p.contribution,
                    "hops": p.hops,
                    "kind": p.kind,
                    "path": str(p),
                }
                for k, p in enumerate(self.paths)
            ],
            columns=["user_id", "item_id", "rank", "contribution", "hops", "kind", "path"],
        )


def sort_paths(paths: Sequence[Path], *, by_contribution: bool = False) -> list[Path]:
    """Paths in the contract's order (module docstring)."""
    if by_contribution:
        return sorted(paths, key=lambda p: (-(p.contribution or 0.0), p.sort_key()))
    return sorted(paths, key=Path.sort_key)
