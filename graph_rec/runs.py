"""Training runs: one config (a TOML file at the CLI) from raw data to an evaluated, saved model.

A :class:`RunConfig` has one section per stage, each a frozen dataclass that rejects unknown keys::

    [data]      dataset (folder or catalog name), format, kg folder, split, ratios, seed
    [graph]     builder options (tags, genres, knowledge, social, entities, weights)
    [features]  text encoder for node features ("none" for ids only)
    [view]      what the model sees (DataConfig: node types, relations, feature slots)
    [model]     name = "graphrec" | "lightgcn" | "mf" | "als" | "ease" | "itemknn" | "popularity", + its settings
    [train]     TrainConfig
    [eval]      EvalConfig

:func:`train_run` splits the tables, builds the graph from the training part only, encodes
features, trains with early stopping on validation, evaluates the best epoch on test, and writes a
run directory:

    run.json            format version, library versions, the full config, status, data summary
    graph/  split/      the training graph and the split (so the run can be evaluated and served)
    checkpoint/         the last resumable checkpoint (safetensors + JSON)
    best/model.safetensors   the weights of the best validation epoch
    history.json  history.png    per-epoch loss and validation metrics
    metrics.json        validation and test metrics of the best epoch

:func:`evaluate_run` re-evaluates a saved run from its files alone.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graph_rec.data import (
    DataConfig,
    RecData,
    check_float,
    check_int,
    config_from_dict,
    config_to_dict,
    data_digest,
    data_fingerprint,
)
from graph_rec.distributed import SINGLE, DistContext
from graph_rec.errors import CheckpointError, ConfigError
from graph_rec.eval.evaluator import EvalConfig, EvalResult, evaluate
from graph_rec.models.base import model_class
from graph_rec.training.checkpoint import differences, listed, load_state_dict
from graph_rec.training.config import RESUMABLE_CHANGES, TrainConfig
from graph_rec.training.trainer import TrainResult, check_sampling, check_selection_metric, fit, init_model, scorer_for
from kg_builders import __version__
from kg_builders._files import atomic_file, check_output_dir
from kg_builders.fragment import plain

logger = logging.getLogger(__name__)

RUN_FORMAT = 1


#: the entity extractors ``[graph] entities`` names, besides ``gazetteer:<names.tsv>``
ENTITIES = ("none", "spacy", "synthetic-gazetteer")


@dataclass(frozen=True, kw_only=True)
class DataSource:
    """Where the interactions come from and how they are split (before any graph is built).

    Args:
        dataset: a folder, a catalog name (cached, or fetched with ``download``), or ``"synthetic"``.
        format: the reader (``None``: detected from the folder).
        kg: a KGAT/MKR knowledge-graph folder to join (``kg.txt``, ``item_index2entity_id.txt``).
        download: fetch a catalog data set that is not cached.
        on_error: bad input rows: ``"raise"`` or ``"skip"`` (and count).
        split: ``random``, ``temporal``, ``leave_one_out``, ``cold_item`` or ``official``.
        ratios: train, validation, test shares (random, temporal, cold_item).
        seed: the split's seed.
    """

    dataset: str
    format: str | None = None
    kg: str | None = None
    download: bool = False
    on_error: str = "raise"
    split: str = "random"
    ratios: tuple[float, ...] = (0.8, 0.1, 0.1)
    seed: int = 2026

    def __post_init__(self) -> None:
        from kg_builders.sources._reader import ON_ERROR
        from kg_builders.split import SPLITS, check_ratios

        if self.split not in SPLITS:
            raise ConfigError(f"data.split must be one of {sorted(SPLITS)}, got {self.split!r}")
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"data.on_error must be one of {list(ON_ERROR)}, got {self.on_error!r}")
        check_int("data.seed", self.seed)
        try:
            check_ratios(self.ratios)
        except ConfigError as exc:
            raise ConfigError(f"data.{exc}") from exc
        from kg_builders.sources.auto import FORMATS

        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"data.format must be one of {list(FORMATS)}, got {self.format!r}")
        if self.dataset == "synthetic":  # generated, not read: a reader's settings would be ignored
            given = [k for k in ("format", "kg", "download") if getattr(self, k)]
            if self.on_error != "raise":
                given.append("on_error")
            if given:
                raise ConfigError(
                    f"data.dataset 'synthetic' is generated, not read from files: remove data.{', data.'.join(given)}"
                )

    def split_settings(self) -> dict[str, Any]:
        if self.split in ("random", "cold_item"):
            return {"ratios": list(self.ratios), "seed": self.seed}
        if self.split == "temporal":
            return {"ratios": list(self.ratios)}
        if self.split == "leave_one_out":
            return {"seed": self.seed}
        return {}


@dataclass(frozen=True, kw_only=True)
class GraphOptions:
    """Builder options (see :func:`kg_builders.builders.standard.standard_builders`)."""

    weight: str = "rating"
    min_rating: float | None = None
    tags: bool = True
    min_tag_count: int = 1
    genres: bool = True
    knowledge: bool = True
    social: bool = True
    entities: str = "none"

    def __post_init__(self) -> None:
        from kg_builders.builders.interactions import WEIGHTS

        if self.weight not in WEIGHTS:
            raise ConfigError(f"graph.weight must be one of {list(WEIGHTS)}, got {self.weight!r}")
        check_int("graph.min_tag_count", self.min_tag_count, minimum=1)
        if self.min_rating is not None:
            check_float("graph.min_rating", self.min_rating, low=-math.inf)
        if not (self.entities in ENTITIES or self.entities.startswith("gazetteer:")):
            raise ConfigError(
                f"graph.entities must be one of {list(ENTITIES)} or gazetteer:<names.tsv>, got {self.entities!r}"
            )


@dataclass(frozen=True, kw_only=True)
class FeatureOptions:
    """The text encoder for node features (``encoder="none"``: no features)."""

    encoder: str = "all-MiniLM-L6-v2"
    pooling: str = "mean"
    batch_size: int = 64
    max_length: int = 256
    local_files_only: bool = False
    node_types: tuple[str, ...] = ("user", "item", "tag", "entity")

    def __post_init__(self) -> None:
        from kg_builders.builders.text_encoder import POOLINGS

        if self.pooling not in POOLINGS:
            raise ConfigError(f"features.pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")
        check_int("features.batch_size", self.batch_size, minimum=1)
        check_int("features.max_length", self.max_length, minimum=1)


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """A whole training run (see the module docstring)."""

    data: DataSource
    graph: GraphOptions = field(default_factory=GraphOptions)
    features: FeatureOptions = field(default_factory=FeatureOptions)
    view: DataConfig = field(default_factory=DataConfig)
    model: str = "graphrec"
    model_settings: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """From a nested mapping (a parsed TOML file). Unknown sections or keys are errors listing the valid ones."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a run config must be a mapping of sections, got {type(d).__name__}")
        sections = ["data", "graph", "features", "view", "model", "train", "eval"]
        unknown = sorted(str(k) for k in d if k not in sections)
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; valid sections: {sections}")
        if "data" not in d:
            raise ConfigError("the config needs a [data] section with at least dataset = '...'")
        if not isinstance(d.get("model", {}), Mapping):
            raise ConfigError(f"[model] must be a table (name = '...' and its settings), got {d['model']!r}")
        model = dict(d.get("model", {}))
        name = model.pop("name", "graphrec")
        if not isinstance(name, str):
            raise ConfigError(f"model.name must be a string, one of the registered models; got {name!r}")
        cls_ = model_class(name)  # ConfigError listing the registered models
        config_from_dict(cls_.config_class, model, f"model {name!r}")  # validate the settings now
        train = TrainConfig.from_dict(d.get("train", {}))
        evaluation = EvalConfig.from_dict(d.get("eval", {}))
        if cls_.trainable:  # fit() checks too, but only after the data is built; closed forms select nothing
            check_selection_metric(train, evaluation)
        return cls(
            data=config_from_dict(DataSource, d["data"], "data"),
            graph=config_from_dict(GraphOptions, d.get("graph", {}), "graph"),
            features=config_from_dict(FeatureOptions, d.get("features", {}), "features"),
            view=DataConfig.from_dict(d.get("view", {})),
            model=name,
            model_settings=model,
            train=train,
            eval=evaluation,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": config_to_dict(self.data),
            "graph": config_to_dict(self.graph),
            "features": config_to_dict(self.features),
            "view": self.view.to_dict(),
            "model": {"name": self.model, **plain(self.model_settings)},
            "train": self.train.to_dict(),
            "eval": self.eval.to_dict(),
        }


