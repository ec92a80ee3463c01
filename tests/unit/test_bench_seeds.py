"""The split-seed study's bookkeeping (benchmarks/seeds.py): which baseline each seed compares with,
how users are paired and pooled, and how the table reads."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_benchmark

seeds = load_benchmark("seeds")

GRAPHREC, IDS = "graphrec", "graphrec - text features - knowledge graph"


def _run(valid: float, users: list[str], recall: list[float]) -> dict:
    mean = sum(recall) / len(recall)
    return {
        "valid": {"recall@20": valid},
        "test": {"recall@20": mean, "ndcg@20": mean / 2},
        "best_epoch": 10,
        "per_user": {"user_id": users, "recall@20": recall, "ndcg@20": [r / 2 for r in recall]},
    }


def test_each_seed_compares_with_the_baseline_validation_picks_not_test():
    users = ["u1", "u2", "u3", "u4"]
    runs = {
        1: {
            GRAPHREC: _run(0.30, users, [0.4, 0.4, 0.4, 0.4]),
            IDS: _run(0.29, users, [0.3, 0.3, 0.3, 0.3]),
            # ease is better on test, als on validation: als is the baseline
            "als": _run(0.31, users, [0.2, 0.2, 0.2, 0.2]),
            "ease": _run(0.28, users, [0.5, 0.5, 0.5, 0.5]),
        }
    }
    s = seeds.summarise(runs)
    row = s["seeds"]["1"]
    assert row["best_baseline"] == "als"
    c = row["comparisons"]["graphrec vs best baseline"]["recall@20"]
    assert c["baseline"] == "als" and c["relative"] == pytest.approx(1.0)  # 0.4 against 0.2
    k = row["comparisons"][f"graphrec vs {IDS}"]["recall@20"]
    assert k["relative"] == pytest.approx(0.4 / 0.3 - 1)
    assert row["models"]["ease"]["test_recall@20"] == pytest.approx(0.5)


def test_users_are_paired_by_id_and_pooled_with_their_seeds():
    # the baseline lists its users in another order; graphrec is better by 0.1 for every user
    runs = {
        seed: {
            GRAPHREC: _run(0.3, ["a", "b", "c"], [0.3, 0.5, 0.7]),
            "als": _run(0.2, ["c", "a", "b"], [0.6, 0.2, 0.4]),
        }
        for seed in (1, 2)
    }
    s = seeds.summarise(runs)
    for seed in ("1", "2"):
        c = s["seeds"][seed]["comparisons"]["graphrec vs best baseline"]["recall@20"]
        assert c["difference"] == pytest.approx(0.1) and c["difference_ci"] == pytest.approx([0.1, 0.1])
    pooled = s["pooled"]["graphrec vs best baseline recall@20"]
    assert pooled["rows"] == 6 and pooled["clusters"] == 3  # three users, each with two seeds
    assert pooled["difference"] == pytest.approx(0.1)


def test_runs_on_one_split_with_different_users_are_refused():
    runs = {1: {GRAPHREC: _run(0.3, ["a", "b"], [0.1, 0.2]), "als": _run(0.2, ["a", "c"], [0.1, 0.2])}}
    with pytest.raises(SystemExit, match="different users"):
        seeds.summarise(runs)


def test_the_table_shows_every_seed_and_the_pooled_comparison():
    users = ["a", "b", "c"]
    runs = {
        seed: {
            GRAPHREC: _run(0.3, users, [0.3, 0.5, 0.7]),
            IDS: _run(0.3, users, [0.3, 0.5, 0.7]),
            "als": _run(0.2, users, [0.2, 0.4, 0.6]),
            "ease": _run(0.1, users, [0.2, 0.4, 0.6]),
        }
        for seed in (2026, 1)
    }
    meta = {"date": "2026-12-06T20:00:00+00:00", "machine": {"cpus": 2}, "git_commit": "abcdef0123"}
    earlier = {**meta, "date": "2026-12-05T20:00:00+00:00", "git_commit": "1234567890"}
    entry = {"meta": meta, "runs_meta": [meta, earlier, meta], "summary": seeds.summarise(runs)}
    md = seeds.to_markdown({"datasets": {"ml-latest-small": entry}})
    # the runs' own dates and commits, not the summary's
    assert "split seeds 2026, 1" in md and "trained 2026-12-05 and 2026-12-06" in md
    assert "commits 1234567, abcdef0" in md
    # graphrec is 0.1 above als for every user: +25% of the mean; ids only is level with graphrec
    assert "| 2026 | 0.5000 | 0.5000 | 0.4000 | 0.4000 | als | +25.0% [+" in md
    assert md.count("| +0.0% [+0.0, +0.0] |\n") == 2  # the ids-only column of both seeds
    assert "Pooled over the 2 splits" in md
    assert "| graphrec vs best baseline | recall@20 | 0.5000 | 0.4000 | +25.0% [+" in md
    assert "| graphrec vs ids only | ndcg@20 | 0.2500 | 0.2500 | +0.0% [+0.0, +0.0] | 1.000 | 3 |" in md


def test_an_unknown_label_or_a_missing_protocol_row_stops_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(seeds, "RESULTS", tmp_path)
    (tmp_path / "protocols.json").write_text('{"datasets": {"ml-latest-small": {"runs": {}}}}')
    with pytest.raises(SystemExit, match="has no row 'als' for ml-latest-small: run benchmarks/protocols.py first"):
        seeds.chosen_settings("ml-latest-small", "als")


def test_a_cached_result_is_reused_only_for_the_same_split_and_code(tmp_path, monkeypatch):
    from graph_rec.runs import build_pipeline
    from kg_builders.sources.synthetic import make_synthetic_world

    spec = {"model": "ease", "settings": {"l2": 10.0}, "train": {}, "view": {}}
    monkeypatch.setattr(seeds, "chosen_settings", lambda dataset, label: dict(spec))
    tables = make_synthetic_world(num_users=30, num_items=40, interactions_per_user=8, seed=1, with_images=False)

    def world(seed):
        return build_pipeline(
            tables,
            split="random",
            split_settings={"ratios": (0.8, 0.1, 0.1), "seed": seed},
            builder_options={},
            entities="none",
            progress=False,
        )

    calls = []
    run_one = seeds.protocols.run_one
    monkeypatch.setattr(seeds.protocols, "run_one", lambda *a, **k: calls.append(1) or run_one(*a, **k))
    kg, sp = world(2026)
    first = seeds.run_cached("d", 2026, "ease", kg, sp, tmp_path)
    assert seeds.run_cached("d", 2026, "ease", kg, sp, tmp_path) == first and len(calls) == 1
    # the same cache file, another split under it (the study's split changed): trained again
    kg2, sp2 = world(7)
    again = seeds.run_cached("d", 2026, "ease", kg2, sp2, tmp_path)
    assert len(calls) == 2 and again["spec"]["data_sha256"] != first["spec"]["data_sha256"]
    # and another commit's result is not reused either
    monkeypatch.setattr(seeds, "run_metadata", lambda: {**first["meta"], "git_commit": "another"})
    seeds.run_cached("d", 2026, "ease", kg2, sp2, tmp_path)
    assert len(calls) == 3
