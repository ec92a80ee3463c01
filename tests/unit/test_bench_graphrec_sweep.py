"""The GraphRec settings sweep's bookkeeping (benchmarks/graphrec_sweep.py) and the ablations' settings
(benchmarks/protocols.py): which settings a variant trains with, and how the table reads them back."""

from __future__ import annotations

import pytest

from tests.benchmark_scripts import load_benchmark

sweep = load_benchmark("graphrec_sweep")
protocols = load_benchmark("protocols")


def test_a_variant_changes_one_setting_of_the_protocols_graphrec():
    base_model, base_train = protocols.GRIDS["graphrec"][0]
    model, train = sweep.settings_of("d = 256")
    assert model == {**base_model, "embedding_dim": 256}
    assert train == base_train
    model, train = sweep.settings_of("temperature 0.07")
    assert model == base_model
    assert train == {**base_train, "temperature": 0.07}
    assert sweep.settings_of("reference") == (base_model, base_train)


def test_an_unknown_variant_lists_the_valid_ones():
    with pytest.raises(SystemExit, match=r"unknown variant 'd = 1024'; valid: \['reference'"):
        sweep.settings_of("d = 1024")


def _row(valid: float, test: float) -> dict:
    return {"valid": valid, "test": test, "test_ndcg": test - 0.01, "best_epoch": 30, "seconds_to_best": 100.0}


def test_the_table_compares_each_variant_with_the_reference_on_validation():
    entry = {
        "meta": {"date": "2026-12-03T12:00:00+00:00", "machine": {"cpus": 2}},
        "shared_machine": True,
        "runs": {"reference": _row(0.25, 0.26), "d = 256": _row(0.26, 0.25), "1 layer": _row(0.2, 0.3)},
    }
    md = sweep.to_markdown({"datasets": {"ml-latest-small": entry, "hetrec2011-lastfm-2k": entry}})
    assert md.count("GraphRec on **") == 2
    assert "| d = 256 | 0.2600 | +4.0% | 0.2500 |" in md
    assert "| 1 layer | 0.2000 | -20.0% | 0.3000 |" in md
    # chosen on validation, not on test
    assert "Best by validation: **d = 256** (test Recall@20 0.2500)" in md
    assert "next to another job" in md


def test_ablations_reuse_the_settings_chosen_for_graphrec():
    chosen = {"graphrec": {"settings": {"embedding_dim": 64}, "train": {"lr": 0.01, "temperature": 0.2}}}
    assert protocols.ablation_settings(chosen) == ({"embedding_dim": 64}, {"lr": 0.01, "temperature": 0.2})
    assert protocols.ablation_settings({}) == protocols.GRIDS["graphrec"][0]


def _recorded(label: str, valid: float, test: float) -> dict:
    model, train = sweep.settings_of(label)
    return {**_row(valid, test), "settings": model, "train": {**train, "epochs": 400, "seed": 2026}}


def test_a_partial_rerun_keeps_the_other_rows_with_their_own_date_and_machine_state(capsys):
    earlier = {
        "meta": {"date": "2026-12-03T12:00:00+00:00", "git_commit": "abc", "machine": {"cpus": 2}},
        "shared_machine": False,
        "load_average_start": [1.0, 1.0, 1.0],
        "load_average_end": [2.0, 2.0, 2.0],
        "runs": {
            "reference": _recorded("reference", 0.25, 0.26),
            "d = 256": _recorded("d = 256", 0.26, 0.25),
            # trained before the protocol's GraphRec changed: no longer the variant, so dropped
            "1 layer": {**_recorded("1 layer", 0.2, 0.3), "settings": {"num_layers": 1, "embedding_dim": 64}},
            "d = 1024": _recorded("reference", 0.3, 0.3),  # a variant that no longer exists
        },
    }
    rows = sweep.earlier_rows(earlier)
    assert set(rows) == {"reference", "d = 256"}
    assert "dropping the recorded row '1 layer'" in capsys.readouterr().err
    assert rows["reference"]["meta"]["date"].startswith("2026-12-03") and rows["reference"]["shared_machine"] is False
    assert rows["reference"]["meta"]["git_commit"] == "abc"  # the run's own commit, not the rerun's
    assert rows["reference"]["load_average"] == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    later = {"date": "2026-12-04T10:00:00+00:00", "machine": {"cpus": 2}}
    rows["drop scored edge"] = {**_row(0.24, 0.27), "meta": later, "shared_machine": True}
    entry = {"meta": {"date": "2026-12-04T10:00:00+00:00", "machine": {"cpus": 2}}, "runs": rows}
    md = sweep.to_markdown({"datasets": {"ml-latest-small": entry}})
    assert "Measured 2026-12-03 and 2026-12-04" in md
    assert "| reference | 0.2500 | +0.0% | 0.2600 | 0.2500 | 30 | 100.0 |" in md  # alone: no mark
    assert "| drop scored edge | 0.2400 | -4.0% | 0.2700 | 0.2600 | 30 | 100.0 * |" in md
    assert "rows marked * ran next to another job" in md