def with_overrides(d: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (value parsed as TOML, else taken as a string)."""
    import tomllib

    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in d.items()}
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"an override must look like section.key=value, got {item!r}")
        path, raw = item.split("=", 1)
        section, key = path.strip().split(".", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        if not isinstance(out.setdefault(section, {}), dict):
            raise ConfigError(f"cannot override {path.strip()}: {section} is a value ({out[section]!r}), not a section")
        out[section][key] = value
    return out


# ------------------------------------------------------------------------------- stages
def load_tables(source: DataSource, *, cache_dir: Path, progress: bool = False) -> Any:
    """The tables of ``source`` (joined with its KG folder)."""
    from kg_builders.sources.auto import load_dataset

    if source.dataset == "synthetic":
        from kg_builders.sources.synthetic import make_synthetic_world

        return make_synthetic_world(seed=source.seed)
    folder = resolve_dataset(source.dataset, cache_dir, download=source.download, progress=progress)
    tables = load_dataset(folder, format=source.format, on_error=source.on_error)
    if source.kg:
        from kg_builders.sources.kg_triples import join_kg_folder

        tables = join_kg_folder(tables, source.kg, on_error=source.on_error)
    return tables


def resolve_dataset(spec: str, cache_dir: Path, *, download: bool, progress: bool = False) -> Path:
    """A folder for ``spec``: an existing path, or a catalog name (cached, or downloaded with ``download``)."""
    p = Path(spec)
    if p.exists():
        return p
    from kg_builders.sources.catalog import load_catalog
    from kg_builders.sources.download import fetch_dataset, is_cached

    try:
        entry = load_catalog().get(spec)  # ConfigError listing valid names when unknown
    except ConfigError as exc:
        raise ConfigError(f"data.dataset {spec!r} is not a folder, and {exc}") from exc
    if download or is_cached(
        entry, cache_dir
    ):  # (never a request without download: a half-fetched folder is not cached)
        return fetch_dataset(entry, cache_dir=cache_dir, progress=progress)
    partial = " (its folder in the cache is incomplete)" if (Path(cache_dir) / entry.name).exists() else ""
    raise ConfigError(
        f"{spec!r} is not a path or a cached data set{partial}; download it (from {entry.files[0].url}) first"
    )


def entity_builder(kind: str) -> Any:
    """The entity builder named by ``kind``: none, spacy, gazetteer:<names.tsv>, synthetic-gazetteer."""
    if kind == "none":
        return None
    from kg_builders.builders.entities import EntityBuilder, GazetteerExtractor, SpacyExtractor

    if kind == "spacy":
        return EntityBuilder(extractor=SpacyExtractor())
    if kind == "synthetic-gazetteer":
        from kg_builders.sources.synthetic import synthetic_vocabulary

        return EntityBuilder(extractor=GazetteerExtractor(synthetic_vocabulary()))
    if kind.startswith("gazetteer:"):
        return EntityBuilder(extractor=GazetteerExtractor.from_list(kind.split(":", 1)[1]))
    raise ConfigError(f"unknown entities {kind!r}; valid: {', '.join(ENTITIES)}, gazetteer:<names.tsv>")


def build_pipeline(
    tables: Any,
    *,
    split: str,
    split_settings: dict[str, Any],
    builder_options: dict[str, Any],
    entities: str,
    progress: bool,
) -> tuple[Any, Any]:
    """Split the tables, then build the graph from the training part only."""
    from kg_builders.builders.standard import standard_builders
    from kg_builders.graph import build_graph
    from kg_builders.split import make_split

    if split == "none":
        sp = None
        train_tables = tables
    else:
        sp = make_split(tables, split, **split_settings)
        train_tables = sp.train_tables(tables)
    builders = standard_builders(train_tables, entities=entity_builder(entities), **builder_options)
    kg = build_graph(train_tables, builders, progress=progress)
    return kg, sp


def encode_features(options: FeatureOptions, kg: Any, *, feature_cache: Path | None, progress: bool = False) -> Any:
    """Fill the ``text`` slot of the graph's nodes with the configured encoder (None for ``"none"``).

    Vectors are cached in ``feature_cache`` (None: no cache); returns the builder's report.
    """
    if options.encoder == "none":
        return None
    from kg_builders.builders.text_encoder import TextEncoder
    from kg_builders.builders.text_features import TextFeatureBuilder

    encoder = TextEncoder(
        model=options.encoder,
        pooling=options.pooling,
        batch_size=options.batch_size,
        max_length=options.max_length,
        local_files_only=options.local_files_only,
    )
    builder = TextFeatureBuilder(encoder=encoder, cache_dir=feature_cache, node_types=options.node_types)
    return builder.build(kg, progress=progress)


def prepare(config: RunConfig, *, cache_dir: Path, progress: bool = False, tables: Any = None) -> tuple[Any, Any]:
    """Raw data -> split -> training graph with node features: ``(KnowledgeGraph, Split)``.

    ``tables``: the data source's tables, already loaded (and perhaps changed, as an ablation that
    removes an item column does); by default they are loaded from ``config.data``.
    """
    if tables is None:
        tables = load_tables(config.data, cache_dir=cache_dir, progress=progress)
    g = config.graph
    kg, sp = build_pipeline(
        tables,
        split=config.data.split,
        split_settings=config.data.split_settings(),
        builder_options={
            "weight": g.weight,
            "min_rating": g.min_rating,
            "tags": g.tags,
            "min_tag_count": g.min_tag_count,
            "genres": g.genres,
            "knowledge": g.knowledge,
            "social": g.social,
        },
        entities=g.entities,
        progress=progress,
    )
    if sp is None:
        raise ConfigError("a training run needs a split with validation data; data.split = 'none' is not allowed")
    encode_features(config.features, kg, feature_cache=Path(cache_dir) / "features", progress=progress)
    return kg, sp


# ------------------------------------------------------------------------------- runs
def _versions() -> dict[str, str]:
    return {"graph_rec": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _fingerprint(config: RunConfig, data: RecData, digest: str) -> dict[str, Any]:
    # fit() adds the train settings a resume must match; digest: data_digest(data)
    return {
        "model": {"name": config.model, **config.model_settings},
        "view": config.view.to_dict(),
        "data": data_fingerprint(data, digest),
    }


def _split_differences(a: RecData, b: RecData) -> list[str]:
    """What differs between two runs' splits: the user or item ids (in order), or a part's pairs."""
    differ = [name for name in ("user_ids", "item_ids") if getattr(a, name) != getattr(b, name)]
    if not differ:
        for part in ("train", "valid", "test"):
            pa, pb = getattr(a, part), getattr(b, part)
            if not (torch.equal(pa.indptr, pb.indptr) and torch.equal(pa.indices, pb.indices)):
                differ.append(f"the {part} pairs")
    return differ


def _write_json(path: Path, payload: Any) -> None:
    with atomic_file(path) as fh:
        fh.write(json.dumps(payload, indent=2, default=str, allow_nan=False).encode("utf-8"))


def train_run(
    config: RunConfig,
    out: str | Path,
    *,
    cache_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Run ``config`` end to end into the run directory ``out`` (module docstring); returns the summary.

    With ``resume``, the graph and split saved in ``out`` are reused and training continues from
    ``out/checkpoint`` (a :class:`CheckpointError` if the config differs from the saved one).

    Under ``torchrun`` (``dist`` from :func:`graph_rec.distributed.from_env`), rank 0 prepares the
    data (reads, splits, builds the graph, encodes features) and saves the graph and split into
    ``out``; the other ranks load them from there, so every rank trains on identical tensors and the
    feature cache is written once. Rank 0 alone writes files; every rank returns the same summary.
    """
    from kg_builders.graph import KnowledgeGraph
    from kg_builders.split import Split

    dist = dist or SINGLE
    out = Path(out)
    t0 = time.perf_counter()
    if dist.enabled:  # every rank must run rank 0's config: a rank given other settings stops them all
        ours = config.to_dict()
        differ = differences(dist.broadcast_object(ours), ours, labels=("on rank 0", "here"))
        if any(dist.all_gather_object(bool(differ))):
            raise ConfigError(
                f"the ranks were given different configs ({listed(differ)} on rank {dist.rank})"
                if differ
                else f"another rank was given a config that differs from rank 0's; rank {dist.rank} stops too"
            )
    failure: str | None = None
    if dist.is_main:
        try:
            _prepare_run(config, out, cache_dir=Path(cache_dir), resume=resume, overwrite=overwrite, progress=progress)
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
            dist.broadcast_object(failure)
            raise
    failure = dist.broadcast_object(failure)
    if failure is not None:
        raise ConfigError(f"rank 0 could not prepare the run, so rank {dist.rank} stops too: {failure}")
    prep_seconds = time.perf_counter() - t0
    data = RecData(KnowledgeGraph.load(out / "graph"), Split.load(out / "split"), config=config.view)
    digest = data_digest(data)
    before = read_run(out) if resume else None
    if before is not None:
        _check_run_data(out, before, data, digest)
    meta = {
        "format_version": RUN_FORMAT,
        "versions": _versions(),
        "config": config.to_dict(),
        "status": "running",
        "data": {**data.summary(), "sha256": digest},
        "world_size": dist.world_size,
    }
    if dist.is_main:
        _write_json(out / "run.json", meta)
    model = init_model(config.model, config.model_settings, data, seed=config.train.seed)
    try:
        result = fit(
            model,
            data,
            config.train,
            eval_config=config.eval,
            run_dir=out,
            resume=resume,
            fingerprint=_fingerprint(config, data, digest),
            progress=progress,
            dist=dist,
        )
    except CheckpointError:
        if before is not None and dist.is_main:  # a refused resume leaves the run as it was
            _write_json(out / "run.json", before)
        raise
    with torch.inference_mode():
        scorer = scorer_for(model, config.train)
        feats = data.item_features()
        valid = evaluate(scorer, data, part="valid", config=config.eval, item_features=feats, dist=dist)
        test = evaluate(scorer, data, part="test", config=config.eval, item_features=feats, dist=dist)
    metrics = {"valid": valid.to_dict(), "test": test.to_dict(), "best_epoch": result.best_epoch}
    meta.update(
        status="finished",
        train={k: v for k, v in result.to_dict().items() if k != "history"},
        prepare_seconds=round(prep_seconds, 3),
    )
    if dist.is_main:
        _write_json(out / "history.json", result.to_dict())
        plot_history(result, out / "history.png", metric=config.train.metric)
        _write_json(out / "metrics.json", metrics)
        _write_json(out / "run.json", meta)
    dist.barrier()
    return {"out": str(out), "model": config.model, **meta["train"], "valid": valid.metrics, "test": test.metrics}


