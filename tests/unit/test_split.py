from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kg_builders.builders.interactions import InteractionBuilder
from kg_builders.builders.tags import TagBuilder
from kg_builders.errors import ConfigError, DataError, SchemaError
from kg_builders.graph import build_graph
from kg_builders.split import (
    Split,
    make_split,
    split_cold_item,
    split_leave_one_out,
    split_official,
    split_random,
    split_temporal,
)


def _many(n_users: int = 50, per_user: int = 20, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(200, size=per_user, replace=False)
        for i in items:
            rows.append((f"u{u}", f"i{i}", float(rng.integers(1, 6)), int(rng.integers(0, 10**6))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def _pairs(df: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(df["user_id"], df["item_id"], strict=True))


def test_random_split_is_a_partition_with_per_user_ratios() -> None:
    df = _many()
    s = split_random(df, ratios=(0.8, 0.1, 0.1), seed=3)
    assert sum(s.counts().values()) == len(df)
    assert not (_pairs(s.train) & _pairs(s.test)) and not (_pairs(s.train) & _pairs(s.valid))
    per_user = s.test.groupby("user_id").size()
    assert (per_user == 2).all()  # round(20 * 0.1)
    assert (s.valid.groupby("user_id").size() == 2).all()


def test_random_split_is_deterministic_under_seed() -> None:
    df = _many()
    a, b, c = split_random(df, seed=7), split_random(df, seed=7), split_random(df, seed=8)
    pd.testing.assert_frame_equal(a.test, b.test)
    assert _pairs(a.test) != _pairs(c.test)


def test_small_users_keep_a_training_interaction() -> None:
    df = pd.DataFrame({"user_id": ["a", "b", "b"], "item_id": ["x", "x", "y"]})
    s = split_random(df, ratios=(0.5, 0.25, 0.25), seed=0)
    assert set(s.train["user_id"]) == {"a", "b"}


def test_temporal_split_tests_on_the_newest() -> None:
    df = _many()
    s = split_temporal(df, ratios=(0.8, 0.1, 0.1))
    merged = pd.concat([s.train.assign(p=0), s.valid.assign(p=1), s.test.assign(p=2)])
    for _, g in merged.groupby("user_id"):
        assert g.loc[g.p == 0, "timestamp"].max() <= g.loc[g.p == 1, "timestamp"].min()
        assert g.loc[g.p == 1, "timestamp"].max() <= g.loc[g.p == 2, "timestamp"].min()
    glob = split_temporal(df, ratios=(0.8, 0.1, 0.1), per_user=False)
    assert glob.train["timestamp"].max() <= glob.test["timestamp"].min()


def test_leave_one_out_holds_out_the_last(tiny_tables) -> None:
    s = split_leave_one_out(tiny_tables)
    test = dict(zip(s.test["user_id"], s.test["item_id"], strict=True))
    assert test == {"u1": "i3", "u2": "i4", "u3": "i1"}  # latest by timestamp
    valid = dict(zip(s.valid["user_id"], s.valid["item_id"], strict=True))
    assert valid == {"u1": "i2", "u3": "i4"}  # u2 has only 2 interactions: no validation row


def test_cold_item_split_never_trains_on_held_out_items() -> None:
    df = _many()
    s = split_cold_item(df, ratios=(0.8, 0.1, 0.1), seed=0)
    cold = set(s.cold_items)
    assert cold and not (cold & set(s.train["item_id"]))
    assert set(s.test["item_id"]) | set(s.valid["item_id"]) == cold
    assert sum(s.counts().values()) == len(df)


def test_official_split_is_kept() -> None:
    df = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"], "split": ["train", "test", "train"]})
    s = split_official(df)
    assert s.counts() == {"train": 2, "valid": 0, "test": 1}
    with pytest.raises(SchemaError, match="no official split"):
        split_official(df.drop(columns="split"))


@pytest.mark.parametrize("label", ["validation", None])
def test_official_split_refuses_unknown_labels(label) -> None:
    """An unknown or missing label must not fall into train (NaN cast to int8 is 0)."""
    df = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "split": ["train", label, "test"]})
    with pytest.raises(DataError, match=r"1 row\(s\) have a split label outside .*row index 1") as err:
        split_official(df)
    assert err.value.field == "split"


def _saved_split(tmp_path):
    df = pd.DataFrame(
        {
            "user_id": ["NA", "null", "", "nan", "NA", "None"],
            "item_id": ["None", "i1", "nan", "", "null", "NA"],
            "rating": [1.0, np.nan, 3.0, 4.0, 5.0, 2.5],
            "timestamp": [1, 2, 3, 4, 5, 6],
        }
    )
    s = split_random(df, ratios=(0.5, 0.5), seed=0)
    return s, s.save(tmp_path / "s")


def test_saved_split_round_trips_ids_and_dtypes_exactly(tmp_path) -> None:
    s, path = _saved_split(tmp_path)
    back = Split.load(path)
    assert len(s.train) and len(s.test) and not len(s.valid)
    for part in ("train", "valid", "test"):  # ids stay strings, not NaN; the empty part keeps float/int columns
        pd.testing.assert_frame_equal(getattr(back, part), getattr(s, part))
    assert (back.method, back.settings, back.cold_items) == (s.method, s.settings, s.cold_items)
    meta = json.loads((path / "split.json").read_text())
    del meta["dtypes"]  # a split saved before dtypes were recorded: ids still exact, dtypes inferred
    (path / "split.json").write_text(json.dumps(meta))
    pd.testing.assert_frame_equal(Split.load(path).train, s.train)


def test_ids_with_line_breaks_and_numpy_settings_save_and_read_back(tmp_path) -> None:
    df = pd.DataFrame({"user_id": ["a\rb", "a\rb", "c\r\nd", "c\r\nd"], "item_id": ["i1", "i\r2", "i1", "i\r2"]})
    s = split_random(df, ratios=(0.5, 0.5), seed=np.int64(3))
    back = Split.load(s.save(tmp_path / "s"))
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(back, part), getattr(s, part))
    assert back.settings["seed"] == 3 and type(back.settings["seed"]) is int


