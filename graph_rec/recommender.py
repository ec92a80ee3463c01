"""The facade: fit, save, load, recommend, score, explain, similar items and cold start, with raw ids.

A :class:`Recommender` holds a trained model, the knowledge graph it was trained on (id maps, the
seen-items mask) and the representations it serves from. Raw string ids go in and out; indices
stay inside. Every method returns one type: :class:`RecommendationList`, :class:`RecommendationBatch`,
:class:`Scores` or :class:`~graph_rec.explore.types.Explanation`, each convertible to pandas.

Serving is read-only and thread-safe: the arrays a query reads are one immutable snapshot, and
:meth:`Recommender.add_item` / :meth:`Recommender.add_user` build a new snapshot and swap it in
under a lock.

A saved recommender is a directory (written to a temporary sibling and renamed)::

    recommender.json        format version, library versions, model name and settings, the
                            data view, the training config, the graph schema, the cold-start
                            nodes added since training
    model.safetensors       the model's state dict
    interactions.safetensors the training interactions as a CSR matrix (indptr, indices)
    added.safetensors       representations of the items and users added by cold start
    graph/                  the knowledge graph (id maps, attributes, edges, features, recipe)
    checksums.json          sha256 of every other file

:meth:`Recommender.load` checks the checksums and the format version before it reads anything,
and reads tensors with safetensors and JSON only: loading never executes code from the files.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import platform
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor

from graph_rec.data import DataConfig, RecData, UserItems, is_number, positive_int
from graph_rec.errors import CheckpointError, ConfigError, DataError, NotFittedError, SchemaError, UnknownIdError
from graph_rec.eval.evaluator import EvalConfig
from graph_rec.explore.attribution import PropagationView
from graph_rec.explore.store import EXPLANATION_COLUMNS, RECOMMENDATION_COLUMNS
from graph_rec.explore.types import Explanation, NodeRef, Recommendation
from graph_rec.explore.types import Path as GraphPath
from graph_rec.models.base import RecModel, model_class
from graph_rec.models.graphrec import GraphRec
from graph_rec.training.checkpoint import load_state_dict, save_state_dict
from graph_rec.training.config import TrainConfig
from graph_rec.training.trainer import fit as fit_model
from graph_rec.training.trainer import init_model, resolve_device
from kg_builders import __version__
from kg_builders._files import atomic_dir, save_safetensors, sha256_file
from kg_builders.fragment import plain

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SAVE_FILES = ("recommender.json", "model.safetensors", "interactions.safetensors", "added.safetensors")
OnUnknown = Literal["raise", "skip"]


# ---------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class RecommendationList:
    """One user's ranked items (best first)."""

    user_id: str
    item_ids: tuple[str, ...]
    scores: tuple[float, ...]
    model: str = ""

    def __len__(self) -> int:
        return len(self.item_ids)

    def __iter__(self) -> Iterator[Recommendation]:
        for r, (i, s) in enumerate(zip(self.item_ids, self.scores, strict=True), start=1):
            yield Recommendation(self.user_id, i, s, r, self.model)

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            {
                "user_id": [self.user_id] * len(self),
                "item_id": list(self.item_ids),
                "score": list(self.scores),
                "rank": list(range(1, len(self) + 1)),
                "model": [self.model] * len(self),
            },
            columns=list(RECOMMENDATION_COLUMNS),
        )


@dataclass(frozen=True)
class RecommendationBatch:
    """Ranked items for several users, in the order asked (skipped unknown users listed apart)."""

    lists: tuple[RecommendationList, ...]
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.lists)

    def __iter__(self) -> Iterator[RecommendationList]:
        return iter(self.lists)

    def __getitem__(self, k: int) -> RecommendationList:
        return self.lists[k]

    def to_pandas(self) -> Any:
        import pandas as pd

        frames = [r.to_pandas() for r in self.lists]
        if not frames:
            return pd.DataFrame(columns=list(RECOMMENDATION_COLUMNS))
        return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Scores:
    """Scores of chosen items for one user, in the order asked."""

    user_id: str
    item_ids: tuple[str, ...]
    scores: tuple[float, ...]

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.item_ids, self.scores, strict=True))

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame({"user_id": self.user_id, "item_id": list(self.item_ids), "score": list(self.scores)})


# ---------------------------------------------------------------------------------- state
class _Rows:
    """An append-only tensor: rows ``[0, n)`` never change once written; the capacity doubles.

    Snapshots hold views ``buf[:n]``; appending writes past every existing view (or into a new
    buffer), so readers of an older snapshot never see a change, and an append costs O(row).
    """

    def __init__(self, init: Tensor) -> None:
        self.buf = init
        self.n = int(init.shape[0])

    def append(self, rows: Tensor) -> Tensor:
        k = int(rows.shape[0])
        if self.n + k > self.buf.shape[0]:
            cap = max(2 * int(self.buf.shape[0]), self.n + k, 16)
            new = torch.empty((cap, *self.buf.shape[1:]), dtype=self.buf.dtype, device=self.buf.device)
            new[: self.n] = self.buf[: self.n]
            self.buf = new
        self.buf[self.n : self.n + k] = rows.to(self.buf)
        self.n += k
        return self.buf[: self.n]


class _Columns:
    """The append-only transpose ``[d, n]`` of the item representations, for fast scoring.

    ``u @ items.T`` is several times faster against a row-major ``[d, n]`` matrix than against the
    transposed view of ``[n, d]`` on CPU BLAS; columns are appended like :class:`_Rows` rows.
    """

    def __init__(self, init: Tensor) -> None:
        self.buf = init.t().contiguous()
        self.n = int(init.shape[0])

    def append(self, rows: Tensor) -> Tensor:
        k = int(rows.shape[0])
        if self.n + k > self.buf.shape[1]:
            cap = max(2 * int(self.buf.shape[1]), self.n + k, 16)
            new = torch.empty((self.buf.shape[0], cap), dtype=self.buf.dtype, device=self.buf.device)
            new[:, : self.n] = self.buf[:, : self.n]
            self.buf = new
        self.buf[:, self.n : self.n + k] = rows.to(self.buf).t()
        self.n += k
        return self.buf[:, : self.n]


@dataclass(frozen=True)
class _Snapshot:
    """Everything a query reads. The id lists and maps are shared and append-only: a snapshot
    sees their first ``num_users`` / ``num_items`` entries; its tensors are views that never change."""

    num_users: int
    num_items: int
    user_ids: list[str]
    item_ids: list[str]
    user_index: Mapping[str, int]
    item_index: Mapping[str, int]
    user_repr: Tensor | None  # [U, d] (unit rows with cosine scores)
    item_repr: Tensor | None  # [I, d]
    item_t: Tensor | None  # [d, I] (a view with a leading dimension >= I)
    seen_ptr: Tensor  # [U + 1]
    seen_idx: Tensor  # [nnz]


def _check_k(k: Any, num_items: int) -> int:
    k = positive_int("k", k)
    if k > num_items:
        raise ConfigError(f"k={k} is larger than the catalogue ({num_items} items)")
    return k


def _check_on_unknown(on_unknown: str) -> None:
    if on_unknown not in ("raise", "skip"):
        raise ConfigError(f"on_unknown must be 'raise' or 'skip', got {on_unknown!r}")


