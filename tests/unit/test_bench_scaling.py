"""The scaling benchmark's pure parts (benchmarks/scaling.py): growth fit, size parsing, Markdown.

No world is built here; the measurement itself is the benchmark's job.
"""

from __future__ import annotations

import math

import pytest

from graph_rec.errors import ConfigError
from tests.benchmark_scripts import load_benchmark

scaling = load_benchmark("scaling")


# ------------------------------------------------------------------------------------ growth fit
@pytest.mark.parametrize("a", [0.0, 0.5, 1.0, 1.5, 2.0])
def test_growth_exponent_recovers_an_exact_power_law(a):
    xs = [1e5, 1e6, 5e6]
    ys = [3.0 * x**a for x in xs]
    assert scaling.growth_exponent(xs, ys) == pytest.approx(a, abs=1e-9)
    exp, coef = scaling.power_fit(xs, ys)
    assert (exp, coef) == (pytest.approx(a, abs=1e-9), pytest.approx(3.0, rel=1e-6))


def test_growth_exponent_is_the_least_squares_slope_with_noise():
    # log-log points (0, 0), (1, 1), (2, 3): least-squares slope 1.5
    xs = [1.0, math.e, math.e**2]
    ys = [1.0, math.e, math.e**3]
    assert scaling.growth_exponent(xs, ys) == pytest.approx(1.5)


def test_growth_exponent_with_two_points_is_the_ratio_of_logs():
    assert scaling.growth_exponent([100_000, 1_000_000], [2.0, 20.0]) == pytest.approx(1.0)
    assert scaling.growth_exponent([100_000, 1_000_000], [20.0, 2.0]) == pytest.approx(-1.0)


@pytest.mark.parametrize(
    ("xs", "ys", "match"),
    [
        ([], [], "at least 2 points"),
        ([1e5], [1.0], "at least 2 points"),
        ([1e5, 1e6], [1.0], "as many costs"),
        ([1e5, 1e6], [1.0, 0.0], "positive finite"),
        ([1e5, -1e6], [1.0, 2.0], "positive finite"),
        ([1e5, 1e6], [1.0, math.nan], "positive finite"),
        ([1e5, 1e5], [1.0, 2.0], "2 different sizes"),
    ],
)
def test_growth_exponent_rejects_what_cannot_be_fitted(xs, ys, match):
    with pytest.raises(ConfigError, match=match):
        scaling.growth_exponent(xs, ys)


def test_exponents_skip_failed_rows_and_need_two_sizes():
    ok = [
        {"interactions": 1e5, "step_seconds_median": 0.1, "eval_seconds": 1.0, "peak_rss_mb_after_eval": 400.0},
        {"interactions": 1e6, "step_seconds_median": 1.0, "eval_seconds": 100.0, "peak_rss_mb_after_eval": 800.0},
    ]
    failed = {"size": "5m", "error": "exit -9"}
    got = scaling.exponents([*ok, failed])
    assert got["step_seconds_median"] == pytest.approx(1.0)
    assert got["eval_seconds"] == pytest.approx(2.0)
    assert got["peak_rss_mb_after_eval"] == pytest.approx(math.log10(2.0), abs=1e-3)
    assert scaling.exponents([ok[0], failed]) == dict.fromkeys(scaling.COSTS)


# ------------------------------------------------------------------------------------ sizes
@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("100k", 100_000),
        ("1m", 1_000_000),
        ("5M", 5_000_000),
        (" 20K ", 20_000),
        ("2.5m", 2_500_000),
        ("20000", 20_000),
    ],
)
def test_parse_size(text, n):
    assert scaling.parse_size(text) == n


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "not a number of interactions"),
        ("abc", "not a number of interactions"),
        ("1g", "not a number of interactions"),
        ("-5k", "not a number of interactions"),
        ("1.0001k", "not a whole number"),
        ("500", "below the smallest world"),
        ("0k", "below the smallest world"),
    ],
)
def test_parse_size_rejects_bad_strings(text, match):
    with pytest.raises(ConfigError, match=match):
        scaling.parse_size(text)


def test_parse_sizes():
    assert scaling.parse_sizes("100k, 1M,5m") == ["100k", "1m", "5m"]
    with pytest.raises(ConfigError, match="no size"):
        scaling.parse_sizes(" , ")
    with pytest.raises(ConfigError, match="'2x'"):
        scaling.parse_sizes("100k,2x")


def test_run_rejects_bad_arguments_before_launching_anything():
    with pytest.raises(ConfigError, match="not a number"):
        scaling.run(["100k", "lots"], 5)
    with pytest.raises(ConfigError, match="steps must be at least 1"):
        scaling.run(["100k"], 0)


# ------------------------------------------------------------------------------------ markdown
def _row(size, n, step, ev, rss):
    return {
        "size": size,
        "interactions": n,
        "nodes": n // 25,
        "edges": 2 * n,
        "build_seconds": 1.5,
        "step_seconds_median": step,
        "eval_seconds": ev,
        "eval_users": n // 40,
        "eval_users_per_second": (n // 40) / ev,
        "peak_rss_mb_after_build": rss / 2,
        "peak_rss_mb_after_training": rss,
        "peak_rss_mb_after_eval": rss,
    }


def _payload(rows):
    return {
        "meta": {
            "date": "2026-11-24T10:15:00+00:00",
            "git_commit": "0123456789abcdef",
            "git_dirty": False,
            "machine": {"cpus": 2, "processor": "x86_64"},
        },
        "load": [0.42, 0.5, 0.6],
        "protocol": {
            "model_config": {"embedding_dim": 64, "num_layers": 2, "relation_mode": "weights"},
            "torch_threads": 2,
            "steps": 5,
            "warmup_steps": 1,
            "batch_size": 8192,
        },
        "rows": rows,
        "exponents": scaling.exponents(rows),
    }


def test_markdown_has_title_protocol_rows_and_exponents():
    rows = [_row("100k", 97_531, 0.25, 1.5, 600.0), _row("1m", 987_654, 2.5, 31.0, 2400.0)]
    md = scaling.to_markdown(_payload(rows))
    lines = md.splitlines()
    assert lines[0].startswith("# ")
    assert "commit 01234567" in md and "2 CPU cores" in md and "load average 0.4" in md
    assert "| 100k | 97,531 |" in md and "| 1m | 987,654 |" in md
    assert "| 0.25 |" in md and "| 31.0 (24,691 users) |" in md and "| 2,400 |" in md
    a = scaling.growth_exponent([97_531, 987_654], [0.25, 2.5])
    assert f"training step time ∝ n^{a:.2f}" in md
    assert f"evaluation time ∝ n^{scaling.growth_exponent([97_531, 987_654], [1.5, 31.0]):.2f}" in md
    assert f"peak RSS ∝ n^{scaling.growth_exponent([97_531, 987_654], [600.0, 2400.0]):.2f}" in md
    assert "over 2 sizes" in md


def test_markdown_reports_a_failed_size_and_an_unfitted_growth():
    rows = [_row("100k", 97_531, 0.25, 1.5, 600.0), {"size": "5m", "error": "exit -9"}]
    md = scaling.to_markdown(_payload(rows))
    assert "| 5m | failed: exit -9 |" in md
    assert "training step time: not fitted (fewer than 2 sizes ran)" in md
    assert "∝" not in md
