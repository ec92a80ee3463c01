"""Speed, as ratios measured in the same run: PyG's LightGCN, the ranking floor, recommend (issue 7, point 4).

Data: ml-latest-small (with the MKR movie KG joined) under protocol A of ``benchmarks/protocols.py``
(per-user random 80/10/10 split with seed 2026, made before the graph is built; full ranking over
every item with the known positives masked). Every run happens in this one process, with one torch
thread count (``--threads``, default torch's) and one validation evaluator,
``EvalConfig(ks=(20,), beyond_accuracy=False)``.

Parts (``--part``, repeatable; default all):

* ``time``: time to a validation Recall@20 target. PyG's LightGCN (``benchmarks/peers.py``: PyG's
  example, trained as the example trains it, with Adam lr ``--pyg-lr``, default 0.01, instead of the
  example's 0.001: at 0.001 its validation Recall@20 is still 0.1145 after 30 epochs on this data,
  at 0.01 it is 0.18 after 60 s; validated every epoch, a time budget ``--pyg-budget``), then graph-rec's
  ``lightgcn`` and ``graphrec`` with the settings of ``protocols.GRIDS`` and ``protocols.TRAIN``,
  except ``eval_every`` 1 (the crossing is seen at epoch resolution) and a patience of
  ``TRAIN["patience"] * TRAIN["eval_every"]`` validations (the protocol's patience in epochs).
  PyG's LightGCN has no early stopping unless ``--pyg-patience`` is given: its budget ends it. (Its
  validation Recall@20 is highest after the first epoch, where the propagated random embeddings
  rank roughly by popularity, then dips and climbs back slowly at Adam lr 0.001, so a patience
  would stop it in that dip, long before its budget.) The target is ``--target``, else
  ``--target-fraction`` (default 0.95) of the best validation Recall@20 PyG's LightGCN reached within
  its budget: PyG's curve flattens near its best, so the time to 100% of it mostly measures where in
  the flat part its last small gain fell. Per model: the seconds until the
  first validation at or above the target, wall time with validation included (as each trainer
  counts it), and with the validation passes left out. The peers record the latter themselves (``train_seconds``); graph-rec's trainer
  records wall time only, so each of its validation passes is timed here, by wrapping the
  ``evaluate`` call of :mod:`graph_rec.training.trainer` for the duration of the fit, and the
  passes up to an epoch are subtracted from that epoch's seconds. Both ways leave the computation
  of the embeddings that validation ranks with on the training side (the peers pause their clock
  after building the scorer, the wrapper times ``evaluate`` only). Ratio = PyG's seconds / ours;
  goal: at least 5.
* ``eval``: with the trained ``graphrec`` (best epoch), ``evaluate(scorer, data, part="test")``
  (median of ``--repeats`` under ``torch.inference_mode``) against the floor: the scorer's own
  user and item matrices (taken once, outside the timing), then for every test user, in chunks of
  the evaluator's batch size, ``U[chunk] @ I.T`` and ``torch.topk(k=20)``: no masking, no metrics.
  A "floor + masking" variant also sets the training and validation positives to ``-inf`` first,
  so the table shows where the time goes. Ratio = evaluate / floor; goal: at most 1.5.
* ``recommend``: a :class:`graph_rec.recommender.Recommender` built on the trained ``graphrec``;
  ``recommend(user_id, k=20)`` p50 / p99 over ``--calls`` random users after ``--warmup`` calls,
  and the users per second of ``recommend_batch`` (every user, batches of 1,024) and of
  ``recommend_indices`` (every user, chunks of 1,024), seen items excluded.

Memory: before each measurement the garbage is collected and freed heap returned to the system
(``malloc_trim``); the peak RSS growth over the RSS at its start is sampled every 10 ms
(``peers._PeakRss``) for each training run, each evaluation variant (its warm-up pass), the
Recommender's construction, the latency loop and each batch API.

    python benchmarks/speed.py                                   # the full run (about 15 minutes on 2 cores)
    python benchmarks/speed.py --part eval --part recommend      # graphrec trained once with protocol A's settings
    python benchmarks/speed.py --pyg-budget 20 --target 0.05 --max-epochs 8   # a development-size run
    python benchmarks/speed.py --markdown-only                   # rewrite speed.md from speed.json

Writes benchmarks/results/speed.json (a part that is not run keeps its previous entry, with its
own metadata) and speed.md. ``run(parts, **options)`` does the same in-process and returns the payload.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _meta import RESULTS, ROOT, SHARED, latency_ms, run_metadata  # noqa: E402
from peers import PygLightGCNSettings, _PeakRss, fit_pyg_lightgcn  # noqa: E402
from protocols import DATASETS, GRIDS, TRAIN, prepare  # noqa: E402

from graph_rec.errors import ConfigError, GraphRecError  # noqa: E402

DATASET = "ml-latest-small"
PARTS = ("time", "eval", "recommend")
OURS = ("lightgcn", "graphrec")
METRIC = "recall@20"
K = 20
TIME_GOAL = 5.0  # PyG seconds / ours, at least
EVAL_GOAL = 1.5  # evaluate / floor, at most
OUT_JSON = RESULTS / "speed.json"
OUT_MD = RESULTS / "speed.md"
OUT_PNG = RESULTS / "speed_time_to_target.png"
PATIENCE = TRAIN["patience"] * TRAIN["eval_every"]  # protocol A's patience, in epochs


# --------------------------------------------------------------------------------------- pure pieces
def first_crossing(history: Sequence[Mapping[str, Any]], target: float, *, key: str = f"valid_{METRIC}") -> dict | None:
    """The first validation entry of ``history`` whose ``key`` is at or above ``target`` (None if none is).

    Entries without ``key`` (epochs that were not validated) are passed over.
    """
    for h in history:
        if key in h and h[key] >= target:
            return dict(h)
    return None


def ratio(reference: float | None, ours: float | None) -> float | None:
    """``reference / ours`` (how many times faster ours is), None when either is missing or ours is 0."""
    if reference is None or ours is None or ours <= 0:
        return None
    return reference / ours


def with_train_seconds(history: Sequence[Mapping[str, Any]], validation_seconds: Sequence[float]) -> list[dict]:
    """graph-rec's trainer history, validated epochs only, in the peers' form.

    Args:
        history: :attr:`graph_rec.training.trainer.TrainResult.history` (``seconds`` is wall time
            since the fit started, validation included; ``valid`` at validated epochs).
        validation_seconds: the duration of each validation pass, in order.

    Returns:
        one dict per validated epoch: ``epoch``, ``seconds``, ``train_seconds`` (``seconds`` minus
        the validation passes so far, this one included), ``validation_seconds``, ``loss`` and
        ``valid_recall@20`` / ``valid_ndcg@20``.
    """
    validated = [h for h in history if "valid" in h]
    if len(validated) != len(validation_seconds):
        raise GraphRecError(f"{len(validated)} validated epochs but {len(validation_seconds)} timed validation passes")
    out, spent = [], 0.0
    for h, v in zip(validated, validation_seconds, strict=True):
        spent += v
        entry = {
            "epoch": h["epoch"],
            "seconds": round(h["seconds"], 3),
            "train_seconds": round(h["seconds"] - spent, 3),
            "validation_seconds": round(v, 3),
        }
        if "loss" in h:
            entry["loss"] = round(float(h["loss"]), 6)
        entry |= {f"valid_{k}": h["valid"][k] for k in ("recall@20", "ndcg@20") if k in h["valid"]}
        out.append(entry)
    return out


def floor_topk(
    user_repr: Tensor,
    item_t: Tensor,
    users: Tensor,
    *,
    k: int = K,
    batch_size: int = 1024,
    masks: Sequence[Any] = (),
) -> tuple[Tensor, Tensor]:
    """The floor of full ranking: ``user_repr[chunk] @ item_t`` then ``torch.topk``, chunk by chunk.

    Args:
        user_repr: ``[num_users, d]`` final user representations.
        item_t: ``[d, num_items]`` final item representations, transposed.
        users: ``[n]`` user indices to rank, in the evaluator's order.
        k: list length.
        batch_size: users per chunk (the evaluator's ``EvalConfig.batch_size``).
        masks: :class:`~graph_rec.data.UserItems` whose pairs get ``-inf`` before the top-k (empty:
            the bare floor).

    Returns:
        ``(scores [n, k], item indices [n, k])``, best first.
    """
    scores, items = [], []
    for chunk in users.split(batch_size):
        s = user_repr[chunk] @ item_t
        for m in masks:
            row, item = m.rows(chunk)
            s.index_put_((row, item), torch.tensor(float("-inf"), dtype=s.dtype))
        top_s, top_i = torch.topk(s, k, dim=1)
        scores.append(top_s)
        items.append(top_i)
    return torch.cat(scores), torch.cat(items)


# --------------------------------------------------------------------------------------- helpers
def _release() -> None:
    """Collect garbage and hand freed heap back to the system, so the next RSS growth is its own."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def _timed_validation(record: list[float]) -> Iterator[None]:
    """Time every ``evaluate`` call graph-rec's trainer makes in the block (appended to ``record``)."""
    from graph_rec.training import trainer

    inner = trainer.evaluate

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - t)

    trainer.evaluate = timed
    try:
        yield
    finally:
        trainer.evaluate = inner