def _indices(
    index: Mapping[str, int], n: int, ids: Sequence[str], kind: str, on_unknown: str | None, remedy: str
) -> tuple[list[int], list[str]]:
    """``(indices of the known ids, unknown ids)`` among the first ``n``; unknown ids raise unless ``on_unknown="skip"``.

    ``on_unknown=None``: the caller's method has no ``on_unknown`` option, so unknown ids raise and
    the error does not suggest one.
    """
    if on_unknown is not None:
        _check_on_unknown(on_unknown)
    idx, unknown = [], []
    for x in ids:
        k = index.get(str(x))
        if k is None or k >= n:
            unknown.append(str(x))
        else:
            idx.append(k)
    if unknown and on_unknown != "skip":
        raise UnknownIdError(
            kind, unknown, hint=remedy if on_unknown is None else f"{remedy}, or pass on_unknown='skip'"
        )
    return idx, unknown


def _is_vector(v: Any) -> bool:
    """A precomputed feature vector (1-d numbers), as opposed to a raw input for an encoder."""
    if isinstance(v, np.ndarray | Tensor):
        return v.ndim == 1 and (v.dtype.is_floating_point if isinstance(v, Tensor) else v.dtype.kind == "f")
    return isinstance(v, list | tuple) and all(is_number(x) for x in v)


def _added_block(added: Any, path: Path) -> dict[str, Any]:
    """recommender.json's ``added`` block (cold-start ids and their records), its types checked.

    Raises:
        CheckpointError: naming ``path`` and the field, for a block of the wrong shape.
    """

    def bad(field: str, what: str, value: Any) -> CheckpointError:
        return CheckpointError(f"{path}: {field!r} must be {what}, got {type(value).__name__}")

    if not isinstance(added, dict):
        raise bad("added", "a mapping", added)
    out: dict[str, Any] = {}
    for field in ("items", "users"):
        ids = added.get(field, [])
        if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
            raise bad(f"added.{field}", "a list of id strings", ids)
        out[field] = ids
    meta = added.get("meta", {})
    if not isinstance(meta, dict):
        raise bad("added.meta", "a mapping", meta)
    out["meta"] = {}
    for field in ("items", "users"):
        records = meta.get(field, {})
        if not isinstance(records, dict) or not all(isinstance(r, dict) for r in records.values()):
            raise bad(f"added.meta.{field}", "a mapping of ids to records", records)
        out["meta"][field] = records
    return out


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "checksums.json")


