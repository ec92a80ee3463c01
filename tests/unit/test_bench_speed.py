"""The pure pieces of the speed benchmark (benchmarks/speed.py): crossings, the ranking floor, markdown.

No data set and no training: the measurements themselves live in the benchmark's recorded results.
"""

from __future__ import annotations

import copy

import pytest
import torch

from graph_rec.data import UserItems
from graph_rec.errors import ConfigError, GraphRecError
from tests.benchmark_scripts import load_benchmark

speed = load_benchmark("speed")


def _history(values: list[float | None]) -> list[dict]:
    out = []
    for epoch, v in enumerate(values, start=1):
        entry = {"epoch": epoch, "seconds": 10.0 * epoch, "train_seconds": 8.0 * epoch}
        if v is not None:
            entry["valid_recall@20"] = v
        out.append(entry)
    return out


# ------------------------------------------------------------------------------ time to target
def test_first_crossing_is_the_first_validation_at_or_above_the_target():
    hit = speed.first_crossing(_history([0.10, 0.15, 0.21, 0.19, 0.25]), 0.2)
    assert hit["epoch"] == 3
    assert hit["seconds"] == 30.0 and hit["train_seconds"] == 24.0


def test_first_crossing_never_reached_is_none():
    assert speed.first_crossing(_history([0.10, 0.15, 0.19]), 0.2) is None
    assert speed.first_crossing([], 0.2) is None


def test_first_crossing_counts_a_value_equal_to_the_target():
    assert speed.first_crossing(_history([0.1, 0.2, 0.3]), 0.2)["epoch"] == 2


def test_first_crossing_passes_over_epochs_that_were_not_validated():
    assert speed.first_crossing(_history([None, 0.3, None, 0.4]), 0.25)["epoch"] == 2


def test_ratio_is_reference_over_ours_and_none_when_either_is_missing():
    assert speed.ratio(50.0, 10.0) == pytest.approx(5.0)
    assert speed.ratio(None, 10.0) is None
    assert speed.ratio(50.0, None) is None
    assert speed.ratio(50.0, 0.0) is None


def test_with_train_seconds_subtracts_the_validation_passes_so_far():
    history = [
        {"epoch": 1, "loss": 0.9, "seconds": 1.0},
        {"epoch": 2, "loss": 0.8, "seconds": 2.5, "valid": {"recall@20": 0.1, "ndcg@20": 0.05}},
        {"epoch": 3, "loss": 0.7, "seconds": 3.5},
        {"epoch": 4, "loss": 0.6, "seconds": 5.0, "valid": {"recall@20": 0.2, "ndcg@20": 0.1}},
    ]
    out = speed.with_train_seconds(history, [0.5, 0.25])
    assert [h["epoch"] for h in out] == [2, 4]
    assert [h["train_seconds"] for h in out] == [pytest.approx(2.0), pytest.approx(4.25)]
    assert [h["validation_seconds"] for h in out] == [0.5, 0.25]
    assert out[1]["valid_recall@20"] == 0.2 and out[1]["valid_ndcg@20"] == 0.1
    assert speed.first_crossing(out, 0.15)["train_seconds"] == pytest.approx(4.25)
    with pytest.raises(GraphRecError, match="2 validated epochs but 1"):
        speed.with_train_seconds(history, [0.5])


# ------------------------------------------------------------------------------ the floor
def test_floor_topk_matches_a_naive_full_ranking():
    gen = torch.Generator().manual_seed(0)
    user_repr = torch.randn(50, 8, generator=gen)
    item_repr = torch.randn(37, 8, generator=gen)
    users = torch.randperm(50, generator=gen)[:30]
    scores, items = speed.floor_topk(user_repr, item_repr.t().contiguous(), users, k=5, batch_size=7)
    naive = user_repr[users] @ item_repr.t()
    expected = naive.argsort(dim=1, descending=True)[:, :5]
    assert items.shape == (30, 5)
    assert torch.equal(items, expected)
    assert torch.allclose(scores, naive.gather(1, expected))


