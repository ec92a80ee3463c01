"""The ``graph-rec`` command line: a thin layer over the public API.

Every subcommand prints a human summary, or with ``--json`` one JSON object on stdout. Errors
of the project's own tree are printed as one line and exit with status 2. Environment
variables are read here, at the edge, and nowhere in the library:

* ``GRAPH_REC_CACHE``: the download cache (default: ``data/cache`` in a checkout, else
  ``~/.cache/graph-rec``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kg_builders._files import check_output_dir
from kg_builders.errors import ConfigError, DataError, DownloadError, GraphRecError, UnknownIdError
from kg_builders.sources.auto import FORMATS
from kg_builders.split import SPLITS

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]


def default_cache_dir() -> Path:
    env = os.environ.get("GRAPH_REC_CACHE")
    if env:
        return Path(env)
    if (REPO / "data" / "catalog.json").is_file():
        return REPO / "data" / "cache"
    return Path.home() / ".cache" / "graph-rec"


# ----------------------------------------------------------------------------- helpers
def emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    """``text`` on stdout, or with ``--json`` the payload as one JSON object."""
    if args.json:
        sys.stdout.write(json_text(payload) + "\n")
    else:
        sys.stdout.write(text.rstrip() + "\n")


def json_text(payload: Any) -> str:
    """Strict JSON (RFC 8259): a NaN or infinite number, which ``json`` would write as ``NaN`` or
    ``Infinity`` (rejected by JavaScript, Go and Rust parsers), becomes ``null``."""

    def finite(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(payload), indent=2, default=str, allow_nan=False)


def _number_list(kind: type) -> Any:
    """An argparse type: ``"0.8,0.1,0.1"`` -> ``[0.8, 0.1, 0.1]`` of ``kind``; anything else is a usage error."""

    def parse(text: str) -> list[Any]:
        try:
            return [kind(x) for x in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a comma-separated list of {'integers' if kind is int else 'numbers'}"
            ) from None

    return parse


def _split_settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.split in ("random", "temporal", "cold_item"):
        s: dict[str, Any] = {"ratios": list(args.ratios)}
        if args.split != "temporal":
            s["seed"] = args.seed
        return s
    if args.split == "leave_one_out":
        return {"seed": args.seed}
    return {}


def _text_features(args: argparse.Namespace, kg: Any, cache: Path, *, progress: bool) -> Any:
    """Fill the ``text`` feature slot of every node type with ``--encoder`` (None when ``none``)."""
    from graph_rec.runs import FeatureOptions, encode_features

    options = FeatureOptions(
        encoder=args.encoder,
        pooling=args.pooling,
        batch_size=args.batch_size,
        max_length=args.max_length,
        local_files_only=args.local_files_only or getattr(args, "offline", False),
    )
    feature_cache = Path(args.feature_cache) if args.feature_cache else cache / "features"
    return encode_features(options, kg, feature_cache=feature_cache, progress=progress)


def _encoder_options(sp: argparse.ArgumentParser, *, default: str) -> None:
    sp.add_argument(
        "--encoder",
        default=default,
        help="text encoder for node features: 'none', 'all-MiniLM-L6-v2' (offline default), a hub id or a "
        f"local model folder (default {default})",
    )
    sp.add_argument("--pooling", default="mean", choices=["mean", "cls"], help="how token vectors are pooled")
    sp.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    sp.add_argument("--max-length", type=int, default=256, help="tokens kept per text (default 256)")
    sp.add_argument("--feature-cache", help="feature cache folder (default: <cache dir>/features)")
    sp.add_argument("--local-files-only", action="store_true", help="never download a model")


#: what ``graph-rec demo`` writes into its ``--out`` (a rerun replaces them; tests/unit/test_cli_errors.py checks the list)
DEMO_OUTPUTS = frozenset({"graph", "split", "graph.nt", "history.png", "model"})


def _save_build(out: Path, kg: Any, sp: Any, *, overwrite: bool) -> None:
    from kg_builders._files import atomic_dir

    with atomic_dir(out, overwrite=overwrite) as tmp:
        kg.save(tmp / "graph")
        if sp is not None:
            sp.save(tmp / "split")


def _check_replaceable_build(out: Path, *sources: str | None) -> None:
    """``--overwrite`` replaces an earlier build (``graph/`` and ``split/``) only: never a folder
    holding anything else, nor one that holds the data being read."""
    extra = sorted(p.name for p in out.iterdir() if p.name not in ("graph", "split")) if out.is_dir() else []
    if extra:
        raise ConfigError(
            f"{out} holds {extra[:5]}, which a build did not write: --overwrite replaces builds only "
            "(graph/ and split/); choose another --out"
        )
    for source in sources:
        if source and Path(source).exists() and Path(source).resolve().is_relative_to(out.resolve()):
            raise ConfigError(f"--out {out} holds the data being read ({source}); choose another --out")


def _load_tables(args: argparse.Namespace, cache: Path) -> Any:
    """The tables ``build`` reads: the same reader, checks and KG join as a run's ``[data]``."""
    from graph_rec.runs import DataSource, load_tables

    source = DataSource(
        dataset=args.source,
        format=args.format,
        kg=args.kg,
        download=args.download,
        on_error=args.on_error,
        seed=args.seed,
    )
    return load_tables(source, cache_dir=cache, progress=sys.stderr.isatty())


