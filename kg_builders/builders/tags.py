"""Tag nodes with item -> tag and user -> tag edges, from tag assignments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kg_builders.errors import ConfigError
from kg_builders.fragment import Dropped, EdgeBlock, GraphFragment, NodeBlock, check_name, normalise_key
from kg_builders.tables import Tables


@dataclass(frozen=True, kw_only=True)
class TagBuilder:
    """``tag`` nodes, ``(item, tagged_with, tag)`` and ``(user, uses_tag, tag)`` edges.

    Tags are normalised (NFKC, case-folded, whitespace collapsed): "Sci-Fi " and "sci-fi" are one
    tag. Edge weights count assignments. Node attributes: ``text`` (the most frequent original
    spelling) and ``count``.

    A user who puts one tag on one item in two spellings ("Rock" and "rock") made one assignment:
    a (user, item, normalised tag) counts once in every count and weight (the first row is kept;
    the others are reported as dropped). Rows without a user each count, as before.

    Args:
        min_count: a tag needs at least this many assignments (after normalisation) to be kept.
        min_items: a tag must be used on at least this many distinct items.
        item_relation: relation for item -> tag edges.
        user_relation: relation for user -> tag edges; ``None`` makes none.
    """

    min_count: int = 1
    min_items: int = 1
    item_relation: str = "tagged_with"
    user_relation: str | None = "uses_tag"

    def __post_init__(self) -> None:
        if self.min_count < 1 or self.min_items < 1:
            raise ConfigError("min_count and min_items must be >= 1")
        check_name(self.item_relation, "relation")
        if self.user_relation is not None:
            check_name(self.user_relation, "relation")

    def build(self, tables: Tables) -> GraphFragment:
        ta = tables.tag_assignments
        if ta is None or len(ta) == 0:
            return GraphFragment(info={"tags": "no tag assignments"})
        dropped: list[Dropped] = []
        keys = ta["tag"].astype(str).map(normalise_key)
        empty = keys == ""
        if empty.any():
            dropped.append(Dropped("TagBuilder", "empty tags after normalisation", int(empty.sum())))
        df = pd.DataFrame({"item_id": ta["item_id"].astype(str), "key": keys, "raw": ta["tag"].astype(str).str.strip()})
        if "user_id" in ta.columns:
            df["user_id"] = ta["user_id"].astype(str).where(ta["user_id"].notna())  # a missing user stays missing
        df = df.loc[~empty.to_numpy()]
        if "user_id" in df.columns:
            # the sources drop a row repeated with the same text; spellings that normalise alike are
            # repeats too (a missing user is no user: those rows are never merged)
            repeated = df["user_id"].notna() & df.duplicated(["user_id", "item_id", "key"])
            if repeated.any():
                examples = [
                    f"user {u}, item {i}: {r!r}"
                    for u, i, r in df.loc[repeated, ["user_id", "item_id", "raw"]].head(3).itertuples(index=False)
                ]
                reason = "repeated (user, item, tag) assignments (tags compared normalised) counted once"
                dropped.append(Dropped("TagBuilder", reason, int(repeated.sum()), examples))
                df = df.loc[~repeated.to_numpy()]
        stats = df.groupby("key").agg(count=("raw", "size"), items=("item_id", "nunique"))
        keep = stats.index[(stats["count"] >= self.min_count) & (stats["items"] >= self.min_items)]
        rare = ~df["key"].isin(keep)
        if rare.any():
            dropped.append(
                Dropped(
                    "TagBuilder",
                    f"assignments of tags used fewer than {self.min_count} times or on fewer than {self.min_items} items",
                    int(rare.sum()),
                )
            )
        df = df.loc[~rare]
        spelled = df.groupby(["key", "raw"]).size().reset_index(name="n")
        spelled = spelled.sort_values(["key", "n", "raw"], ascending=[True, False, True]).drop_duplicates("key")
        first = pd.unique(df["key"])  # order of first appearance
        text = spelled.set_index("key")["raw"].reindex(first)
        count = df.groupby("key").size().reindex(first)
        nodes = NodeBlock(list(first), {"text": text.tolist(), "count": [int(c) for c in count]})
        edges = {}
        it = df.groupby(["item_id", "key"], sort=False).size()
        edges[("item", self.item_relation, "tag")] = EdgeBlock(
            it.index.get_level_values(0).to_numpy(object),
            it.index.get_level_values(1).to_numpy(object),
            it.to_numpy(np.float32),
        )
        if self.user_relation is not None and "user_id" in df.columns:
            ut = df.groupby(["user_id", "key"], sort=False).size()
            edges[("user", self.user_relation, "tag")] = EdgeBlock(
                ut.index.get_level_values(0).to_numpy(object),
                ut.index.get_level_values(1).to_numpy(object),
                ut.to_numpy(np.float32),
            )
        return GraphFragment(nodes={"tag": nodes}, edges=edges, dropped=dropped)
