"""A run config's sections are checked when it is read: types, choices and shapes, each error naming its setting."""

from __future__ import annotations

import pytest

from graph_rec.errors import ConfigError
from graph_rec.runs import RunConfig

BASE = {"data": {"dataset": "synthetic"}}


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"graph": {"tags": "false"}}, r"graph setting 'tags' must be true or false, got 'false'"),
        ({"data": {"dataset": "synthetic", "seed": "x"}}, r"data setting 'seed' must be an integer, got 'x'"),
        ({"data": {"dataset": "synthetic", "split": "bogus"}}, r"data.split must be one of \[.*'random'.*got 'bogus'"),
        ({"data": {"dataset": "synthetic", "on_error": "ignore"}}, r"data.on_error must be one of \['raise', 'skip'\]"),
        ({"data": {"dataset": "synthetic", "ratios": [0.5, 0.1]}}, r"data.ratios must sum to 1"),
        ({"data": {"dataset": 7}}, r"data setting 'dataset' must be a string, got 7"),
        ({"features": {"batch_size": "x"}}, r"features setting 'batch_size' must be an integer"),
        ({"features": {"max_length": 0}}, r"features.max_length must be an integer >= 1"),
        ({"features": {"pooling": "max"}}, r"features.pooling must be one of \['mean', 'cls'\]"),
        ({"features": {"node_types": "item"}}, r"features setting 'node_types' must be a list of .*string"),
        ({"graph": {"weight": "stars"}}, r"graph.weight must be one of \['rating', 'binary', 'count', 'log_count'\]"),
        ({"graph": {"entities": "spacey"}}, r"graph.entities must be one of .*gazetteer:<names.tsv>, got 'spacey'"),
        ({"graph": {"min_rating": "4"}}, r"graph setting 'min_rating' must be a number or absent"),
        ({"graph": {"min_rating": float("nan")}}, r"graph.min_rating must be a number in \[-inf, inf\], got nan"),
        (
            {"data": {"dataset": "synthetic", "kg": "kg/"}},
            r"'synthetic' is generated, not read from files: remove data.kg",
        ),
        (
            {"data": {"dataset": "synthetic", "format": "movielens", "on_error": "skip"}},
            r"remove data.format, data.on_error",
        ),
        ({"data": {"dataset": "d", "format": "bogus"}}, r"data.format must be one of \['movielens'.*got 'bogus'"),
        ({"model": {"name": "ease", "l2": -1.0}}, r"model 'ease': l2 must be a number in \(0.0, inf\]"),
        ({"model": {"name": ["mf"]}}, r"model.name must be a string, one of the registered models; got \['mf'\]"),
        ({"model": {"name": {"a": 1}}}, r"model.name must be a string"),
        ({"train": {"device": "gpu"}}, r"^train.device must be 'cpu'"),
        ({"eval": {"metrics": ["auc"]}}, r"^eval.metrics has unknown metric\(s\) \['auc'\]"),
        ({"view": {"nodes": []}}, r"unknown view setting\(s\) \['nodes'\]; valid keys: \['node_types'"),
        ({"model": "graphrec"}, r"\[model\] must be a table"),
        (
            {"model": {"name": "graphrec", "embedding_dim": "8"}},
            r"model 'graphrec' setting 'embedding_dim' must be an integer",
        ),
        ({"train": {"lr": "0.1"}}, r"train setting 'lr' must be a number, got '0.1'"),
        ({"train": {"loss": "hinge"}}, r"train setting 'loss' must be one of 'bpr', 'softmax', got 'hinge'"),
        (
            {"train": {"metric": "ndcg@5"}, "eval": {"ks": [10, 20]}},
            r"train.metric 'ndcg@5' needs k=5 in eval.ks \[10, 20\]",
        ),
    ],
)
def test_a_bad_setting_is_an_error_naming_it(sections, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict({**BASE, **sections})


def test_good_settings_pass_and_ints_count_as_numbers():
    cfg = RunConfig.from_dict(
        {
            **BASE,
            "graph": {"min_rating": 3, "entities": "gazetteer:names.tsv"},
            "train": {"lr": 1, "max_seconds": 60},
            "data": {"dataset": "synthetic", "ratios": [0.8, 0.2]},
        }
    )
    assert cfg.graph.min_rating == 3 and cfg.train.lr == 1 and cfg.data.ratios == (0.8, 0.2)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_an_override_into_a_section_that_is_a_value_is_an_error():
    from graph_rec.runs import with_overrides

    with pytest.raises(ConfigError, match=r"cannot override train.lr: train is a value \(5\), not a section"):
        with_overrides({**BASE, "train": 5}, ["train.lr=0.1"])
    assert with_overrides(BASE, ["train.lr=0.1"])["train"] == {"lr": 0.1}


def test_an_unknown_catalogue_name_names_the_setting(tmp_path):
    from graph_rec.runs import resolve_dataset

    with pytest.raises(ConfigError, match=r"data.dataset 'no-such-data' is not a folder, and unknown data set"):
        resolve_dataset("no-such-data", tmp_path, download=False)