# ----------------------------------------------------------------------------- commands
def cmd_datasets(args: argparse.Namespace) -> int:
    from kg_builders.sources.catalog import load_catalog
    from kg_builders.sources.download import is_cached

    catalog = load_catalog()
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    rows = []
    for e in catalog.datasets:
        rows.append({"name": e.name, "format": e.format, "licence": e.licence.text, "cached": is_cached(e, cache)})
    text = "\n".join(
        f"{r['name']:<24} {r['format']:<16} {'cached' if r['cached'] else '':<7} {r['licence'][:70]}" for r in rows
    )
    emit(args, {"datasets": rows, "cache_dir": str(cache)}, text)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from kg_builders.sources.download import fetch_dataset

    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    t0 = time.perf_counter()
    path = fetch_dataset(args.name, cache_dir=cache, progress=not args.json and sys.stderr.isatty())
    payload = {"name": args.name, "path": str(path), "seconds": round(time.perf_counter() - t0, 3)}
    emit(args, payload, f"{args.name}: {path}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    out = Path(args.out)
    check_output_dir(out)  # fail before the expensive part
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it")
    if out.exists():
        _check_replaceable_build(out, args.source, args.kg)
    if args.min_tag_count < 1:  # (the tag builder would name its own field, not the flag)
        raise ConfigError(f"--min-tag-count must be an integer >= 1, got {args.min_tag_count}")
    t0 = time.perf_counter()
    tables = _load_tables(args, cache)
    from graph_rec.runs import build_pipeline

    kg, sp = build_pipeline(
        tables,
        split=args.split,
        split_settings=_split_settings(args),
        builder_options={
            "weight": args.weight,
            "min_rating": args.min_rating,
            "tags": not args.no_tags,
            "min_tag_count": args.min_tag_count,
            "genres": not args.no_genres,
            "social": not args.no_social,
        },
        entities=args.entities,
        progress=not args.json and sys.stderr.isatty(),
    )
    features = _text_features(args, kg, cache, progress=not args.json and sys.stderr.isatty())
    _save_build(out, kg, sp, overwrite=args.overwrite)
    seconds = round(time.perf_counter() - t0, 3)
    payload = {
        "out": str(out),
        "report": kg.report.to_dict(),
        "split": None if sp is None else {"method": sp.method, "counts": sp.counts()},
        "features": None if features is None else features.to_dict(),
        "seconds": seconds,
    }
    split_text = (
        "" if sp is None else f"\nsplit {sp.method}: " + ", ".join(f"{k} {v:,}" for k, v in sp.counts().items())
    )
    feature_text = "" if features is None else f"\n{features.to_text()}"
    emit(args, payload, f"{kg.report.to_text()}{split_text}{feature_text}\nwritten to {out} in {seconds:.2f} s")
    return 0


def _load_graph(path: str) -> tuple[Any, Path]:
    """A saved graph from a build directory (``OUT/graph``) or a graph directory itself."""
    from kg_builders.graph import KnowledgeGraph

    p = Path(path)
    graph_dir = p / "graph" if (p / "graph").is_dir() else p
    return KnowledgeGraph.load(graph_dir), graph_dir


def cmd_info(args: argparse.Namespace) -> int:
    kg, graph_dir = _load_graph(args.path)
    payload = {"path": str(graph_dir), "schema": kg.schema(), "report": kg.report.to_dict(), "recipe": kg.recipe}
    recipe = "\n".join(f"  {r['builder']}: {r['settings']}" for r in kg.recipe)
    emit(args, payload, f"{kg!r}\n{kg.report.to_text()}\nrecipe:\n{recipe}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; name the file to write")
    check_output_dir(out.parent)  # fail before the graph is read
    kg, _ = _load_graph(args.path)
    t0 = time.perf_counter()
    if args.to in ("turtle", "nt"):
        from kg_builders.export import write_rdf

        detail = {"triples": write_rdf(kg, out, rdf_format=args.to)}
    elif args.to == "networkx":
        from kg_builders._files import atomic_file
        from kg_builders.export import to_networkx

        g = to_networkx(kg)
        from networkx.readwrite import json_graph

        doc = json_graph.node_link_data(g, edges="edges")
        with atomic_file(out, "w") as fh:
            json.dump(doc, fh, default=str)
        detail = {"nodes": g.number_of_nodes(), "edges": g.number_of_edges()}
    else:
        raise ConfigError(f"unknown --to {args.to!r}; valid: turtle, nt, networkx")
    payload = {"out": str(out), "format": args.to, "seconds": round(time.perf_counter() - t0, 3), **detail}
    emit(args, payload, f"exported {kg!r} as {args.to} to {out} ({payload['seconds']:.2f} s)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole chain: data -> split -> graph -> text features -> save/load -> exports -> training and test."""
    from kg_builders.export import from_networkx, from_rdf, to_hetero_data, to_homogeneous, to_networkx, write_rdf
    from kg_builders.graph import KnowledgeGraph
    from kg_builders.sources.movielens import load_movielens

    steps: list[dict[str, Any]] = []
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    out = Path(args.out)
    check_output_dir(out)
    if out.exists() and not args.overwrite:  # a rerun replaces its own output, nothing else
        foreign = sorted(p.name for p in out.iterdir() if p.name not in DEMO_OUTPUTS)
        if foreign:
            raise ConfigError(
                f"--out {out} holds files a demo does not write ({foreign[:5]}); pass --overwrite to replace "
                "the directory, or another --out"
            )

    def step(name: str, t0: float, **info: Any) -> None:
        steps.append({"step": name, "seconds": round(time.perf_counter() - t0, 3), **info})
        if not args.json:
            extra = ", ".join(f"{k}={v}" for k, v in info.items())
            sys.stderr.write(f"[demo] {name:<28} {steps[-1]['seconds']:>7.2f} s  {extra}\n")

    t0 = time.perf_counter()
    data_note = ""
    ml_path: Path | None = Path(args.ml_latest_small) if args.ml_latest_small else None
    if ml_path is None and args.offline:
        data_note = "--offline: not downloading MovieLens latest-small; using the synthetic world"
        sys.stderr.write(f"[demo] {data_note}\n")
    elif ml_path is None:
        try:
            from kg_builders.sources.download import fetch_dataset

            ml_path = fetch_dataset("ml-latest-small", cache_dir=cache, timeout=args.timeout)
        except DownloadError as exc:
            data_note = (
                f"MovieLens latest-small is not cached and could not be downloaded ({exc}); using the synthetic world"
            )
            sys.stderr.write(f"[demo] {data_note}\n")
    if ml_path is None and args.kg:
        raise ConfigError(
            f"--kg {args.kg} joins a knowledge graph to MovieLens items, and no MovieLens data was given "
            f"{'(--offline)' if args.offline else 'or could be downloaded'}: pass --ml-latest-small DIR"
        )
    if ml_path is not None:
        tables = load_movielens(ml_path)
        entities = "none"
        if args.kg:
            from kg_builders.sources.kg_triples import join_kg_folder

            tables = join_kg_folder(tables, args.kg)
        dataset = "ml-latest-small"
    else:
        from kg_builders.sources.synthetic import make_synthetic_world

        tables = make_synthetic_world(seed=args.seed)
        entities = "synthetic-gazetteer"
        dataset = "synthetic"
    step("load", t0, dataset=dataset, **{k: v for k, v in tables.counts().items()})

    t0 = time.perf_counter()
    from graph_rec.runs import build_pipeline

    kg, sp = build_pipeline(
        tables,
        split="random",
        split_settings={"ratios": [0.8, 0.1, 0.1], "seed": args.seed},
        builder_options={},
        entities=entities,
        progress=not args.json and sys.stderr.isatty(),
    )
    step("split + build", t0, split=sp.counts(), nodes=kg.report.nodes, edge_types=len(kg.edges))

    features = None
    if args.encoder != "none":
        t0 = time.perf_counter()
        features = _text_features(args, kg, cache, progress=not args.json and sys.stderr.isatty())
        step(
            "text features",
            t0,
            encoder=args.encoder,
            dim=features.dim,
            encoded={t: r.encoded for t, r in features.node_types.items()},
            cache_hits=features.total("cache_hits"),
            cache_misses=features.total("cache_misses"),
        )

    t0 = time.perf_counter()
    _save_build(out, kg, sp, overwrite=True)
    back = KnowledgeGraph.load(out / "graph")
    same = back.equals(kg, check_report=True)
    step("save + load", t0, identical=same)

    t0 = time.perf_counter()
    data = to_hetero_data(kg)
    data.validate()
    homo = to_homogeneous(kg)
    step(
        "to_hetero_data",
        t0,
        validate="ok",
        num_nodes=int(homo.node_type.numel()),
        num_edges=int(homo.edge_index.shape[1]),
    )

    t0 = time.perf_counter()
    nx_same = from_networkx(to_networkx(kg)).equals(kg, check_report=True)
    step("networkx round trip", t0, identical=nx_same)

    t0 = time.perf_counter()
    triples = write_rdf(kg, out / "graph.nt")
    rdf_same: bool | None = None
    if triples <= args.rdf_check_limit:
        import rdflib

        rdf_same = from_rdf(rdflib.Graph().parse(out / "graph.nt", format="nt")).equals(kg, check_report=True)
    step(
        "RDF (N-Triples)",
        t0,
        triples=triples,
        identical=rdf_same if rdf_same is not None else "not re-read at this size",
    )

    training = serving = neo4j = None
    if args.train_epochs > 0:
        training = _demo_training(args, kg, sp, out, step)
        serving = training.pop("serving")
        neo4j = training.pop("neo4j", None)

    ok = same and nx_same and rdf_same is not False
    payload = {
        "training": training,
        "serving": serving,
        "neo4j": neo4j,
        "dataset": dataset,
        "note": data_note,
        "out": str(out),
        "report": kg.report.to_dict(),
        "features": None if features is None else features.to_dict(),
        "steps": steps,
        "ok": ok,
    }
    feature_text = "" if features is None else f"\n{features.to_text()}"
    train_text = ""
    if training is not None:
        train_text = "\n\ntest (full ranking, training and validation items masked):\n" + "\n".join(
            f"  {name:<11} " + "  ".join(f"{k} {v:.4f}" for k, v in r["test"].items() if k.endswith("@20"))
            for name, r in training.items()
        )
        train_text += (
            f"\n\nsaved and reloaded {serving['model_dir']}; top 5 for user {serving['user']}:\n"
            + "\n".join(f"  {x['score']:+.4f}  {x['label']}" for x in serving["recommend"])
            + "\nwhy the first:\n"
            + "\n".join(f"  {p}" for p in serving["explain"])
            + "\na new item added from its text, closest to: "
            + "; ".join(serving["new_item_similar"])
        )
        if neo4j is not None:
            n4 = neo4j
            train_text += (
                f"\n\nwritten to Neo4j at {n4['uri']} (database {n4['database']}): "
                f"{n4['relationships_written']:,} relationships; asked back over Bolt:\n"
                + "\n".join(f"  {x}" for x in n4["recommendations"])
                + "\n  why: "
                + "\n       ".join(n4["why"])
                + "\n  neighbours: "
                + "; ".join(n4["neighbours"])
            )
    text = (
        f"{kg.report.to_text()}{feature_text}{train_text}\n\nwritten to {out}: graph/, split/, graph.nt"
        f"{'' if training is None else ', history.png, model/'}\nround trips identical: {ok}"
    )
    emit(args, payload, text)
    return 0 if ok else 1


def _demo_training(args: argparse.Namespace, kg: Any, sp: Any, out: Path, step: Any) -> dict[str, Any]:
    """Train GraphRec for a few epochs next to two baselines and evaluate all three on test."""
    import torch

    from graph_rec.data import RecData
    from graph_rec.eval.evaluator import EvalConfig, evaluate
    from graph_rec.runs import plot_history
    from graph_rec.training import TrainConfig, fit, init_model

    data = RecData(kg, sp)
    ev = EvalConfig(ks=(10, 20), beyond_accuracy=False)
    graphrec = {"embedding_dim": 128, "num_layers": 2, "relation_mode": "none", "score": "cosine"}
    train = TrainConfig(
        epochs=args.train_epochs,
        loss="softmax",
        num_negatives=1024,
        shared_negatives=True,
        temperature=0.1,
        batch_size=2048,
        lr=0.002,
        l2=0.0,
        eval_every=5,
        patience=3,
        seed=args.seed,
    )
    results: dict[str, Any] = {}
    for name, settings in (("popularity", {}), ("ease", {"l2": 500.0}), ("graphrec", graphrec)):
        t0 = time.perf_counter()
        model = init_model(name, settings, data, seed=args.seed)
        res = fit(model, data, train, eval_config=ev, progress=not args.json and sys.stderr.isatty())
        with torch.inference_mode():
            test = evaluate(model.scorer(), data, part="test", config=ev)
        if name == "graphrec":
            plot_history(res, out / "history.png", metric=train.metric)
        results[name] = {"best_epoch": res.best_epoch, "test": test.metrics, "seconds": round(res.seconds, 1)}
        step(f"train {name}", t0, epochs=res.best_epoch, **{"test recall@20": round(test.metrics["recall@20"], 4)})
    results["serving"] = _demo_serving(model, data, kg, graphrec, train, out, step)
    if args.neo4j:
        results["neo4j"] = _demo_neo4j(out / "model", results["serving"], step)
    return results


def _demo_neo4j(model_dir: Path, serving: dict[str, Any], step: Any) -> dict[str, Any]:
    """Export the saved recommender to the Neo4j server named by NEO4J_* and ask it the store's questions."""
    from graph_rec.explore.neo4j_store import Neo4jStore
    from graph_rec.explore.types import NodeRef
    from graph_rec.recommender import Recommender
    from kg_builders.export.neo4j_db import Neo4jSettings, write_neo4j

    env = os.environ
    settings = Neo4jSettings(
        uri=env.get("NEO4J_URI", "bolt://localhost:7687"),
        user=env.get("NEO4J_USER", "neo4j"),
        password=env.get("NEO4J_PASSWORD", ""),
        database=env.get("NEO4J_DATABASE", "neo4j"),
    )
    t0 = time.perf_counter()
    rec = Recommender.load(model_dir)
    rec_users = rec.user_ids[:20]
    embeddings, recs, expl = rec.export_tables(k=10, explain_top=1, users=rec_users)
    report = write_neo4j(
        rec.graph, settings, embeddings=embeddings, recommendations=recs, explanations=expl, features=False, clear=True
    )
    written = sum(report.relationships.values()) + report.recommendations
    step("neo4j export", t0, uri=settings.uri, relationships=written)
    t0 = time.perf_counter()
    user = serving["user"]
    with Neo4jStore(settings) as store:
        top = store.recommendations(user, k=3)
        why = store.why(user, top[0].item_id, limit=3)
        near = store.neighbours(NodeRef("item", top[0].item_id), limit=5)
    step("neo4j explore", t0, recommendations=len(top), paths=len(why))
    return {
        "uri": settings.uri,
        "database": settings.database,
        "relationships_written": written,
        "recommendations": [f"{r.rank}. {rec.label_of('item', r.item_id)} ({r.score:+.4f})" for r in top],
        "why": [rec.describe(p) for p in why],
        "neighbours": [f"{n.relation} {n.direction} {n.node.type}:{rec.label(n.node)}" for n in near],
    }


def _demo_serving(model: Any, data: Any, kg: Any, settings: dict, train: Any, out: Path, step: Any) -> dict[str, Any]:
    """Save the trained GraphRec as a Recommender, load it back, recommend, explain and add a new item."""
    from graph_rec.recommender import Recommender

    t0 = time.perf_counter()
    rec = Recommender(model, data, kg, model_name="graphrec", model_settings=settings, train_config=train)
    rec.save(out / "model", overwrite=True)
    rec = Recommender.load(out / "model")
    user = rec.user_ids[0]
    top = rec.recommend(user, k=5)
    ex = rec.explain(user, top.item_ids[0], max_paths=3)
    has_text = "text" in getattr(rec.model, "slots", [])
    genres = [e for e in kg.node_ids.get("entity", []) if e.startswith("genre:")][:2]
    similar: list[str] = []
    if has_text or genres:
        rec.add_item(
            "new-item",
            text="A heart-warming animated adventure for the whole family" if has_text else None,
            entities=genres,
        )
        similar = list(rec.similar_items("new-item", k=5).item_ids)
    step("serve: save, load, recommend", t0, user=user, top=top.item_ids[0], paths=len(ex.paths))
    return {
        "model_dir": str(out / "model"),
        "user": user,
        "recommend": [
            {"item_id": i, "label": rec.label_of("item", i), "score": round(s, 4)}
            for i, s in zip(top.item_ids, top.scores, strict=True)
        ],
        "explain": [rec.describe(p) for p in ex.paths],
        "new_item_similar": [rec.label_of("item", i) for i in similar],
    }


def _run_config(args: argparse.Namespace) -> Any:
    import tomllib

    from graph_rec.runs import RunConfig, with_overrides

    path = Path(args.config)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory, not a TOML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): a TOML file is UTF-8") from exc
    try:
        return RunConfig.from_dict(with_overrides(raw, args.set or []))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model from a TOML run config into a run directory."""
    from graph_rec.distributed import from_env
    from graph_rec.runs import train_run

    config = _run_config(args)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    # under torchrun (WORLD_SIZE > 1) this process joins the group; rank 0 alone prints and writes
    dist = from_env(config.train.device)
    try:
        if not dist.is_main:
            logging.getLogger("graph_rec").setLevel(logging.WARNING)
        progress = not args.json and sys.stderr.isatty() and dist.is_main
        summary = train_run(
            config,
            args.out,
            cache_dir=cache,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=progress,
            dist=dist,
        )
    except ConfigError as exc:  # a setting found wrong once the data is read: name the file too
        if str(exc).startswith(("data.", "graph.", "features.", "view.", "model", "train.", "eval.")):
            raise ConfigError(f"{args.config}: {exc}") from exc
        raise
    finally:
        dist.close()
    if not dist.is_main:
        return 0
    metric = config.train.metric
    lines = [
        f"{summary['model']}: best epoch {summary['best_epoch']} ({summary['stopped']}), "
        f"{summary['seconds']:.1f} s training, best validation after {summary['seconds_to_best']:.1f} s",
        f"valid {metric} {summary['valid'][metric]:.4f}"
        if metric in summary["valid"]  # a closed-form model may be validated on other metrics
        else "valid " + "  ".join(f"{k} {v:.4f}" for k, v in summary["valid"].items() if "@" in k),
        "test  " + "  ".join(f"{k} {v:.4f}" for k, v in summary["test"].items() if "@" in k),
        f"written to {summary['out']}: run.json, metrics.json, history.json, history.png, best/"
        + ("" if summary["stopped"] == "closed_form" else ", checkpoint/"),
    ]
    emit(args, summary, "\n".join(lines))
    return 0


def _metrics_text(part: str, res: Any) -> str:
    """An :class:`~graph_rec.eval.EvalResult` as the lines ``graph-rec evaluate`` prints."""
    return f"{part} ({res.num_users} users, {res.seconds:.2f} s)\n" + "\n".join(
        f"  {k:<14} {v:.4f}" for k, v in res.metrics.items()
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a saved run on its validation or test part."""
    from graph_rec.eval.evaluator import EvalConfig
    from graph_rec.runs import compare_runs, evaluate_run, read_run, saved_config

    meta = read_run(args.run)
    for path, m in ((args.run, meta), *(((args.against, read_run(args.against)),) if args.against else ())):
        if m.get("status") != "finished":  # the best weights so far, not the run's result
            print(
                f"graph-rec: note: {path} did not finish (status {m.get('status')!r}): these are its best weights "
                "so far; --resume finishes it",
                file=sys.stderr,
            )
    settings = saved_config(args.run, meta).eval.to_dict()
    if args.ks:
        settings["ks"] = list(args.ks)
    if args.sampled:
        settings["sampled"] = True
    ev = EvalConfig.from_dict(settings)
    progress = not args.json and sys.stderr.isatty()
    if not args.against:
        res = evaluate_run(args.run, part=args.part, eval_config=ev, progress=progress)
        emit(args, res.to_dict(), _metrics_text(args.part, res))
        return 0
    cmp = compare_runs(args.run, args.against, part=args.part, eval_config=ev, rounds=args.rounds, progress=progress)
    payload = {
        "run": cmp.run.to_dict() | {"per_user": None},
        "against": cmp.baseline.to_dict() | {"per_user": None},
        "comparisons": {m: c.to_dict() for m, c in cmp.comparisons.items()},
        "not_compared": cmp.not_compared,
    }
    text = _metrics_text(args.part, cmp.run)
    text += f"\nagainst {args.against} (paired bootstrap over users, {args.rounds} resamples, 95%):\n" + "\n".join(
        f"  {m:<14} {c.mean_a:.4f} -> {c.mean_b:.4f}  {c.relative:+.1%} "
        f"[{c.relative_ci[0]:+.1%}, {c.relative_ci[1]:+.1%}]  p = {c.p_value:.3f}"
        for m, c in cmp.comparisons.items()
    )
    text += "".join(f"\n  ({m} not compared: {why})" for m, why in cmp.not_compared.items())
    emit(args, payload, text)
    return 0


def load_recommender(path: str, *, device: str = "cpu") -> Any:
    """A saved recommender directory (``recommender.json``) or a training run directory (``run.json``)."""
    from graph_rec.recommender import Recommender

    p = Path(path)
    if (p / "recommender.json").is_file():
        return Recommender.load(p, device=device)
    if (p / "run.json").is_file():
        return Recommender.from_run(p, device=device)
    raise ConfigError(f"{p} is neither a saved recommender (recommender.json) nor a training run (run.json)")


def cmd_recommend(args: argparse.Namespace) -> int:
    """Top-k items for users of a saved model."""
    rec = load_recommender(args.model, device=args.device)
    lines, payload = [], []
    for user in args.user:
        r = rec.recommend(
            user,
            k=args.k,
            exclude_seen=not args.include_seen,
            query=args.query,
            query_weight=args.query_weight,
            diversity=args.diversity,
        )
        payload.append({"user_id": r.user_id, "items": [dataclasses.asdict(x) for x in r]})
        lines.append(f"user {r.user_id}:")
        titles = _titles(rec)
        for x in r:
            title = titles.get(x.item_id, "")
            lines.append(f"  {x.rank:>3}. {x.item_id:<12} {x.score:+.4f}  {title}")
    emit(args, {"model": rec.model_name, "recommendations": payload}, "\n".join(lines))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """Why an item is recommended to a user: paths ranked by their contribution to the score."""
    rec = load_recommender(args.model, device=args.device)
    ex = rec.explain(args.user, args.item, max_paths=args.max_paths, max_hops=args.max_hops)
    titles = _titles(rec)
    head = f"user {ex.user_id}, item {ex.item_id} {titles.get(ex.item_id, '')}: score {ex.score:+.4f}"
    lines = [head] + [f"  {k}. {rec.describe(p)}" for k, p in enumerate(ex.paths, start=1)]
    payload = {
        "user_id": ex.user_id,
        "item_id": ex.item_id,
        "score": ex.score,
        "paths": [p.to_dict() for p in ex.paths],
    }
    emit(args, payload, "\n".join(lines))
    return 0


def cmd_score_all(args: argparse.Namespace) -> int:
    """The top-k of every user (or of --users) written to Parquet parts, resumable."""
    from graph_rec.inference import score_all

    users = lines = None
    if args.users:
        path = Path(args.users)
        if not path.is_file():
            raise ConfigError(f"--users file {path} " + ("is a directory" if path.is_dir() else "does not exist"))
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"--users file {path} is not UTF-8 text ({exc})") from exc
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
        if not lines:
            raise ConfigError(f"--users file {path} lists no user id (one per line)")
        first: dict[str, int] = {}
        for n, u in lines:
            if u in first:
                raise DataError(f"user {u!r} is listed again (first on line {first[u]})", file=path, line=n)
            first[u] = n
        users = [u for _, u in lines]
    if args.progress and args.quiet:
        raise ConfigError("pass --progress or --quiet, not both")
    check_output_dir(args.out)  # fail before the model is loaded
    progress = args.progress or (not args.quiet and not args.json and sys.stderr.isatty())
    rec = load_recommender(args.model, device=args.device)
    try:
        res = score_all(
            rec,
            args.out,
            k=args.k,
            users=users,
            chunk_users=args.chunk_users,
            exclude_seen=not args.include_seen,
            overwrite=args.overwrite,
            resume=not args.no_resume,
            progress=progress,
        )
    except UnknownIdError as exc:  # score_all's own check, named by the file's line
        if lines is None:
            raise
        line = next(n for n, u in lines if u == exc.ids[0])
        raise DataError(
            f"unknown user id {exc.ids[0]!r} ({len(exc.ids)} unknown in all); the model's users are those of its "
            "graph and those added with add_user",
            file=args.users,
            line=line,
        ) from exc
    payload = {"model": rec.model_name, "k": args.k, "exclude_seen": not args.include_seen, **res.to_dict()}
    text = (
        f"{res.users:,} users, {res.rows:,} rows in {res.parts} parts ({res.resumed} resumed) written to "
        f"{res.out_dir} in {res.seconds:.2f} s ({res.users_per_second:,.0f} users/s)"
    )
    emit(args, payload, text)
    return 0