def _eval_config() -> Any:
    from graph_rec.eval.evaluator import EvalConfig

    return EvalConfig(ks=(K,), beyond_accuracy=False)


def _summary(history: list[dict], target: float | None, **fields: Any) -> dict[str, Any]:
    hit = None if target is None else first_crossing(history, target)
    reached = None
    if hit is not None:
        reached = {"epoch": hit["epoch"], "seconds": hit["seconds"], "train_seconds": hit.get("train_seconds")}
    return {**fields, "reached": reached, "history": history}


def _fit_ours(name: str, data: Any, *, epochs: int, eval_every: int, patience: int) -> tuple[dict[str, Any], Any]:
    """Train graph-rec's ``name`` with protocol A's settings; its run record (no target yet) and the model."""
    from graph_rec.training import TrainConfig, fit, init_model

    settings, train = GRIDS[name][0]
    cfg = TrainConfig.from_dict({**TRAIN, **train, "epochs": epochs, "eval_every": eval_every, "patience": patience})
    model = init_model(name, settings, data, seed=cfg.seed)
    passes: list[float] = []
    _release()
    with _PeakRss() as rss, _timed_validation(passes):
        result = fit(model, data, cfg, eval_config=_eval_config())
    history = with_train_seconds(result.history, passes)
    record = {
        "settings": settings,
        "train": cfg.to_dict(),
        "stopped": result.stopped,
        "epochs": result.history[-1]["epoch"],
        "best_epoch": result.best_epoch,
        "best_valid": result.best_valid,
        "seconds": round(result.seconds, 3),
        "train_seconds": round(result.seconds - sum(passes), 3),
        "validation_seconds": round(sum(passes), 3),
        "peak_rss_growth_mb": rss.growth_mb,
        "history": history,
    }
    return record, model


