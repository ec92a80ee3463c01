"""External knowledge-graph triples as typed edges between items and entities.

Triples ``(head, relation, tail)`` use the knowledge graph's own entity ids; ``item_entities``
says which entity each item is (KGAT / KGCN / MKR publish this as ``item_index2entity_id.txt``).
An endpoint that is an item's entity becomes that ``item`` node (every such item, when several
items share the entity); any other becomes an ``entity`` node with id ``kg:<entity id>``. Each raw relation (``film.film.director``) keeps its own edge
type under a snake_case name (``film_film_director``); the mapping is in the graph recipe.

Cites: Wang et al., "KGAT: Knowledge Graph Attention Network for Recommendation", KDD 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kg_builders.errors import ConfigError, DataError, SchemaError
from kg_builders.fragment import Dropped, EdgeBlock, GraphFragment, NodeBlock, relation_name
from kg_builders.tables import Tables

UNKNOWN = ("raise", "drop")


@dataclass(frozen=True, kw_only=True)
class KnowledgeBuilder:
    """Typed edges from ``tables.triples`` joined to items through ``tables.item_entities``.

    Args:
        unknown_items: an ``item_entities`` row naming an item that is not in the data set:
            ``raise`` (a DataError naming the file and line) or ``drop`` (counted, and the
            triples touching that item's entity dropped too).
        entity_prefix: prefix of entity node ids.
        min_relation_count: relations with fewer triples are dropped (counted).
    """

    unknown_items: str = "raise"
    entity_prefix: str = "kg"
    min_relation_count: int = 1

    def __post_init__(self) -> None:
        if self.unknown_items not in UNKNOWN:
            raise ConfigError(f"unknown_items must be one of {UNKNOWN}, got {self.unknown_items!r}")

    def build(self, tables: Tables) -> GraphFragment:
        if tables.triples is None:
            raise SchemaError("KnowledgeBuilder needs a triples table")
        known = set(tables.interactions["item_id"].astype(str))
        if tables.items is not None:
            known |= set(tables.items["item_id"].astype(str))
        dropped: list[Dropped] = []
        ie = tables.item_entities
        if ie is None:
            ie = pd.DataFrame({"item_id": pd.Series([], dtype=object), "entity_id": pd.Series([], dtype=object)})
        item_of = ie.assign(item_id=ie["item_id"].astype(str), entity_id=ie["entity_id"].astype(str))
        unknown = ~item_of["item_id"].isin(known).to_numpy()
        orphan_entities: set[str] = set()
        if unknown.any():
            if self.unknown_items == "raise":
                i = int(np.flatnonzero(unknown)[0])
                lines = ie.attrs.get("lines")
                raise DataError(
                    f"item {item_of['item_id'].iloc[i]!r} is not in the data set ({int(unknown.sum())} such rows); "
                    "pass unknown_items='drop' to drop them",
                    file=ie.attrs.get("file", "item_entities"),
                    line=int(lines[i]) if lines is not None else None,
                    field="item_id",
                )
            orphan_entities = set(item_of.loc[unknown, "entity_id"])
            dropped.append(
                Dropped(
                    "KnowledgeBuilder",
                    "item-entity links to items not in the data set",
                    int(unknown.sum()),
                    item_of.loc[unknown, "item_id"].head(5).tolist(),
                )
            )
            item_of = item_of.loc[~unknown]
        item_of = item_of.drop_duplicates(["entity_id", "item_id"])
        # entity -> its items: several items may share one entity, and each gets the entity's links
        items_of = item_of.groupby("entity_id", sort=False)["item_id"].agg(list).to_dict()
        t = tables.triples
        head, rel, tail = (t[c].astype(str).to_numpy(object) for c in ("head", "relation", "tail"))
        orphan = np.fromiter(
            (h in orphan_entities or x in orphan_entities for h, x in zip(head, tail, strict=True)), bool, len(head)
        )
        if orphan.any():
            dropped.append(
                Dropped("KnowledgeBuilder", "triples touching an item not in the data set", int(orphan.sum()))
            )
            head, rel, tail = head[~orphan], rel[~orphan], tail[~orphan]
        names = {r: relation_name(r) for r in pd.unique(rel)}
        by_name: dict[str, list[str]] = {}
        for r, n in names.items():
            by_name.setdefault(n, []).append(r)
        clashes = {n: sorted(rs) for n, rs in by_name.items() if len(rs) > 1}
        if clashes:
            shown = "; ".join(f"{rs} -> {n!r}" for n, rs in sorted(clashes.items())[:5])
            raise SchemaError(
                f"{len(clashes)} relation name(s) each given by several raw relations of "
                f"{t.attrs.get('file', 'the triples table')}, "
                f"whose edges would merge into one edge type: {shown}"
            )
        rel_counts = pd.Series(rel).value_counts()
        rare = set(rel_counts.index[rel_counts < self.min_relation_count])
        if rare:
            mask = np.isin(rel, list(rare))
            dropped.append(
                Dropped(
                    "KnowledgeBuilder",
                    f"triples of relations with fewer than {self.min_relation_count} triples",
                    int(mask.sum()),
                )
            )
            head, rel, tail = head[~mask], rel[~mask], tail[~mask]

        def side(ids: np.ndarray) -> tuple[list[list[str]], np.ndarray]:
            is_item = np.fromiter((e in items_of for e in ids), bool, len(ids))
            out = [items_of[e] if it else [f"{self.entity_prefix}:{e}"] for e, it in zip(ids, is_item, strict=True)]
            return out, is_item

        h, h_item = side(head)
        tl, t_item = side(tail)
        frame = pd.DataFrame({"h": h, "hi": h_item, "r": [names[r] for r in rel], "t": tl, "ti": t_item})
        frame = frame.explode("h").explode("t").reset_index(drop=True)  # a triple links every item of its entity
        loops = (frame["h"] == frame["t"]).to_numpy()  # (e, r, e), or two entities of one item
        if loops.any():
            dropped.append(Dropped("KnowledgeBuilder", "self-loops", int(loops.sum())))
            frame = frame.loc[~loops].reset_index(drop=True)
        before = len(frame)
        frame = frame.drop_duplicates(["h", "r", "t"])
        if len(frame) < before:
            dropped.append(Dropped("KnowledgeBuilder", "duplicate triples", before - len(frame)))
        edges = {}
        for (r, hi, ti), g in frame.groupby(["r", "hi", "ti"], sort=True):
            et = ("item" if hi else "entity", str(r), "item" if ti else "entity")
            edges[et] = EdgeBlock(g["h"].to_numpy(object), g["t"].to_numpy(object), np.ones(len(g), np.float32))
        ents = pd.unique(
            np.concatenate(
                [frame.loc[~frame["hi"], "h"].to_numpy(object), frame.loc[~frame["ti"], "t"].to_numpy(object)]
            )
        )
        raw = [e.split(":", 1)[1] for e in ents]
        nodes = NodeBlock(
            [str(e) for e in ents],
            {"name": raw, "entity_type": [self.entity_prefix] * len(ents), "source": ["knowledge_graph"] * len(ents)},
        )
        return GraphFragment(
            nodes={"entity": nodes},
            edges=edges,
            dropped=dropped,
            info={"relations": {v: k for k, v in names.items()}, "items_linked": int(item_of["item_id"].nunique())},
        )