def _titles(rec: Any) -> dict[str, str]:
    titles = rec.graph.node_attrs.get("item", {}).get("title")
    if titles is None:
        return {}
    return {i: str(t) for i, t in zip(rec.graph.node_ids["item"], titles, strict=True) if t is not None}


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graph-rec", description=__doc__.split("\n")[0])
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
        sp.add_argument("--cache-dir", help="download cache (default: $GRAPH_REC_CACHE or data/cache)")

    sp = sub.add_parser("datasets", help="list the data sets of the catalog")
    common(sp)
    sp.set_defaults(func=cmd_datasets)

    sp = sub.add_parser("download", help="download a catalog data set (checksum-verified, cached)")
    sp.add_argument("name")
    common(sp)
    sp.set_defaults(func=cmd_download)

    sp = sub.add_parser("build", help="build a knowledge graph from a data set folder or catalog name")
    sp.add_argument("source", help="a folder, a catalog name (with --download), or 'synthetic'")
    sp.add_argument("--out", required=True, help="output directory (graph/ and split/)")
    sp.add_argument("--format", choices=list(FORMATS))
    sp.add_argument("--download", action="store_true", help="download a catalog data set if not cached")
    sp.add_argument("--kg", help="folder with kg.txt and item_index2entity_id.txt (KGAT/KGCN/MKR format)")
    sp.add_argument("--split", default="random", choices=[*SPLITS, "none"])
    sp.add_argument(
        "--ratios", type=_number_list(float), default="0.8,0.1,0.1", help="train,valid,test (default 0.8,0.1,0.1)"
    )
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--weight", default="rating", choices=["rating", "binary", "count", "log_count"])
    sp.add_argument("--min-rating", type=float, default=None)
    sp.add_argument("--min-tag-count", type=int, default=1)
    sp.add_argument("--no-tags", action="store_true")
    sp.add_argument("--no-genres", action="store_true")
    sp.add_argument("--no-social", action="store_true")
    sp.add_argument("--entities", default="none", help="none | spacy | gazetteer:<names.tsv> | synthetic-gazetteer")
    sp.add_argument(
        "--on-error", default="raise", choices=["raise", "skip"], help="bad input rows: stop, or skip and count"
    )
    sp.add_argument("--overwrite", action="store_true")
    _encoder_options(sp, default="none")
    common(sp)
    sp.set_defaults(func=cmd_build)

    sp = sub.add_parser("info", help="print a saved graph's schema, report and recipe")
    sp.add_argument("path")
    common(sp)
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser("export", help="export a saved graph to RDF (turtle, nt) or networkx node-link JSON")
    sp.add_argument("path")
    sp.add_argument("--to", required=True, choices=["turtle", "nt", "networkx"])
    sp.add_argument("--out", required=True)
    common(sp)
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("train", help="train a model from a TOML run config (build, encode, train, evaluate, save)")
    sp.add_argument("config", help="a TOML file with [data], [graph], [features], [view], [model], [train], [eval]")
    sp.add_argument("--out", required=True, help="the run directory")
    sp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
    sp.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    common(sp)
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("evaluate", help="evaluate a saved run (full ranking; --sampled adds AUC/F1)")
    sp.add_argument("run", help="a run directory written by 'graph-rec train'")
    sp.add_argument("--part", default="test", choices=["valid", "test"])
    sp.add_argument("--ks", type=_number_list(int), help="cut-offs, e.g. 10,20,50 (default: the run's)")
    sp.add_argument("--sampled", action="store_true", help="also the sampled protocol: AUC and F1 with 1:1 negatives")
    sp.add_argument(
        "--against",
        metavar="BASELINE_RUN",
        help="also evaluate this run (same [data]) and compare: each metric's relative difference with a "
        "95%% paired bootstrap interval over users",
    )
    sp.add_argument("--rounds", type=int, default=2000, help="bootstrap resamples for --against (default 2000)")
    common(sp)
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("recommend", help="top-k items for users of a saved model or run")
    sp.add_argument("model", help="a saved recommender directory or a 'graph-rec train' run directory")
    sp.add_argument("--user", action="append", required=True, help="a user id (repeatable)")
    sp.add_argument("--k", type=int, default=10)
    sp.add_argument("--include-seen", action="store_true", help="do not leave out the user's training items")
    sp.add_argument("--query", help="free text blended into the user's representation")
    sp.add_argument("--query-weight", type=float, default=0.5)
    sp.add_argument("--diversity", type=float, default=0.0, help="MMR trade-off in [0, 1] (0: relevance only)")
    sp.add_argument("--device", default="cpu")
    common(sp)
    sp.set_defaults(func=cmd_recommend)

    sp = sub.add_parser("explain", help="why an item scores what it does for a user: graph paths by contribution")
    sp.add_argument("model", help="a saved recommender directory or a 'graph-rec train' run directory")
    sp.add_argument("--user", required=True)
    sp.add_argument("--item", required=True)
    sp.add_argument("--max-paths", type=int, default=5)
    sp.add_argument("--max-hops", type=int, default=3, choices=[1, 2, 3])
    sp.add_argument("--device", default="cpu")
    common(sp)
    sp.set_defaults(func=cmd_explain)

    sp = sub.add_parser("score-all", help="top-k of every user of a saved model to Parquet (chunked, resumable)")
    sp.add_argument("model", help="a saved recommender directory or a 'graph-rec train' run directory")
    sp.add_argument("--out", required=True, help="output directory (part-*.parquet and _manifest.json)")
    sp.add_argument("--k", type=int, default=100, help="items per user (default 100)")
    sp.add_argument(
        "--chunk-users",
        type=int,
        default=10_000,
        help="users scored at once, one Parquet part each; memory about chunk x items x 4 bytes (default 10000)",
    )
    sp.add_argument("--users", help="a text file with one user id per line (default: every user)")
    sp.add_argument("--include-seen", action="store_true", help="do not leave out the users' training items")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    sp.add_argument("--no-resume", action="store_true", help="do not continue an interrupted output (an error)")
    sp.add_argument("--progress", action="store_true", help="always show a progress bar (default: on a terminal)")
    sp.add_argument("--quiet", action="store_true", help="never show a progress bar")
    sp.add_argument("--device", default="cpu")
    common(sp)
    sp.set_defaults(func=cmd_score_all)

    sp = sub.add_parser("demo", help="the whole chain on MovieLens latest-small (or the synthetic world)")
    sp.add_argument("--ml-latest-small", help="a local copy of ml-latest-small")
    sp.add_argument("--kg", help="a KG folder to join (kg.txt, item_index2entity_id.txt), e.g. MKR's movie KG")
    sp.add_argument("--out", default="out/demo", help="where the graph, split and RDF export go (default: out/demo)")
    sp.add_argument(
        "--overwrite", action="store_true", help="replace --out even when it holds files a demo does not write"
    )
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--timeout", type=float, default=20.0, help="download timeout in seconds")
    sp.add_argument(
        "--rdf-check-limit",
        type=int,
        default=200_000,
        help="re-read the RDF export and compare when it has at most this many triples (rdflib parses ~16k/s)",
    )
    sp.add_argument(
        "--offline", action="store_true", help="do not try to download; use a local copy or the synthetic world"
    )
    sp.add_argument(
        "--train-epochs",
        type=int,
        default=40,
        help="train GraphRec (and popularity and EASE) on the demo graph for up to this many epochs (0: skip)",
    )
    sp.add_argument(
        "--neo4j",
        action="store_true",
        help="also export the model to the Neo4j server of NEO4J_URI/USER/PASSWORD/DATABASE and explore it",
    )
    _encoder_options(sp, default="all-MiniLM-L6-v2")
    common(sp)
    sp.set_defaults(func=cmd_demo)

    from graph_rec.cli_neo4j import add_parsers

    add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args))
    # a user error, or a file that cannot be read or written (permissions, a full disk, a read-only place)
    except (GraphRecError, OSError) as exc:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps({"error": type(exc).__name__, "message": str(exc)}) + "\n")
        sys.stderr.write(f"graph-rec: error: {' '.join(str(exc).splitlines())}\n")  # one line, whatever it wraps
        return 2
    except KeyboardInterrupt:  # outputs are written atomically: nothing half-written is left behind
        sys.stderr.write("graph-rec: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