def test_a_cold_item_split_keeps_a_training_item_whatever_the_rounding() -> None:
    df = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["i1", "i2", "i1"]})
    s = split_cold_item(df, ratios=(0.1, 0.45, 0.45), seed=0)  # 2 items: rounding would hold out both
    assert len(s.train) and len(s.cold_items) == 1 and s.cold_items[0] not in set(s.train["item_id"])


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("split.json", "{", "not valid JSON"),
        ("split.json", "{}", "'method'"),
        ("split.json", "[]", "'method'"),
        ("split.json", '{"method": "random", "settings": []}', "'settings'"),
        ("test.csv", "", "unreadable"),
        ("train.csv", "a,b\n1,2\n", r"missing column\(s\) \['user_id', 'item_id'\]"),
        ("train.csv", "user_id,item_id,rating,timestamp\nu1,i1,1.0,1,extra\n", "more fields than the header"),
        ("train.csv", "user_id,item_id,rating,timestamp\nu1,i1,1.0,1\nu2,i2,2.0,5,6,7\n", "line 3"),
        ("train.csv", "user_id,item_id,rating,timestamp\nu1,i1,1.0,1\nu2,i2,", "dtypes saved"),
        ("train.csv", "user_id,item_id,rating\nu1,i1,1.0\n", "differ from those saved"),
    ],
)
def test_damaged_saved_split_is_a_data_error_naming_the_file(tmp_path, name, text, words) -> None:
    _, path = _saved_split(tmp_path)
    (path / name).write_text(text)
    with pytest.raises(DataError, match=words) as err:
        Split.load(path)
    assert err.value.file == str(path / name)


def test_bad_settings() -> None:
    df = _many(2, 5)
    with pytest.raises(ConfigError, match="sum to 1"):
        split_random(df, ratios=(0.5, 0.1, 0.1))
    for bad in (("a", 0.5), "0.8", (0.8, None, 0.1), (True, 0.0)):
        with pytest.raises(ConfigError, match="ratios must be numbers"):
            split_random(df, ratios=bad)
    with pytest.raises(ConfigError, match="unknown split"):
        make_split(df, "shuffle")
    with pytest.raises(SchemaError, match="timestamp"):
        split_temporal(df.drop(columns="timestamp"))


