"""Small synthetic knowledge graphs shared by the unit tests (built fresh per call; nothing cached)."""

from __future__ import annotations

import numpy as np

from kg_builders.builders.standard import standard_builders
from kg_builders.graph import build_graph
from kg_builders.sources.synthetic import make_synthetic_world
from kg_builders.split import split_random


def synthetic_graph(*, feature_dim: int = 6, seed: int = 3) -> tuple:
    """``(KnowledgeGraph, Split)``: 60 users, 80 items, tags and a KG, random text features of ``feature_dim``."""
    tables = make_synthetic_world(num_users=60, num_items=80, interactions_per_user=12, seed=seed, with_images=False)
    sp = split_random(tables, ratios=(0.8, 0.1, 0.1), seed=2026)
    train = sp.train_tables(tables)
    kg = build_graph(train, standard_builders(train))
    rng = np.random.default_rng(0)
    for t in kg.node_types:
        kg.set_features(t, "text", rng.normal(size=(kg.num_nodes(t), feature_dim)).astype(np.float32))
    return kg, sp