# ---------------------------------------------------------------------------------- facade
class Recommender:
    """A trained model served with raw ids (module docstring).

    Build one with :meth:`fit`, :meth:`from_run` or :meth:`load`.

    Args:
        model: a fitted registered model built on ``data``.
        data: its :class:`~graph_rec.data.RecData` (``data.train`` is the seen-items mask).
        kg: the knowledge graph ``data`` was made from.
        model_name, model_settings: the registry name and settings (saved with the model).
        train_config: how it was trained (saved for the record).
        device: where scoring runs.
    """

    def __init__(
        self,
        model: RecModel,
        data: RecData,
        kg: Any,
        *,
        model_name: str,
        model_settings: Mapping[str, Any],
        train_config: TrainConfig | None = None,
        device: str = "cpu",
    ) -> None:
        if not model.is_fitted():
            raise NotFittedError(f"the {model_name!r} model is not fitted; call Recommender.fit")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()  # scores, masks and candidates on one device
        self.data = data
        self.graph = kg
        self.model_name = model_name
        self.model_settings = dict(model_settings)
        self.train_config = train_config
        self._lock = threading.RLock()
        self._view: PropagationView | None = None
        self._cpu: RecModel | None = None
        self._encoders: dict[str, Any] = {}
        self._added_meta: dict[str, dict[str, Any]] = {"items": {}, "users": {}}
        self._snap = self._initial_snapshot()

    # ------------------------------------------------------------------ construction
    @classmethod
    def fit(
        cls,
        kg: Any,
        *,
        model: str = "graphrec",
        settings: Mapping[str, Any] | None = None,
        train: TrainConfig | Mapping[str, Any] | None = None,
        split: Any | None = None,
        view: DataConfig | Mapping[str, Any] | None = None,
        eval_config: EvalConfig | None = None,
        device: str = "cpu",
        progress: bool = False,
    ) -> Recommender:
        """Train ``model`` on the graph ``kg`` and serve it.

        Args:
            kg: a :class:`~kg_builders.graph.KnowledgeGraph` built from training data only.
            model: a registered model name (``graphrec``, ``lightgcn``, ``mf``, ``ease``, ...).
            settings: the model's settings (its config dataclass fields).
            train: a :class:`~graph_rec.training.config.TrainConfig` or a mapping of its fields.
            split: the split ``kg`` was built from; its validation part selects the epoch (early
                stopping), so it must have one.
            view: what the model sees (:class:`~graph_rec.data.DataConfig`).
            eval_config: validation settings.
            device: ``"cpu"``, ``"cuda"``, ``"auto"``.
            progress: show progress bars.
        """
        view_cfg = view if isinstance(view, DataConfig) else DataConfig.from_dict(view or {})
        train_cfg = train if isinstance(train, TrainConfig) else TrainConfig.from_dict(dict(train or {}))
        if split is None:
            raise ConfigError(
                "Recommender.fit needs the split the graph was built from: its validation part picks the epoch"
            )
        data = RecData(kg, split, config=view_cfg)
        settings = plain(dict(settings or {}))  # NumPy scalars as Python ones: saved as JSON
        net = init_model(model, settings, data, seed=train_cfg.seed)
        fit_model(net, data, train_cfg, eval_config=eval_config, progress=progress)
        return cls(net, data, kg, model_name=model, model_settings=settings, train_config=train_cfg, device=device)

    @classmethod
    def from_run(cls, path: str | Path, *, device: str = "cpu") -> Recommender:
        """Serve the best model of a ``graph-rec train`` run directory."""
        from graph_rec.runs import load_run
        from kg_builders.graph import KnowledgeGraph

        config, data, model = load_run(path)
        kg = KnowledgeGraph.load(Path(path) / "graph")
        return cls(
            model,
            data,
            kg,
            model_name=config.model,
            model_settings=config.model_settings,
            train_config=config.train,
            device=device,
        )

    def _initial_snapshot(self) -> _Snapshot:
        data = self.data
        with torch.inference_mode():
            scorer = self.model.scorer()
        user_repr = scorer.user_repr
        item_repr = scorer.item_repr
        if user_repr is not None:
            user_repr = user_repr.detach().to(self.device, torch.float32).contiguous()
            item_repr = item_repr.detach().to(self.device, torch.float32).contiguous()
        else:
            self._fn_scorer = scorer
        self._rows = {
            "user_repr": None if user_repr is None else _Rows(user_repr),
            "item_repr": None if item_repr is None else _Rows(item_repr),
            "item_t": None if item_repr is None else _Columns(item_repr),
            "seen_ptr": _Rows(data.train.indptr.clone()),
            "seen_idx": _Rows(data.train.indices.clone()),
        }
        return _Snapshot(
            num_users=data.num_users,
            num_items=data.num_items,
            user_ids=list(data.user_ids),
            item_ids=list(data.item_ids),
            user_index={u: k for k, u in enumerate(data.user_ids)},
            item_index={i: k for k, i in enumerate(data.item_ids)},
            user_repr=user_repr,
            item_repr=item_repr,
            item_t=None if item_repr is None else self._rows["item_t"].buf,
            seen_ptr=data.train.indptr.clone(),
            seen_idx=data.train.indices.clone(),
        )

    # ------------------------------------------------------------------ ids
    @property
    def user_ids(self) -> tuple[str, ...]:
        snap = self._snap
        return tuple(snap.user_ids[: snap.num_users])

    @property
    def item_ids(self) -> tuple[str, ...]:
        snap = self._snap
        return tuple(snap.item_ids[: snap.num_items])

    @property
    def added_items(self) -> tuple[str, ...]:
        """Items added by :meth:`add_item` (or loaded with the model), in order."""
        snap = self._snap
        return tuple(snap.item_ids[self.data.num_items : snap.num_items])

    @property
    def added_users(self) -> tuple[str, ...]:
        """Users added by :meth:`add_user`, in order."""
        snap = self._snap
        return tuple(snap.user_ids[self.data.num_users : snap.num_users])

    def _user_idx(
        self, snap: _Snapshot, user_ids: Sequence[str], on_unknown: str | None = None
    ) -> tuple[list[int], list[str]]:
        return _indices(
            snap.user_index, snap.num_users, user_ids, "user", on_unknown, "fold new users in with add_user"
        )

    def _item_idx(
        self, snap: _Snapshot, item_ids: Sequence[str], on_unknown: str | None = None
    ) -> tuple[list[int], list[str]]:
        return _indices(snap.item_index, snap.num_items, item_ids, "item", on_unknown, "add new items with add_item")

    # ------------------------------------------------------------------ scoring core
    def _score_rows(
        self, snap: _Snapshot, users: Tensor, query: Tensor | None = None, query_weight: float = 0.0
    ) -> Tensor:
        """``[B, num_items]`` scores of user indices ``users``."""
        if snap.user_repr is not None:
            u = snap.user_repr[users.to(self.device)]
            if query is not None:
                u = self._blend(u, query, query_weight)
            return u @ snap.item_t
        if query is not None:
            raise ConfigError(f"query blending needs an embedding model; {self.model_name!r} scores without one")
        return self._fn_scorer(users).to(torch.float32)

    def _blend(self, u: Tensor, q: Tensor, weight: float) -> Tensor:
        if self.model.config.score == "cosine":
            return F.normalize((1 - weight) * F.normalize(u, dim=-1) + weight * F.normalize(q, dim=-1), dim=-1)
        scale = u.norm(dim=-1, keepdim=True) / q.norm().clamp_min(1e-12)
        return (1 - weight) * u + weight * q * scale

    def _mask_seen(self, snap: _Snapshot, scores: Tensor, users: Tensor) -> None:
        rows, cols = UserItems(snap.seen_ptr, snap.seen_idx, snap.num_users, snap.num_items).rows(users)
        scores[rows.to(scores.device), cols.to(scores.device)] = float("-inf")

    def _candidate_mask(self, snap: _Snapshot, candidates: Sequence[str] | None) -> Tensor | None:
        if candidates is None:
            return None
        if isinstance(candidates, str):
            raise ConfigError(
                f"candidates must be a list of item ids, not one string ({candidates!r}): pass [{candidates!r}]"
            )
        idx, _ = self._item_idx(snap, list(candidates))
        if not idx:
            raise ConfigError("candidates is empty")
        allowed = torch.zeros(snap.num_items, dtype=torch.bool, device=self.device)
        allowed[torch.tensor(idx, device=self.device)] = True
        return allowed

    def _rank(
        self,
        snap: _Snapshot,
        users: Tensor,
        *,
        k: int,
        exclude_seen: bool,
        allowed: Tensor | None,
        query: Tensor | None = None,
        query_weight: float = 0.0,
        diversity: float = 0.0,
    ) -> tuple[Tensor, Tensor]:
        """``(scores [B, k'], items [B, k'])``; fewer than k columns are -inf padded when too few items remain."""
        scores = self._score_rows(snap, users, query, query_weight)
        if exclude_seen:
            self._mask_seen(snap, scores, users.cpu())
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        if diversity > 0:
            return self._mmr(snap, scores, k=k, diversity=diversity)
        return torch.topk(scores, k, dim=1)

    def _mmr(self, snap: _Snapshot, scores: Tensor, *, k: int, diversity: float) -> tuple[Tensor, Tensor]:
        """Maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998) over each user's top ``max(10k, 100)``.

        Greedily picks ``argmax (1 - λ) rel(i) - λ max_{j picked} cos(h_i, h_j)`` with ``rel`` the
        score min-max scaled to [0, 1] within the pool; the returned scores are the model's.
        """
        if snap.item_repr is None:
            raise ConfigError(f"diversity re-ranking needs item representations; {self.model_name!r} has none")
        pool = min(max(10 * k, 100), scores.shape[1])
        top_s, top_i = torch.topk(scores, pool, dim=1)
        emb = F.normalize(snap.item_repr[top_i], dim=-1)  # [B, P, d]
        finite = torch.isfinite(top_s)
        lo = torch.where(finite, top_s, torch.inf).amin(1, keepdim=True)
        hi = top_s[:, :1]
        rel = torch.where(finite, (top_s - lo) / (hi - lo).clamp_min(1e-12), torch.full_like(top_s, -1e9))
        b = scores.shape[0]
        picked = torch.zeros(b, k, dtype=torch.long, device=scores.device)
        max_sim = torch.full_like(rel, -1.0)
        taken = torch.zeros_like(rel, dtype=torch.bool)
        rows = torch.arange(b, device=scores.device)
        for step in range(k):
            mmr = (1 - diversity) * rel - diversity * max_sim.clamp_min(0) if step else rel.clone()
            # masked items (seen, outside candidates) only once no unmasked one is left, whatever λ
            # is: at λ = 1 the relevance term, which keeps them last, is gone
            mmr = torch.where(finite, mmr, -1e30).masked_fill(taken, -torch.inf)
            j = mmr.argmax(1)
            picked[:, step] = j
            taken[rows, j] = True
            sim = (emb * emb[rows, j][:, None, :]).sum(-1)
            max_sim = torch.maximum(max_sim, sim)
        return top_s.gather(1, picked), top_i.gather(1, picked)

    def reranker(self, diversity: float) -> Callable[[Tensor, int], Tensor]:
        """MMR as a function ``(scores [B, num_items], k) -> items [B, k]`` for
        :func:`graph_rec.eval.evaluator.evaluate` (``rerank=``), to measure its trade-off.

        It keeps the catalogue of the moment it is made: items added later are not in it (make a
        new one after ``add_item``)."""
        self._check_unit("diversity", diversity)
        snap = self._snap
        return lambda scores, k: self._mmr(snap, scores, k=k, diversity=diversity)[1]

    def _lists(self, snap: _Snapshot, users: list[int], scores: Tensor, items: Tensor) -> list[RecommendationList]:
        out = []
        s_cpu, i_cpu = scores.cpu(), items.cpu()
        for row, u in enumerate(users):
            keep = torch.isfinite(s_cpu[row])
            out.append(
                RecommendationList(
                    user_id=snap.user_ids[u],
                    item_ids=tuple(snap.item_ids[j] for j in i_cpu[row][keep].tolist()),
                    scores=tuple(float(x) for x in s_cpu[row][keep].tolist()),
                    model=self.model_name,
                )
            )
        return out

    # ------------------------------------------------------------------ public queries
    def recommend(
        self,
        user_id: str,
        *,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Sequence[str] | None = None,
        query: str | None = None,
        query_weight: float = 0.5,
        diversity: float = 0.0,
    ) -> RecommendationList:
        """The top-``k`` items for one user.

        Args:
            user_id: a raw user id (of the training graph, or one added with :meth:`add_user`).
            k: list length (1 .. number of items).
            exclude_seen: leave out the user's training items.
            candidates: rank only these item ids.
            query: free text blended into the user's representation (the text is encoded with the
                graph's text encoder and projected by the model's ``F``).
            query_weight: the query's share in the blend (0 .. 1).
            diversity: MMR trade-off λ (0: pure relevance; see :meth:`_mmr`).

        Raises:
            UnknownIdError: the user (or a candidate) is unknown.
            ConfigError: a bad ``k``, weight or diversity.
        """
        snap = self._snap
        k = _check_k(k, snap.num_items)
        self._check_unit("query_weight", query_weight)
        self._check_unit("diversity", diversity)
        users, _ = self._user_idx(snap, [user_id])
        q = self._query_vector(query) if query is not None else None
        with torch.inference_mode():
            s, i = self._rank(
                snap,
                torch.tensor(users),
                k=k,
                exclude_seen=exclude_seen,
                allowed=self._candidate_mask(snap, candidates),
                query=q,
                query_weight=query_weight,
                diversity=diversity,
            )
        return self._lists(snap, users, s, i)[0]

    def recommend_batch(
        self,
        user_ids: Sequence[str],
        *,
        k: int = 10,
        exclude_seen: bool = True,
        candidates: Sequence[str] | None = None,
        diversity: float = 0.0,
        batch_size: int = 1024,
        on_unknown: OnUnknown = "raise",
        progress: bool = False,
    ) -> RecommendationBatch:
        """Top-``k`` lists for many users, ranked ``batch_size`` users at a time (never all at once)."""
        snap = self._snap
        k = _check_k(k, snap.num_items)
        self._check_unit("diversity", diversity)
        batch_size = positive_int("batch_size", batch_size)
        if isinstance(user_ids, str):
            raise ConfigError("user_ids must be a list of ids, not one string; use recommend() for one user")
        users, unknown = self._user_idx(snap, list(user_ids), on_unknown)
        allowed = self._candidate_mask(snap, candidates)
        lists: list[RecommendationList] = []
        starts = range(0, len(users), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="recommend", unit="batch")
        with torch.inference_mode():
            for a in starts:
                chunk = users[a : a + batch_size]
                s, i = self._rank(
                    snap, torch.tensor(chunk), k=k, exclude_seen=exclude_seen, allowed=allowed, diversity=diversity
                )
                lists += self._lists(snap, chunk, s, i)
        return RecommendationBatch(tuple(lists), tuple(unknown))

    def recommend_indices(
        self, user_ids: Sequence[str], *, k: int = 10, exclude_seen: bool = True
    ) -> tuple[Tensor, Tensor]:
        """The top-``k`` of ``user_ids`` as tensors, for bulk jobs that build no Python object per user.

        The same ranking as :meth:`recommend_batch` (one call ranks all ``user_ids`` at once: the
        caller chooses the batch), returned as ``(scores [B, k] float32, item_idx [B, k] int64)``
        on the CPU, best first. ``item_idx`` indexes :attr:`item_ids` (append-only, so an index
        stays valid after :meth:`add_item`). A user with fewer than ``k`` rankable items gets
        ``-inf`` scores in the trailing columns (their indices mean nothing); drop them with
        ``torch.isfinite(scores)``. Peak memory is about ``B * num_items * 4`` bytes.

        Raises:
            UnknownIdError: an id of ``user_ids`` is unknown (all of them are listed).
            ConfigError: a bad ``k``.
        """
        return self._recommend_indices(self._snap, user_ids, k=k, exclude_seen=exclude_seen)

    def _recommend_indices(
        self, snap: _Snapshot, user_ids: Sequence[str], *, k: int, exclude_seen: bool
    ) -> tuple[Tensor, Tensor]:
        """:meth:`recommend_indices` on the snapshot ``snap`` (a bulk job ranks every chunk on one)."""
        k = _check_k(k, snap.num_items)
        if isinstance(user_ids, str):
            raise ConfigError("user_ids must be a list of ids, not one string")
        users, _ = self._user_idx(snap, list(user_ids))
        with torch.inference_mode():
            s, i = self._rank(snap, torch.tensor(users, dtype=torch.long), k=k, exclude_seen=exclude_seen, allowed=None)
        return s.cpu(), i.cpu()

    def score(self, user_id: str, item_ids: Sequence[str]) -> Scores:
        """The model's scores of ``item_ids`` for ``user_id`` (seen items included), in the order given."""
        snap = self._snap
        users, _ = self._user_idx(snap, [user_id])
        if isinstance(item_ids, str):
            item_ids = [item_ids]
        items, _ = self._item_idx(snap, list(item_ids))
        if not items:
            return Scores(snap.user_ids[users[0]], (), ())
        with torch.inference_mode():
            if snap.user_repr is not None:
                s = snap.item_repr[torch.tensor(items, device=self.device)] @ snap.user_repr[users[0]]
            else:
                s = self._score_rows(snap, torch.tensor(users))[0, torch.tensor(items)]
        return Scores(snap.user_ids[users[0]], tuple(snap.item_ids[j] for j in items), tuple(s.cpu().tolist()))

    def similar_items(
        self, item_id: str, *, k: int = 10, candidates: Sequence[str] | None = None
    ) -> RecommendationList:
        """Items closest to ``item_id`` by cosine of their representations (the item itself left out).

        The result's ``user_id`` is empty; ``scores`` are cosine similarities.
        """
        snap = self._snap
        if snap.item_repr is None:
            raise ConfigError(f"similar_items needs item representations; {self.model_name!r} has none")
        k = _check_k(k, snap.num_items - 1)
        items, _ = self._item_idx(snap, [item_id])
        with torch.inference_mode():
            emb = F.normalize(snap.item_repr, dim=-1)
            sims = emb @ emb[items[0]]
            sims[items[0]] = float("-inf")
            allowed = self._candidate_mask(snap, candidates)
            if allowed is not None:
                sims = sims.masked_fill(~allowed, float("-inf"))
            s, i = torch.topk(sims, k)
        keep = torch.isfinite(s)
        return RecommendationList(
            user_id="",
            item_ids=tuple(snap.item_ids[j] for j in i[keep].tolist()),
            scores=tuple(s[keep].tolist()),
            model=self.model_name,
        )

    @staticmethod
    def _check_unit(name: str, value: Any) -> None:
        if not is_number(value) or not 0.0 <= float(value) <= 1.0:
            raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")

    # ------------------------------------------------------------------ explanations
    def propagation_view(self) -> PropagationView:
        """The frozen propagation of the model (built on first use; GraphRec only)."""
        with self._lock:
            if self._view is None:
                self._view = PropagationView(self.cpu_model())
            return self._view

    def cpu_model(self) -> RecModel:
        """The model on the CPU, where cold start and explanations run (the model itself when it is there)."""
        with self._lock:
            if self._cpu is None:
                tensors = [*self.model.parameters(), *self.model.buffers()]
                on_cpu = all(t.device.type == "cpu" for t in tensors)
                self._cpu = self.model if on_cpu else copy.deepcopy(self.model).cpu().eval()
            return self._cpu

    def _node_ref(self, node: int) -> NodeRef:
        g = self.data.graph
        for t, off in g.node_offsets.items():
            if off <= node < off + g.node_counts[t]:
                return NodeRef(t, str(self.graph.node_ids[t][node - off]))
        raise DataError(f"node index {node} is outside the graph")

    def _graph_path(self, view: PropagationView, edges: list[int], contribution: float) -> GraphPath:
        g = self.data.graph
        nodes = view.path_nodes(edges)
        relations, forward = [], []
        for e in edges:
            name, fwd = g.relation(int(self.model.propagation.edge_type[e]))
            relations.append(name)
            forward.append(fwd)
        return GraphPath(
            nodes=tuple(self._node_ref(n) for n in nodes),
            relations=tuple(relations),
            forward=tuple(forward),
            contribution=contribution,
        )

    def label_of(self, node_type: str, node_id: str) -> str:
        """:meth:`label` of ``NodeRef(node_type, node_id)``."""
        return self.label(NodeRef(node_type, str(node_id)))

    def label(self, node: NodeRef) -> str:
        """A readable name of a graph node: an item's title, a tag's text, an entity's name, else its id."""
        cache = self.__dict__.setdefault("_labels", {})
        if node.type not in cache:
            attrs = self.graph.node_attrs.get(node.type, {})
            names = next((attrs[a] for a in ("title", "name", "text") if a in attrs), None)
            ids = self.graph.node_ids.get(node.type, [])
            cache[node.type] = {} if names is None else {str(i): str(n) for i, n in zip(ids, names, strict=True) if n}
        return cache[node.type].get(node.id, node.id)

    def describe(self, path: GraphPath) -> str:
        """A path with node labels, e.g. ``user 1 -interacted-> "Alien" <-interacted- user 7 ...``."""
        out = [f"{path.nodes[0].type} {self.label(path.nodes[0])!r}"]
        for node, rel, fwd in zip(path.nodes[1:], path.relations, path.forward, strict=True):
            out.append(f" -{rel}-> " if fwd else f" <-{rel}- ")
            out.append(f"{node.type} {self.label(node)!r}")
        tail = "" if path.contribution is None else f"  ({path.contribution:+.4f})"
        return "".join(out) + tail

    def explain(
        self, user_id: str, item_id: str, *, max_paths: int = 5, max_hops: int = 3, candidates: int = 64
    ) -> Explanation:
        """Why ``item_id`` scores what it does for ``user_id``: typed graph paths ranked by contribution.

        A path's contribution is the exact drop of the score when its edges are masked out of the
        propagation (see :mod:`graph_rec.explore.attribution`). ``candidates`` paths with the
        largest walk weight are scored; the ``max_paths`` largest contributions are returned.
        """
        max_paths, candidates = positive_int("max_paths", max_paths), positive_int("candidates", candidates)
        snap = self._snap
        users, _ = self._user_idx(snap, [user_id])
        items, _ = self._item_idx(snap, [item_id])
        if users[0] >= self.data.num_users or items[0] >= self.data.num_items:
            cold = [
                x
                for x, idx, n in ((user_id, users[0], self.data.num_users), (item_id, items[0], self.data.num_items))
                if idx >= n
            ]
            raise UnknownIdError(
                "training-graph",
                cold,
                hint="explain works on nodes of the training graph, not on cold-start additions",
            )
        view = self.propagation_view()
        g = self.data.graph
        u = users[0] + g.node_offsets["user"]
        i = items[0] + g.node_offsets["item"]
        with torch.inference_mode():
            score = view.score(view.h[u], view.h[i])
            paths = view.candidate_paths(u, i, max_hops=max_hops, candidates=candidates)
            drops = score - view.masked_scores(u, i, paths)
            scored = list(zip(drops.tolist(), paths, strict=True))
        scored.sort(key=lambda t: (-t[0], t[1]))
        paths = tuple(self._graph_path(view, edges, drop) for drop, edges in scored[:max_paths])
        return Explanation(user_id=snap.user_ids[users[0]], item_id=snap.item_ids[items[0]], score=score, paths=paths)

    # ------------------------------------------------------------------ cold start
    def _recipe_entry(self, slot: str) -> dict[str, Any] | None:
        """The graph's recipe entry that encoded feature ``slot`` (None: its vectors were given)."""
        return next(
            (
                r
                for r in reversed(self.graph.recipe)
                if r.get("info", {}).get("slot") == slot and isinstance(r.get("settings", {}).get("encoder"), dict)
            ),
            None,
        )

    def _encoder(self, slot: str) -> Any:
        """The encoder that made feature ``slot``, rebuilt from the graph's recipe (cached)."""
        with self._lock:
            if slot in self._encoders:
                return self._encoders[slot]
            entry = self._recipe_entry(slot)
            if entry is None:
                raise ConfigError(
                    f"the graph's recipe does not say how feature {slot!r} was made; pass features={{{slot!r}: vector}}"
                )
            enc = entry["settings"]["encoder"]
            settings = dict(enc.get("settings", {}))
            if enc.get("builder") == "TextEncoder":
                from kg_builders.builders.text_encoder import TextEncoder

                encoder = TextEncoder(**settings)
            elif enc.get("builder") == "ImageEncoder":
                from kg_builders.builders.image_features import ImageEncoder

                encoder = ImageEncoder(**settings)
            else:
                raise ConfigError(
                    f"feature {slot!r} was made by {enc.get('builder')!r}, which cannot encode new inputs"
                )
            info = entry.get("info", {})
            expected = info.get("encoder_fingerprint") or info.get("fingerprint")
            if expected and encoder.fingerprint() != expected:
                # the same model under other library versions; a graph built before the versions
                # were part of the fingerprint recorded what is now the identity
                if set(encoder.identities()) & {info.get("encoder_identity"), expected}:
                    logger.warning(
                        "the %r encoder is the model the graph was built with, but the transformers/tokenizers "
                        "versions or the compute dtype (bfloat16 on a GPU, float32 on a CPU) differ or were not "
                        "recorded: new items' vectors may differ slightly from the graph's",
                        slot,
                    )
                else:
                    raise ConfigError(
                        f"the {slot!r} encoder found here ({encoder.fingerprint()}) is not the one the graph was "
                        f"built with ({expected})"
                    )
            self._encoders[slot] = encoder
            return encoder

    def _layer0(self, node_type: str, features: Mapping[str, Any]) -> Tensor:
        """``[d]`` F(x) of a new node of ``node_type`` from raw features (text, image or vectors), on the CPU."""
        model = self.cpu_model()
        d = model.config.embedding_dim
        slots = list(getattr(model, "slots", []))
        unknown = [s for s in features if s not in slots]
        if unknown:
            raise ConfigError(f"feature slot(s) {unknown} are not used by the model; it uses {slots}")
        feats, masks = {}, {}
        for s in slots:
            dim = int(getattr(model, f"x_{s}").shape[1])
            v = features.get(s)
            if v is None:
                feats[s], masks[s] = torch.zeros(1, dim), torch.zeros(1, dtype=torch.bool)
                continue
            if not _is_vector(v):  # raw input (text, an image array, a path, bytes): encode it
                res = self._encoder(s).encode([v])
                if not bool(res.mask[0]):  # skipped by the encoder (an image that does not decode, a blank text)
                    failed = getattr(res, "failed", ())
                    why = failed[0][1] if failed else "it has no content the encoder can use"
                    raise DataError(f"feature {s!r} of the new {node_type} could not be encoded: {why}")
                v = res.vectors[0]
            t = torch.as_tensor(np.asarray(v, dtype=np.float32)).reshape(1, -1)
            if t.shape[1] != dim or not torch.isfinite(t).all():
                raise DataError(
                    f"feature {s!r} of the new {node_type} must be {dim} finite numbers, got {list(t.shape)}"
                )
            feats[s], masks[s] = t, torch.ones(1, dtype=torch.bool)
        if not slots or not any(bool(m.any()) for m in masks.values()):
            return torch.zeros(d)
        with torch.inference_mode():
            fx = model.fusion(feats, masks)[0]
            if model.config.id_embedding == "gated":
                t_idx = list(self.data.graph.node_offsets).index(node_type)
                fx = torch.sigmoid(model.gate[t_idx]) * fx
        return fx

    def _neighbour_edges(
        self, node_type: str, links: Sequence[tuple[str, str, str]], on_unknown: str
    ) -> tuple[Tensor, Tensor, Tensor, list[str]]:
        """``(global nodes, relation ids, weights, unknown ids)`` of edges ``(relation, other type, other id)``."""
        g = self.data.graph
        rel_index = {name: k for k, name in enumerate(g.relations)}
        nodes, rels, unknown = [], [], []
        for relation, other_type, other_id in links:
            key_fwd = f"{node_type}__{relation}__{other_type}"
            key_rev = f"{other_type}__{relation}__{node_type}"
            rid = rel_index.get(key_fwd, rel_index.get(key_rev))
            if rid is None:
                raise ConfigError(
                    f"the model's graph has no relation {relation!r} between {node_type!r} and {other_type!r}; "
                    f"relations: {sorted(g.forward_relations())}"
                )
            pos = self._id_position(other_type, other_id)
            if pos is None or other_type not in g.node_offsets:
                unknown.append(f"{other_type}:{other_id}")
                continue
            nodes.append(g.node_offsets[other_type] + pos)
            rels.append(rid)
        if unknown and on_unknown == "raise":
            raise UnknownIdError(
                "neighbour", unknown, hint=f"links of the new {node_type} must name nodes of the graph"
            )
        w = torch.ones(len(nodes))
        return torch.tensor(nodes, dtype=torch.long), torch.tensor(rels, dtype=torch.long), w, unknown

    def _id_position(self, node_type: str, node_id: str) -> int | None:
        """The index of ``node_id`` among the graph's ``node_type`` nodes, or None."""
        try:
            return self.graph.index(node_type, str(node_id))
        except (UnknownIdError, SchemaError):
            return None

    def _entity_relation(self, entity_id: str) -> str:
        """The relation the model propagates over that joins items to this entity most often in the graph."""
        best: tuple[int, str] | None = None
        pos = self._id_position("entity", entity_id)
        if pos is None:
            return ""
        kept = set(self.data.graph.relations)  # a relation the data view dropped is not the model's
        for (s, r, d), e in self.graph.edges.items():
            if s == "item" and d == "entity" and f"item__{r}__entity" in kept:
                n = int((e.edge_index[1] == pos).sum())
                if n and (best is None or n > best[0]):
                    best = (n, r)
        if best is None:
            raise ConfigError(
                f"entity {entity_id!r} is joined to no item by a relation the model propagates over; "
                "name the relation with neighbours="
            )
        return best[1]

    def add_item(
        self,
        item_id: str,
        *,
        text: str | None = None,
        image: Any = None,
        features: Mapping[str, Any] | None = None,
        tags: Sequence[str] = (),
        entities: Sequence[str] = (),
        neighbours: Sequence[tuple[str, str, str]] = (),
        on_unknown: OnUnknown = "raise",
    ) -> None:
        """Make a new item scorable and recommendable from its features and links, without retraining.

        Args:
            item_id: the new item's raw id (not already known).
            text: its text, encoded with the encoder of the graph's ``text`` slot.
            image: its image for the ``image`` slot (a path, encoded bytes, an ``[H, W, 3]`` array or a PIL
                image), encoded by the encoder recorded in the graph's recipe; or a precomputed 1-d float vector.
            features: ``{slot: vector or raw input}`` for any slot (overrides ``text``/``image``).
            tags: ids of existing tags (relation ``tagged_with``).
            entities: ids of existing entities (the relation that joins items to each most often).
            neighbours: further links ``(relation, node type, node id)``.
            on_unknown: an unknown tag, entity or neighbour raises (``"raise"``) or is left out.
        """
        _check_on_unknown(on_unknown)
        view = self.propagation_view()
        item_id = str(item_id)
        if item_id in self._snap.item_index:  # (also ids being added right now: the map is shared)
            raise ConfigError(f"item {item_id!r} is already known")
        for name, value in (("tags", tags), ("entities", entities), ("neighbours", neighbours)):
            if isinstance(value, str | bytes):
                raise ConfigError(f"{name} must be a list of ids, not one string ({value!r}): pass [{value!r}]")
        # a slot given as None is no feature (features={"text": None} is not a text)
        feats = {s: v for s, v in dict(features or {}).items() if v is not None}
        if text is not None:
            feats.setdefault("text", text)
        if image is not None:
            feats.setdefault("image", image)
        links = [("tagged_with", "tag", str(t)) for t in tags]
        unknown_entities = []
        for e in entities:
            rel = self._entity_relation(str(e))
            if rel:
                links.append((rel, "entity", str(e)))
            elif on_unknown == "raise":
                raise UnknownIdError(
                    "entity", [str(e)], hint=f"links of the new item {item_id!r} must name nodes of the graph"
                )
            else:
                unknown_entities.append(f"entity:{e}")
        links += [(str(r), str(t), str(i)) for r, t, i in neighbours]
        if any(t == "user" for _, t, _ in links):
            # a user link is an interaction: it would have to count as seen for that user and be
            # refused at evaluation; the scoring API folds interactions in on the user side only
            raise ConfigError(
                f"the new item {item_id!r} names a user among its neighbours; add_item takes features and "
                "knowledge links (tags, entities, other items), not interactions"
            )
        links = list(dict.fromkeys(links))  # a link named twice (or as a tag and a neighbour) counts once
        nodes, rels, w, skipped = self._neighbour_edges("item", links, on_unknown)
        skipped = unknown_entities + skipped
        dropped = set(skipped)  # on_unknown="skip" dropped these
        links = [x for x in links if f"{x[1]}:{x[2]}" not in dropped]
        if not feats and not links:
            raise ConfigError(
                f"item {item_id!r} needs features (text, image) or links (tags, entities) to be scored"
                + (f"; every link it named is unknown: {skipped}" if skipped else "")
            )
        x0 = self._layer0("item", feats)
        with torch.inference_mode():
            h = view.fold_in(x0, nodes, rels, w)
            rep = view._norm(h).to(self.device)
        with self._lock:
            if item_id in self._snap.item_index:
                raise ConfigError(f"item {item_id!r} is already known")
            self._added_meta["items"][item_id] = {"links": [list(x) for x in links], "skipped": skipped}
            self._append_items([item_id], rep[None])

    def add_user(self, user_id: str, item_ids: Sequence[str], *, on_unknown: OnUnknown = "raise") -> None:
        """Fold a new user in from the items they interacted with (no retraining).

        Their representation propagates from those items exactly as a one-layer-deeper training
        user's would (see :mod:`graph_rec.explore.attribution`); the items count as seen.
        """
        _check_on_unknown(on_unknown)
        view = self.propagation_view()
        user_id = str(user_id)
        if user_id in self._snap.user_index:
            raise ConfigError(f"user {user_id!r} is already known")
        if isinstance(item_ids, str | bytes):
            raise ConfigError(f"add_user needs a list of item ids for {user_id!r}, not one string ({item_ids!r})")
        item_ids = list(item_ids)  # (a NumPy array or a pandas Series too)
        if not item_ids:
            raise ConfigError(f"add_user needs a non-empty list of item ids for {user_id!r}")
        snap = self._snap
        items, unknown = self._item_idx(snap, item_ids, on_unknown)
        trained = [j for j in items if j < self.data.num_items]
        if not trained:
            raise ConfigError(f"none of the items of {user_id!r} is in the training graph; cannot fold the user in")
        rel = self.data.config.interaction_relation
        links = [(rel, "item", snap.item_ids[j]) for j in sorted(set(trained))]
        nodes, rels, w, _ = self._neighbour_edges("user", links, "raise")
        x0 = self._layer0("user", {})
        with torch.inference_mode():
            rep = view._norm(view.fold_in(x0, nodes, rels, w)).to(self.device)
        with self._lock:
            if user_id in self._snap.user_index:
                raise ConfigError(f"user {user_id!r} is already known")
            seen = torch.tensor(sorted(set(items)), dtype=torch.long)
            self._added_meta["users"][user_id] = {
                "items": [snap.item_ids[j] for j in seen.tolist()],
                "skipped": unknown,
            }
            self._append_users([user_id], rep[None], torch.tensor([0, seen.numel()]), seen)

    def _append_items(self, item_ids: list[str], reprs: Tensor) -> None:
        """Publish new items (caller holds the lock): ids and rows first, then the new snapshot."""
        snap = self._snap
        for k, i in enumerate(item_ids):
            snap.item_ids.append(i)
            snap.item_index[i] = snap.num_items + k
        reprs = reprs.to(self.device)
        self._snap = dataclasses.replace(
            snap,
            num_items=snap.num_items + len(item_ids),
            item_repr=self._rows["item_repr"].append(reprs),
            item_t=self._rows["item_t"].append(reprs),
        )

    def _append_users(self, user_ids: list[str], reprs: Tensor, seen_ptr: Tensor, seen_idx: Tensor) -> None:
        """Publish new users; ``seen_ptr`` ``[n + 1]`` (from 0) and ``seen_idx`` are their seen items."""
        snap = self._snap
        for k, u in enumerate(user_ids):
            snap.user_ids.append(u)
            snap.user_index[u] = snap.num_users + k
        base = snap.seen_ptr[-1]
        self._snap = dataclasses.replace(
            snap,
            num_users=snap.num_users + len(user_ids),
            user_repr=self._rows["user_repr"].append(reprs.to(self.device)),
            seen_ptr=self._rows["seen_ptr"].append(base + seen_ptr[1:]),
            seen_idx=self._rows["seen_idx"].append(seen_idx),
        )

    def _query_vector(self, query: str) -> Tensor:
        if not isinstance(query, str) or not query.strip():
            raise ConfigError(f"query must be a non-empty string, got {query!r}")
        if "text" not in getattr(self.model, "slots", []):
            raise ConfigError("query needs a model with a 'text' feature slot")
        if self._recipe_entry("text") is None:
            raise ConfigError(
                "query needs the encoder of the graph's 'text' features, and the graph's recipe names none "
                "(its text vectors were given, not encoded by graph-rec)"
            )
        return self._layer0("item", {"text": query}).to(self.device)

    # ------------------------------------------------------------------ export
    def export_tables(
        self, *, k: int = 10, explain_top: int = 3, users: Sequence[str] | None = None, max_paths: int = 3
    ) -> tuple[dict[str, np.ndarray], Any, Any]:
        """``(embeddings, recommendations, explanations)`` for the knowledge stores.

        ``embeddings``: node type -> ``[n, d]`` float32 (the propagated representations of the
        graph's nodes). ``recommendations``: top-``k`` per user (RECOMMENDATION_COLUMNS).
        ``explanations``: up to ``max_paths`` paths for each user's first ``explain_top``
        recommendations (EXPLANATION_COLUMNS), empty with ``explain_top=0``.
        """
        import pandas as pd

        snap = self._snap
        users = snap.user_ids[: self.data.num_users] if users is None else list(users)
        # the stores hold the knowledge graph: items added by cold start are not in it
        graph_items = snap.item_ids[: self.data.num_items] if snap.num_items > self.data.num_items else None
        recs = self.recommend_batch(users, k=k, candidates=graph_items).to_pandas()
        embeddings: dict[str, np.ndarray] = {}
        if isinstance(self.model, GraphRec):
            view = self.propagation_view()
            h = view._norm(view.h)
            for t, off in self.data.graph.node_offsets.items():
                embeddings[t] = h[off : off + self.data.graph.node_counts[t]].cpu().numpy().astype(np.float32)
        elif snap.user_repr is not None:  # MF, LightGCN, ALS: users and items only (EASE & co. have none)
            embeddings["user"] = snap.user_repr[: self.data.num_users].cpu().numpy().astype(np.float32)
            embeddings["item"] = snap.item_repr[: self.data.num_items].cpu().numpy().astype(np.float32)
        rows = []
        if explain_top > 0:
            top = recs[recs["rank"] <= explain_top]
            for u, i in zip(top["user_id"], top["item_id"], strict=True):
                for r, p in enumerate(self.explain(u, i, max_paths=max_paths).paths, start=1):
                    rows.append(
                        {
                            "user_id": u,
                            "item_id": i,
                            "rank": r,
                            "contribution": p.contribution,
                            "path": json.dumps(p.to_dict()),
                        }
                    )
        expl = pd.DataFrame(rows, columns=list(EXPLANATION_COLUMNS))
        return embeddings, recs, expl

    def store(self, *, k: int = 10, explain_top: int = 0) -> Any:
        """An :class:`~graph_rec.explore.embedded.EmbeddedStore` of the graph with this model's recommendations."""
        from graph_rec.explore.embedded import EmbeddedStore

        _, recs, expl = self.export_tables(k=k, explain_top=explain_top)
        return EmbeddedStore(self.graph, recommendations=recs, explanations=expl if len(expl) else None)

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the recommender to the directory ``path`` (module docstring); atomic."""
        with self._lock:  # the snapshot and the records of its added ids as one (add_item holds the lock)
            snap = self._snap
            added_meta = {kind: dict(records) for kind, records in self._added_meta.items()}
        with atomic_dir(path, overwrite=overwrite) as tmp:
            self.graph.save(tmp / "graph")
            save_state_dict(self.model, tmp / "model.safetensors")
            save_safetensors(
                {"indptr": self.data.train.indptr.contiguous(), "indices": self.data.train.indices.contiguous()},
                tmp / "interactions.safetensors",
            )
            nu, ni = self.data.num_users, self.data.num_items
            added: dict[str, Tensor] = {}
            if snap.num_items > ni:
                added["item_repr"] = snap.item_repr[ni:].cpu().contiguous()
            if snap.num_users > nu:
                added["user_repr"] = snap.user_repr[nu:].cpu().contiguous()
                added["user_seen_ptr"] = (snap.seen_ptr[nu:] - snap.seen_ptr[nu]).contiguous()
                added["user_seen_idx"] = snap.seen_idx[int(snap.seen_ptr[nu]) :].contiguous()
            save_safetensors(added, tmp / "added.safetensors")
            meta = {
                "format_version": FORMAT_VERSION,
                "versions": {"graph_rec": __version__, "torch": torch.__version__, "python": platform.python_version()},
                "model": {"name": self.model_name, "settings": self.model_settings},
                "view": self.data.config.to_dict(),
                "train": None if self.train_config is None else self.train_config.to_dict(),
                "schema": self.data.graph.schema(),
                "counts": {"users": nu, "items": ni, "interactions": self.data.train.nnz},
                "added": {
                    "items": snap.item_ids[ni : snap.num_items],
                    "users": snap.user_ids[nu : snap.num_users],
                    "meta": added_meta,
                },
            }
            (tmp / "recommender.json").write_text(json.dumps(meta, indent=2, allow_nan=False))
            sums = {str(p.relative_to(tmp)): sha256_file(p) for p in _all_files(tmp)}
            (tmp / "checksums.json").write_text(json.dumps(sums, indent=2, sort_keys=True))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", verify: bool = True) -> Recommender:
        """Read a directory written by :meth:`save`.

        Raises:
            CheckpointError: a missing file, a checksum mismatch (a tampered or damaged file), a
                newer format version, or weights that do not fit the model.
        """
        from kg_builders.graph import KnowledgeGraph

        root = Path(path)
        if not root.is_dir():
            raise CheckpointError(f"{root} is not a saved recommender directory")
        missing = [f for f in (*SAVE_FILES, "checksums.json") if not (root / f).is_file()]
        if not (root / "graph").is_dir():
            missing.append("graph/")
        if missing:
            raise CheckpointError(f"{root} is missing {missing}")
        try:
            meta = json.loads((root / "recommender.json").read_text())
            sums = json.loads((root / "checksums.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{root}: recommender.json or checksums.json is not valid JSON: {exc}") from exc
        if not isinstance(meta, dict) or not isinstance(sums, dict):
            raise CheckpointError(f"{root}: recommender.json and checksums.json must each hold a JSON object")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"{root} was written in format {version!r}; this graph-rec {__version__} reads up to {FORMAT_VERSION}: upgrade graph-rec"
            )
        if verify:
            files = {str(p.relative_to(root)) for p in _all_files(root)}
            extra, lost = sorted(files - set(sums)), sorted(set(sums) - files)
            if extra or lost:
                raise CheckpointError(f"{root}: files not in checksums.json {extra[:5]}, listed but missing {lost[:5]}")
            bad = [name for name in sorted(sums) if sha256_file(root / name) != sums[name]]
            if bad:
                raise CheckpointError(f"{root}: checksum mismatch in {bad[:5]}: the files were changed after saving")
        lacking = [k for k in ("view", "model") if not isinstance(meta.get(k), dict)]
        if not lacking and not (
            isinstance(meta["model"].get("name"), str) and isinstance(meta["model"].get("settings"), dict)
        ):
            lacking.append("model.name/model.settings")
        if lacking:
            raise CheckpointError(f"{root}/recommender.json is damaged: it has no valid {lacking}")
        kg = KnowledgeGraph.load(root / "graph")
        view = DataConfig.from_dict(meta["view"])
        data = RecData(kg, None, config=view)
        name = meta["model"]["name"]
        model_class(name)  # unknown model names fail here with the registry's list
        model = init_model(name, meta["model"]["settings"], data, seed=0)
        inter = load_file(str(root / "interactions.safetensors"))
        if not (torch.equal(inter["indptr"], data.train.indptr) and torch.equal(inter["indices"], data.train.indices)):
            raise CheckpointError(f"{root}: interactions.safetensors does not match the graph's interaction edges")
        load_state_dict(model, root / "model.safetensors")
        if not model.is_fitted():
            raise CheckpointError(f"{root}: the saved {name!r} model was never fitted")
        train_cfg = TrainConfig.from_dict(meta["train"]) if meta.get("train") else None
        rec = cls(
            model,
            data,
            kg,
            model_name=name,
            model_settings=meta["model"]["settings"],
            train_config=train_cfg,
            device=device,
        )
        added = _added_block(meta.get("added", {}), root / "recommender.json")
        rec._restore_added(added, load_file(str(root / "added.safetensors")))
        return rec

    def _restore_added(self, added: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> None:
        items, users = added["items"], added["users"]
        need = (["item_repr"] if items else []) + (["user_repr", "user_seen_ptr", "user_seen_idx"] if users else [])
        lacking = [k for k in need if k not in tensors]
        if lacking:
            raise CheckpointError(
                f"added.safetensors lacks {lacking} for the "
                f"{len(items)} added item(s) and {len(users)} added user(s) recommender.json lists"
            )
        self._check_added(items, users, tensors)
        self._added_meta = {"items": dict(added["meta"]["items"]), "users": dict(added["meta"]["users"])}
        with self._lock:
            if items:
                self._append_items(items, tensors["item_repr"])
            if users:
                self._append_users(users, tensors["user_repr"], tensors["user_seen_ptr"], tensors["user_seen_idx"])

    def _check_added(self, items: list[str], users: list[str], tensors: Mapping[str, Tensor]) -> None:
        """Refuse a cold-start state that does not fit the trained recommender, before anything is appended."""
        snap = self._snap

        def bad(field: str, why: str) -> CheckpointError:
            return CheckpointError(f"added.safetensors: {field} {why}")

        for kind, ids, known in (("item", items, snap.item_index), ("user", users, snap.user_index)):
            twice = sorted({x for x in ids if ids.count(x) > 1})
            clash = sorted(set(ids) & set(known))
            if twice or clash:
                raise CheckpointError(
                    f"recommender.json: added {kind} ids {(twice + clash)[:5]} are listed twice or are "
                    f"{kind}s of the trained graph"
                )
        d = None if snap.item_repr is None else snap.item_repr.shape[1]
        for field, n in (("item_repr", len(items)), ("user_repr", len(users))):
            if n and (tensors[field].dim() != 2 or tensors[field].shape[0] != n or tensors[field].shape[1] != d):
                raise bad(field, f"has shape {list(tensors[field].shape)}, expected [{n}, {d}]")
            if n and not torch.isfinite(tensors[field]).all():
                raise bad(field, "holds NaN or infinite values")
        if users:
            ptr, idx = tensors["user_seen_ptr"], tensors["user_seen_idx"]
            n_items = snap.num_items + len(items)
            if ptr.dtype != torch.long or idx.dtype != torch.long or ptr.dim() != 1 or idx.dim() != 1:
                raise bad("user_seen_ptr/user_seen_idx", "must be 1-d int64")
            if ptr.numel() != len(users) + 1 or int(ptr[0]) != 0 or int(ptr[-1]) != idx.numel():
                raise bad("user_seen_ptr", f"must run from 0 to {idx.numel()} over {len(users) + 1} entries")
            if bool((ptr[1:] < ptr[:-1]).any()):
                raise bad("user_seen_ptr", "decreases")
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n_items):
                raise bad("user_seen_idx", f"names items outside 0..{n_items - 1}")

    def __repr__(self) -> str:
        s = self._snap
        return (
            f"Recommender(model={self.model_name!r}, users={s.num_users}, items={s.num_items}, "
            f"added_items={s.num_items - self.data.num_items}, added_users={s.num_users - self.data.num_users}, "
            f"device={self.device})"
        )


__all__ = ["Recommender", "RecommendationBatch", "RecommendationList", "Scores"]
