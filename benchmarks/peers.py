"""The peers of the benchmark suite: the tools a user would pick instead of graph-rec, run on our split.

Every peer is fitted on ``data.train`` of a :class:`~graph_rec.data.RecData`, validated with OUR
full-ranking evaluator (:func:`graph_rec.eval.evaluator.evaluate`, training positives masked) on
``data.valid``, and handed back as a :class:`~graph_rec.models.base.Scorer`, so the suite ranks
it against graph-rec's own models on the same data, split, evaluator and machine, in the same run.

* ``pyg_lightgcn``: :class:`torch_geometric.nn.models.LightGCN`, trained the way PyG's
  ``examples/lightgcn.py`` trains it and with its defaults (``embedding_dim`` 64, ``num_layers`` 2,
  Adam lr 0.001, batches of 8,192 shuffled training edges, one uniform random negative item per
  positive, NOT excluding the user's positives, ``model.recommendation_loss`` = BPR + ``lambda_reg``
  1e-4 on the batch's layer-0 embeddings, full-graph propagation at every step). The graph is the
  bipartite graph of the training pairs only: users ``0..U-1``, items ``U..U+I-1``, both directions.
  What the example does not have (it reports test metrics after every epoch) is ours: validation
  every ``valid_every`` epochs, the best epoch kept, early stopping by ``patience``, a time budget.
* ``implicit_als``: :class:`implicit.cpu.als.AlternatingLeastSquares` (Hu, Koren and Volinsky, ICDM
  2008) on the user x item CSR of the training pairs, with confidence ``alpha * 1`` on the positives.
* ``implicit_bpr``: :class:`implicit.cpu.bpr.BayesianPersonalizedRanking` (Rendle et al., UAI 2009)
  on the same matrix.

  Both implicit peers are validated after every ``valid_every`` iterations through ``fit``'s
  ``callback`` (it exists in implicit 0.7: ``callback(iteration, seconds, ...)``), which also stops
  them (early stopping, time budget) by raising out of ``fit``; their threads are
  ``torch.get_num_threads()`` and OpenBLAS is held to one thread while they fit, as implicit asks.
* RecBole: not run; :data:`RECBOLE_STATUS` says why.

Times: each history entry has ``seconds`` (wall time since the fit started, validation included,
as graph-rec's trainer counts it) and ``train_seconds`` (validation left out). ``peak_rss_growth_mb``
is the peak resident set size sampled every 10 ms during the fit, minus the RSS at its start.

    python benchmarks/peers.py --dataset ml-latest-small            # protocol A, every peer
    python benchmarks/peers.py --dataset ml-latest-small --peers implicit_als,implicit_bpr

prints, per peer, the validation and test Recall@20 / NDCG@20 of the setting chosen on validation
Recall@20, its training seconds and the seconds to its best validation; it writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from graph_rec.data import RecData, check_float, check_int, config_from_dict
from graph_rec.errors import ConfigError, GraphRecError, MissingDependencyError
from graph_rec.eval.evaluator import EvalConfig, evaluate
from graph_rec.models.base import Scorer

logger = logging.getLogger(__name__)

#: Why RecBole is not among the peers (printed by the suite). Found with recbole 1.2.1 (the newest on
#: PyPI; ``pip install --dry-run recbole`` into this venv resolves without touching torch/numpy/scipy,
#: since it pins none of them from above) installed with ``--no-deps`` into a throw-away venv over this
#: venv's torch 2.13.0, numpy 2.4.6, scipy 1.17.1, pandas 3.1.1, then LightGCN run on a tiny data set
#: through recbole.config / data / trainer, each failure worked around in turn to find the next.
RECBOLE_STATUS = (
    "RecBole 1.2.1 (newest on PyPI) is not run: it installs, but does not run with numpy 2.4 / scipy 1.17 / "
    "torch 2.13. (1) recbole.config.Config() calls compatibility_settings(), which does `np.float = np.float_` "
    "-> AttributeError: `np.float_` was removed in the NumPy 2.0 release (RecBole declares numpy>=1.17.2 with "
    "no upper bound); (2) with that patched, LightGCN.get_norm_adj_mat() calls scipy's private "
    "dok_matrix._update -> AttributeError: 'dok_matrix' object has no attribute '_update' (gone from scipy "
    "1.17; RecBole declares scipy>=1.6.0); (3) with that patched too, training runs but Trainer.evaluate("
    "load_best_model=True) calls torch.load() without weights_only -> UnpicklingError: Weights only load "
    "failed (torch >= 2.6 defaults to weights_only=True). Besides, recbole.quick_start imports ray at import "
    "time and RecBole pins ray<=2.6.3, colorlog==4.7.2 and colorama==0.4.4, and recbole.utils imports "
    "tensorboard. Running it would mean monkey-patching numpy, scipy and torch.load, so it is not installed."
)

PEERS = ("pyg_lightgcn", "implicit_als", "implicit_bpr")
METRIC = "recall@20"


# --------------------------------------------------------------------------------------- settings
@dataclass(frozen=True, kw_only=True)
class PygLightGCNSettings:
    """PyG's ``examples/lightgcn.py`` defaults.

    Args:
        embedding_dim: layer-0 embedding size.
        num_layers: LGConv layers (``alpha = 1 / (num_layers + 1)``, PyG's default, as in graph-rec).
        lr: Adam learning rate.
        batch_size: training edges per step.
        lambda_reg: ``recommendation_loss``'s L2 weight on the batch's layer-0 embeddings.
        max_epochs: at most this many passes over the training edges.
    """

    embedding_dim: int = 64
    num_layers: int = 2
    lr: float = 0.001
    batch_size: int = 8192
    lambda_reg: float = 1e-4
    max_epochs: int = 1000

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "num_layers", "batch_size", "max_epochs"):
            check_int(name, getattr(self, name), minimum=1)
        check_float("lr", self.lr, open_low=True)
        check_float("lambda_reg", self.lambda_reg)


@dataclass(frozen=True, kw_only=True)
class ALSSettings:
    """``implicit``'s ALS.

    Args:
        factors: latent factors.
        regularization: L2 weight.
        alpha: confidence of a positive (implicit scales the 0/1 matrix by it; unobserved pairs weigh 1).
        iterations: ALS sweeps (users, then items).
    """

    factors: int = 128
    regularization: float = 0.05
    alpha: float = 1.0
    iterations: int = 15

    def __post_init__(self) -> None:
        check_int("factors", self.factors, minimum=1)
        check_int("iterations", self.iterations, minimum=1)
        check_float("regularization", self.regularization)
        check_float("alpha", self.alpha, open_low=True)


@dataclass(frozen=True, kw_only=True)
class BPRSettings:
    """``implicit``'s BPR (SGD, one sampled negative per positive, the user's positives excluded).

    Args:
        factors: latent factors (implicit adds one more, the item bias).
        learning_rate: SGD step.
        regularization: L2 weight.
        iterations: passes over the training pairs.
    """

    factors: int = 128
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100

    def __post_init__(self) -> None:
        check_int("factors", self.factors, minimum=1)
        check_int("iterations", self.iterations, minimum=1)
        check_float("learning_rate", self.learning_rate, open_low=True)
        check_float("regularization", self.regularization)


SETTINGS: dict[str, type] = {
    "pyg_lightgcn": PygLightGCNSettings,
    "implicit_als": ALSSettings,
    "implicit_bpr": BPRSettings,
}

#: peer -> candidate settings, picked on validation Recall@20. PyG's example has one setting; its Adam
#: lr 0.001 barely moves on MovieLens within minutes (validation Recall@20 0.1216, its best, after 70
#: epochs / 300 s), so lr 0.01 is a candidate too (0.18 after 60 s). ALS is cheap (2-15 s a fit on 2
#: cores) and sensitive to its confidence and regularisation, so it gets a full grid: the earlier
#: three settings (regularization 0.05-1, factors 128) left it 10-14% below its tuned self, and a
#: baseline tuned less than the model it is compared with flatters the model. An exploratory grid
#: (64-1024 factors, regularization 0.1-200, alpha 1-80) led to this one. Validation picks 512
#: factors, the grid's edge, on both data sets (ml-latest-small 512 / 20 / 5, Last.fm 512 / 100 /
#: 40); 1024 factors scored lower on ml-latest-small in the exploration (0.2615 against 0.2618)
#: and are in graph-rec's own iALS grid (benchmarks/protocols.py), which covers the edges.
ALS_GRID: list[dict[str, Any]] = [
    {"factors": f, "regularization": reg, "alpha": a}
    for f in (256, 512)
    for reg in (5.0, 20.0, 50.0, 100.0, 200.0)
    for a in (5.0, 10.0, 20.0, 40.0, 80.0)
]
GRIDS: dict[str, list[dict[str, Any]]] = {
    "pyg_lightgcn": [{}, {"lr": 0.01}],
    "implicit_als": ALS_GRID,
    "implicit_bpr": [{}, {"learning_rate": 0.05}],
}


def settings_of(peer: str, settings: Mapping[str, Any] | Any | None) -> Any:
    """The settings dataclass of ``peer`` from a mapping (unknown keys raise :class:`ConfigError`)."""
    if peer not in SETTINGS:
        raise ConfigError(f"unknown peer {peer!r}; peers: {list(PEERS)}")
    cls = SETTINGS[peer]
    if settings is None:
        return cls()
    if isinstance(settings, cls):
        return settings
    return config_from_dict(cls, settings, f"peer {peer!r}")


# --------------------------------------------------------------------------------------- results
@dataclass
class PeerResult:
    """A fitted peer.

    Attributes:
        name: the peer (``"pyg_lightgcn"``, ...).
        settings: its settings, as a dict.
        scorer: ranks ``[B]`` users against every item with the best validated parameters.
        history: one dict per validation: ``epoch`` (an epoch or iteration, from 1), ``seconds`` (wall
            time since the fit started, validation included), ``train_seconds`` (validation left out),
            ``valid_recall@20``, ``valid_ndcg@20`` and, where the peer reports one, ``loss``.
        best_epoch: the epoch whose parameters the scorer holds.
        best_valid: the validation metrics of that epoch.
        seconds: the fit's wall time, validation included.
        train_seconds: the fit's time with validation left out.
        seconds_to_best: wall time until the best epoch had been validated.
        stopped: ``"epochs"``, ``"early_stopping"`` or ``"time_budget"``.
        peak_rss_growth_mb: peak RSS during the fit minus the RSS at its start (None off Linux).
        threads: the threads the peer trained with.
        model: the fitted peer itself (the PyG module, the implicit model), holding the best
            validated parameters, like the scorer.
    """

    name: str
    settings: dict[str, Any]
    scorer: Scorer
    model: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    train_seconds: float = 0.0
    seconds_to_best: float = 0.0
    stopped: str = ""
    peak_rss_growth_mb: float | None = None
    threads: int = 1

    def time_to(self, target: float, *, metric: str = METRIC, clock: str = "seconds") -> float | None:
        """Seconds until validation ``metric`` first reached ``target`` (None if it never did).

        Args:
            target: the value to reach, e.g. a validation Recall@20 of 0.30.
            metric: a metric recorded in the history (``"recall@20"`` or ``"ndcg@20"``).
            clock: ``"seconds"`` (validation included, as graph-rec's trainer counts) or ``"train_seconds"``.
        """
        if clock not in ("seconds", "train_seconds"):
            raise ConfigError(f"clock must be 'seconds' or 'train_seconds', got {clock!r}")
        key = f"valid_{metric}"
        for h in self.history:
            if key not in h:
                raise ConfigError(f"{metric!r} is not in the history; recorded: {sorted(h)}")
            if h[key] >= target:
                return float(h[clock])
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (without the scorer)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("scorer", "model")}
        for k in ("seconds", "train_seconds", "seconds_to_best"):
            out[k] = round(out[k], 3)
        return out


class _Clock:
    """Wall time since the start, and the same with the validation intervals left out."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.paused = 0.0
        self._pause_start: float | None = None

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def train(self) -> float:
        return self.wall() - self.paused

    def pause(self) -> None:
        self._pause_start = time.perf_counter()

    def resume(self) -> None:
        if self._pause_start is not None:
            self.paused += time.perf_counter() - self._pause_start
            self._pause_start = None


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakRss:
    """Samples the process's RSS every ``interval`` seconds in a daemon thread while in the block."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.start: float | None = None
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _PeakRss:
        self.start = self.peak = _rss_mb()
        if self.start is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            v = _rss_mb()
            if v is not None and self.peak is not None:
                self.peak = max(self.peak, v)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        v = _rss_mb()
        if v is not None and self.peak is not None:
            self.peak = max(self.peak, v)

    @property
    def growth_mb(self) -> float | None:
        return None if self.start is None or self.peak is None else round(self.peak - self.start, 1)


class _Tracker:
    """Validation bookkeeping shared by the peers: history, best epoch, patience, time budget."""

    def __init__(self, data: RecData, eval_config: EvalConfig, patience: int, time_budget_s: float | None) -> None:
        self.data = data
        self.eval_config = eval_config
        self.patience = patience
        self.time_budget_s = time_budget_s
        self.clock = _Clock()
        self.history: list[dict[str, Any]] = []
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_valid: dict[str, float] = {}
        self.seconds_to_best = 0.0
        self.bad_evals = 0
        self.stopped = "epochs"

    def validate(self, epoch: int, scorer: Scorer, **extra: float) -> bool:
        """Validate ``scorer`` at ``epoch``; True when it is the best so far (the caller keeps its parameters)."""
        self.clock.pause()
        train_seconds = self.clock.train()
        with torch.inference_mode():
            res = evaluate(scorer, self.data, part="valid", config=self.eval_config)
        m = res.metrics
        improved = m[METRIC] > self.best_score
        if improved:
            self.best_score, self.best_epoch, self.best_valid = m[METRIC], epoch, dict(m)
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        seconds = self.clock.wall()
        if improved:
            self.seconds_to_best = seconds
        entry = {"epoch": epoch, "seconds": round(seconds, 3), "train_seconds": round(train_seconds, 3)}
        entry |= {f"valid_{k}": m[k] for k in ("recall@20", "ndcg@20") if k in m}
        entry |= {k: round(float(v), 6) for k, v in extra.items()}
        self.history.append(entry)
        logger.info("epoch %d: valid recall@20 %.4f (%.1f s)", epoch, m[METRIC], seconds)
        self.clock.resume()
        return improved

    def over_budget(self) -> bool:
        """Whether the wall time has reached the time budget."""
        return self.time_budget_s is not None and self.clock.wall() >= self.time_budget_s

    def should_stop(self) -> bool:
        """Early stopping (``patience`` validations without improvement) or the time budget spent."""
        if self.bad_evals >= self.patience:
            self.stopped = "early_stopping"
            return True
        if self.over_budget():
            self.stopped = "time_budget"
            return True
        return False


def _check_common(data: RecData, valid_every: int, patience: int, time_budget_s: float | None) -> None:
    check_int("valid_every", valid_every, minimum=1)
    check_int("patience", patience, minimum=1)
    if time_budget_s is not None:
        check_float("time_budget_s", time_budget_s, open_low=True)
    if data.valid.nnz == 0:
        raise ConfigError("the data has no validation pairs: the peers are selected on validation")


def _eval_config(eval_config: EvalConfig | None) -> EvalConfig:
    cfg = eval_config or EvalConfig(ks=(10, 20), beyond_accuracy=False)
    if 20 not in cfg.ks:
        raise ConfigError(f"the peers are selected on recall@20: eval_config.ks must contain 20, got {cfg.ks}")
    return cfg


# --------------------------------------------------------------------------------------- PyG LightGCN
def bipartite_edge_index(data: RecData) -> torch.Tensor:
    """``[2, 2 * nnz]`` the training pairs in both directions: users ``0..U-1``, items ``U..U+I-1``."""
    u = data.train.users()
    i = data.train.indices + data.num_users
    return torch.stack([torch.cat([u, i]), torch.cat([i, u])])


def fit_pyg_lightgcn(
    data: RecData,
    *,
    settings: Mapping[str, Any] | PygLightGCNSettings | None = None,
    seed: int = 2026,
    valid_every: int = 5,
    patience: int = 5,
    time_budget_s: float | None = None,
    eval_config: EvalConfig | None = None,
) -> PeerResult:
    """Train :class:`torch_geometric.nn.models.LightGCN` as PyG's example does; validate with our evaluator.

    Args:
        data: the split; only ``data.train`` (propagation graph and labels) and ``data.valid`` are used.
        settings: :class:`PygLightGCNSettings` or a mapping of its fields.
        seed: seeds initialisation (a forked global RNG, since PyG initialises with it), the edge
            shuffles and the negatives.
        valid_every: validate every this many epochs (and after the last).
        patience: stop after this many validations without a better Recall@20.
        time_budget_s: stop after the epoch that ends past this wall time (validation included).
        eval_config: the validation settings (``ks`` must contain 20).

    Returns:
        the :class:`PeerResult`; its scorer holds the embeddings of the best validated epoch.
    """
    cfg = settings_of("pyg_lightgcn", settings)
    _check_common(data, valid_every, patience, time_budget_s)
    check_int("seed", seed)
    ev = _eval_config(eval_config)
    pyg_nn = _require("torch_geometric.nn", "graph")
    num_users, num_items = data.num_users, data.num_items
    edge_index = bipartite_edge_index(data)
    label_index = edge_index[:, : data.train.nnz]  # (user, item node) training pairs, once each
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = pyg_nn.LightGCN(num_users + num_items, cfg.embedding_dim, cfg.num_layers)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def scorer() -> Scorer:
        emb = model.get_embedding(edge_index)
        return Scorer.from_embeddings(emb[:num_users], emb[num_users:])

    best = model.embedding.weight.detach().clone()
    with _PeakRss() as rss:
        track = _Tracker(data, ev, patience, time_budget_s)
        for epoch in range(1, cfg.max_epochs + 1):
            model.train()
            total = 0.0
            for index in torch.randperm(label_index.shape[1], generator=gen).split(cfg.batch_size):
                pos = label_index[:, index]
                neg_items = torch.randint(num_users, num_users + num_items, (index.numel(),), generator=gen)
                neg = torch.stack([pos[0], neg_items])
                edge_label_index = torch.cat([pos, neg], 1)
                opt.zero_grad()
                pos_rank, neg_rank = model(edge_index, edge_label_index).chunk(2)
                loss = model.recommendation_loss(
                    pos_rank, neg_rank, node_id=edge_label_index.unique(), lambda_reg=cfg.lambda_reg
                )
                loss.backward()
                opt.step()
                total += float(loss.detach()) * pos_rank.numel()
            if epoch % valid_every == 0 or epoch == cfg.max_epochs or track.over_budget():
                model.eval()
                with torch.inference_mode():
                    if track.validate(epoch, scorer(), loss=total / label_index.shape[1]):
                        best = model.embedding.weight.detach().clone()
                if track.should_stop():
                    break
        with torch.no_grad():
            model.embedding.weight.copy_(best)
        model.eval()
        with torch.inference_mode():
            final = scorer()
    return _result("pyg_lightgcn", cfg, final, model, track, rss, torch.get_num_threads())


# --------------------------------------------------------------------------------------- implicit
class _StopFit(Exception):
    """Raised from implicit's callback to end ``fit`` early (early stopping or the time budget)."""


def train_csr(data: RecData) -> Any:
    """``scipy.sparse.csr_matrix`` ``[num_users, num_items]`` float32 of ones: the training pairs."""
    import scipy.sparse as sp

    return sp.csr_matrix(
        (np.ones(data.train.nnz, dtype=np.float32), data.train.indices.numpy(), data.train.indptr.numpy()),
        shape=(data.num_users, data.num_items),
    )


def _factors_scorer(user_factors: np.ndarray, item_factors: np.ndarray) -> Scorer:
    return Scorer.from_embeddings(torch.from_numpy(np.array(user_factors)), torch.from_numpy(np.array(item_factors)))


def _fit_implicit(
    name: str,
    model: Any,
    iterations: int,
    cfg: Any,
    data: RecData,
    valid_every: int,
    patience: int,
    time_budget_s: float | None,
    ev: EvalConfig,
    threads: int,
    loss_of: Callable[[tuple], dict[str, float]],
) -> PeerResult:
    from threadpoolctl import threadpool_limits

    matrix = train_csr(data)
    best: list[np.ndarray] = []
    with _PeakRss() as rss:
        track = _Tracker(data, ev, patience, time_budget_s)

        def callback(iteration: int, *rest: Any) -> None:
            epoch = iteration + 1
            if epoch % valid_every == 0 or epoch == iterations or track.over_budget():
                if track.validate(epoch, _factors_scorer(model.user_factors, model.item_factors), **loss_of(rest)):
                    best[:] = [np.array(model.user_factors), np.array(model.item_factors)]
                if track.should_stop():
                    raise _StopFit

        with threadpool_limits(1, "blas"), contextlib.suppress(_StopFit):
            model.fit(matrix, show_progress=False, callback=callback)
    if not best:
        raise GraphRecError(f"{name} was never validated: implicit's fit called no callback")
    model.user_factors, model.item_factors = best
    return _result(name, cfg, _factors_scorer(*best), model, track, rss, threads)


def fit_implicit_als(
    data: RecData,
    *,
    settings: Mapping[str, Any] | ALSSettings | None = None,
    seed: int = 2026,
    valid_every: int = 1,
    patience: int = 5,
    time_budget_s: float | None = None,
    eval_config: EvalConfig | None = None,
    num_threads: int | None = None,
) -> PeerResult:
    """Fit implicit's ALS on the training matrix; validate after every ``valid_every`` iterations.

    Args:
        data: the split; ``data.train`` becomes a user x item CSR of ones (confidence ``alpha``).
        settings: :class:`ALSSettings` or a mapping of its fields.
        seed: implicit's ``random_state`` (the initial factors).
        valid_every: validate every this many iterations (and after the last).
        patience: stop after this many validations without a better Recall@20.
        time_budget_s: stop after the iteration that ends past this wall time.
        eval_config: the validation settings (``ks`` must contain 20).
        num_threads: implicit's threads (default ``torch.get_num_threads()``).

    Returns:
        the :class:`PeerResult`; its scorer is ``user_factors @ item_factors.T`` of the best iteration.
    """
    cfg = settings_of("implicit_als", settings)
    _check_common(data, valid_every, patience, time_budget_s)
    check_int("seed", seed)
    threads = _threads(num_threads)
    als = _require("implicit.cpu.als", "bench")
    with warnings.catch_warnings():  # it asks for one BLAS thread, which _fit_implicit sets around fit
        warnings.filterwarnings("ignore", message="OpenBLAS is configured", category=RuntimeWarning)
        model = als.AlternatingLeastSquares(
            factors=cfg.factors,
            regularization=cfg.regularization,
            alpha=cfg.alpha,
            iterations=cfg.iterations,
            num_threads=threads,
            random_state=seed,
        )
    return _fit_implicit(
        "implicit_als",
        model,
        cfg.iterations,
        cfg,
        data,
        valid_every,
        patience,
        time_budget_s,
        _eval_config(eval_config),
        threads,
        lambda rest: {},
    )


def fit_implicit_bpr(
    data: RecData,
    *,
    settings: Mapping[str, Any] | BPRSettings | None = None,
    seed: int = 2026,
    valid_every: int = 5,
    patience: int = 5,
    time_budget_s: float | None = None,
    eval_config: EvalConfig | None = None,
    num_threads: int | None = None,
) -> PeerResult:
    """Fit implicit's BPR on the training matrix; validate after every ``valid_every`` iterations.

    Args:
        data: the split; ``data.train`` becomes a user x item CSR of ones.
        settings: :class:`BPRSettings` or a mapping of its fields.
        seed: implicit's ``random_state`` (initial factors and sampling; with more than one thread
            the lock-free SGD is not bit-reproducible).
        valid_every: validate every this many iterations (and after the last).
        patience: stop after this many validations without a better Recall@20.
        time_budget_s: stop after the iteration that ends past this wall time.
        eval_config: the validation settings (``ks`` must contain 20).
        num_threads: implicit's threads (default ``torch.get_num_threads()``).

    Returns:
        the :class:`PeerResult`; its scorer is ``user_factors @ item_factors.T`` of the best iteration
        (implicit's last factor column is the item bias, with a user factor of 1).
    """
    cfg = settings_of("implicit_bpr", settings)
    _check_common(data, valid_every, patience, time_budget_s)
    check_int("seed", seed)
    threads = _threads(num_threads)
    bpr = _require("implicit.cpu.bpr", "bench")
    model = bpr.BayesianPersonalizedRanking(
        factors=cfg.factors,
        learning_rate=cfg.learning_rate,
        regularization=cfg.regularization,
        iterations=cfg.iterations,
        num_threads=threads,
        random_state=seed,
    )

    def ranking_accuracy(rest: tuple) -> dict[str, float]:  # callback(iteration, seconds, correct, skipped)
        if len(rest) >= 3 and data.train.nnz:
            return {"train_ranking_accuracy": rest[1] / max(data.train.nnz - rest[2], 1)}
        return {}

    return _fit_implicit(
        "implicit_bpr",
        model,
        cfg.iterations,
        cfg,
        data,
        valid_every,
        patience,
        time_budget_s,
        _eval_config(eval_config),
        threads,
        ranking_accuracy,
    )


# --------------------------------------------------------------------------------------- helpers
FITS: dict[str, Callable[..., PeerResult]] = {
    "pyg_lightgcn": fit_pyg_lightgcn,
    "implicit_als": fit_implicit_als,
    "implicit_bpr": fit_implicit_bpr,
}


def _require(module: str, extra: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{module!r} is required for this peer: pip install 'graph-rec[{extra}]'") from exc


def _threads(num_threads: int | None) -> int:
    if num_threads is None:
        return max(torch.get_num_threads(), 1)
    check_int("num_threads", num_threads, minimum=1)
    return int(num_threads)


def _result(
    name: str, cfg: Any, scorer: Scorer, model: Any, track: _Tracker, rss: _PeakRss, threads: int
) -> PeerResult:
    return PeerResult(
        name=name,
        settings=dataclasses.asdict(cfg),
        scorer=scorer,
        model=model,
        history=track.history,
        best_epoch=track.best_epoch,
        best_valid=track.best_valid,
        seconds=track.clock.wall(),
        train_seconds=track.clock.train(),
        seconds_to_best=track.seconds_to_best,
        stopped=track.stopped,
        peak_rss_growth_mb=rss.growth_mb,
        threads=threads,
    )


def select(
    peer: str,
    data: RecData,
    *,
    grid: list[Mapping[str, Any]] | None = None,
    seed: int = 2026,
    **options: Any,
) -> tuple[PeerResult, list[dict[str, Any]]]:
    """Fit ``peer`` with every setting of ``grid`` (default :data:`GRIDS`), keep the best on validation Recall@20.

    Args:
        peer: one of :data:`PEERS`.
        data: the split.
        grid: candidate settings (mappings of the peer's settings fields).
        seed: passed to every fit.
        options: passed to the peer's ``fit_*`` (``valid_every``, ``patience``, ``time_budget_s``, ...).

    Returns:
        ``(best result, [{"settings", "valid_recall@20", "seconds"} per candidate])``.
    """
    if peer not in FITS:
        raise ConfigError(f"unknown peer {peer!r}; peers: {list(PEERS)}")
    cands = GRIDS[peer] if grid is None else grid
    if not cands:
        raise ConfigError(f"the grid of {peer!r} is empty")
    results = [FITS[peer](data, settings=s, seed=seed, **options) for s in cands]
    best = max(results, key=lambda r: r.best_valid[METRIC])
    table = [
        {"settings": r.settings, "valid_recall@20": r.best_valid[METRIC], "seconds": round(r.seconds, 2)}
        for r in results
    ]
    return best, table


# --------------------------------------------------------------------------------------- script
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-latest-small")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, among {list(PEERS)}")
    p.add_argument("--pyg-budget", type=float, default=300.0, help="PyG LightGCN's time budget in seconds")
    p.add_argument("--pyg-max-epochs", type=int, default=1000)
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _meta import ROOT, SHARED
    from protocols import DATASETS, prepare

    if args.dataset not in DATASETS:
        raise ConfigError(f"unknown data set {args.dataset!r}; choices: {list(DATASETS)}")
    if not (SHARED / DATASETS[args.dataset]["path"]).is_dir():
        print(f"skip {args.dataset}: {SHARED / DATASETS[args.dataset]['path']} is absent", file=sys.stderr)
        return 0
    peers = args.peers.split(",")
    unknown = [x for x in peers if x not in PEERS]
    if unknown:
        raise ConfigError(f"unknown peer(s) {unknown}; peers: {list(PEERS)}")
    print(f"RecBole: {RECBOLE_STATUS}\n")
    kg, sp, prep = prepare(args.dataset, Path(args.cache_dir) if args.cache_dir else ROOT / "data" / "cache")
    data = RecData(kg, sp)
    print(
        f"{args.dataset}, protocol A: {data.num_users} users, {data.num_items} items, train {data.train.nnz}, "
        f"valid {data.valid.nnz}, test {data.test.nnz} (prepared in {prep:.1f} s); torch threads "
        f"{torch.get_num_threads()}\n"
    )
    ev = EvalConfig(ks=(10, 20), beyond_accuracy=False)
    rows = []
    for peer in peers:
        options: dict[str, Any] = {}
        grid = None
        if peer == "pyg_lightgcn":
            options = {"time_budget_s": args.pyg_budget}
            grid = [{**g, "max_epochs": args.pyg_max_epochs} for g in GRIDS[peer]]
        best, table = select(peer, data, grid=grid, eval_config=ev, **options)
        with torch.inference_mode():
            test = evaluate(best.scorer, data, part="test", config=ev).metrics
        for t in table:
            print(f"  {peer} {t['settings']}: valid R@20 {t['valid_recall@20']:.4f} ({t['seconds']:.1f} s)")
        rows.append((peer, best, test))
    print(
        "\n| peer | chosen settings | valid R@20 | valid N@20 | test R@20 | test N@20 | best epoch | stopped "
        "| train s (wall) | train s (no valid) | s to best | peak RSS growth MB | threads |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for peer, best, test in rows:
        print(
            f"| {peer} | {best.settings} | {best.best_valid['recall@20']:.4f} | {best.best_valid['ndcg@20']:.4f} | "
            f"{test['recall@20']:.4f} | {test['ndcg@20']:.4f} | {best.best_epoch} | {best.stopped} | "
            f"{best.seconds:.1f} | {best.train_seconds:.1f} | {best.seconds_to_best:.1f} | "
            f"{best.peak_rss_growth_mb} | {best.threads} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
