"""``graph-rec neo4j ...``: write a model's graph, embeddings and recommendations to Neo4j, read it back, explore it.

Subcommands (added to the main parser by :func:`add_parsers`):

* ``neo4j export PATH``: ``PATH`` is a saved recommender (``Recommender.save``): its knowledge graph,
  node embeddings, top-``--k`` recommendations and the explanation paths of each user's first
  ``--explain-top`` recommendations are written with :func:`~kg_builders.export.neo4j_db.write_neo4j`.
  ``PATH`` may also be a saved graph (``graph-rec build`` output): the graph alone is written.
* ``neo4j read OUT``: rebuild the stored graph (:func:`~kg_builders.export.neo4j_db.read_neo4j`)
  and save it to ``OUT``, so a graph kept in Neo4j can be trained on.
* ``neo4j explore node|neighbours|paths|subgraph|recommendations|why``: questions answered by
  :class:`~graph_rec.explore.neo4j_store.Neo4jStore`. Nodes are written ``TYPE:ID`` (split at the
  first colon: ``item:296``, ``entity:genre:drama``).

Connection settings come from flags, else the usual environment variables, read here at the edge:
``--uri`` / ``NEO4J_URI`` (default ``bolt://localhost:7687``), ``--user`` / ``NEO4J_USER`` (default
``neo4j``), ``--database`` / ``NEO4J_DATABASE`` (default ``neo4j``; the project's local ArcadeDB
server serves ``graph``). The password is never a flag: ``NEO4J_PASSWORD``, or one line on standard
input with ``--password-stdin``. It never appears in output, logs or errors.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from graph_rec.cli import emit
from kg_builders.errors import ConfigError

DEFAULT_URI = "bolt://localhost:7687"
EXPLORE = ("node", "neighbours", "paths", "subgraph", "recommendations", "why")


# ----------------------------------------------------------------------------- settings
def settings_from_args(args: argparse.Namespace, *, stdin: Any = None, environ: Any = None) -> Any:
    """:class:`Neo4jSettings` from the flags, the ``NEO4J_*`` environment and (``--password-stdin``) stdin."""
    from kg_builders.export.neo4j_db import Neo4jSettings

    env = os.environ if environ is None else environ
    if args.password_stdin:
        line = (stdin or sys.stdin).readline()
        if not line:
            raise ConfigError("--password-stdin: nothing on standard input")
        password = line.rstrip("\r\n")
    else:
        password = env.get("NEO4J_PASSWORD", "")
    changes: dict[str, Any] = {
        "uri": args.uri or env.get("NEO4J_URI") or DEFAULT_URI,
        "user": args.user or env.get("NEO4J_USER") or "neo4j",
        "password": password,
        "database": args.database or env.get("NEO4J_DATABASE") or "neo4j",
    }
    if getattr(args, "batch_size", None) is not None:
        changes["batch_size"] = args.batch_size
    if getattr(args, "retry_seconds", None) is not None:
        changes["max_retry_time"] = args.retry_seconds
    return Neo4jSettings(**changes)


def _connection(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("connection (flags win over NEO4J_URI, NEO4J_USER, NEO4J_DATABASE)")
    g.add_argument("--uri", help=f"Bolt URI (default $NEO4J_URI or {DEFAULT_URI})")
    g.add_argument("--user", help="user name (default $NEO4J_USER or neo4j)")
    g.add_argument("--database", help="database (default $NEO4J_DATABASE or neo4j; the local ArcadeDB serves 'graph')")
    g.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (default: $NEO4J_PASSWORD)",
    )
    g.add_argument("--retry-seconds", type=float, help="how long transient failures are retried (default 30)")
    sp.add_argument("--json", action="store_true", help="print one machine-readable JSON object")


def _progress(args: argparse.Namespace) -> bool:
    return not args.json and sys.stderr.isatty()


def parse_ref(text: str) -> Any:
    """``TYPE:ID`` -> :class:`NodeRef` (split at the first colon)."""
    from graph_rec.explore.types import NodeRef

    node_type, sep, node_id = text.partition(":")
    if not sep or not node_type or not node_id:
        raise ConfigError(f"a node is written TYPE:ID (e.g. item:296), got {text!r}")
    return NodeRef(node_type, node_id)


# ----------------------------------------------------------------------------- commands
def cmd_neo4j_export(args: argparse.Namespace) -> int:
    """Write a saved recommender (graph, embeddings, recommendations, explanations) or a saved graph."""
    from kg_builders.export.neo4j_db import write_neo4j

    settings = settings_from_args(args)
    path = Path(args.path)
    t0 = time.perf_counter()
    embeddings = recs = expl = None
    if (path / "recommender.json").is_file() or (path / "run.json").is_file():
        from graph_rec.cli import load_recommender
        from graph_rec.models.graphrec import GraphRec

        rec = load_recommender(str(path))
        kg = rec.graph
        explain_top = args.explain_top
        if explain_top is None:  # explanations need GraphRec's propagation
            explain_top = 3 if isinstance(rec.model, GraphRec) else 0
        embeddings, recs, expl = rec.export_tables(
            k=10 if args.k is None else args.k, explain_top=explain_top, users=None
        )
        if args.no_embeddings:
            embeddings = None
        source = f"recommender {path} ({rec.model_name})"
    else:
        from kg_builders.graph import KnowledgeGraph

        graph_dir = path / "graph" if (path / "graph" / "graph.json").is_file() else path
        if not (graph_dir / "graph.json").is_file():
            raise ConfigError(
                f"{path} is neither a saved recommender (recommender.json), a training run (run.json) nor a "
                "saved graph (graph.json)"
            )
        given = [f for f, v in (("--k", args.k), ("--explain-top", args.explain_top)) if v is not None]
        if args.no_embeddings:
            given.append("--no-embeddings")
        if given:
            raise ConfigError(f"{path} is a graph without a model: {', '.join(given)} apply to a recommender or a run")
        kg = KnowledgeGraph.load(graph_dir)
        source = f"graph {graph_dir}"
    prepared = round(time.perf_counter() - t0, 3)
    report = write_neo4j(
        kg,
        settings,
        embeddings=embeddings,
        recommendations=recs,
        explanations=expl if expl is not None and len(expl) else None,
        features=not args.no_features,
        clear=args.clear,
        progress=_progress(args),
    )
    payload = {"source": source, "prepare_seconds": prepared, **report.to_dict()}
    rels = ", ".join(f"{t} {n:,}" for t, n in report.relationships.items())
    text = (
        f"wrote {source} to {settings.uri} (database {settings.database!r}) in {report.seconds:.2f} s\n"
        f"  nodes: " + ", ".join(f"{lb} {n:,}" for lb, n in report.nodes.items()) + "\n"
        f"  relationships: {rels}\n"
        f"  embeddings: {report.embeddings or 'none'}; recommendations: {report.recommendations:,}; "
        f"explanation paths: {report.explanations:,}\n"
        f"  {report.total_relationships:,} relationships in {report.batches} transactions "
        f"({report.total_relationships / max(report.seconds, 1e-9):,.0f} relationships/s)"
    )
    if report.removed_nodes or report.removed_relationships:
        text += (
            f"\n  removed what the earlier graph had and this one has not: {report.removed_nodes:,} nodes, "
            f"{report.removed_relationships:,} relationships of types it no longer has"
        )
    emit(args, payload, text)
    return 0


def cmd_neo4j_read(args: argparse.Namespace) -> int:
    """Rebuild the stored graph and save it (``KnowledgeGraph.save``)."""
    from kg_builders.export.neo4j_db import read_neo4j

    settings = settings_from_args(args)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it")
    t0 = time.perf_counter()
    kg = read_neo4j(settings, progress=_progress(args))
    kg.save(out, overwrite=args.overwrite)
    seconds = round(time.perf_counter() - t0, 3)
    emit(
        args,
        {"out": str(out), "schema": kg.schema(), "seconds": seconds},
        f"read {kg!r}\nsaved to {out} in {seconds:.2f} s",
    )
    return 0


def _paths_payload(paths: list[Any]) -> list[dict[str, Any]]:
    return [{**p.to_dict(), "text": str(p)} for p in paths]


def cmd_neo4j_explore(args: argparse.Namespace) -> int:
    """Answer one exploration question from the database."""
    from dataclasses import asdict

    from graph_rec.explore.neo4j_store import Neo4jStore

    settings = settings_from_args(args)
    with Neo4jStore(settings) as store:
        q = args.question
        if q == "node":
            attrs = store.node(parse_ref(args.node))
            emit(args, attrs, "\n".join(f"{k}: {v}" for k, v in attrs.items()))
        elif q == "neighbours":
            found = store.neighbours(
                parse_ref(args.node), relation=args.relation, direction=args.direction, limit=args.limit
            )
            lines = [
                f"{'->' if n.direction == 'out' else '<-'} {n.relation:<24} {n.node}  (weight {n.weight:g})"
                for n in found
            ]
            emit(args, [asdict(n) for n in found], "\n".join(lines) or "no neighbours")
        elif q == "paths":
            found = store.paths(
                parse_ref(args.source), parse_ref(args.target), max_hops=args.max_hops, limit=args.limit
            )
            emit(args, _paths_payload(found), "\n".join(str(p) for p in found) or "no paths")
        elif q == "subgraph":
            sub = store.subgraph([parse_ref(r) for r in args.nodes], hops=args.hops, limit=args.limit)
            lines = [f"{len(sub.nodes)} nodes, {len(sub.edges)} edges"]
            lines += [f"  {e.source} -{e.relation}-> {e.target}  ({e.weight:g})" for e in sub.edges]
            emit(args, asdict(sub), "\n".join(lines))
        elif q == "recommendations":
            found = store.recommendations(args.user_id, k=args.k)
            lines = [f"{r.rank:>3}. {r.item_id:<20} {r.score:.4f}  {r.model}" for r in found]
            emit(args, [asdict(r) for r in found], "\n".join(lines) or f"no recommendations stored for {args.user_id}")
        elif q == "why":
            found = store.why(args.user_id, args.item_id, limit=args.limit)
            emit(args, _paths_payload(found), "\n".join(str(p) for p in found) or "no paths")
        else:  # argparse restricts the choices
            raise ConfigError(f"unknown question {q!r}; valid: {', '.join(EXPLORE)}")
    return 0


# ----------------------------------------------------------------------------- parser
def add_parsers(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``neo4j export``, ``neo4j read`` and ``neo4j explore ...`` to the main parser's subparsers.

    Each leaf sets ``func`` to its handler (:func:`cmd_neo4j_export`, :func:`cmd_neo4j_read`,
    :func:`cmd_neo4j_explore`), which returns the exit status and raises the project's errors.
    """
    p = subparsers.add_parser("neo4j", help="write to, read from and explore a Neo4j database over Bolt")
    sub = p.add_subparsers(dest="neo4j_command", required=True)

    sp = sub.add_parser("export", help="write a saved recommender (or a saved graph) to Neo4j")
    sp.add_argument("path", help="a saved recommender directory, a training run, or a saved graph / build directory")
    sp.add_argument("--k", type=int, default=None, help="recommendations per user (default 10)")
    sp.add_argument(
        "--explain-top",
        type=int,
        default=None,
        help="explain each user's first N recommendations (default 3 for GraphRec, 0 for models without explanations)",
    )
    sp.add_argument("--no-embeddings", action="store_true", help="do not store node embeddings")
    sp.add_argument("--no-features", action="store_true", help="do not store feature vectors (read back lacks them)")
    sp.add_argument(
        "--clear",
        action="store_true",
        help="first delete everything an earlier graph-rec write stored (without it, only what the new graph "
        "no longer has is removed)",
    )
    sp.add_argument("--batch-size", type=int, help="rows per UNWIND transaction (default 10000)")
    _connection(sp)
    sp.set_defaults(func=cmd_neo4j_export)

    sp = sub.add_parser("read", help="rebuild the stored graph and save it (to train on)")
    sp.add_argument("out", help="the graph directory to write")
    sp.add_argument("--overwrite", action="store_true")
    _connection(sp)
    sp.set_defaults(func=cmd_neo4j_read)

    ex = sub.add_parser("explore", help="neighbours, paths, subgraphs, recommendations and 'why' from Neo4j")
    questions = ex.add_subparsers(dest="question", required=True)
    sp = questions.add_parser("node", help="a node's stored attributes")
    sp.add_argument("node", help="TYPE:ID")
    _connection(sp)
    sp = questions.add_parser("neighbours", help="edges at a node")
    sp.add_argument("node", help="TYPE:ID")
    sp.add_argument("--relation", help="only this relation (snake_case, e.g. tagged_with)")
    sp.add_argument("--direction", default="both", choices=["out", "in", "both"])
    sp.add_argument("--limit", type=int, default=50)
    _connection(sp)
    sp = questions.add_parser("paths", help="simple paths between two nodes")
    sp.add_argument("source", help="TYPE:ID")
    sp.add_argument("target", help="TYPE:ID")
    sp.add_argument("--max-hops", type=int, default=3)
    sp.add_argument("--limit", type=int, default=10)
    _connection(sp)
    sp = questions.add_parser("subgraph", help="nodes within some hops of the given nodes, and their edges")
    sp.add_argument("nodes", nargs="+", help="TYPE:ID ...")
    sp.add_argument("--hops", type=int, default=1)
    sp.add_argument("--limit", type=int, default=10_000)
    _connection(sp)
    sp = questions.add_parser("recommendations", help="a user's stored recommendations")
    sp.add_argument("user_id")
    sp.add_argument("--k", type=int, default=10)
    _connection(sp)
    sp = questions.add_parser("why", help="why an item was recommended: stored explanation paths, else graph paths")
    sp.add_argument("user_id")
    sp.add_argument("item_id")
    sp.add_argument("--limit", type=int, default=5)
    _connection(sp)
    for name in EXPLORE:
        questions.choices[name].set_defaults(func=cmd_neo4j_explore)
    return p