def _prepare_run(
    config: RunConfig, out: Path, *, cache_dir: Path, resume: bool, overwrite: bool, progress: bool
) -> None:
    """Check ``out`` (a resume must match its saved config) and, for a new run, build and save the graph and split."""
    if resume:
        meta = read_run(out)
        saved = saved_config(out, meta)
        differ = differences(_comparable(saved), _comparable(config))
        if differ:
            raise CheckpointError(
                f"cannot resume {out}: its run.json was written with a different config ({listed(differ)}); only "
                f"train.{', train.'.join(RESUMABLE_CHANGES)} may change on a resume"
            )
        for name in ("graph", "split"):
            if not (out / name).is_dir():
                raise CheckpointError(f"cannot resume {out}: its {name}/ directory is missing")
        return
    check_output_dir(out)
    occupied = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if occupied and not overwrite:
        raise ConfigError(f"{out} already exists; pass overwrite (--overwrite) or resume (--resume)")
    if occupied and not (out / "run.json").is_file():
        raise ConfigError(f"{out} is not empty and is not a run directory (no run.json): overwrite replaces runs only")
    # the data is read, split, built, encoded, checked against the view and written to a staging
    # directory before the old run goes: a failure anywhere leaves it whole
    kg, sp = prepare(config, cache_dir=cache_dir, progress=progress)
    data = RecData(kg, sp, config=config.view)
    for part in ("valid", "test"):
        if getattr(data, part).nnz == 0:
            raise ConfigError(
                f"the split has no {part} pairs (data.ratios {list(config.data.ratios)}, data.split "
                f"{config.data.split!r}): a run needs validation pairs to stop early and test pairs to report"
            )
    _preflight(config, data)
    try:
        _write_run_data(out, kg, sp)
    except OSError as exc:
        raise ConfigError(f"cannot write the run to {out}: {exc}") from exc


