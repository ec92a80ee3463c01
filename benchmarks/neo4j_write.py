"""Neo4j write throughput of write_neo4j against the same server's raw UNWIND capability and a naive loop.

One run, one server, one graph: MovieLens latest-small joined with the MKR movie KG (split per
user 80/10/10, seed 2026, standard builders, no text features: the graph of
benchmarks/configs/graphrec-ml-latest-small.toml). Measured, in this order, on an emptied database:

1. ``write_neo4j`` of the graph (constraints, nodes, then every edge type): relationships/s, on a
   warm server (the same write once before, then the database emptied; the cold time is kept too);
   each writer of 1-3 is measured ``--repeats`` times and the fastest kept (the machine is shared:
   noise only ever slows a run down);
2. the raw capability: the same edges written by the plain idiom
   ``UNWIND $rows AS row MATCH (a:S {id: row.s}) MATCH (b:D {id: row.d}) MERGE (a)-[r:T]->(b)
   SET r.weight = row.w`` in batches of 10,000 rows (no keys, so parallel edges collapse; not
   resumable), and the same with ``CREATE``;
3. a naive loop: one auto-commit ``MERGE`` query per edge (keyed like write_neo4j, so it is
   idempotent too) over ``--naive-rows`` interaction edges spread evenly over the edge list (so over
   all users), its rate extrapolated;
4. ``read_neo4j`` of the graph back, checked identical;
5. the whole export with recommendations: the saved recommender given by ``--model`` (its
   embeddings, top-10 recommendations of every user and the explanation paths of the first
   ``--explain-users`` users' top recommendation), or without ``--model`` a popularity model fitted
   here (recommendations only); the time of ``export_tables`` and of ``write_neo4j``.

The server is ArcadeDB's Neo4j-compatible Bolt endpoint, started by scripts/arcadedb.sh as a
private instance (a temporary data folder, free ports on 127.0.0.1) and stopped at the end, or
the server at ``--uri`` (``NEO4J_USER``, ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``; its database is
emptied: never point it at data you keep).

    python benchmarks/neo4j_write.py [--model runs/ml/best-recommender] [--uri bolt://...]

Writes benchmarks/results/neo4j_write.json and neo4j_write.md (``--name`` changes the name: e.g.
``neo4j_write_rust`` for a run whose driver has the ``neo4j-rust-ext`` packer).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, ROOT, SHARED, run_metadata  # noqa: E402

SCRIPT = ROOT / "scripts" / "arcadedb.sh"
RAW_BATCH = 10_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateServer:
    """An ArcadeDB instance of this run: temporary data folder, free ports, random password."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="graph-rec-neo4j-bench-")
        self.bolt = _free_port()
        self.env = {
            **os.environ,
            "ARCADE_DATA": self.tmp.name,
            "ARCADE_BOLT_PORT": str(self.bolt),
            "ARCADE_HTTP_PORT": str(_free_port()),
            "ARCADE_PASSWORD": "bench-" + secrets.token_urlsafe(12),
            "ARCADE_HEAP": os.environ.get("ARCADE_HEAP", "2g"),
        }

    def run(self, command: str) -> None:
        r = subprocess.run(["bash", str(SCRIPT), command], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"scripts/arcadedb.sh {command} failed:\n{r.stdout}{r.stderr}")


def _client_peak_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def server_peak_mb(data_dir: str | Path) -> float | None:
    """Peak resident memory (VmHWM) of the ArcadeDB server recorded in ``data_dir``, or None if unknown."""
    try:
        pid = int((Path(data_dir) / "arcadedb.pid").read_text().strip())
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        return None
    return None


def build_graph() -> tuple[Any, Any]:
    from graph_rec.runs import build_pipeline
    from kg_builders.sources.kg_triples import join_kg_folder
    from kg_builders.sources.movielens import load_movielens

    tables = join_kg_folder(load_movielens(SHARED / "ml-latest-small"), SHARED / "kg-samples/movie")
    return build_pipeline(
        tables,
        split="random",
        split_settings={"ratios": [0.8, 0.1, 0.1], "seed": 2026},
        builder_options={},
        entities="none",
        progress=False,
    )


