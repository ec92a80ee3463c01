"""The benchmark suite's bookkeeping (benchmarks/suite.py, benchmarks/quality.py): tables and targets.

The measurements themselves are benchmarks, not tests; what is tested here is that the suite reads
each part's results back into the right rows, compares with the right baseline and flags a missed
target as missed.
"""

from __future__ import annotations

import json

import pytest

from tests.benchmark_scripts import load_benchmark

quality = load_benchmark("quality")
suite = load_benchmark("suite")

META = {"date": "2026-12-03T08:00:00+00:00", "git_commit": "0123456789abcdef", "machine": {"cpus": 2}}


def _metrics(r20: float) -> dict[str, float]:
    return {
        "recall@20": r20,
        "ndcg@20": r20 - 0.01,
        "recall@10": r20 - 0.05,
        "ndcg@10": r20 - 0.04,
        "mrr@10": 0.4,
        "hit@10": 0.7,
        "coverage@20": 0.1,
        "novelty@20": 2.5,
    }


def _run(valid: float, test: float) -> dict:
    return {"valid": {"recall@20": valid}, "test": _metrics(test), "seconds_to_best": 12.0}


def _entry(graphrec_test: float) -> dict:
    return {
        "meta": META,
        "load": [0.5, 0.4, 0.3],
        "protocols_meta": META,
        "protocols_reused": True,
        "protocol": {
            "num_items": 100,
            "runs": {
                "ease": _run(0.25, 0.26),
                "itemknn": _run(0.22, 0.30),  # better on test, worse on validation: not the reference
                "graphrec": _run(0.27, graphrec_test),
                "graphrec - tags": _run(0.26, 0.27),
            },
        },
        "peers": [
            {
                "model": "implicit_als",
                "result": {"best_valid": {"recall@20": 0.255}, "seconds_to_best": 3.0},
                "test": _metrics(0.265),
            }
        ],
    }


def test_quality_rows_kinds_and_reference_chosen_on_validation():
    rows = quality.table_rows(_entry(0.28))
    kinds = {r["key"]: r["kind"] for r in rows}
    assert kinds == {
        "ease": "baseline (ours)",
        "itemknn": "baseline (ours)",
        "graphrec": "graph-rec",
        "graphrec - tags": "ablation",
        "implicit_als": "peer",
    }
    best = quality.best_classical(rows)
    assert best["key"] == "implicit_als"  # highest validation among classical, peers included


@pytest.mark.parametrize(("graphrec_test", "met"), [(0.2783, True), (0.2782, False), (0.25, False)])
def test_quality_target_is_five_percent_over_best_classical(graphrec_test, met):
    # best classical by validation: implicit ALS, test 0.265; +5% is 0.27825
    targets = suite.targets_quality({"datasets": {"ml-latest-small": _entry(graphrec_test)}})
    assert len(targets) == 1
    assert targets[0]["met"] is met
    assert "implicit ALS" in targets[0]["what"]


def test_quality_markdown_has_every_model_and_protocol_b_for_lastfm():
    payload = {"datasets": {"ml-latest-small": _entry(0.25), "hetrec2011-lastfm-2k": _entry(0.30)}}
    md = quality.to_markdown(payload)
    for label in ("ease", "itemknn", "**graphrec**", "graphrec - tags", "implicit ALS"):
        assert f"| {label} |" in md
    assert md.count("Protocol B") == 1
    assert "LightGCN, RecBole-GNN (published)" in md
    assert "not met" in md and "RecBole" in md


def test_refreshing_graph_recs_rows_keeps_the_peers_and_says_they_were_read():
    payload = {"datasets": {"ml": _entry(0.28)}}
    payload["datasets"]["ml"]["protocols_reused"] = False
    newer = {
        "meta": {**META, "date": "2026-12-04T08:00:00+00:00"},
        "datasets": {"ml": {"runs": {"ease": _run(0.3, 0.31)}}},
    }
    out = quality.refresh_protocols(payload, newer, ["ml"])["datasets"]["ml"]
    assert out["protocol"]["runs"] == {"ease": _run(0.3, 0.31)}
    assert out["peers"][0]["model"] == "implicit_als"
    assert out["protocols_reused"] is True and out["protocols_meta"]["date"].startswith("2026-12-04")
    md = quality.to_markdown(payload)
    assert "read from benchmarks/protocols.py (file written 2026-12-04" in md
    assert "rows measured at earlier commits" in md  # no row carries its own date here
    out["protocol"]["runs"]["ease"]["measured"] = {"date": "2026-12-05T10:00:00+00:00", "git_commit": "abc"}
    out["protocol"]["runs"]["mf"] = _run(0.2, 0.21)
    assert "ease rerun from 2026-12-05 10:00 UTC, the other 1 row measured earlier" in quality.to_markdown(payload)
    with pytest.raises(SystemExit, match="protocols.json has no 'lastfm'"):
        quality.refresh_protocols({"datasets": {"lastfm": _entry(0.28)}}, newer, ["lastfm"])


