"""Entity nodes from categorical item attributes (genres, categories) and their edges."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kg_builders.builders.entities import entity_id
from kg_builders.errors import SchemaError
from kg_builders.fragment import Dropped, EdgeBlock, GraphFragment, NodeBlock, check_name
from kg_builders.tables import Tables


@dataclass(frozen=True, kw_only=True)
class ItemAttributeBuilder:
    """``entity`` nodes for the values of an item column, with ``(item, <relation>, entity)`` edges.

    Args:
        column: an item column holding a tuple/list of values (``genres``) or one string per item.
        entity_type: the ``entity_type`` attribute of the nodes (``genre``).
        relation: the relation name (``has_genre``).
        ignore: values meaning "none" (e.g. MovieLens's ``(no genres listed)``).
    """

    column: str = "genres"
    entity_type: str = "genre"
    relation: str = "has_genre"
    ignore: tuple[str, ...] = ("(no genres listed)",)

    def __post_init__(self) -> None:
        check_name(self.relation, "relation")

    def build(self, tables: Tables) -> GraphFragment:
        items = tables.items
        if items is None or self.column not in items.columns:
            raise SchemaError(f"ItemAttributeBuilder needs an items table with a {self.column!r} column")
        values = items[self.column].map(
            lambda v: (
                list(v)
                if isinstance(v, (list, tuple, np.ndarray))
                else ([] if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else [v])
            )
        )
        pairs = pd.DataFrame({"item_id": items["item_id"].astype(str), "value": values}).explode("value").dropna()
        pairs = pairs.loc[~pairs["value"].isin(self.ignore) & (pairs["value"].astype(str).str.strip() != "")]
        pairs["entity"] = [entity_id(str(v), self.entity_type) for v in pairs["value"]]
        nameless = (pairs["entity"] == entity_id("", self.entity_type)).to_numpy()  # "--", "?": no name left
        dropped = []
        if nameless.any():
            dropped.append(
                Dropped("ItemAttributeBuilder", f"{self.column} values with no name (e.g. '--')", int(nameless.sum()))
            )
            pairs = pairs.loc[~nameless]
        pairs = pairs.drop_duplicates(["item_id", "entity"])
        names = pairs.drop_duplicates("entity")
        nodes = NodeBlock(
            names["entity"].tolist(),
            {
                "name": names["value"].astype(str).tolist(),
                "entity_type": [self.entity_type] * len(names),
                "source": [f"attribute:{self.column}"] * len(names),
            },
        )
        edges = EdgeBlock(
            pairs["item_id"].to_numpy(object), pairs["entity"].to_numpy(object), np.ones(len(pairs), np.float32)
        )
        return GraphFragment(nodes={"entity": nodes}, edges={("item", self.relation, "entity"): edges}, dropped=dropped)