def _wipe(driver: Any, database: str) -> None:
    while True:
        recs, _, _ = driver.execute_query(
            "MATCH (n) WITH n LIMIT 5000 DETACH DELETE n RETURN count(*) AS c", database_=database
        )
        if recs[0]["c"] == 0:
            return


def _edge_dicts(kg: Any) -> list[tuple[Any, list[dict[str, Any]]]]:
    from kg_builders.export.neo4j_db import node_label, relationship_type

    out = []
    for (s, r, d), e in kg.edges.items():
        src, dst = kg.node_ids[s], kg.node_ids[d]
        a, b = e.edge_index.tolist()
        w = e.edge_weight.tolist()
        rows = [{"s": src[x], "d": dst[y], "i": i, "w": w[i]} for i, (x, y) in enumerate(zip(a, b, strict=True))]
        out.append(((node_label(s), relationship_type(r), node_label(d)), rows))
    return out


def raw_unwind(driver: Any, database: str, kg: Any, verb: str) -> dict[str, float]:
    """The plain ``UNWIND $rows ... MERGE`` (or ``CREATE``) idiom over the same edges, batches of 10k."""
    edges = _edge_dicts(kg)
    n = sum(len(rows) for _, rows in edges)
    t0 = time.perf_counter()
    with driver.session(database=database) as session:
        for (src, rel, dst), rows in edges:
            q = (
                f"UNWIND $rows AS row MATCH (a:`{src}` {{id: row.s}}) MATCH (b:`{dst}` {{id: row.d}}) "
                f"{verb} (a)-[r:`RAW_{rel}`]->(b) SET r.weight = row.w"
            )
            for k in range(0, len(rows), RAW_BATCH):
                chunk = rows[k : k + RAW_BATCH]
                session.execute_write(lambda tx, q=q, chunk=chunk: tx.run(q, rows=chunk).consume())
    seconds = time.perf_counter() - t0
    for (_, rel, _), _ in edges:
        driver.execute_query(f"MATCH ()-[r:`RAW_{rel}`]->() DELETE r", database_=database)
    return {"relationships": n, "seconds": round(seconds, 3), "relationships_per_s": round(n / seconds, 1)}