# --------------------------------------------------------------------------------------- parts
def part_time(
    data: Any,
    *,
    target: float | None,
    target_fraction: float,
    pyg_lr: float,
    pyg_budget: float,
    max_epochs: int | None,
    patience: int,
    pyg_patience: int | None,
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Time to the validation target; returns the part's record, graphrec's model and its run record."""
    seed = TRAIN["seed"]
    pyg_settings = PygLightGCNSettings(lr=pyg_lr)
    _release()
    pyg = fit_pyg_lightgcn(
        data,
        settings=pyg_settings,
        seed=seed,
        valid_every=1,
        patience=pyg_patience or pyg_settings.max_epochs,  # max_epochs: never, the budget ends it
        time_budget_s=pyg_budget,
        eval_config=_eval_config(),
    )
    source = (
        "--target"
        if target is not None
        else f"{target_fraction:g} x the best validation Recall@20 of PyG's LightGCN within its budget "
        f"({pyg.best_valid[METRIC]:.4f})"
    )
    tgt = float(target) if target is not None else target_fraction * float(pyg.best_valid[METRIC])
    runs = {
        "pyg_lightgcn": _summary(
            pyg.history,
            tgt,
            settings=pyg.settings,
            train={"valid_every": 1, "patience": pyg_patience, "time_budget_s": pyg_budget, "seed": seed},
            stopped=pyg.stopped,
            epochs=pyg.history[-1]["epoch"] if pyg.history else 0,
            best_epoch=pyg.best_epoch,
            best_valid=pyg.best_valid,
            seconds=round(pyg.seconds, 3),
            train_seconds=round(pyg.train_seconds, 3),
            validation_seconds=round(pyg.seconds - pyg.train_seconds, 3),
            peak_rss_growth_mb=pyg.peak_rss_growth_mb,
        )
    }
    del pyg
    epochs = min(TRAIN["epochs"], max_epochs) if max_epochs else TRAIN["epochs"]
    model = record = None
    for name in OURS:
        record, model = _fit_ours(name, data, epochs=epochs, eval_every=1, patience=patience)
        history = record.pop("history")
        runs[name] = _summary(history, tgt, **record)
        if name != "graphrec":
            del model
    ref = runs["pyg_lightgcn"]["reached"]
    ratios = {}
    for name in OURS:
        ours = runs[name]["reached"]
        wall = ratio(ref and ref["seconds"], ours and ours["seconds"])
        train_only = ratio(ref and ref["train_seconds"], ours and ours["train_seconds"])
        ratios[name] = {
            "wall": None if wall is None else round(wall, 3),
            "train_only": None if train_only is None else round(train_only, 3),
            "goal": TIME_GOAL,
            "met": wall is not None and wall >= TIME_GOAL,
            "met_train_only": train_only is not None and train_only >= TIME_GOAL,
        }
    out = {
        "target": tgt,
        "target_source": source,
        "metric": f"valid {METRIC}",
        "pyg_budget_s": pyg_budget,
        "patience": patience,
        "pyg_patience": pyg_patience,
        "validation_time": (
            "pyg_lightgcn: its own train_seconds (clock paused around evaluate); graph-rec: each trainer "
            "evaluate call timed by a wrapper and subtracted"
        ),
        "runs": runs,
        "ratios": ratios,
    }
    graphrec = {k: v for k, v in runs["graphrec"].items() if k not in ("history", "reached")}
    return out, model, graphrec


def part_eval(data: Any, model: Any, *, repeats: int) -> dict[str, Any]:
    """evaluate(test) against the floor (matmul + top-k) and the floor with masking, on ``model``'s scorer."""
    from graph_rec.eval.evaluator import evaluate
    from graph_rec.eval.metrics import ACCURACY_METRICS

    ev = _eval_config()
    model.eval()
    with torch.inference_mode():
        t = time.perf_counter()
        scorer = model.scorer()
        repr_seconds = time.perf_counter() - t
        if scorer.user_repr is None or scorer.item_repr is None:
            raise GraphRecError(f"{type(model).__name__}'s scorer has no user / item matrices: no floor to measure")
        user_repr = scorer.user_repr
        item_t = scorer.item_repr.t().contiguous()  # what Scorer.from_embeddings multiplies with
        held = data.test
        users = torch.nonzero(held.counts() > 0).flatten()  # the evaluator's users, in its order
        masks = (data.train, data.valid)
        runs: dict[str, Callable[[], Any]] = {
            "evaluate": lambda: evaluate(scorer, data, part="test", config=ev),
            "floor": lambda: floor_topk(user_repr, item_t, users, k=K, batch_size=ev.batch_size),
            "floor_masked": lambda: floor_topk(user_repr, item_t, users, k=K, batch_size=ev.batch_size, masks=masks),
        }
        peak: dict[str, float | None] = {}
        results: dict[str, Any] = {}
        for name, fn in runs.items():  # warm-up pass of each, with its memory
            _release()
            with _PeakRss() as rss:
                results[name] = fn()
            peak[name] = rss.growth_mb
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):  # interleaved, so a burst of load on the machine hits all three alike
            for name, fn in runs.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    # the masked floor ranks as the evaluator does: its Recall@20 must match evaluate's
    _, top_i = results["floor_masked"]
    hits = held.contains(users[:, None].expand_as(top_i), top_i)
    floor_recall = float(ACCURACY_METRICS["recall"](hits, held.counts()[users], K).to(torch.float64).mean())
    median = {name: statistics.median(v) for name, v in times.items()}
    r = ratio(median["evaluate"], median["floor"])
    return {
        "users": int(users.numel()),
        "items": int(data.num_items),
        "embedding_dim": int(user_repr.shape[1]),
        "batch_size": ev.batch_size,
        "k": K,
        "repeats": repeats,
        "representations_seconds": round(repr_seconds, 4),
        "seconds": {name: [round(x, 4) for x in v] for name, v in times.items()},
        "median_seconds": {name: round(v, 4) for name, v in median.items()},
        "peak_rss_growth_mb": peak,
        "test_recall@20": results["evaluate"].metrics[METRIC],
        "floor_masked_recall@20": floor_recall,
        "ratio": None if r is None else round(r, 3),
        "ratio_to_masked_floor": round(median["evaluate"] / median["floor_masked"], 3),
        "goal": EVAL_GOAL,
        "met": r is not None and r <= EVAL_GOAL,
    }


