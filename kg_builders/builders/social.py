"""Social user -> user edges (friendship, trust), where the data has them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kg_builders.fragment import Dropped, EdgeBlock, GraphFragment, check_name
from kg_builders.tables import Tables


@dataclass(frozen=True, kw_only=True)
class SocialBuilder:
    """``(user, friend_of, user)`` edges from ``tables.social``.

    Args:
        relation: the relation name.
        symmetric: the relation is undirected (friendship): each unordered pair is kept once
            (exporters add the reverse direction). Set False for directed trust.

    Users that have no node (no training interactions) are dropped by the graph, counted.
    Self-loops are dropped, counted.
    """

    relation: str = "friend_of"
    symmetric: bool = True

    def __post_init__(self) -> None:
        check_name(self.relation, "relation")

    def build(self, tables: Tables) -> GraphFragment:
        if tables.social is None:
            return GraphFragment(info={"social": "no social table"})
        s = tables.social["user_id"].astype(str).to_numpy(object)
        d = tables.social["friend_id"].astype(str).to_numpy(object)
        dropped = []
        loops = s == d
        if loops.any():
            dropped.append(Dropped("SocialBuilder", "self-loops", int(loops.sum())))
        s, d = s[~loops], d[~loops]
        if self.symmetric:
            a, b = np.where(s < d, s, d), np.where(s < d, d, s)
            s, d = a, b
        pairs = dict.fromkeys(zip(s.tolist(), d.tolist(), strict=True))
        if len(pairs) < len(s):
            dropped.append(Dropped("SocialBuilder", "duplicate pairs", len(s) - len(pairs)))
        src = np.array([p[0] for p in pairs], dtype=object)
        dst = np.array([p[1] for p in pairs], dtype=object)
        return GraphFragment(
            edges={("user", self.relation, "user"): EdgeBlock(src, dst, np.ones(len(src), np.float32))},
            dropped=dropped,
        )
