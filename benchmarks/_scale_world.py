"""Large synthetic graphs for the scaling benchmarks: power-law degrees, built straight into arrays.

The synthetic world of ``kg_builders.sources.synthetic`` draws text, entities, images and social
links too, and goes through the table builders: right for quality tests, too slow for 20M
interactions on two cores. Here only the shape matters, so :func:`power_law_world` draws

- ``U = n / 40`` users with log-normal activity (sigma 1, like MovieLens users) and ``I = n / 80``
  items with Zipf-like popularity (exponent 0.8), pairs deduplicated;
- a per-user random 80/10/10 split (seed given), made before the graph is built;
- ``T = I / 100`` tags, one or two per item (``item -has_tag-> tag``), so the graph is heterogeneous;
- optional random feature vectors on items and tags (``feature_dim``),

and returns a :class:`~kg_builders.graph.KnowledgeGraph` of the training part with its
:class:`~kg_builders.split.Split`, exactly what :class:`graph_rec.data.RecData` takes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kg_builders.graph import EdgeStore, KnowledgeGraph
from kg_builders.split import Split


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def power_law_world(num_interactions: int, *, seed: int = 0, feature_dim: int = 0) -> tuple[KnowledgeGraph, Split]:
    """``(training graph, split)`` with about ``num_interactions`` distinct user-item pairs (module docstring)."""
    rng = np.random.default_rng(seed)
    n = int(num_interactions)
    num_users, num_items = max(100, n // 40), max(100, n // 80)
    act = rng.lognormal(0.0, 1.0, num_users)
    deg = np.clip(np.rint(act / act.mean() * (n / num_users) * 1.2), 3, num_items // 2).astype(np.int64)
    pop = rng.permutation((np.arange(num_items) + 1.0) ** -0.8)
    cdf = np.cumsum(pop / pop.sum())
    users = np.repeat(np.arange(num_users, dtype=np.int64), deg)
    items = np.minimum(np.searchsorted(cdf, rng.random(users.size)), num_items - 1)
    keys = np.unique(users * num_items + items)  # sorted by user, then item
    users, items = keys // num_items, keys % num_items
    # per-user random 80/10/10: rank each user's pairs by a random key
    order = np.lexsort((rng.random(users.size), users))
    users, items = users[order], items[order]
    counts = np.bincount(users, minlength=num_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    frac = (np.arange(users.size) - starts[users]) / counts[users]
    part = np.where(frac < 0.8, 0, np.where(frac < 0.9, 1, 2))

    user_ids, item_ids = _ids("u", num_users), _ids("i", num_items)
    num_tags = max(10, num_items // 100)
    tag_ids = _ids("t", num_tags)
    tag_pop = (np.arange(num_tags) + 1.0) ** -1.0
    tag_cdf = np.cumsum(tag_pop / tag_pop.sum())
    two = rng.random(num_items) < 0.5
    tag_items = np.concatenate([np.arange(num_items), np.flatnonzero(two)])
    tags = np.minimum(np.searchsorted(tag_cdf, rng.random(tag_items.size)), num_tags - 1)
    tag_keys = np.unique(tag_items * num_tags + tags)

    train = part == 0
    edges = {
        ("user", "interacted", "item"): EdgeStore(
            np.stack([users[train], items[train]]).astype(np.int64), np.ones(int(train.sum()), dtype=np.float32)
        ),
        ("item", "has_tag", "tag"): EdgeStore(
            np.stack([tag_keys // num_tags, tag_keys % num_tags]).astype(np.int64),
            np.ones(tag_keys.size, dtype=np.float32),
        ),
    }
    kg = KnowledgeGraph({"user": user_ids, "item": item_ids, "tag": tag_ids}, edges)
    if feature_dim:
        for t, count in (("item", num_items), ("tag", num_tags)):
            x = rng.standard_normal((count, feature_dim), dtype=np.float32)
            kg.set_features(t, "text", x / np.linalg.norm(x, axis=1, keepdims=True))
    ucat = pd.Index(user_ids)
    icat = pd.Index(item_ids)

    def frame(mask: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "user_id": pd.Categorical.from_codes(users[mask], categories=ucat),
                "item_id": pd.Categorical.from_codes(items[mask], categories=icat),
            }
        )

    split = Split(
        train=frame(train),
        valid=frame(part == 1),
        test=frame(part == 2),
        method="split_random",
        settings={"ratios": [0.8, 0.1, 0.1], "seed": seed, "generator": "power_law_world"},
    )
    return kg, split
