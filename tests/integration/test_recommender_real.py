"""A saved ml-latest-small GraphRec answers every API question from a fresh process (real MiniLM features)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from graph_rec.recommender import Recommender
from graph_rec.runs import RunConfig, prepare
from tests.conftest import shared_data

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GRAPHREC = {"embedding_dim": 64, "num_layers": 2, "relation_mode": "none", "score": "cosine"}
TRAIN = {
    "epochs": 6,
    "eval_every": 3,
    "patience": 2,
    "loss": "softmax",
    "num_negatives": 512,
    "shared_negatives": True,
    "temperature": 0.1,
    "batch_size": 2048,
    "lr": 0.005,
    "seed": 2026,
}
TOY = "Toy Story 5 (2026). Genres: Adventure, Animation, Children, Comedy, Fantasy"
ANIMATION = ("genre:animation", "genre:children")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, cache_root) -> tuple[Path, Recommender]:
    ml = shared_data("ml-latest-small")
    movie_kg = shared_data("kg-samples") / "movie"
    config = RunConfig.from_dict(
        {
            "data": {
                "dataset": str(ml),
                "kg": str(movie_kg),
                "split": "random",
                "seed": 0,
            },  # the demo test's split: cached texts
            "features": {"encoder": "all-MiniLM-L6-v2", "local_files_only": True},
        }
    )
    kg, sp = prepare(config, cache_dir=cache_root)
    rec = Recommender.fit(kg, split=sp, settings=GRAPHREC, train=TRAIN)
    path = tmp_path_factory.mktemp("model") / "ml-graphrec"
    rec.save(path)
    return path, rec


def _genres(rec: Recommender, item_ids) -> list[set[str]]:
    kg = rec.graph
    pos = {i: k for k, i in enumerate(kg.node_ids["item"])}
    ents = kg.node_ids["entity"]
    ei = kg.edges[("item", "has_genre", "entity")].edge_index
    of: dict[int, set[str]] = {}
    for a, b in ei.T.tolist():
        of.setdefault(a, set()).add(ents[b])
    return [of.get(pos[i], set()) if i in pos else set() for i in item_ids]


FRESH = """
import json, sys
from graph_rec.recommender import Recommender
rec = Recommender.load(sys.argv[1])
user = sys.argv[2]
r = rec.recommend(user, k=10)
ex = rec.explain(user, r.item_ids[0], max_paths=3)
rec.add_item("toy-story-5", text=sys.argv[3], entities=["genre:animation", "genre:children"])
rec.add_user("newcomer", ["1", "2", "3"])
out = {
    "recommend": list(r.item_ids), "scores": list(r.scores),
    "score": rec.score(user, list(r.item_ids[:3])).scores,
    "explain": [p.to_dict() for p in ex.paths], "explain_score": ex.score,
    "similar_to_new": list(rec.similar_items("toy-story-5", k=10).item_ids),
    "newcomer": list(rec.recommend("newcomer", k=10).item_ids),
    "query": list(rec.recommend(user, k=10, query="animated films for children", query_weight=1.0).item_ids),
}
print(json.dumps(out))
"""


def test_a_fresh_process_gives_the_same_answers(saved) -> None:
    path, rec = saved
    user = rec.user_ids[0]
    p = subprocess.run(
        [sys.executable, "-c", FRESH, str(path), user, TOY], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    r = rec.recommend(user, k=10)
    assert got["recommend"] == list(r.item_ids)
    assert got["scores"] == pytest.approx(list(r.scores), rel=1e-5)
    assert got["score"] == pytest.approx(list(r.scores[:3]), rel=1e-5)
    ex = rec.explain(user, r.item_ids[0], max_paths=3)
    assert got["explain"] == [q.to_dict() for q in ex.paths]
    assert got["explain_score"] == pytest.approx(r.scores[0], rel=1e-4)
    # the new item sits among animated and children's films
    genres = _genres(rec, got["similar_to_new"])
    assert sum(bool(g & set(ANIMATION)) for g in genres) >= 6, genres
    # the new user's items are not recommended back
    assert not {"1", "2", "3"} & set(got["newcomer"]) and len(got["newcomer"]) == 10
    # a query with full weight ranks by the text alone: mostly animation / children
    genres = _genres(rec, got["query"])
    assert sum(bool(g & set(ANIMATION)) for g in genres) >= 6, genres


def test_cli_recommend_and_explain_on_the_saved_model(saved) -> None:
    path, rec = saved
    user = rec.user_ids[5]
    run = [sys.executable, "-m", "graph_rec.cli"]
    p = subprocess.run(
        [*run, "recommend", str(path), "--user", user, "--k", "5", "--json"], capture_output=True, text=True, cwd=ROOT
    )
    assert p.returncode == 0, p.stderr
    items = [x["item_id"] for x in json.loads(p.stdout)["recommendations"][0]["items"]]
    assert items == list(rec.recommend(user, k=5).item_ids)
    p = subprocess.run(
        [*run, "explain", str(path), "--user", user, "--item", items[0]], capture_output=True, text=True, cwd=ROOT
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0].startswith(f"user {user}, item {items[0]}")
    assert "-interacted->" in p.stdout
    p = subprocess.run(
        [*run, "recommend", str(path), "--user", "no-such-user"], capture_output=True, text=True, cwd=ROOT
    )
    assert p.returncode == 2 and "no-such-user" in p.stderr


def test_explanations_cover_the_top_ten(saved) -> None:
    _, rec = saved
    with_path = 0
    pairs = 0
    for user in rec.user_ids[:20]:
        for item in rec.recommend(user, k=10).item_ids:
            pairs += 1
            with_path += bool(rec.explain(user, item, max_paths=1, candidates=16).paths)
    assert with_path == pairs