def part_recommend(
    kg: Any, data: Any, model: Any, graphrec: Mapping[str, Any], *, calls: int, warmup: int, repeats: int
) -> dict[str, Any]:
    """recommend latency and the batch APIs' throughput of a Recommender over ``model``."""
    from graph_rec.recommender import Recommender
    from graph_rec.training import TrainConfig

    peak: dict[str, float | None] = {}
    _release()
    with _PeakRss() as rss:
        t = time.perf_counter()
        rec = Recommender(
            model,
            data,
            kg,
            model_name="graphrec",
            model_settings=graphrec["settings"],
            train_config=TrainConfig.from_dict(graphrec["train"]),
        )
        build_s = time.perf_counter() - t
    peak["build"] = rss.growth_mb
    user_ids = list(rec.user_ids)
    rng = np.random.default_rng(TRAIN["seed"])
    picks = [user_ids[i] for i in rng.integers(0, len(user_ids), warmup + calls)]
    for u in picks[:warmup]:
        rec.recommend(u, k=K)
    times = []
    _release()
    with _PeakRss() as rss:
        for u in picks[warmup:]:
            t = time.perf_counter()
            rec.recommend(u, k=K)
            times.append(time.perf_counter() - t)
    peak["recommend"] = rss.growth_mb

    chunk = 1024
    batch_apis: dict[str, Callable[[], Any]] = {
        "recommend_batch": lambda: rec.recommend_batch(user_ids, k=K, batch_size=chunk),
        "recommend_indices": lambda: [
            rec.recommend_indices(user_ids[a : a + chunk], k=K) for a in range(0, len(user_ids), chunk)
        ],
    }
    batch: dict[str, Any] = {}
    for name, fn in batch_apis.items():
        _release()
        with _PeakRss() as rss:
            fn()  # warm-up, with its memory
        peak[name] = rss.growth_mb
        secs = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            secs.append(time.perf_counter() - t)
        med = statistics.median(secs)
        batch[name] = {
            "users": len(user_ids),
            "chunk": chunk,
            "seconds": [round(s, 4) for s in secs],
            "users_per_s": round(len(user_ids) / med, 1),
        }
    return {
        "users": len(user_ids),
        "items": int(data.num_items),
        "k": K,
        "exclude_seen": True,
        "warmup": warmup,
        "build_seconds": round(build_s, 3),
        "latency": latency_ms(times),
        "batch": batch,
        "peak_rss_growth_mb": peak,
    }