def test_rerunning_one_peer_replaces_its_row_keeps_the_others_and_dates_each_run():
    entry = _entry(0.28)
    own = {**META, "date": "2026-12-04T09:30:00+00:00", "git_commit": "aaaabbbbccccdddd"}
    entry["peers"].insert(
        0,
        {
            "model": "pyg_lightgcn",
            "result": {"best_valid": {"recall@20": 0.2}, "seconds_to_best": 9.0},
            "test": _metrics(0.21),
        },
    )
    entry["peers"].append(  # rerun alone earlier: keeps its own metadata
        {
            "model": "implicit_bpr",
            "result": {"best_valid": {"recall@20": 0.1}, "seconds_to_best": 1.0},
            "test": _metrics(0.11),
            "meta": own,
            "load": [2.5, 2.0, 2.0],
        }
    )
    later = {**META, "date": "2026-12-05T10:00:00+00:00", "git_commit": "fedcba9876543210"}
    als = {
        "model": "implicit_als",
        "result": {"best_valid": {"recall@20": 0.3}, "seconds_to_best": 4.0},
        "test": _metrics(0.29),
        "meta": later,
        "load": [1.5, 1.0, 1.0],
    }
    rows = quality.merge_peer_rows(entry, [als])
    # PEERS order, not rerun order
    assert [r["model"] for r in rows] == ["pyg_lightgcn", "implicit_als", "implicit_bpr"]
    assert rows[1] is als and rows[1]["test"]["recall@20"] == 0.29
    assert rows[0]["meta"] == META and rows[0]["load"] == [0.5, 0.4, 0.3]  # kept row dated by its entry
    assert rows[2]["meta"] == own and rows[2]["load"] == [2.5, 2.0, 2.0]  # kept row keeps its own date
    header = quality._peer_runs({**entry, "peers": rows})
    assert header.startswith("Peers run on 2 CPUs: ")
    assert "PyG LightGCN 2026-12-03 08:00 UTC, commit 01234567 (load 0.5)" in header
    assert "implicit BPR 2026-12-04 09:30 UTC, commit aaaabbbb (load 2.5)" in header
    assert "implicit ALS 2026-12-05 10:00 UTC, commit fedcba98 (load 1.5)" in header
    single = {**entry, "peers": [{k: v for k, v in r.items() if k not in ("meta", "load")} for r in entry["peers"]]}
    assert quality._peer_runs(single) == "Peers run 2026-12-03 08:00 UTC, commit 01234567 (load 0.5) on 2 CPUs"
    assert quality._names(["A", "B", "C"]) == "A, B and C"
    # the rerun ALS is now the best classical by validation
    assert quality.best_classical(quality.table_rows({**entry, "peers": rows}))["key"] == "implicit_als"
    with pytest.raises(SystemExit, match="unknown peers"):
        quality.run(["ml-latest-small"], reuse_protocols=True, peers=("implicit_alss",))


def test_scale_out_ratio_targets():
    rows = [
        {"case": "full, 1 process x 2 threads", "pairs_per_second": 1000.0},
        {"case": "full, 2 ranks x 1 thread", "pairs_per_second": 1500.0},
        {"case": "sampled, 1 process x 2 threads", "error": "exit 1"},
    ]
    t = suite.targets_scale_out({"ddp": {"rows": rows}})
    assert len(t) == 1 and t[0]["measured"].startswith("1.50x")


def test_summary_reads_each_parts_results(tmp_path):
    (tmp_path / "quality.json").write_text(json.dumps({"datasets": {"ml-latest-small": _entry(0.30)}}))
    (tmp_path / "neo4j_write.json").write_text(
        json.dumps(
            {
                "meta": META,
                "write_neo4j": {"relationships_per_s": 20000.0},
                "ratios": {"write_neo4j_vs_raw_merge": 0.8, "write_neo4j_vs_raw_create": 0.5},
            }
        )
    )
    targets, when = suite.read_targets("speed", tmp_path)
    assert targets == [] and when is None  # absent part: no row, no error
    md = suite.summary_markdown({}, tmp_path)
    assert "| quality | ml-latest-small" in md and "| yes |" in md
    assert "| neo4j |" in md and "0.80x" in md and "**no**" in md
    assert "2026-12-03 08:00 UTC" in md


def test_scaling_and_encoding_targets():
    rows = [{"interactions": 100_000}, {"interactions": 1_000_000}, {"interactions": 5_000_000, "error": "x"}]
    t = suite.targets_scaling({"rows": rows, "exponents": {"step_seconds_median": 1.234, "eval_seconds": None}})
    assert len(t) == 1
    assert t[0]["measured"] == "n^1.23" and "100,000, 1,000,000" in t[0]["what"] and "5,000,000" not in t[0]["what"]
    enc = {
        "peak_rss": [{"impl": "ours", "peak_rss_mb": 650.0}, {"impl": "st", "peak_rss_mb": 720.0}],
        "throughput": {
            "ratio_ours_over_st": 0.85,
            "target_ratio": 0.9,
            "texts_per_second": {"ours": 100.0, "sentence_transformers": 117.6},
        },
    }
    (e,) = suite.targets_encoding(enc)
    assert e["met"] is False and e["measured"].startswith("0.85x") and "650 vs 720 MB" in e["measured"]


