"""Node texts from templates: items, tags, entities with relations, user profiles from training only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kg_builders.builders.node_text import FIELDS, NodeTextTemplates, count_empty, node_texts
from kg_builders.builders.standard import standard_builders
from kg_builders.errors import ConfigError, SchemaError
from kg_builders.graph import EdgeStore, KnowledgeGraph, build_graph
from kg_builders.sources.synthetic import make_synthetic_world
from kg_builders.split import split_random


def _store(pairs: list[tuple[int, int]], weights: list[float] | None = None) -> EdgeStore:
    ei = np.array(pairs, dtype=np.int64).T.reshape(2, -1)
    w = np.ones(len(pairs), np.float32) if weights is None else np.array(weights, np.float32)
    return EdgeStore(ei, w)


@pytest.fixture
def graph() -> KnowledgeGraph:
    """Three users, five items (one bare), three tags, genre and person entities, a KG relation."""
    return KnowledgeGraph(
        {
            "user": ["u1", "u2", "u3"],
            "item": ["i1", "i2", "i3", "i4", "i5"],
            "tag": ["funny", "dark", "slow"],
            "entity": ["genre:drama", "genre:comedy", "person:spielberg", "kg:2353", "place:usa"],
        },
        {
            ("user", "interacted", "item"): _store(
                [(0, 0), (0, 1), (0, 2), (1, 3), (2, 0), (2, 1)], [5.0, 4.0, 1.0, 3.0, 2.0, 5.0]
            ),
            ("item", "tagged_with", "tag"): _store([(0, 0), (0, 1), (0, 2), (1, 1), (3, 2)], [3.0, 1.0, 2.0, 1.0, 1.0]),
            ("user", "uses_tag", "tag"): _store([(1, 1)], [2.0]),
            ("item", "has_genre", "entity"): _store([(0, 0), (0, 1), (1, 0), (2, 1)]),
            ("item", "film_film_director", "entity"): _store([(0, 2), (1, 2), (3, 3)]),
            ("entity", "born_in", "entity"): _store([(2, 4)]),
        },
        node_attrs={
            "item": {
                "title": ["Jaws", "E.T.", "Gamma", None, None],
                "year": [1975, 1982, None, None, None],
                "genres": [["Drama", "Comedy"], ["Drama"], [], None, None],
                "text": ["A shark.", None, "  ", None, None],
            },
            "tag": {"text": ["Funny", "dark", "slow"], "count": [3, 2, 3]},
            "entity": {
                "name": ["Drama", "Comedy", "Steven Spielberg", "2353", "USA"],
                "entity_type": ["genre", "genre", "person", "kg", "place"],
                "source": ["attribute:genres"] * 2 + ["extracted", "knowledge_graph", "extracted"],
            },
        },
    )


def test_item_text_has_title_year_genres_top_tags_description(graph) -> None:
    items = node_texts(graph)["item"]
    assert items[0] == (
        "Jaws (1975). Genres: Drama, Comedy. Tags: Funny, slow, dark. film director: Steven Spielberg. A shark."
    )
    assert items[1] == "E.T. (1982). Genres: Drama. Tags: dark. film director: Steven Spielberg"
    # no year, blank description: those parts go; no genres attribute: the has_genre edges give it
    assert items[2] == "Gamma. Genres: Comedy"
    # i4 has no title: the relation lists only a readable name, "2353" is not one; its tag remains
    assert items[3] == "Tags: slow"
    assert items[4] == ""  # nothing known
    assert all("None" not in t and "nan" not in t for t in items)
    two = node_texts(graph, NodeTextTemplates(item_tags=2, item="{title}[. Tags: {tags}]"))["item"]
    assert two[0] == "Jaws. Tags: Funny, slow"  # top-2 by tagged_with weight (3, 2)


def test_entity_text_lists_relations_both_ways_and_caps(graph) -> None:
    ents = node_texts(graph)["entity"]
    assert ents[0] == "Drama (genre)"  # has_genre is a field of items, not listed
    assert ents[2] == "Steven Spielberg (person). film director of: Jaws, E.T.; born in: USA"
    assert ents[4] == "USA (place). born in of: Steven Spielberg"
    assert ents[3] == "(kg)"  # a bare KG id is no name, and its one item has no title
    capped = node_texts(graph, NodeTextTemplates(relation_neighbours=1, relation_types=1))["entity"]
    assert capped[2] == "Steven Spielberg (person). film director of: Jaws"
    raw = node_texts(graph, NodeTextTemplates(readable_names_only=False))["entity"]
    assert raw[3] == "2353 (kg)"


def test_tag_text_and_fields(graph) -> None:
    assert node_texts(graph)["tag"] == ["Funny", "dark", "slow"]
    t = NodeTextTemplates(tag="{text} ({count})[: {items}]")
    assert node_texts(graph, t)["tag"] == ["Funny (3): Jaws", "dark (2): Jaws, E.T.", "slow (3): Jaws"]


def test_user_profile_from_interaction_weights(graph) -> None:
    users = node_texts(graph)["user"]
    # u1: Jaws 5 (Drama, Comedy; funny, dark, slow), E.T. 4 (Drama; dark), Gamma 1 (Comedy)
    # -> genres Drama 9, Comedy 6; tags dark 9, then funny 5 and slow 5 tied: slow has more edges
    assert users[0] == (
        "Likes: Drama, Comedy. Tags: dark, slow, Funny. Also likes: Steven Spielberg. Watched: Jaws, E.T., Gamma."
    )
    # u2: one untitled item; their own tag first
    assert users[1] == "Tags: dark, slow."
    # u3: E.T. 5 before Jaws 2
    assert users[2].endswith("Watched: E.T., Jaws.")
    liked = node_texts(graph, NodeTextTemplates(profile_min_weight=3.0, user="{titles}"))["user"]
    assert liked == ["Jaws, E.T.", "", "E.T."]


def test_template_syntax_literal_brackets_and_errors(graph) -> None:
    t = NodeTextTemplates(tag="[[{text}]]")
    assert node_texts(graph, t)["tag"][0] == "[Funny]"
    with pytest.raises(ConfigError, match="unknown field.*valid"):
        NodeTextTemplates(item="{title} {director}")
    with pytest.raises(ConfigError, match="nested"):
        NodeTextTemplates(item="[{title}[ {year}]]x")
    with pytest.raises(ConfigError, match="never closed"):
        NodeTextTemplates(item="{title}[ ({year})")
    with pytest.raises(ConfigError, match="without"):
        NodeTextTemplates(item="{title}] x")
    with pytest.raises(ConfigError, match="format spec"):
        NodeTextTemplates(item="{year:>6}")
    with pytest.raises(ConfigError, match="named"):
        NodeTextTemplates(tag="{}")
    with pytest.raises(ConfigError, match="non-negative"):
        NodeTextTemplates(item_tags=-1)
    with pytest.raises(ConfigError, match="unknown node-text setting.*valid"):
        NodeTextTemplates.from_dict({"item_tag": 3})
    with pytest.raises(ConfigError, match="no template for node type"):
        node_texts(graph, node_types=["news"])
    with pytest.raises(SchemaError):
        node_texts(object())


def test_template_id_changes_with_every_setting() -> None:
    base = NodeTextTemplates()
    assert base.template_id() == NodeTextTemplates().template_id() == base.fingerprint()
    assert base.template_id().startswith("ntt-")
    variants = [
        NodeTextTemplates(item="{title}"),
        NodeTextTemplates(user="{titles}"),
        NodeTextTemplates(item_tags=4),
        NodeTextTemplates(profile_titles=6),
        NodeTextTemplates(profile_min_weight=3.5),
        NodeTextTemplates(skip_relations=("has_genre",)),
        NodeTextTemplates(readable_names_only=False),
        NodeTextTemplates(separator="; "),
    ]
    ids = {v.template_id() for v in variants}
    assert len(ids) == len(variants) and base.template_id() not in ids
    back = NodeTextTemplates.from_dict(json.loads(json.dumps(base.to_dict())))
    assert back == base and back.template_id() == base.template_id()


def test_node_texts_never_changes_the_graph(graph) -> None:
    before = json.dumps(graph.node_attrs, sort_keys=True)
    edges = {k: (v.edge_index.copy(), v.edge_weight.copy()) for k, v in graph.edges.items()}
    texts = node_texts(graph, node_types=["item", "user"])
    assert set(texts) == {"item", "user"}
    assert json.dumps(graph.node_attrs, sort_keys=True) == before
    for k, (ei, w) in edges.items():
        np.testing.assert_array_equal(graph.edges[k].edge_index, ei)
        np.testing.assert_array_equal(graph.edges[k].edge_weight, w)
    assert count_empty(texts["item"]) == 1


def _titles_in_profiles(kg: KnowledgeGraph) -> dict[str, set[str]]:
    t = NodeTextTemplates(user="{titles}", profile_titles=10_000, separator=" ## ")
    texts = node_texts(kg, t, node_types=["user"])["user"]
    return {u: set(x.split(" ## ")) - {""} for u, x in zip(kg.node_ids["user"], texts, strict=True)}


@pytest.mark.parametrize("world", ["tiny", "synthetic"])
def test_user_profiles_never_see_held_out_items(world, tiny_tables) -> None:
    tables = tiny_tables if world == "tiny" else make_synthetic_world(num_users=30, num_items=60, seed=3)
    split = split_random(tables, ratios=(0.5, 0.25, 0.25), seed=0)
    train = split.train_tables(tables)
    kg = build_graph(train, standard_builders(train))
    title = dict(zip(tables.items["item_id"], tables.items["title"], strict=True))
    trained = train.interactions.groupby("user_id")["item_id"].agg(lambda s: {title[i] for i in s})
    held = [
        (u, title[i])
        for part in (split.valid, split.test)
        for u, i in zip(part["user_id"], part["item_id"], strict=True)
    ]
    held = [(u, t) for u, t in held if t not in trained.get(u, set())]  # a title shared with a training item
    assert len(held) >= 3
    profiles = _titles_in_profiles(kg)
    for user, t in held:
        assert t not in profiles[user], f"held-out item {t!r} leaked into the profile of {user}"
    for user, titles in trained.items():
        assert profiles[user] == titles  # every training item is listed (so the check above can fail)
    # the same profiles built from ALL interactions do list the held-out titles
    full = build_graph(tables, standard_builders(tables))
    leaky = _titles_in_profiles(full)
    assert all(t in leaky[u] for u, t in held)


def test_fields_table_matches_templates() -> None:
    t = NodeTextTemplates()
    for node_type, names in FIELDS.items():
        assert t.fields_used(node_type) <= set(names)


def test_numeric_item_titles_are_listed_but_bare_entity_ids_are_not() -> None:
    """``readable_names_only`` dropped "300" and "1917" (real titles) from profiles and relations."""
    kg = KnowledgeGraph(
        {"user": ["u1"], "item": ["i1", "i2"], "entity": ["person:snyder", "kg:2353"]},
        {
            ("user", "interacted", "item"): _store([(0, 0), (0, 1)], [5.0, 4.0]),
            ("item", "film_film_director", "entity"): _store([(0, 0), (1, 1)]),
        },
        node_attrs={
            "item": {"title": ["300", "Alpha"]},
            "entity": {"name": ["Zack Snyder", "2353"], "entity_type": ["person", "kg"]},
        },
    )
    texts = node_texts(kg)
    assert texts["user"] == ["Also likes: Zack Snyder. Watched: 300, Alpha."]
    assert texts["entity"] == ["Zack Snyder (person). film director of: 300", "(kg). film director of: Alpha"]
    assert texts["item"] == ["300. film director: Zack Snyder", "Alpha"]  # the bare id is still no name


def test_user_profiles_when_no_tag_can_be_listed() -> None:
    """Tag edge types without edges (every tag under min_count), or only unreadable tags, raised
    a raw IndexError from the user-tag ranking."""
    tables = make_synthetic_world(num_users=10, num_items=20, seed=1)
    kg = build_graph(tables, standard_builders(tables, min_tag_count=10**6))
    assert kg.num_nodes("tag") == 0 and kg.num_edges(("user", "uses_tag", "tag")) == 0
    users = node_texts(kg, NodeTextTemplates(user="[Tags: {tags}. ]Watched: {titles}."))["user"]
    assert len(users) == 10 and all(u.startswith("Watched: ") for u in users)

    kg = KnowledgeGraph(
        {"user": ["u1"], "item": ["i1"], "tag": ["2001"]},
        {
            ("user", "interacted", "item"): _store([(0, 0)]),
            ("item", "tagged_with", "tag"): _store([(0, 0)]),
            ("user", "uses_tag", "tag"): _store([(0, 0)]),
        },
        node_attrs={"item": {"title": ["Alpha"]}, "tag": {"text": ["2001"]}},
    )
    assert node_texts(kg)["user"] == ["Watched: Alpha."]
    assert node_texts(kg, NodeTextTemplates(readable_names_only=False))["user"] == ["Tags: 2001. Watched: Alpha."]