def test_no_held_out_interaction_becomes_an_edge(tiny_tables) -> None:
    """The honest-evaluation rule: split on tables, build from Split.train_tables only."""
    s = split_leave_one_out(tiny_tables)
    train_tables = s.train_tables(tiny_tables)
    kg = build_graph(train_tables, [InteractionBuilder(), TagBuilder()])
    e = kg.edges[("user", "interacted", "item")]
    users = np.array(kg.node_ids["user"])[e.edge_index[0]]
    items = np.array(kg.node_ids["item"])[e.edge_index[1]]
    edges = set(zip(users.tolist(), items.tolist(), strict=True))
    held = _pairs(s.test) | _pairs(s.valid)
    assert held and not (edges & held)
    assert edges == _pairs(s.train)
    # u1's test item is i3, which u1 tagged "funny ": that assignment must not reach the graph
    ut = kg.edges[("user", "uses_tag", "tag")]
    tag_pairs = {(kg.node_ids["user"][a], kg.node_ids["tag"][b]) for a, b in ut.edge_index.T}
    assert ("u1", "funny") in tag_pairs  # from (u1, i1), a training pair
    it = kg.edges[("item", "tagged_with", "tag")]
    item_tag = {
        (kg.node_ids["item"][a], kg.node_ids["tag"][b]): w
        for (a, b), w in zip(it.edge_index.T, it.edge_weight, strict=True)
    }
    assert ("i3", "funny") not in item_tag  # only u1 tagged i3 funny, and that pair is held out


def test_builder_refuses_unsplit_interactions() -> None:
    from kg_builders.tables import Tables

    df = pd.DataFrame({"user_id": ["a", "a"], "item_id": ["x", "y"], "split": ["train", "test"]})
    with pytest.raises(SchemaError, match="split first"):
        build_graph(Tables(interactions=df), [InteractionBuilder()])


# ------------------------------------------------------------------ repeated pairs, official overlaps
def _repeats() -> pd.DataFrame:
    """Every pair of _many() twice (a user who played a track twice), the copies apart in time."""
    df = _many(n_users=20, per_user=10)
    later = df.assign(timestamp=df["timestamp"] + 10_000)
    return pd.concat([df, later], ignore_index=True)


@pytest.mark.parametrize(
    "split",
    [
        lambda d: split_random(d, seed=3),
        lambda d: split_temporal(d),
        lambda d: split_temporal(d, per_user=False),
        lambda d: split_leave_one_out(d),
    ],
)
def test_repeats_of_a_pair_go_to_one_part(split):
    """Split row by row, one copy of a pair trained while the other was held out: a leak."""
    d = _repeats()
    sp = split(d)
    parts = [set(zip(p["user_id"], p["item_id"], strict=True)) for p in (sp.train, sp.valid, sp.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(len(p) for p in (sp.train, sp.valid, sp.test)) == len(d) and len(sp.test) > 0
    # and a table without repeats is split as before: the distinct pairs, alone, give the same parts
    alone = split(d.drop_duplicates(["user_id", "item_id"], keep="first").reset_index(drop=True))
    assert parts == [set(zip(p["user_id"], p["item_id"], strict=True)) for p in (alone.train, alone.valid, alone.test)]


def test_an_official_split_with_one_pair_in_two_parts_is_refused():
    d = pd.DataFrame({"user_id": ["u", "u", "u"], "item_id": ["a", "b", "a"], "split": ["train", "train", "test"]})
    with pytest.raises(
        DataError, match=r"2 row\(s\) put one \(user, item\) pair in two parts \(first: user 'u', item 'a'\)"
    ):
        split_official(d)


@pytest.mark.parametrize(
    ("n", "ratios", "counts"),
    [(5, (0.5, 0.5, 0.0), (2, 3, 0)), (3, (0.5, 0.5, 0.0), (1, 2, 0)), (1, (0.5, 0.0, 0.5), (1, 0, 0))],
)
def test_the_global_temporal_cut_rounds_like_the_per_user_one(n, ratios, counts):
    """Banker's rounding gave a test row with a test ratio of 0, a numpy error, or no training row."""
    d = pd.DataFrame({"user_id": [f"u{k}" for k in range(n)], "item_id": ["i"] * n, "timestamp": range(n)})
    sp = split_temporal(d, ratios=ratios, per_user=False)
    assert (len(sp.train), len(sp.valid), len(sp.test)) == counts
    held = pd.concat([sp.valid, sp.test])["timestamp"]
    assert held.empty or sp.train["timestamp"].max() < held.min()