def naive_loop(driver: Any, database: str, kg: Any, rows_wanted: int, max_seconds: float) -> dict[str, float]:
    """One auto-commit keyed MERGE per edge (interaction edges spread over all users), rate extrapolated."""
    (src, rel, dst), rows = next((k, r) for k, r in _edge_dicts(kg) if k[1] == "INTERACTED")
    rows = rows[:: max(1, len(rows) // rows_wanted)]
    q = (
        f"MATCH (a:`{src}` {{id: $s}}) MATCH (b:`{dst}` {{id: $d}}) "
        f"MERGE (a)-[r:`NAIVE_{rel}` {{idx: $i}}]->(b) SET r.weight = $w"
    )
    done = 0
    t0 = time.perf_counter()
    with driver.session(database=database) as session:
        for row in rows[:rows_wanted]:
            session.run(q, row).consume()
            done += 1
            if time.perf_counter() - t0 > max_seconds:
                break
    seconds = time.perf_counter() - t0
    driver.execute_query(f"MATCH ()-[r:`NAIVE_{rel}`]->() DELETE r", database_=database)
    rate = done / seconds
    return {
        "relationships": done,
        "seconds": round(seconds, 3),
        "relationships_per_s": round(rate, 1),
        "extrapolated_graph_seconds": round(kg.num_edges() / rate, 1),
    }


def best(repeats: int, measure: Any) -> dict[str, Any]:
    """The fastest of ``repeats`` measurements (with every sample's seconds)."""
    runs = [measure() for _ in range(repeats)]
    out = dict(min(runs, key=lambda r: r["seconds"]))
    out["samples_seconds"] = [r["seconds"] for r in runs]
    return out


def recommendation_tables(args: argparse.Namespace, kg: Any, sp: Any) -> tuple[Any, dict, Any, Any, dict]:
    from graph_rec.recommender import Recommender

    t0 = time.perf_counter()
    if args.model:
        rec = Recommender.load(args.model)
        source = f"saved recommender {args.model} ({rec.model_name})"
    else:
        rec = Recommender.fit(kg, model="popularity", split=sp)
        source = "popularity model fitted in this run"
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    embeddings, recs, _ = rec.export_tables(k=10, explain_top=0)
    expl = None
    if args.model and args.explain_users > 0:
        _, _, expl = rec.export_tables(k=1, explain_top=1, users=list(rec.user_ids[: args.explain_users]))
    t_tables = time.perf_counter() - t0
    info = {
        "source": source,
        "load_or_fit_seconds": round(t_model, 3),
        "export_tables_seconds": round(t_tables, 3),
        "users": int(recs["user_id"].nunique()),
        "recommendations": len(recs),
        "embeddings": {t: list(a.shape) for t, a in embeddings.items()},
        "explanations": 0 if expl is None else len(expl),
    }
    return rec.graph, embeddings, recs, expl, info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a saved recommender (Recommender.save) to export with recommendations")
    p.add_argument("--explain-users", type=int, default=20, help="explain the top item of this many users (--model)")
    p.add_argument("--naive-rows", type=int, default=2000, help="edges the naive loop writes (default 2000)")
    p.add_argument("--naive-seconds", type=float, default=60.0, help="stop the naive loop after this long")
    p.add_argument("--uri", help="use this server (its database is emptied) instead of a private ArcadeDB")
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3, help="measurements per writer; the fastest is kept")
    p.add_argument("--name", default="neo4j_write", help="results file name (default neo4j_write)")
    args = p.parse_args()

    import neo4j

    from kg_builders.export.neo4j_db import Neo4jSettings, count_neo4j, read_neo4j, write_neo4j

    meta = run_metadata()
    meta["versions"]["neo4j"] = neo4j.__version__
    try:
        meta["versions"]["neo4j-rust-ext"] = md.version("neo4j-rust-ext")
    except md.PackageNotFoundError:
        meta["versions"]["neo4j-rust-ext"] = None
    if not (SHARED / "ml-latest-small").is_dir() or not (SHARED / "kg-samples/movie").is_dir():
        raise SystemExit(f"needs {SHARED}/ml-latest-small and {SHARED}/kg-samples/movie")

    server = None
    if args.uri:
        settings = Neo4jSettings(
            uri=args.uri,
            user=os.environ.get("NEO4J_USER", "neo4j"),
            password=os.environ.get("NEO4J_PASSWORD", ""),
            database=os.environ.get("NEO4J_DATABASE", "neo4j"),
            batch_size=args.batch_size,
        )
        where = args.uri
    else:
        server = PrivateServer()
        server.run("install")
        try:
            server.run("start")
        except SystemExit:
            server.run("stop")  # a half-started server is stopped by its recorded pid
            raise
        settings = Neo4jSettings(
            uri=f"bolt://127.0.0.1:{server.bolt}",
            user="root",
            password=server.env["ARCADE_PASSWORD"],
            database="graph",
            batch_size=args.batch_size,
        )
        where = "ArcadeDB 26.10.2 Bolt plugin (PyPI arcadedb-embedded==26.10.2.post1), private instance on 127.0.0.1"
    driver = neo4j.GraphDatabase.driver(settings.uri, auth=(settings.user, settings.password))
    try:
        agent = driver.get_server_info().agent
        t0 = time.perf_counter()
        kg, sp = build_graph()
        build_s = time.perf_counter() - t0
        client_before = _client_peak_mb()
        n_edges, n_nodes = kg.num_edges(), sum(kg.num_nodes(t) for t in kg.node_types)
        print(f"graph: {kg!r} built in {build_s:.1f} s; server {agent}", flush=True)

        # the first heavy work of a fresh server runs while its JIT compiles: time it, then measure warm
        _wipe(driver, settings.database)
        cold = write_neo4j(kg, settings)
        samples = []
        for _ in range(args.repeats):  # the best of a few: the machine is shared, noise only slows
            _wipe(driver, settings.database)
            samples.append(write_neo4j(kg, settings))
        report = min(samples, key=lambda r: r.seconds)
        ours = {
            "cold_first_write_seconds": cold.seconds,
            "samples_seconds": [r.seconds for r in samples],
            "seconds": report.seconds,
            "nodes": n_nodes,
            "relationships": n_edges,
            "relationships_per_s": round(n_edges / report.seconds, 1),
            "phase_seconds": report.phase_seconds,
            "relationship_phase_per_s": round(n_edges / report.phase_seconds["relationships"], 1),
            "rows_per_s": round((n_edges + n_nodes) / report.seconds, 1),
            "batches": report.batches,
        }
        print(f"write_neo4j: {ours}", flush=True)
        first_counts = count_neo4j(settings)
        second = write_neo4j(kg, settings)
        ours["second_run_seconds"] = second.seconds
        ours["counts"] = first_counts
        ours["same_counts_after_second_run"] = count_neo4j(settings) == first_counts
        t0 = time.perf_counter()
        back = read_neo4j(settings)
        read = {"seconds": round(time.perf_counter() - t0, 3), "identical": back.equals(kg, check_report=True)}
        print(f"second write {second.seconds:.1f} s; read_neo4j {read}", flush=True)

        raw_merge = best(args.repeats, lambda: raw_unwind(driver, settings.database, kg, "MERGE"))
        print(f"raw UNWIND MERGE: {raw_merge}", flush=True)
        raw_create = best(args.repeats, lambda: raw_unwind(driver, settings.database, kg, "CREATE"))
        print(f"raw UNWIND CREATE: {raw_create}", flush=True)
        naive = best(
            args.repeats, lambda: naive_loop(driver, settings.database, kg, args.naive_rows, args.naive_seconds)
        )
        print(f"naive loop: {naive}", flush=True)

        graph, embeddings, recs, expl, rec_info = recommendation_tables(args, kg, sp)
        _wipe(driver, settings.database)
        full = write_neo4j(graph, settings, embeddings=embeddings, recommendations=recs, explanations=expl)
        export = {
            **rec_info,
            "write_seconds": full.seconds,
            "total_seconds": round(rec_info["export_tables_seconds"] + full.seconds, 3),
            "nodes_written": full.total_nodes,
            "relationships_written": full.total_relationships,
        }
        print(f"export with recommendations: {export}", flush=True)
        memory = {
            "client_peak_rss_mb_after_graph_build": client_before,
            "client_peak_rss_mb": _client_peak_mb(),
            "server_peak_rss_mb": None if server is None else server_peak_mb(server.tmp.name),
        }
    finally:
        driver.close()
        if server is not None:
            server.run("stop")
            server.tmp.cleanup()

    result = {
        "meta": meta,
        "server": {"where": where, "agent": agent},
        "graph": {
            "data": "ml-latest-small + MKR movie KG, random 80/10/10 split (seed 2026), standard builders, no features",
            "build_seconds": round(build_s, 3),
            "nodes": n_nodes,
            "relationships": n_edges,
            "schema": kg.schema(),
        },
        "write_neo4j": ours,
        "read_neo4j": read,
        "raw_unwind_merge": raw_merge,
        "raw_unwind_create": raw_create,
        "naive_loop": naive,
        "ratios": {
            "write_neo4j_vs_raw_merge": round(ours["relationships_per_s"] / raw_merge["relationships_per_s"], 2),
            "write_neo4j_vs_raw_create": round(ours["relationships_per_s"] / raw_create["relationships_per_s"], 2),
            "write_neo4j_vs_naive": round(ours["relationships_per_s"] / naive["relationships_per_s"], 1),
            "relationship_phase_vs_raw_merge": round(
                ours["relationship_phase_per_s"] / raw_merge["relationships_per_s"], 2
            ),
            "relationship_phase_vs_raw_create": round(
                ours["relationship_phase_per_s"] / raw_create["relationships_per_s"], 2
            ),
            "relationship_phase_vs_naive": round(ours["relationship_phase_per_s"] / naive["relationships_per_s"], 1),
        },
        "export_with_recommendations": export,
        "memory": memory,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(to_markdown(result))
    print(to_markdown(result))


def to_markdown(r: dict) -> str:
    m, w, raw, cre, nv, x = (
        r["meta"],
        r["write_neo4j"],
        r["raw_unwind_merge"],
        r["raw_unwind_create"],
        r["naive_loop"],
        r["export_with_recommendations"],
    )
    rust = m["versions"].get("neo4j-rust-ext")
    rt = r["ratios"]
    lines = [
        f"Measured {m['date']} on {m['machine']['platform']} ({m['machine']['cpus']} CPUs, shared), commit "
        f"{m['git_commit'][:10]}, neo4j driver {m['versions']['neo4j']} "
        f"({'with' if rust else 'without'} the neo4j-rust-ext packer), server: {r['server']['agent']} "
        f"({r['server']['where']}). Graph: {r['graph']['data']}: {r['graph']['nodes']:,} nodes, "
        f"{r['graph']['relationships']:,} relationships. One run, one server; each writer measured "
        f"{len(w['samples_seconds'])} times on a warm server, the fastest kept (all samples in the JSON).",
        "",
        "| writer | relationships | seconds | relationships/s | write_neo4j (whole) is | write_neo4j (edges) is |",
        "|---|---:|---:|---:|---:|---:|",
        f"| write_neo4j, whole write: constraints, {w['nodes']:,} nodes, relationships (keyed, resumable) | "
        f"{w['relationships']:,} | {w['seconds']:.2f} | **{w['relationships_per_s']:,.0f}** | | |",
        f"| write_neo4j, its relationship phase alone | {w['relationships']:,} | "
        f"{w['phase_seconds']['relationships']:.2f} | **{w['relationship_phase_per_s']:,.0f}** | | |",
        f"| raw `UNWIND $rows ... MERGE` (relationships only, no keys, batches of 10k) | {raw['relationships']:,} | "
        f"{raw['seconds']:.2f} | {raw['relationships_per_s']:,.0f} | {rt['write_neo4j_vs_raw_merge']:.2f}x | "
        f"{rt['relationship_phase_vs_raw_merge']:.2f}x |",
        f"| raw `UNWIND $rows ... CREATE` (relationships only, not idempotent) | {cre['relationships']:,} | "
        f"{cre['seconds']:.2f} | {cre['relationships_per_s']:,.0f} | {rt['write_neo4j_vs_raw_create']:.2f}x | "
        f"{rt['relationship_phase_vs_raw_create']:.2f}x |",
        f"| naive loop: one keyed `MERGE` query per edge ({nv['relationships']:,} edges, rate extrapolated) | "
        f"{nv['relationships']:,} | {nv['seconds']:.2f} | {nv['relationships_per_s']:,.0f} | "
        f"**{rt['write_neo4j_vs_naive']:.1f}x** | **{rt['relationship_phase_vs_naive']:.1f}x** |",
        "",
        f"write_neo4j's rate counts the nodes' time too ({w['nodes']:,} nodes; {w['rows_per_s']:,.0f} rows/s); "
        "on the freshly started server (JIT still compiling) the same write took "
        f"{w['cold_first_write_seconds']:.2f} s. A second run took {w['second_run_seconds']:.2f} s; "
        f"same counts after it: {w['same_counts_after_second_run']}; "
        f"read_neo4j read the graph back in {r['read_neo4j']['seconds']:.2f} s, identical: "
        f"{r['read_neo4j']['identical']}. The naive loop would need {nv['extrapolated_graph_seconds']:,.0f} s "
        "for the whole graph.",
        "",
        f"Whole export with recommendations ({x['source']}): export_tables {x['export_tables_seconds']:.2f} s "
        f"({x['recommendations']:,} recommendations of {x['users']:,} users, embeddings "
        f"{x['embeddings'] or 'none'}, {x['explanations']:,} explanation paths), write_neo4j "
        f"{x['write_seconds']:.2f} s ({x['nodes_written']:,} nodes, {x['relationships_written']:,} relationships): "
        f"**{x['total_seconds']:.2f} s**.",
    ]
    mem = r.get("memory")
    if mem:
        server = mem["server_peak_rss_mb"]
        lines += [
            "",
            f"Peak memory: this Python process {mem['client_peak_rss_mb']:,.0f} MB "
            f"({mem['client_peak_rss_mb_after_graph_build']:,.0f} MB once the graph was built, before any write); "
            + (
                f"the server (JVM, heap capped by ARCADE_HEAP) {server:,.0f} MB resident at its peak."
                if server is not None
                else "the server's was not measured (an external server)."
            ),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