def _preflight(config: RunConfig, data: RecData) -> None:
    """Raise now what training would raise at its start, before an old run's files go (``--overwrite``).

    The device is resolved, the model is built on the data (its settings against the graph's
    features and relations) and neighbour sampling is checked against it (a model that trains on
    sampled neighbourhoods, fan-outs that fit its layers).
    """
    try:
        SINGLE.device(config.train.device)
    except ConfigError as exc:
        raise ConfigError(f"train.{exc}") from exc
    model = init_model(config.model, config.model_settings, data, seed=config.train.seed)
    check_sampling(model, config.train)
    del model


def _write_run_data(out: Path, kg: Any, sp: Any) -> None:
    """Save the graph and split into ``out``; an old run's files there go only once the new ones are written.

    ``out`` itself stays (a mount point, or a link to a scratch disk, keeps working): the new files
    are staged in a directory inside it, on its file system, and moved into place.
    """
    import os
    import shutil
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        kg.save(staging / "graph")
        sp.save(staging / "split")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for entry in out.iterdir():
        if entry == staging:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for name in ("graph", "split"):
        os.replace(staging / name, out / name)
    staging.rmdir()


def _comparable(config: RunConfig) -> dict[str, Any]:
    d = config.to_dict()
    for key in RESUMABLE_CHANGES:
        d["train"].pop(key, None)
    return d


