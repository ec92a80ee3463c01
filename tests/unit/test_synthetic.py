"""The synthetic world: determinism, schema, sizes, realism of the signals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kg_builders.errors import ConfigError
from kg_builders.sources import synthetic
from kg_builders.sources.synthetic import ENTITY_TYPES, kg_entity_id, make_synthetic_world, synthetic_vocabulary
from kg_builders.tables import SCHEMAS, Tables, validate


@pytest.fixture(scope="module")
def world() -> Tables:
    return make_synthetic_world(num_users=300, num_items=400, interactions_per_user=25, num_tags=40, seed=3)


def assert_same_tables(a: Tables, b: Tables) -> None:
    for name in SCHEMAS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is None:
            continue
        if name == "images":
            assert x["item_id"].tolist() == y["item_id"].tolist()
            assert all(np.array_equal(p, q) for p, q in zip(x["image"], y["image"], strict=True))
        else:
            pd.testing.assert_frame_equal(x, y)


def test_deterministic_under_a_seed() -> None:
    a = make_synthetic_world(seed=7)
    b = make_synthetic_world(seed=7)
    assert_same_tables(a, b)
    c = make_synthetic_world(seed=8)
    assert not a.interactions.equals(c.interactions)
    assert a.items["text"].tolist() != c.items["text"].tolist()


def test_images_do_not_change_the_other_tables() -> None:
    a = make_synthetic_world(seed=1, with_images=True)
    b = make_synthetic_world(seed=1, with_images=False)
    assert b.images is None
    assert_same_tables(a.replace(images=None), b)


def test_schema_valid_and_sizes_near_requested(world: Tables) -> None:
    counts = world.counts()
    for name in counts:
        validate(name, getattr(world, name))
    assert set(counts) == set(SCHEMAS)
    assert counts["users"] == 300 and counts["items"] == 400
    assert abs(counts["interactions"] - 300 * 25) < 0.1 * 300 * 25
    inter = world.interactions
    assert inter["user_id"].nunique() == 300
    assert set(inter["item_id"]) <= set(world.items["item_id"])
    assert inter["rating"].dtype == np.float64 and set(inter["rating"].unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert inter["timestamp"].between(synthetic.T_START, synthetic.T_END).all()
    assert world.tag_assignments["tag"].nunique() == 40
    assert world.items["item_id"].str.fullmatch(r"i\d+").all() and inter["user_id"].str.fullmatch(r"u\d+").all()
    # sorted by user, then time
    assert (inter.groupby("user_id", sort=False)["timestamp"].diff().dropna() >= 0).all()


def test_no_duplicate_pairs_and_power_law_degrees(world: Tables) -> None:
    inter = world.interactions
    assert not inter.duplicated(["user_id", "item_id"]).any()
    user_deg = inter.groupby("user_id").size()
    item_deg = inter.groupby("item_id").size()
    assert user_deg.max() >= 4 * user_deg.median()
    assert item_deg.max() >= 8 * item_deg.median()
    assert user_deg.min() >= 5


def test_near_full_degrees_use_every_item_once() -> None:
    w = make_synthetic_world(num_users=30, num_items=12, interactions_per_user=11, num_tags=0, seed=2)
    deg = w.interactions.groupby("user_id").size()
    assert not w.interactions.duplicated(["user_id", "item_id"]).any()
    assert deg.max() == 12 and deg.min() >= 5
    assert w.tag_assignments is None


def softmax(taste: np.ndarray, topics: np.ndarray, log_pop: np.ndarray) -> np.ndarray:
    logits = synthetic.AFFINITY_BETA * topics @ taste + log_pop
    p = np.exp(logits - logits.max())
    return p / p.sum()


@pytest.mark.parametrize("max_cdf_entries", [1 << 23, 30])
def test_sampler_matches_the_softmax(max_cdf_entries: int) -> None:
    # two tastes, many copies of each; with a budget of one centre, one group is proposed from the
    # other group's softmax and corrected by rejection, so both paths are checked against the truth
    rng = np.random.default_rng(0)
    k, num_items, copies = synthetic.NUM_TOPICS, 30, 20_000
    tastes = rng.dirichlet(np.full(k, 0.5), 2)
    taste = np.repeat(tastes, copies, axis=0)
    topics = rng.dirichlet(np.full(k, 0.3), num_items)
    log_pop = -0.9 * np.log(rng.permutation(num_items) + 1.0)
    users, items = synthetic._sample_interactions(
        rng, taste, topics, log_pop, np.ones(2 * copies, np.int64), max_cdf_entries=max_cdf_entries
    )
    assert np.array_equal(users, np.arange(2 * copies))
    for g in range(2):
        observed = np.bincount(items[g * copies : (g + 1) * copies], minlength=num_items) / copies
        expected = softmax(tastes[g], topics, log_pop)
        assert 0.5 * np.abs(observed - expected).sum() < 0.025, g
    # the two groups really differ, so matching each one is not vacuous
    assert 0.5 * np.abs(softmax(tastes[0], topics, log_pop) - softmax(tastes[1], topics, log_pop)).sum() > 0.2


def test_sampler_without_replacement_keeps_distinct_items() -> None:
    rng = np.random.default_rng(1)
    k, num_items, num_users = synthetic.NUM_TOPICS, 50, 400
    taste = rng.dirichlet(np.full(k, 0.3), num_users)
    topics = rng.dirichlet(np.full(k, 0.3), num_items)
    log_pop = -0.9 * np.log(rng.permutation(num_items) + 1.0)
    degrees = rng.integers(1, num_items + 1, num_users)
    users, items = synthetic._sample_interactions(rng, taste, topics, log_pop, degrees, max_cdf_entries=500)
    assert np.array_equal(np.bincount(users, minlength=num_users), degrees)
    assert np.unique(users * num_items + items).size == users.size


def test_ratings_rise_with_affinity(world: Tables) -> None:
    inter = world.interactions.merge(world.items[["item_id", "genres"]], on="item_id")
    inter["main"] = inter["genres"].str[0]
    share = inter.groupby(["user_id", "main"]).size() / inter.groupby("user_id").size()
    inter["share"] = share.loc[list(zip(inter["user_id"], inter["main"], strict=True))].to_numpy()
    # items of a user's frequent genres (a proxy for affinity) get higher ratings
    assert np.corrcoef(inter["share"], inter["rating"])[0, 1] > 0.2


def test_vocabulary_is_a_clean_gazetteer() -> None:
    vocab = synthetic_vocabulary()
    names = [n for n, _ in vocab]
    assert len(names) == len(set(names)) >= 90
    assert {t for _, t in vocab} == set(ENTITY_TYPES)
    assert not [(a, b) for a in names for b in names if a != b and a in b]


def test_texts_mention_vocabulary_and_gold_offsets_are_exact(world: Tables) -> None:
    names = {n for n, _ in synthetic_vocabulary()}
    texts = world.items.set_index("item_id")
    assert all(sum(n in text for n in names) >= 3 for text in texts["text"])
    gold = world.gold_entities
    assert set(gold["entity_type"]) == set(ENTITY_TYPES)
    assert set(gold["surface"]) <= names
    for row in gold.itertuples():
        source = texts.at[row.item_id, row.field]
        assert source[row.offset : row.offset + len(row.surface)] == row.surface
    assert set(gold["item_id"]) == set(world.items["item_id"])


def test_knowledge_graph_agrees_with_the_texts(world: Tables) -> None:
    ie = world.item_entities
    assert ie["item_id"].is_unique and 0.8 < len(ie) / len(world.items) < 0.97
    triples = world.triples
    assert not triples.duplicated().any()
    ids = {kg_entity_id(n, t): n for n, t in synthetic_vocabulary()}
    directed = triples[triples["relation"] == "directed_by"].merge(ie, left_on="head", right_on="entity_id")
    assert len(directed) == len(ie)
    text = world.items.set_index("item_id")["text"]
    assert all(ids[d] in text[i] for i, d in zip(directed["item_id"], directed["tail"], strict=True))
    assert {"starring", "located_in", "produced_by", "has_genre", "born_in", "works_for"} <= set(triples["relation"])
    assert triples.loc[triples["relation"] == "located_in", "tail"].str.startswith("place:").all()


def test_tags_follow_topics(world: Tables) -> None:
    tags = world.tag_assignments.merge(world.items[["item_id", "genres"]], on="item_id")
    for tag, genre in [("space", "Science Fiction"), ("heist", "Crime"), ("wildlife", "Documentary")]:
        rows = tags[tags["tag"] == tag]
        assert len(rows) >= 5
        share = rows["genres"].map(lambda g, genre=genre: genre in g).mean()
        base = tags["genres"].map(lambda g, genre=genre: genre in g).mean()
        assert share > 0.6 and share > 2.5 * base, (tag, share, base)
    assert not tags.duplicated(["user_id", "item_id", "tag"]).any()


def test_friends_share_taste(world: Tables) -> None:
    social = world.social
    assert (social["user_id"] != social["friend_id"]).all()
    pairs = set(zip(social["user_id"], social["friend_id"], strict=True))
    assert all((b, a) in pairs for a, b in pairs)
    seen = world.interactions.groupby("user_id")["item_id"].agg(set)

    def jaccard(a: str, b: str) -> float:
        return len(seen[a] & seen[b]) / len(seen[a] | seen[b])

    friends = np.mean([jaccard(a, b) for a, b in pairs])
    rng = np.random.default_rng(0)
    users = seen.index.to_numpy()
    strangers = np.mean([jaccard(*rng.choice(users, 2, replace=False)) for _ in range(len(pairs))])
    assert friends > 1.3 * strangers


def test_images_shape_share_and_topic_colour(world: Tables) -> None:
    images = world.images
    assert len(images) == round(0.8 * 400)
    assert images["item_id"].is_unique
    assert all(a.shape == (8, 8, 3) and a.dtype == np.uint8 for a in images["image"])
    colours = images.merge(world.items[["item_id", "genres"]], on="item_id")
    colours["main"] = colours["genres"].str[0]
    mean = colours.groupby("main")["image"].apply(lambda s: np.mean([a.mean(axis=(0, 1)) for a in s], axis=0))
    assert len(mean) == synthetic.NUM_TOPICS
    centres = np.stack(mean.to_numpy())
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    assert dist[~np.eye(len(centres), dtype=bool)].min() > 15
    small = make_synthetic_world(num_users=5, num_items=10, interactions_per_user=3, image_size=4, seed=0).images
    assert all(a.shape == (4, 4, 3) for a in small["image"])


@pytest.mark.parametrize(
    "kwargs",
    [{"num_users": 0}, {"num_items": 1}, {"interactions_per_user": 0}, {"interactions_per_user": 301}, {"seed": -1}],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        make_synthetic_world(**kwargs)