def test_speed_targets_from_the_speed_payload():
    reached = {"epoch": 2, "seconds": 4.0, "train_seconds": 3.0}
    payload = {
        "time": {
            "target": 0.18,
            "runs": {
                "pyg_lightgcn": {"reached": {"epoch": 30, "seconds": 60.0, "train_seconds": 45.0}},
                "lightgcn": {"reached": reached, "best_valid": {"recall@20": 0.22}},
                "graphrec": {"reached": None, "best_valid": {"recall@20": 0.17}},
            },
            "ratios": {
                "lightgcn": {"wall": 15.0, "train_only": 15.0, "goal": 5.0, "met": True},
                "graphrec": {"wall": None, "train_only": None, "goal": 5.0, "met": False},
            },
        },
        "eval": {
            "users": 600,
            "items": 9742,
            "goal": 1.5,
            "ratio": 1.8,
            "met": False,
            "median_seconds": {"evaluate": 0.09, "floor": 0.05},
        },
        "recommend": {
            "k": 20,
            "items": 9742,
            "latency": {"p50_ms": 0.2, "p99_ms": 0.6},
            "batch": {"a": {"users_per_s": 1000.0}, "b": {"users_per_s": 1500.0}},
        },
    }
    t = suite.targets_speed(payload)
    assert [x["met"] for x in t] == [True, False, False, None]
    assert t[0]["measured"].startswith("15.0x (60.0 s vs 4.0 s")
    assert t[1]["measured"] == "not reached (best 0.1700)"
    assert t[2]["measured"].startswith("1.80x (90 ms vs 50 ms")
    assert "1,500 users/s" in t[3]["measured"]


def test_a_results_file_of_another_layout_is_reported_not_fatal(tmp_path):
    (tmp_path / "text_encoding.json").write_text(json.dumps({"meta": META, "throughput": {"ratio_ours_over_st": 1.2}}))
    (t,), when = suite.read_targets("encoding", tmp_path)
    assert "text_encoding.json could not be read (KeyError" in t["what"] and when == "2026-12-03 08:00 UTC"


def test_quality_chart_is_written(tmp_path):
    out = tmp_path / "quality.png"
    quality.plot({"datasets": {"ml-latest-small": _entry(0.28), "hetrec2011-lastfm-2k": _entry(0.30)}}, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp.png"))


def test_neo4j_benchmark_reads_the_servers_peak_memory(tmp_path):
    import os

    neo4j_write = load_benchmark("neo4j_write")
    assert neo4j_write.server_peak_mb(tmp_path) is None  # no pid recorded
    (tmp_path / "arcadedb.pid").write_text(f"{os.getpid()}\n")  # this process stands in for the server
    peak = neo4j_write.server_peak_mb(tmp_path)
    assert peak is not None and peak > 10
    (tmp_path / "arcadedb.pid").write_text("not a pid")
    assert neo4j_write.server_peak_mb(tmp_path) is None


def test_protocol_table_lists_baselines_first_then_graphrec_then_its_ablations():
    protocols = load_benchmark("protocols")
    runs = {"graphrec - tags": 1, "ease": 2, "graphrec": 3, "als": 4, "popularity": 5, "graphrec - kg": 6}
    assert [m for m, _ in protocols.ordered_runs(runs)] == [
        "popularity",
        "ease",
        "als",
        "graphrec",
        "graphrec - tags",
        "graphrec - kg",
    ]
    assert "als" in protocols.BASELINES and "als" in quality.CLASSICAL  # iALS can be the reference


def test_a_run_is_dirty_only_when_code_differs_from_its_commit():
    code_changed = load_benchmark("_meta").code_changed

    assert not code_changed("")
    assert not code_changed(" M benchmarks/results/quality.json\n?? benchmarks/results/new.md\n")
    assert code_changed(" M benchmarks/results/quality.json\n M benchmarks/peers.py\n")
    assert code_changed("?? notes.txt\n")
    assert code_changed("R  benchmarks/results/a.md -> docs/a.md\n")


def test_a_part_is_dated_by_its_newest_rows_protocol_rows_included():
    payload = {
        "datasets": {
            "d": {
                "meta": {"date": "2026-12-03T18:53:36+00:00"},
                "protocols_meta": {"date": "2026-12-07T13:55:17+00:00"},
            }
        }
    }
    assert suite._measured_at(payload) == "2026-12-07 13:55 UTC"