def test_floor_topk_with_masks_never_returns_a_masked_item():
    gen = torch.Generator().manual_seed(1)
    user_repr = torch.randn(20, 4, generator=gen)
    item_repr = torch.randn(15, 4, generator=gen)
    pairs_u = torch.randint(0, 20, (60,), generator=gen)
    pairs_i = torch.randint(0, 15, (60,), generator=gen)
    train = UserItems.from_pairs(pairs_u[:40], pairs_i[:40], 20, 15)
    valid = UserItems.from_pairs(pairs_u[40:], pairs_i[40:], 20, 15)
    users = torch.arange(20)
    _, items = speed.floor_topk(user_repr, item_repr.t().contiguous(), users, k=4, batch_size=6, masks=(train, valid))
    naive = user_repr @ item_repr.t()
    naive[train.dense_rows(users).bool() | valid.dense_rows(users).bool()] = float("-inf")
    assert torch.equal(items, naive.topk(4, dim=1).indices)
    rows = users[:, None].expand_as(items)
    assert not (train.contains(rows, items) | valid.contains(rows, items)).any()
    _, bare = speed.floor_topk(user_repr, item_repr.t().contiguous(), users, k=4, batch_size=6)
    assert not torch.equal(bare, items)  # the masks did change some lists


# ------------------------------------------------------------------------------ markdown
def _run(epoch_hit, seconds, train_seconds, best, **extra):
    reached = None if epoch_hit is None else {"epoch": epoch_hit, "seconds": seconds, "train_seconds": train_seconds}
    return {
        "settings": {},
        "train": {},
        "stopped": "early_stopping",
        "epochs": 40,
        "best_epoch": 20,
        "best_valid": {"recall@20": best},
        "seconds": 100.0,
        "train_seconds": 80.0,
        "validation_seconds": 20.0,
        "peak_rss_growth_mb": 123.4,
        "reached": reached,
        "history": [],
        **extra,
    }


PAYLOAD = {
    "meta": {
        "date": "2026-11-24T10:00:00+00:00",
        "machine": {"cpus": 2, "platform": "Linux-x86_64", "python": "3.11.7", "processor": "x86_64"},
        "versions": {"torch": "2.13.0+cpu"},
        "torch_threads": 2,
    },
    "load_average_start": [0.5, 0.4, 0.3],
    "load_average_end": [1.9, 1.2, 0.8],
    "data": {"dataset": "ml-latest-small", "users": 610, "items": 9742, "train": 80000, "valid": 10000, "test": 10000},
    "time": {
        "target": 0.2,
        "target_source": "best validation Recall@20 of PyG's LightGCN within its budget",
        "pyg_budget_s": 300.0,
        "patience": 15,
        "validation_time": "timed",
        "meta": {"date": "2026-11-24T10:00:00+00:00", "torch_threads": 2},
        "load_average": [[0.5, 0.4, 0.3], [1.5, 1.0, 0.6]],
        "runs": {
            "pyg_lightgcn": _run(100, 250.0, 200.0, 0.2),
            "lightgcn": _run(10, 25.0, 20.0, 0.22),
            "graphrec": _run(None, None, None, 0.18),
        },
        "ratios": {
            "lightgcn": {"wall": 10.0, "train_only": 10.0, "goal": 5.0, "met": True, "met_train_only": True},
            "graphrec": {"wall": None, "train_only": None, "goal": 5.0, "met": False, "met_train_only": False},
        },
    },
    "eval": {
        "users": 600,
        "items": 9742,
        "embedding_dim": 128,
        "batch_size": 1024,
        "k": 20,
        "repeats": 3,
        "representations_seconds": 0.05,
        "seconds": {"evaluate": [0.18, 0.2, 0.19], "floor": [0.1, 0.1, 0.11], "floor_masked": [0.16, 0.15, 0.15]},
        "median_seconds": {"evaluate": 0.19, "floor": 0.1, "floor_masked": 0.15},
        "peak_rss_growth_mb": {"evaluate": 50.0, "floor": 40.0, "floor_masked": 41.0},
        "test_recall@20": 0.26,
        "floor_masked_recall@20": 0.26,
        "ratio": 1.9,
        "ratio_to_masked_floor": 1.267,
        "goal": 1.5,
        "met": False,
        "meta": {"date": "2026-11-24T10:00:00+00:00", "torch_threads": 2},
        "load_average": [[1.5, 1.0, 0.6], [1.6, 1.0, 0.6]],
    },
    "recommend": {
        "users": 610,
        "items": 9742,
        "k": 20,
        "exclude_seen": True,
        "warmup": 20,
        "build_seconds": 0.3,
        "latency": {"p50_ms": 0.55, "p99_ms": 1.03, "mean_ms": 0.6, "n": 500},
        "batch": {"recommend_batch": {"users": 610, "chunk": 1024, "seconds": [0.1, 0.1, 0.1], "users_per_s": 6100.0}},
        "peak_rss_growth_mb": {"build": 1.0, "recommend": 0.0, "recommend_batch": 45.0},
        "meta": {"date": "2026-11-24T10:00:00+00:00", "torch_threads": 2},
        "load_average": [[1.6, 1.0, 0.6], [1.7, 1.0, 0.6]],
    },
    "peak_rss_mb": 2048.0,
}