def read_run(path: str | Path) -> dict[str, Any]:
    """``run.json`` of a run directory; a clear error for a missing, broken or newer one."""
    p = Path(path) / "run.json"
    if not p.is_file():
        raise CheckpointError(f"{path} is not a run directory: run.json is missing")
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{p} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{p} must hold a JSON object, not {type(meta).__name__}")
    v = meta.get("format_version")
    if not isinstance(v, int) or v > RUN_FORMAT:
        raise CheckpointError(f"{p} has run format {v!r}; this graph-rec reads up to {RUN_FORMAT}")
    return meta


def saved_config(path: str | Path, meta: dict[str, Any]) -> RunConfig:
    """The :class:`RunConfig` in a run's ``run.json`` (:func:`read_run`); a bad one names that file."""
    try:
        return RunConfig.from_dict(meta.get("config"))
    except ConfigError as exc:
        raise CheckpointError(f"{Path(path) / 'run.json'} holds a config this graph-rec refuses: {exc}") from exc


def _check_run_data(path: Path, meta: dict[str, Any], data: RecData, digest: str) -> None:
    """The run's graph and split files give the users, items, pairs and edges its run.json recorded
    (counts, and the SHA-256 of pairs and edges where run.json has one)."""
    saved = meta.get("data")
    if not isinstance(saved, dict):
        return  # a run.json written before the data summary was kept
    now = data.summary()
    keys = ("num_users", "num_items", "train", "valid", "test")
    differ = [f"{k}: {saved[k]!r} recorded, {now[k]!r} in the files" for k in keys if k in saved and saved[k] != now[k]]
    edges = saved.get("graph", {}).get("edges") if isinstance(saved.get("graph"), dict) else None
    if edges is not None and edges != now["graph"]["edges"]:
        differ.append(f"graph edges: {edges!r} recorded, {now['graph']['edges']!r} in the files")
    if not differ and "sha256" in saved and saved["sha256"] != digest:
        differ.append("the same counts, other pairs or edges (their SHA-256 differs)")
    if differ:
        raise CheckpointError(
            f"{path}'s graph/ or split/ files do not match its run.json ({'; '.join(differ)}): they were changed "
            "after the run was written"
        )


