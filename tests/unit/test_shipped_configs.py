"""The run configs shipped in benchmarks/configs/ parse, name a registered model and valid settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from graph_rec.runs import RunConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "configs").glob("*.toml"))


def test_there_are_shipped_configs() -> None:
    names = {p.name for p in CONFIGS}
    assert {"graphrec-ml-latest-small.toml", "als-ml-latest-small.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_parses_and_round_trips(path: Path) -> None:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    config = RunConfig.from_dict(raw)  # unknown sections, keys or settings raise ConfigError
    assert config.model == raw["model"]["name"]
    assert RunConfig.from_dict(config.to_dict()) == config


def test_the_als_config_holds_the_settings_protocol_a_picks_on_validation() -> None:
    import json

    root = Path(__file__).resolve().parents[2]
    proto = json.loads((root / "benchmarks" / "results" / "protocols.json").read_text())
    chosen = proto["datasets"]["ml-latest-small"]["runs"]["als"]["settings"]
    model = tomllib.loads((root / "benchmarks" / "configs" / "als-ml-latest-small.toml").read_text())["model"]
    assert {k: model[k] for k in chosen} == chosen
    assert model["name"] == "als"