def test_markdown_has_a_title_the_protocol_and_one_table_per_measurement():
    md = speed.to_markdown(PAYLOAD)
    lines = md.splitlines()
    assert lines[0].startswith("# ")
    assert "ml-latest-small, protocol A" in md and "2 CPUs" in md and "0.50 at the start, 1.90 at the end" in md
    assert sum(x.startswith("|---") for x in lines) == 3  # time, eval, recommend
    row = next(x for x in lines if x.startswith("| lightgcn |"))
    assert "10.00× (met)" in row and "≥ 5×" in row and "| 10 |" in row
    row = next(x for x in lines if x.startswith("| graphrec |"))
    assert "| never |" in row and "not met" in row
    assert "**graphrec: not met.** It never reached the target" in md and "0.1800 at epoch 20" in md
    assert "lightgcn: met. It needed 10 epochs against PyG's 100 (10.00× fewer)" in md
    assert "**lightgcn" not in md  # only a missed target is in bold
    row = next(x for x in lines if x.startswith("| evaluate"))
    assert "1.90×" in row and "≤ 1.5× (not met)" in row
    assert "masking takes 0.0500 s (56%)" in md
    assert "**Not met (1.90× > 1.5×):** what limits it is masking the known positives" in md
    assert "p50 0.550 ms, p99 1.030 ms" in md and "6,100.0 users/s" in md


def test_markdown_explains_a_slow_crossing_and_renders_missing_parts():
    payload = copy.deepcopy(PAYLOAD)
    payload["time"]["runs"]["graphrec"] = _run(50, 100.0, 80.0, 0.25)
    payload["time"]["ratios"]["graphrec"] = {
        "wall": 2.5,
        "train_only": 2.5,
        "goal": 5.0,
        "met": False,
        "met_train_only": False,
    }
    del payload["eval"], payload["recommend"]
    md = speed.to_markdown(payload)
    assert "**graphrec: not met (2.50× < 5×).** It needed 50 epochs against PyG's 100 (2.00× fewer)" in md
    assert "1.25× as fast as PyG's" in md and "validation was 20% of its wall time" in md
    assert sum(x.startswith("|---") for x in md.splitlines()) == 1


# ------------------------------------------------------------------------------ run()
def test_run_rejects_unknown_parts_and_settings():
    with pytest.raises(ConfigError, match="unknown part"):
        speed.run(["speed"], write=False)
    with pytest.raises(ConfigError, match="target"):
        speed.run(["time"], target=1.5, write=False)
    assert speed._parts("all") == ["time", "eval", "recommend"]
    assert speed._parts(["recommend", "time"]) == ["time", "recommend"]


def test_run_and_main_skip_without_the_data_set(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(speed, "SHARED", tmp_path)
    result = speed.run(["all"], write=False)
    assert result["skipped"].startswith("skip ml-latest-small:") and str(tmp_path) in result["skipped"]
    assert speed.main(["--part", "time"]) == 0
    assert "is absent" in capsys.readouterr().err


def test_time_chart_is_written_only_with_a_time_part(tmp_path):
    out = tmp_path / "t.png"
    assert speed.plot_time({"eval": {}}, out) is False and not out.exists()
    hist = [{"seconds": 1.0 + i, "valid_recall@20": 0.1 + 0.02 * i} for i in range(5)]
    payload = {
        "time": {
            "target": 0.15,
            "runs": {
                "pyg_lightgcn": {"history": hist, "reached": {"seconds": 4.0}},
                "graphrec": {"history": hist[:2], "reached": None},
            },
        }
    }
    assert speed.plot_time(payload, out) is True
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