def load_run(path: str | Path) -> tuple[RunConfig, RecData, Any]:
    """A saved run's config, data and model (with its best weights) from its files alone."""
    from kg_builders.graph import KnowledgeGraph
    from kg_builders.split import Split

    path = Path(path)
    meta = read_run(path)
    config = saved_config(path, meta)
    for name in ("graph", "split"):
        if not (path / name).is_dir():
            raise CheckpointError(f"{path} is missing its {name}/ directory")
    data = RecData(KnowledgeGraph.load(path / "graph"), Split.load(path / "split"), config=config.view)
    _check_run_data(path, meta, data, data_digest(data))
    model = init_model(config.model, config.model_settings, data, seed=config.train.seed)
    load_state_dict(model, path / "best" / "model.safetensors")
    model.eval()
    return config, data, model


def evaluate_run(
    path: str | Path, *, part: str = "test", eval_config: EvalConfig | None = None, progress: bool = False
) -> EvalResult:
    """Evaluate a saved run's best model on ``part`` (``"valid"`` or ``"test"``)."""
    config, data, model = load_run(path)
    return _evaluate_loaded(config, data, model, part=part, eval_config=eval_config, progress=progress)


def _evaluate_loaded(
    config: RunConfig,
    data: RecData,
    model: Any,
    *,
    part: str,
    eval_config: EvalConfig | None,
    progress: bool,
    keep_per_user: bool = False,
    item_features: torch.Tensor | None = None,
) -> EvalResult:
    """:func:`evaluate` of a loaded run; diversity in ``item_features`` (default: the run's own)."""
    with torch.inference_mode():
        return evaluate(
            scorer_for(model, config.train),
            data,
            part=part,
            config=eval_config or config.eval,
            item_features=item_features if item_features is not None else data.item_features(),
            progress=progress,
            keep_per_user=keep_per_user,
        )


