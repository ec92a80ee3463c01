"""User and item nodes, and the user -> item interaction edges.

Cites: the collaborative graph of LightGCN (He et al., SIGIR 2020) and KGAT (Wang et al., KDD 2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kg_builders.errors import ConfigError, DataError, SchemaError
from kg_builders.fragment import Dropped, EdgeBlock, GraphFragment, NodeBlock, check_name
from kg_builders.tables import Tables

WEIGHTS = ("rating", "binary", "count", "log_count")
ITEM_ATTRS = ("title", "year", "genres", "text", "url")


def node_attrs(frame: pd.DataFrame, columns: tuple[str, ...] | list[str]) -> dict[str, list]:
    """JSON-friendly per-row attribute lists for the columns of ``frame`` that exist (NaN -> None)."""
    out = {}
    for c in columns:
        if c not in frame.columns:
            continue
        values = frame[c].astype(object).where(frame[c].notna(), None).tolist()
        out[c] = [list(v) if isinstance(v, tuple) else (int(v) if isinstance(v, np.integer) else v) for v in values]
    return out


@dataclass(frozen=True, kw_only=True)
class InteractionBuilder:
    """Builds ``user`` and ``item`` nodes and ``(user, interacted, item)`` edges.

    Args:
        weight: ``rating`` (the rating, or the count for implicit data), ``binary`` (1.0),
            ``count`` (number of interactions of the pair) or ``log_count`` (``1 + log(count)``).
        min_rating: keep only interactions with ``rating >= min_rating`` (positives); ``None`` keeps all.
        relation: the relation name.
        include_catalog: every item of ``tables.items`` becomes a node, even with no training
            interaction (so cold items can be scored from their features).
        item_attrs: item columns copied to node attributes.
        user_attrs: user columns copied to node attributes (from ``tables.users``).

    Repeated (user, item) pairs are merged into one edge: weight is the last rating by time
    (``rating``), or the count. The input must hold training interactions only: a table with a
    ``split`` column holding ``valid``/``test`` rows is refused (split first).
    """

    weight: str = "rating"
    min_rating: float | None = None
    relation: str = "interacted"
    include_catalog: bool = True
    item_attrs: tuple[str, ...] = ITEM_ATTRS
    user_attrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.weight not in WEIGHTS:
            raise ConfigError(f"weight must be one of {WEIGHTS}, got {self.weight!r}")
        check_name(self.relation, "relation")
        m = self.min_rating
        if m is not None and (isinstance(m, bool) or not isinstance(m, int | float) or not math.isfinite(m)):
            raise ConfigError(f"min_rating must be a finite number or None, got {m!r}")

    def build(self, tables: Tables) -> GraphFragment:
        df = tables.interactions
        if "split" in df.columns and (df["split"] != "train").any():
            raise SchemaError(
                "interactions hold validation/test rows: split first (kg_builders.split) and build from "
                "Split.train_tables(tables), so no held-out interaction becomes an edge"
            )
        dropped: list[Dropped] = []
        if "rating" in df.columns and (self.weight == "rating" or self.min_rating is not None):
            bad = ~np.isfinite(df["rating"].to_numpy(np.float64, na_value=np.nan))
            if bad.any():  # NaN passes `rating < min_rating` (a positive) and would become a NaN edge weight
                pos = int(bad.argmax())
                row = df.iloc[pos]
                shown = "missing" if pd.isna(row["rating"]) else float(row["rating"])
                raise DataError(
                    f"interaction at row {pos} (user {row['user_id']!r}, item {row['item_id']!r}) has rating "
                    f"{shown}, not a finite number ({int(bad.sum())} such rows); InteractionBuilder("
                    f"weight={self.weight!r}, min_rating={self.min_rating!r}) needs every rating",
                    file=df.attrs.get("file"),
                    field="rating",
                )
        if self.min_rating is not None:
            if "rating" not in df.columns:
                raise SchemaError("min_rating needs a 'rating' column")
            low = df["rating"] < self.min_rating
            if low.any():
                dropped.append(
                    Dropped("InteractionBuilder", f"interactions with rating < {self.min_rating}", int(low.sum()))
                )
            df = df.loc[~low]
        # users: in order of first appearance in the table, by position (its index labels may be
        # unordered, after a sort, or repeated, after a concat: a label would bring back dropped rows)
        user_ids = pd.unique(df["user_id"])
        sort_cols = ["user_id", "item_id"] + (["timestamp"] if "timestamp" in df.columns else [])
        df = df.sort_values(sort_cols, kind="stable")
        grouped = df.groupby(["user_id", "item_id"], sort=False)
        counts = grouped.size()
        last = grouped.tail(1).set_index(["user_id", "item_id"])
        if len(counts) < len(df):
            dropped.append(
                Dropped("InteractionBuilder", "repeated (user, item) rows merged into one edge", len(df) - len(counts))
            )
        pairs = counts.index
        if self.weight == "rating":
            w = (
                last["rating"].reindex(pairs).to_numpy(np.float32)
                if "rating" in df.columns
                else counts.to_numpy(np.float32)
            )
        elif self.weight == "binary":
            w = np.ones(len(pairs), np.float32)
        elif self.weight == "count":
            w = counts.to_numpy(np.float32)
        else:
            w = (1.0 + np.log(counts.to_numpy(np.float64))).astype(np.float32)
        attrs = {}
        if "timestamp" in df.columns:
            attrs["timestamp"] = last["timestamp"].reindex(pairs).to_numpy(np.int64)
        edges = EdgeBlock(
            pairs.get_level_values(0).to_numpy(object), pairs.get_level_values(1).to_numpy(object), w, attrs
        )
        user_block = NodeBlock([str(u) for u in user_ids])
        if tables.users is not None and self.user_attrs:
            users = tables.users.set_index("user_id").reindex(user_block.ids).reset_index()
            user_block = NodeBlock(user_block.ids, node_attrs(users, self.user_attrs))
        item_order: list[str] = []
        if self.include_catalog and tables.items is not None:
            item_order.extend(tables.items["item_id"].astype(str).tolist())
        item_order.extend(str(i) for i in pd.unique(df["item_id"]))
        item_ids = list(dict.fromkeys(item_order))
        if tables.items is not None:
            items = tables.items.set_index("item_id").reindex(item_ids).reset_index()
            item_block = NodeBlock(item_ids, node_attrs(items, self.item_attrs))
            unknown = len(set(pd.unique(df["item_id"])) - set(tables.items["item_id"]))
        else:
            item_block = NodeBlock(item_ids)
            unknown = 0
        return GraphFragment(
            nodes={"user": user_block, "item": item_block},
            edges={("user", self.relation, "item"): edges},
            dropped=dropped,
            info={
                "items_without_catalogue_entry": unknown,
                "items_without_interactions": len(item_ids) - int(df["item_id"].nunique()),
            },
        )