# --------------------------------------------------------------------------------------- run
def skip_reason() -> str | None:
    """Why the benchmark cannot run here (a data folder is absent), or None."""
    spec = DATASETS[DATASET]
    for rel in (spec["path"], spec["kg"]):
        if rel and not (SHARED / rel).is_dir():
            return f"skip {DATASET}: {SHARED / rel} is absent"
    return None


def _parts(parts: Sequence[str] | str) -> list[str]:
    names = [parts] if isinstance(parts, str) else list(parts)
    if not names:
        raise ConfigError(f"no part given; parts: {[*PARTS, 'all']}")
    unknown = [p for p in names if p not in (*PARTS, "all")]
    if unknown:
        raise ConfigError(f"unknown part(s) {unknown}; parts: {[*PARTS, 'all']}")
    return list(PARTS) if "all" in names else [p for p in PARTS if p in names]


def run(
    parts: Sequence[str] | str = ("all",),
    *,
    target: float | None = None,
    target_fraction: float = 0.95,
    pyg_lr: float = 0.01,
    pyg_budget: float = 300.0,
    max_epochs: int | None = None,
    patience: int = PATIENCE,
    pyg_patience: int | None = None,
    threads: int | None = None,
    repeats: int = 3,
    calls: int = 500,
    warmup: int = 20,
    cache_dir: str | Path | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Run the parts in this process; return the payload (and write speed.json / speed.md when ``write``).

    Args:
        parts: among ``"time"``, ``"eval"``, ``"recommend"``, ``"all"``.
        target: the validation Recall@20 to reach (default: ``target_fraction`` of PyG LightGCN's best
            within its budget).
        target_fraction: see ``target``.
        pyg_lr: PyG LightGCN's Adam learning rate.
        pyg_budget: PyG LightGCN's time budget in seconds (validation included).
        max_epochs: cap graph-rec's epochs (default: protocol A's ``TRAIN["epochs"]``).
        patience: validations without improvement before graph-rec's trainer stops.
        pyg_patience: the same for PyG's LightGCN (default None: no early stopping, the budget ends it).
        threads: torch threads for everything (default: torch's current count).
        repeats: timed repetitions of each evaluation variant and batch API (the median is reported).
        calls: timed ``recommend`` calls.
        warmup: untimed ``recommend`` calls before them.
        cache_dir: the data cache of ``protocols.prepare`` (default ``data/cache``).
        write: write ``benchmarks/results/speed.json`` and ``speed.md``.

    Returns:
        ``{"meta", "load_average_start", "load_average_end", "data", "time"?, "eval"?, "recommend"?}``,
        or ``{"skipped": reason}`` when the data set is absent.
    """
    todo = _parts(parts)
    if target is not None and not 0 < target <= 1:
        raise ConfigError(f"target must be a Recall@20 in (0, 1], got {target!r}")
    if not 0 < target_fraction <= 1:
        raise ConfigError(f"target_fraction must be in (0, 1], got {target_fraction!r}")
    if pyg_lr <= 0:
        raise ConfigError(f"pyg_lr must be positive, got {pyg_lr!r}")
    if pyg_budget <= 0:
        raise ConfigError(f"pyg_budget must be positive, got {pyg_budget!r}")
    if max_epochs is not None and max_epochs < 1:
        raise ConfigError(f"max_epochs must be at least 1, got {max_epochs!r}")
    for name, v in (("patience", patience), ("pyg_patience", pyg_patience), ("repeats", repeats), ("calls", calls)):
        if v is not None and v < 1:
            raise ConfigError(f"{name} must be at least 1, got {v!r}")
    if warmup < 0:
        raise ConfigError(f"warmup must be at least 0, got {warmup!r}")
    reason = skip_reason()
    if reason is not None:
        return {"skipped": reason}
    from graph_rec.data import RecData

    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads or threads_before)
    try:
        load_start = list(os.getloadavg())
        kg, sp, prep = prepare(DATASET, Path(cache_dir) if cache_dir else ROOT / "data" / "cache")
        data = RecData(kg, sp)
        new: dict[str, Any] = {}
        model = graphrec = None
        if "time" in todo:
            meta, load = run_metadata(), os.getloadavg()
            new["time"], model, graphrec = part_time(
                data,
                target=target,
                target_fraction=target_fraction,
                pyg_lr=pyg_lr,
                pyg_budget=pyg_budget,
                max_epochs=max_epochs,
                patience=patience,
                pyg_patience=pyg_patience,
            )
            new["time"] |= {"meta": meta, "load_average": [list(load), list(os.getloadavg())]}
        if model is None and ("eval" in todo or "recommend" in todo):  # protocol A's graphrec, as protocols.py fits it
            epochs = min(TRAIN["epochs"], max_epochs) if max_epochs else TRAIN["epochs"]
            graphrec, model = _fit_ours(
                "graphrec", data, epochs=epochs, eval_every=TRAIN["eval_every"], patience=TRAIN["patience"]
            )
            graphrec.pop("history")
        for name in ("eval", "recommend"):
            if name not in todo:
                continue
            meta, load = run_metadata(), os.getloadavg()
            if name == "eval":
                new[name] = part_eval(data, model, repeats=repeats)
            else:
                new[name] = part_recommend(kg, data, model, graphrec, calls=calls, warmup=warmup, repeats=repeats)
            new[name] |= {"model": graphrec, "meta": meta, "load_average": [list(load), list(os.getloadavg())]}
        payload: dict[str, Any] = json.loads(OUT_JSON.read_text()) if write and OUT_JSON.is_file() else {}
        payload |= {
            "meta": run_metadata(),
            "protocol": __doc__.split("\n\n")[1],
            "load_average_start": load_start,
            "load_average_end": list(os.getloadavg()),
            "data": {
                "dataset": DATASET,
                "users": data.num_users,
                "items": data.num_items,
                "train": data.train.nnz,
                "valid": data.valid.nnz,
                "test": data.test.nnz,
                "prepare_seconds": round(prep, 1),
            },
            **new,
        }
        payload["peak_rss_mb"] = round(_max_rss_mb(), 1)
    finally:
        torch.set_num_threads(threads_before)
    if write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        OUT_JSON.write_text(json.dumps(payload, indent=1))
        OUT_MD.write_text(to_markdown(payload))
        plot_time(payload, OUT_PNG)
    return payload


def _max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------- markdown
def _f(v: Any, fmt: str = ".1f", none: str = "—") -> str:
    return none if v is None else format(v, fmt)


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _measured(part: Mapping[str, Any]) -> str:
    meta = part.get("meta", {})
    load = part.get("load_average")
    loads = f"; load average {load[0][0]:.2f} at its start, {load[1][0]:.2f} at its end" if load else ""
    return f"Measured {meta.get('date', '?')}, torch threads {meta.get('torch_threads', '?')}{loads}."


def _time_md(t: Mapping[str, Any]) -> list[str]:
    runs, ratios = t["runs"], t["ratios"]
    lines = [
        f"#### Time to a validation Recall@20 of {t['target']:.4f}",
        "",
        f"Target: {t['target_source']}. Every model is validated after every epoch with the same evaluator. "
        f"graph-rec stops after {t['patience']} validations without improvement; PyG's LightGCN "
        + (
            f"after {t['pyg_patience']}, or at its time budget of {t['pyg_budget_s']:g} s. "
            if t.get("pyg_patience")
            else f"at its time budget of {t['pyg_budget_s']:g} s. "
        )
        + _measured(t),
        "",
        "| model | epochs to target | s to target (wall) | s to target (no validation) | training s / epoch "
        "| best valid R@20 (epoch) | epochs run, stopped | peak RSS growth MB | PyG / ours (wall) "
        "| PyG / ours (no validation) | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        hit = r["reached"]
        per_epoch = hit["train_seconds"] / hit["epoch"] if hit and hit.get("train_seconds") is not None else None
        best = f"{r['best_valid'].get(METRIC, float('nan')):.4f} ({r['best_epoch']})"
        if name in ratios:
            q = ratios[name]
            wall = ("—" if q["wall"] is None else f"{q['wall']:.2f}×") + (" (met)" if q["met"] else " (not met)")
            train = "—" if q["train_only"] is None else f"{q['train_only']:.2f}×"
            goal = f"≥ {q['goal']:g}×"
        else:
            wall, train, goal = "reference", "reference", ""
        lines.append(
            f"| {name} | {_f(hit and hit['epoch'], 'd', 'never')} | {_f(hit and hit['seconds'])} | "
            f"{_f(hit and hit.get('train_seconds'))} | {_f(per_epoch, '.2f')} | {best} | "
            f"{r['epochs']}, {r['stopped']} | {_f(r['peak_rss_growth_mb'])} | {wall} | {train} | {goal} |"
        )
    lines += ["", f"Validation time: {t['validation_time']}."]
    ref = runs["pyg_lightgcn"]
    for name in ratios:
        q, r = ratios[name], runs[name]
        if q["met"]:
            head = f"{name}: met."
        else:
            head = f"**{name}: not met" + ("" if q["wall"] is None else f" ({q['wall']:.2f}× < {q['goal']:g}×)") + ".**"
        lines.append("")
        if ref["reached"] is None:
            lines.append(
                f"{head} PyG's LightGCN never reached the target within its budget (best "
                f"{ref['best_valid'].get(METRIC, float('nan')):.4f}), so there is no ratio."
            )
        elif r["reached"] is None:
            lines.append(
                f"{head} It never reached the target: its best validation Recall@20 was "
                f"{r['best_valid'].get(METRIC, float('nan')):.4f} at epoch {r['best_epoch']} of {r['epochs']} "
                f"({r['stopped']})."
            )
        else:  # the ratio is (PyG's epochs / ours) x (our training speed per epoch / PyG's), plus validation
            a, b = ref["reached"], r["reached"]
            fewer = a["epoch"] / b["epoch"]
            faster = (
                (a["train_seconds"] / a["epoch"]) / (b["train_seconds"] / b["epoch"]) if b["train_seconds"] else None
            )
            share = (b["seconds"] - b["train_seconds"]) / b["seconds"] if b["seconds"] else 0.0
            lines.append(
                f"{head} It needed {_epochs(b['epoch'])} against PyG's {a['epoch']} ({fewer:.2f}× fewer) and its "
                f"training epochs were {_f(faster, '.2f')}× as fast as PyG's (validation excluded); validation was "
                f"{share:.0%} of its wall time to the target."
            )
    return lines


def _eval_md(e: Mapping[str, Any]) -> list[str]:
    med, peak = e["median_seconds"], e["peak_rss_growth_mb"]
    floor = med["floor"]
    rows = [
        ("evaluate (masking, top-k, metrics)", "evaluate"),
        ("floor + masking (train and valid positives to -inf)", "floor_masked"),
        ("floor (matmul + top-k)", "floor"),
    ]
    lines = [
        f"#### Full-ranking evaluation of {e['users']:,} test users against the matmul + top-k floor",
        "",
        f"graphrec's best epoch; {e['items']:,} items, dimension {e['embedding_dim']}, chunks of {e['batch_size']:,} "
        f"users, k = {e['k']}; median of {e['repeats']} under `torch.inference_mode()`. The user and item "
        f"matrices are the scorer's own, computed once ({e['representations_seconds']:.3f} s) outside the timing. "
        f"{_measured(e)}",
        "",
        "| measurement | median s | every run s | peak RSS growth MB | / floor | goal |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in rows:
        goal = f"≤ {e['goal']:g}× ({'met' if e['met'] else 'not met'})" if key == "evaluate" else ""
        lines.append(
            f"| {label} | {med[key]:.4f} | {', '.join(f'{x:.4f}' for x in e['seconds'][key])} | "
            f"{_f(peak.get(key))} | {med[key] / floor:.2f}× | {goal} |"
        )
    excess = med["evaluate"] - floor
    mask = med["floor_masked"] - floor
    rest = med["evaluate"] - med["floor_masked"]
    lines += [
        "",
        f"Test Recall@20 from evaluate {e['test_recall@20']:.4f}; from the masked floor's lists "
        f"{e['floor_masked_recall@20']:.4f} (the same ranking).",
    ]
    if rest <= 0:
        lines.append(
            f"evaluate (masking, top-k and metrics) took no longer than the masked floor ({med['evaluate']:.4f} s "
            f"against {med['floor_masked']:.4f} s): what it adds to the bare floor is the masking, within this "
            "machine's noise (compare the runs of each row)."
        )
    elif excess > 0:
        lines.append(
            f"Of the {excess:.4f} s evaluate spends above the floor, masking takes {mask:.4f} s ({mask / excess:.0%}) "
            f"and the hit look-up and metrics {rest:.4f} s ({rest / excess:.0%})."
        )
    if not e["met"]:
        lines += [
            "",
            f"**Not met ({e['ratio']:.2f}× > {e['goal']:g}×):** what limits it is "
            + ("masking the known positives" if mask >= rest else "the hit look-up and metric computation")
            + f"; against the masked floor evaluate is {e['ratio_to_masked_floor']:.2f}×.",
        ]
    return lines


def _recommend_md(r: Mapping[str, Any]) -> list[str]:
    lat, peak = r["latency"], r["peak_rss_growth_mb"]
    lines = [
        f"#### recommend latency and batch throughput ({r['users']:,} users, {r['items']:,} items, k = {r['k']})",
        "",
        f"Seen items excluded. A `Recommender` built on graphrec's best epoch in {r['build_seconds']:.2f} s "
        f"(peak RSS growth {_f(peak.get('build'))} MB). {_measured(r)}",
        "",
        "| measurement | value | peak RSS growth MB |",
        "|---|---|---|",
        f"| `recommend(user_id, k={r['k']})`, {lat['n']} random users after {r['warmup']} warm-up calls | "
        f"p50 {lat['p50_ms']:.3f} ms, p99 {lat['p99_ms']:.3f} ms, mean {lat['mean_ms']:.3f} ms | "
        f"{_f(peak.get('recommend'))} |",
    ]
    for name, b in r["batch"].items():
        lines.append(
            f"| `{name}`, every user, chunks of {b['chunk']:,} (median of {len(b['seconds'])}) | "
            f"{b['users_per_s']:,.1f} users/s | {_f(peak.get(name))} |"
        )
    return lines


def to_markdown(payload: Mapping[str, Any]) -> str:
    """speed.md from the payload of :func:`run`."""
    meta, d = payload["meta"], payload["data"]
    machine = meta["machine"]
    lines = [
        "# Speed: graph-rec against PyG's LightGCN, the ranking floor, and recommend",
        "",
        f"{d['dataset']}, protocol A (per-user random 80/10/10 split, seed 2026; {d['users']:,} users, "
        f"{d['items']:,} items, {d['train']:,} training / {d['valid']:,} validation / {d['test']:,} test pairs), "
        f"each part run in one process on {machine['cpus']} CPUs ({machine['platform']}, Python "
        f"{machine['python']}, torch {meta['versions'].get('torch')}); load average "
        f"{payload['load_average_start'][0]:.2f} at the start, {payload['load_average_end'][0]:.2f} at the end.",
    ]
    for key, render in (("time", _time_md), ("eval", _eval_md), ("recommend", _recommend_md)):
        if key in payload:
            lines += ["", *render(payload[key])]
    if "peak_rss_mb" in payload:
        lines += ["", f"Peak RSS of the latest run's process: {payload['peak_rss_mb']:,.0f} MB."]
    return "\n".join(lines) + "\n"


def plot_time(payload: Mapping[str, Any], path: Path) -> bool:
    """Validation Recall@20 against wall seconds for every model of the ``time`` part, with the target line.

    Returns False (writing nothing) when the payload has no ``time`` part.
    """
    t = payload.get("time")
    if not t:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, r in t["runs"].items():
        h = r["history"]
        ax.plot([x["seconds"] for x in h], [x[f"valid_{METRIC}"] for x in h], marker=".", label=name)
        if r["reached"]:
            ax.axvline(r["reached"]["seconds"], color=ax.lines[-1].get_color(), linestyle=":", linewidth=1)
    ax.axhline(t["target"], color="grey", linestyle="--", linewidth=1, label=f"target {t['target']:.4f}")
    ax.set_xscale("log")
    ax.set_xlabel("wall seconds (validation included), log scale")
    ax.set_ylabel(f"validation {METRIC}")
    ax.set_title(f"Time to a validation {METRIC} of {t['target']:.4f} ({DATASET}, protocol A)")
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return True


# --------------------------------------------------------------------------------------- script
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", action="append", choices=[*PARTS, "all"], help="repeatable; default all")
    p.add_argument("--target", type=float, help="validation Recall@20 to reach (default: see --target-fraction)")
    p.add_argument(
        "--target-fraction", type=float, default=0.95, help="target = this x PyG's best in its budget (default 0.95)"
    )
    p.add_argument("--pyg-lr", type=float, default=0.01, help="PyG LightGCN's Adam learning rate (default 0.01)")
    p.add_argument("--pyg-budget", type=float, default=300.0, help="PyG LightGCN's time budget in seconds")
    p.add_argument("--max-epochs", type=int, help=f"cap graph-rec's epochs (default {TRAIN['epochs']})")
    p.add_argument("--patience", type=int, default=PATIENCE, help="graph-rec: validations without improvement")
    p.add_argument("--pyg-patience", type=int, help="PyG LightGCN's patience (default: none, its budget ends it)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--calls", type=int, default=500, help="timed recommend calls")
    p.add_argument("--warmup", type=int, default=20, help="untimed recommend calls before them")
    p.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    p.add_argument("--markdown-only", action="store_true", help="rewrite speed.md from speed.json")
    args = p.parse_args(argv)
    if args.markdown_only:
        if not OUT_JSON.is_file():
            print(f"{OUT_JSON} is absent: run the benchmark first", file=sys.stderr)
            return 1
        payload = json.loads(OUT_JSON.read_text())
        OUT_MD.write_text(to_markdown(payload))
        plot_time(payload, OUT_PNG)
        print(OUT_MD.read_text())
        return 0
    reason = skip_reason()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 0
    run(
        args.part or ["all"],
        target=args.target,
        target_fraction=args.target_fraction,
        pyg_lr=args.pyg_lr,
        pyg_budget=args.pyg_budget,
        max_epochs=args.max_epochs,
        patience=args.patience,
        pyg_patience=args.pyg_patience,
        threads=args.threads,
        repeats=args.repeats,
        calls=args.calls,
        warmup=args.warmup,
        cache_dir=args.cache_dir,
    )
    print(OUT_MD.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