@dataclass(frozen=True)
class RunComparison:
    """:func:`compare_runs`' result.

    Attributes:
        run, baseline: the two runs' evaluations (with per-user values).
        comparisons: per-user metric -> :class:`~graph_rec.eval.PairedComparison` (baseline -> run).
        not_compared: metric -> why it is left out.
    """

    run: EvalResult
    baseline: EvalResult
    comparisons: dict[str, Any]
    not_compared: dict[str, str]


def compare_runs(
    path: str | Path,
    baseline: str | Path,
    *,
    part: str = "test",
    eval_config: EvalConfig | None = None,
    rounds: int = 2000,
    progress: bool = False,
) -> RunComparison:
    """Evaluate two saved runs on the same split and compare every per-user metric of ``path``
    against ``baseline`` with a paired bootstrap over users (:func:`graph_rec.eval.compare_results`).

    Both runs' diversity is measured in ``path``'s item features, so that it is one space; without
    item features it is not measured (each run's own item representations would be two spaces).

    Raises:
        ConfigError: the runs' splits differ (their users, items, or training, validation or test
            pairs, compared in the files, whatever their ``[data]`` tables say).
    """
    from graph_rec.eval.stats import compare_results

    config, data, model = load_run(path)
    base_loaded = load_run(baseline)
    differ = _split_differences(base_loaded[1], data)
    if differ:
        raise ConfigError(
            f"{baseline} and {path} were trained on different data or splits ({', '.join(differ)} differ); "
            "a paired comparison needs the same split"
        )
    feats = data.item_features()
    ev = eval_config or config.eval
    kw = {"part": part, "eval_config": ev, "progress": progress, "keep_per_user": True}
    run = _evaluate_loaded(config, data, model, **kw)
    base = _evaluate_loaded(*base_loaded, item_features=feats, **kw)
    names = [m for m in run.metrics if m in run.per_user and m in base.per_user]
    not_compared = {}
    if feats is None and ev.beyond_accuracy:
        not_compared = {f"diversity@{max(ev.ks)}": "no item features: diversity is not measured"}
    comparisons = {m: compare_results(base, run, m, rounds=rounds) for m in names}
    return RunComparison(run=run, baseline=base, comparisons=comparisons, not_compared=not_compared)


def plot_history(result: TrainResult, path: Path, *, metric: str) -> None:
    """Loss per epoch and validation metrics per evaluation, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = result.history
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [h["epoch"] for h in hist if "loss" in h]
    axes[0].plot(epochs, [h["loss"] for h in hist if "loss" in h], label="loss")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss")
    axes[0].set_title("loss")
    evals = [h for h in hist if "valid" in h]
    # recall and NDCG at every k, and the metric that selects the best epoch whatever it is
    names = sorted(
        {m for h in evals for m in h["valid"] if "@" in m and (m.split("@")[0] in ("recall", "ndcg") or m == metric)}
    )
    for m in names:
        axes[1].plot([h["epoch"] for h in evals], [h["valid"][m] for h in evals], marker="o", ms=3, label=m)
    if result.best_epoch:
        axes[1].axvline(result.best_epoch, color="grey", ls="--", lw=1, label=f"best ({metric})")
    axes[1].set_xlabel("epoch")
    axes[1].set_title("validation")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as fh:
        fig.savefig(fh, dpi=90, format="png")
    plt.close(fig)
