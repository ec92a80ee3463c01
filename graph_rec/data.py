"""What a model and an evaluator see of a :class:`~kg_builders.graph.KnowledgeGraph` and its split.

:class:`RecData` turns a graph built from the training tables, plus the :class:`~kg_builders.split.Split`
it came from, into tensors:

* ``train`` / ``valid`` / ``test``: :class:`UserItems`, per-user item lists in CSR form over the
  graph's user and item indices. Training positives are the graph's interaction edges (so they
  are exactly the pairs that became edges); validation and test pairs come from the split, under
  the same definition of a positive (the interaction builder's ``min_rating``, when it has one).
* ``graph``: :class:`GraphTensors`, every kept node type in one index space (users first, then
  items, then the rest), both directions of every kept edge type with its relation id, and the
  feature slots as ``[num_nodes, dim]`` matrices with row masks.

:class:`DataConfig` selects what the model may see (node types, relations, feature slots): the
ablations "no knowledge graph", "no text features", "no tags", "no entities" are data settings,
so every model is ablated the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from graph_rec.errors import ConfigError, DataError, SchemaError
from kg_builders.fragment import plain
from kg_builders.graph import edge_key

logger = logging.getLogger(__name__)

EdgeType = tuple[str, str, str]


def config_from_dict(cls: type, d: Mapping[str, Any], what: str) -> Any:
    """Build the frozen dataclass ``cls`` from a mapping, rejecting unknown keys with the valid ones.

    Lists become tuples (TOML has no tuples). Raises :class:`ConfigError` naming ``what``.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"{what} settings must be a table/mapping, got {type(d).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in d if k not in valid)
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {unknown}; valid keys: {valid}")
    values = {k: tuple(p) if isinstance(p := plain(v), list) else p for k, v in d.items()}
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if not _fits(value, hints.get(key, Any)):
            raise ConfigError(f"{what} setting {key!r} must be {_describe(hints[key])}, got {value!r}")
    try:
        return cls(**values)
    except TypeError as exc:  # a wrong type that the dataclass itself rejected
        raise ConfigError(f"bad {what} settings: {exc}") from exc
    except ConfigError as exc:  # a check of the dataclass: say which section it is about
        msg = str(exc)
        if msg.startswith((f"{what}.", f"{what} ", f"{what}:")):
            raise
        first = msg.split(" ", 1)[0]
        raise ConfigError(f"{what}.{msg}" if first in valid and what.isidentifier() else f"{what}: {msg}") from exc


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready mapping (tuples as lists, NumPy scalars as Python ones)."""
    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a config value has the type its dataclass field declares (ints count as floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)
    if hint is float:
        return is_number(value)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(args) == len(value) and all(_fits(v, a) for v, a in zip(value, args, strict=True))
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping)
    return True  # a type this check does not know: the dataclass's own checks decide


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if hint is type(None):
        return "absent (none)"
    if origin is tuple:
        inner = _describe(args[0]) if args else "values"
        return f"a list of {inner.removeprefix('a ').removeprefix('an ')}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def check_int(name: str, value: Any, *, minimum: int = 0, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")


def positive_int(name: str, value: Any) -> int:
    """``value`` as a Python int when it is a positive integer (NumPy integers too, not bools)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def is_number(value: Any) -> bool:
    """A real number, Python's or NumPy's (``np.float32`` is not a ``float``), and not a bool."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def check_float(name: str, value: Any, *, low: float = 0.0, high: float = float("inf"), open_low: bool = False) -> None:
    ok = is_number(value) and np.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise ConfigError(f"{name} must be a number in {bracket}{low}, {high}], got {value!r}")


def csr_tensor(crow: Tensor, col: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A torch sparse CSR tensor, without torch's "support is in beta" warning on every call.

    The invariants are not checked (the callers build ``crow`` and ``col`` themselves).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """What of the graph the model sees.

    Args:
        node_types: node types kept besides ``user`` and ``item`` (``None``: all). ``()`` keeps
            the user and item nodes only, with every edge among them: knowledge-graph relations
            between two items (``film_sequel``) and ``friend_of`` between users stay unless
            ``relations`` leaves them out; "no knowledge graph" is ``node_types=()`` with
            ``relations=("interacted",)``.
        relations: relations (forward names, e.g. ``"interacted"``) kept for propagation (``None``:
            all); ``("interacted",)`` is the user-item graph only ("no knowledge graph").
        drop_relations: relations (forward names, e.g. ``"friend_of"``) removed from propagation.
        features: feature slots used as node features (``None``: every slot in the graph; ``()``:
            none, "no text features").
        edge_weights: propagate with the builders' edge weights (e.g. ratings); otherwise every
            edge weighs 1, as in LightGCN.
        interaction_relation: the relation of user -> item training interactions.
    """

    node_types: tuple[str, ...] | None = None
    relations: tuple[str, ...] | None = None
    drop_relations: tuple[str, ...] = ()
    features: tuple[str, ...] | None = None
    edge_weights: bool = False
    interaction_relation: str = "interacted"

    def __post_init__(self) -> None:
        for name in ("node_types", "relations", "features"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, str) or not all(isinstance(x, str) for x in v)):
                raise ConfigError(f"{name} must be a list of names or null, got {v!r}")
        if isinstance(self.drop_relations, str) or not all(isinstance(x, str) for x in self.drop_relations):
            raise ConfigError(f"drop_relations must be a list of relation names, got {self.drop_relations!r}")
        if not isinstance(self.edge_weights, bool):
            raise ConfigError(f"edge_weights must be true or false, got {self.edge_weights!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataConfig:
        return config_from_dict(cls, d, "view")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


def expand_ranges(starts: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """Every position of the ranges ``[starts[k], starts[k] + counts[k])``: ``(owner k [m], position [m])``.

    The vectorised form of ``for k: for p in range(starts[k], starts[k] + counts[k])`` that reads CSR rows.
    """
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    offs = torch.arange(owner.numel(), device=counts.device) - (torch.cumsum(counts, 0) - counts)[owner]
    return owner, starts[owner] + offs


class UserItems:
    """A set of (user_idx, item_idx) pairs stored per user in CSR form (sorted, no duplicates).

    Attributes:
        indptr: ``[num_users + 1]`` long; user ``u``'s items are ``indices[indptr[u]:indptr[u + 1]]``.
        indices: ``[nnz]`` long item indices, sorted within each user.
        num_users, num_items: the matrix shape.
    """

    def __init__(self, indptr: Tensor, indices: Tensor, num_users: int, num_items: int) -> None:
        self.indptr = indptr
        self.indices = indices
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self._keys: Tensor | None = None

    @classmethod
    def from_pairs(cls, users: Any, items: Any, num_users: int, num_items: int) -> UserItems:
        """Pairs to CSR; duplicates are merged. Raises :class:`SchemaError` on an index out of range."""
        u = torch.as_tensor(np.asarray(users), dtype=torch.long).reshape(-1)
        i = torch.as_tensor(np.asarray(items), dtype=torch.long).reshape(-1)
        if u.numel() != i.numel():
            raise SchemaError(f"users and items differ in length: {u.numel()} vs {i.numel()}")
        if u.numel() and (
            int(u.min()) < 0 or int(u.max()) >= num_users or int(i.min()) < 0 or int(i.max()) >= num_items
        ):
            raise SchemaError(f"pair indices out of range for {num_users} users x {num_items} items")
        keys = torch.unique(u * num_items + i)  # sorted
        rows = torch.div(keys, num_items, rounding_mode="floor")
        indptr = torch.zeros(num_users + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_users), 0)
        out = cls(indptr, keys - rows * num_items, num_users, num_items)
        out._keys = keys
        return out

    @property
    def nnz(self) -> int:
        return int(self.indices.numel())

    def counts(self) -> Tensor:
        """``[num_users]`` number of items per user."""
        return self.indptr[1:] - self.indptr[:-1]

    def item_counts(self) -> Tensor:
        """``[num_items]`` number of users per item (popularity)."""
        return torch.bincount(self.indices, minlength=self.num_items)

    def users(self) -> Tensor:
        """``[nnz]`` the user of each stored pair (row indices)."""
        return torch.repeat_interleave(torch.arange(self.num_users), self.counts())

    def keys(self) -> Tensor:
        """``[nnz]`` sorted ``user * num_items + item`` keys, for membership tests."""
        if self._keys is None:
            self._keys = self.users() * self.num_items + self.indices
        return self._keys

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        """Bool tensor: whether each (users[k], items[k]) is stored. Vectorised binary search."""
        keys = self.keys()
        q = users.to(torch.long) * self.num_items + items.to(torch.long)
        if keys.numel() == 0:
            return torch.zeros_like(q, dtype=torch.bool)
        pos = torch.searchsorted(keys, q).clamp_(max=keys.numel() - 1)
        return keys[pos] == q

    def rows(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """The stored pairs of a batch of users: ``(row, item)``, ``row`` indexing into ``users``."""
        users = users.to(torch.long)
        start = self.indptr[users]
        row, pos = expand_ranges(start, self.indptr[users + 1] - start)
        return row, self.indices[pos]

    def dense_rows(self, users: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """``[len(users), num_items]`` 0/1 rows (only for batches of users)."""
        out = torch.zeros(users.numel(), self.num_items, dtype=dtype)
        r, c = self.rows(users)
        out[r, c] = 1
        return out

    def to_sparse(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """The whole matrix as a torch sparse CSR tensor ``[num_users, num_items]`` of ones."""
        return csr_tensor(
            self.indptr, self.indices, torch.ones(self.nnz, dtype=dtype), (self.num_users, self.num_items)
        )

    def union(self, other: UserItems) -> UserItems:
        u = torch.cat([self.users(), other.users()])
        i = torch.cat([self.indices, other.indices])
        return UserItems.from_pairs(u, i, self.num_users, self.num_items)


@dataclass(eq=False)
class GraphTensors:
    """The propagation graph: every kept node in one index space, edges in both directions.

    Attributes:
        num_nodes: total nodes; users are ``0 .. num_users-1``, items follow, then other types.
        node_offsets: node type -> first global index; node_counts: node type -> count.
        edge_index: ``[2, E]`` long (source, destination), both directions of every kept edge.
        edge_weight: ``[E]`` float32 (1 unless ``DataConfig.edge_weights``).
        edge_type: ``[E]`` long relation id into ``edge_types`` (and ``relations``).
        edge_types: ``(src, rel, dst)`` of each relation; each is followed by its reverse
            ``(dst, "rev_" + rel, src)``.
        features: slot -> ``[num_nodes, dim]`` float32 (zeros where missing).
        feature_masks: slot -> ``[num_nodes]`` bool (True where the row is real).
    """

    num_nodes: int
    node_offsets: dict[str, int]
    node_counts: dict[str, int]
    edge_index: Tensor
    edge_weight: Tensor
    edge_type: Tensor
    edge_types: list[tuple[str, str, str]]
    features: dict[str, Tensor] = field(default_factory=dict)
    feature_masks: dict[str, Tensor] = field(default_factory=dict)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def relations(self) -> list[str]:
        """Relation names ``src__rel__dst`` (``dst__rev_rel__src`` for a reverse), in relation id order.

        Names may contain ``__``: :meth:`relation` reads a relation's parts, never a split name.
        """
        return [edge_key(et) for et in self.edge_types]

    @property
    def num_relations(self) -> int:
        return len(self.edge_types)

    def relation(self, k: int) -> tuple[str, bool]:
        """``(relation, forward)`` of relation id ``k``: ``("interacted", False)`` for ``item__rev_interacted__user``."""
        r = self.edge_types[k][1]
        return (r[4:], False) if r.startswith("rev_") else (r, True)

    def forward_relations(self) -> list[str]:
        """The kept relations' names, each once, in graph order."""
        return list(dict.fromkeys(r for _, r, _ in self.edge_types if not r.startswith("rev_")))

    def node_type_index(self) -> Tensor:
        """``[num_nodes]`` long: position of each node's type in ``node_offsets``."""
        return torch.repeat_interleave(
            torch.arange(len(self.node_counts)), torch.tensor(list(self.node_counts.values()), dtype=torch.long)
        )

    def schema(self) -> dict[str, Any]:
        return {
            "nodes": dict(self.node_counts),
            "relations": list(self.relations),
            "features": {k: int(v.shape[1]) for k, v in self.features.items()},
        }


def interaction_min_rating(kg: Any, relation: str = "interacted") -> float | None:
    """The ``min_rating`` of the builder that made the graph's ``(user, relation, item)`` edges, or None.

    Read from the graph's recipe (each builder's settings): the threshold below which an
    interaction was not a training positive, so that held-out interactions are judged alike.
    """
    for step in getattr(kg, "recipe", None) or ():
        settings = step.get("settings", {}) if isinstance(step, Mapping) else {}
        if isinstance(settings, Mapping) and settings.get("relation") == relation and "min_rating" in settings:
            value = settings["min_rating"]
            return None if value is None else float(value)
    return None


class RecData:
    """Training graph, training positives and held-out pairs of one split, as index tensors.

    Args:
        kg: the graph built from ``split.train_tables(...)``.
        split: the split (its ``valid`` and ``test`` tables give the held-out pairs); ``None`` for a
            graph without held-out data (training on everything, e.g. for serving).
        config: what the model may see.

    A held-out interaction is a positive by the rule that made the training positives: when the
    builder of the ``interaction_relation`` edges kept only ``rating >= min_rating`` (its settings
    in the graph's recipe), held-out rows rated below it are not positives either, and are dropped
    (counted in ``dropped`` as ``below_min_rating``); otherwise a model would be scored on finding
    items its training data calls negatives. Held-out pairs whose user or item is not in the graph
    cannot be ranked and are dropped (and counted in ``dropped``); pairs that are also training
    positives (and test pairs that are also validation pairs) are dropped too, since they are
    masked when ranking. Users with
    no training interaction keep their held-out pairs (a model ranks them from the graph alone),
    and are counted in ``cold_users``.
    """

    def __init__(self, kg: Any, split: Any | None = None, *, config: DataConfig | None = None) -> None:
        self.config = config or DataConfig()
        cfg = self.config
        for t in ("user", "item"):
            if t not in kg.node_ids:
                raise SchemaError(f"the graph has no {t!r} nodes; node types: {kg.node_types}")
        self.user_ids: list[str] = list(kg.node_ids["user"])
        self.item_ids: list[str] = list(kg.node_ids["item"])
        self.num_users = len(self.user_ids)
        self.num_items = len(self.item_ids)
        if self.num_users == 0 or self.num_items == 0:
            raise DataError(f"the graph is empty: {self.num_users} users, {self.num_items} items")
        ui = ("user", cfg.interaction_relation, "item")
        if ui not in kg.edges or kg.edges[ui].num_edges == 0:
            raise DataError(f"the graph has no training interactions {ui}; edge types: {kg.edge_types}")
        ei = kg.edges[ui].edge_index
        self.train = UserItems.from_pairs(ei[0], ei[1], self.num_users, self.num_items)
        self.dropped: dict[str, dict[str, int]] = {}
        self.min_rating = interaction_min_rating(kg, cfg.interaction_relation)
        self.valid = self._held_out(kg, None if split is None else split.valid, "valid")
        self.test = self._held_out(kg, None if split is None else split.test, "test", also=self.valid)
        self.cold_users = int((self.train.counts() == 0).sum())
        self.graph = self._graph(kg)
        self.split_info: dict[str, Any] = (
            {} if split is None else {"method": split.method, "settings": dict(split.settings), **split.counts()}
        )

    # ------------------------------------------------------------------ held-out pairs
    def _held_out(self, kg: Any, df: pd.DataFrame | None, part: str, also: UserItems | None = None) -> UserItems:
        if df is None or len(df) == 0:
            return UserItems.from_pairs([], [], self.num_users, self.num_items)
        below = 0
        if self.min_rating is not None and "rating" in df.columns:  # not a positive, as in training
            low = (df["rating"] < self.min_rating).to_numpy()
            below = int(low.sum())
            df = df.loc[~low]
        upos = pd.Index(self.user_ids).get_indexer(df["user_id"].astype(str))
        ipos = pd.Index(self.item_ids).get_indexer(df["item_id"].astype(str))
        known = (upos >= 0) & (ipos >= 0)
        held = UserItems.from_pairs(upos[known], ipos[known], self.num_users, self.num_items)
        overlap = self.train.contains(held.users(), held.indices)
        if also is not None:  # a test pair that is also a validation pair is masked at test time
            overlap |= also.contains(held.users(), held.indices)
        if bool(overlap.any()):
            keep = ~overlap
            held = UserItems.from_pairs(held.users()[keep], held.indices[keep], self.num_users, self.num_items)
        self.dropped[part] = {
            "below_min_rating": below,
            "unknown_user_or_item": int((~known).sum()),
            "also_in_train_or_valid": int(overlap.sum()),
        }
        if (~known).any():
            logger.info(
                "%s: %d pairs have a user or item outside the graph and are not ranked", part, int((~known).sum())
            )
        return held

    # ------------------------------------------------------------------ propagation graph
    def _graph(self, kg: Any) -> GraphTensors:
        cfg = self.config
        types = ["user", "item"] + [t for t in kg.node_types if t not in ("user", "item")]
        if cfg.node_types is not None:
            unknown = [t for t in cfg.node_types if t not in kg.node_types]
            if unknown:
                raise ConfigError(f"view.node_types names {unknown}, not in the graph; it has {kg.node_types}")
            types = ["user", "item"] + [t for t in types[2:] if t in cfg.node_types]
        known_rel = sorted({r for _, r, _ in kg.edge_types})
        for name in ("relations", "drop_relations"):
            unknown = [r for r in getattr(cfg, name) or () if r not in known_rel]
            if unknown:
                raise ConfigError(f"view.{name} names {unknown}, not in the graph; it has {known_rel}")
        if cfg.relations is not None and cfg.interaction_relation not in cfg.relations:
            raise ConfigError(f"view.relations must keep the interaction relation {cfg.interaction_relation!r}")
        counts = {t: kg.num_nodes(t) for t in types}
        offsets, n = {}, 0
        for t in types:
            offsets[t] = n
            n += counts[t]
        edge_types: list[tuple[str, str, str]] = []
        parts_i, parts_w, parts_t = [], [], []
        kept = [
            et
            for et in kg.edge_types
            if et[0] in counts
            and et[2] in counts
            and et[1] not in cfg.drop_relations
            and (cfg.relations is None or et[1] in cfg.relations)
        ]
        for et in kept:
            s, r, d = et
            e = kg.edges[et]
            src = torch.as_tensor(e.edge_index[0]) + offsets[s]
            dst = torch.as_tensor(e.edge_index[1]) + offsets[d]
            w = torch.as_tensor(e.edge_weight, dtype=torch.float32) if cfg.edge_weights else torch.ones(src.numel())
            if cfg.edge_weights and (not torch.isfinite(w).all() or (w < 0).any()):
                raise DataError(f"edge weights of {et} must be finite and >= 0 to propagate with them")
            fwd = len(edge_types)
            edge_types += [(s, r, d), (d, f"rev_{r}", s)]
            parts_i += [torch.stack([src, dst]), torch.stack([dst, src])]
            parts_w += [w, w]
            parts_t += [torch.full((src.numel(),), fwd), torch.full((src.numel(),), fwd + 1)]
        edge_index = torch.cat(parts_i, 1) if parts_i else torch.zeros(2, 0, dtype=torch.long)
        features, masks = self._features(kg, types, counts, offsets, n)
        return GraphTensors(
            num_nodes=n,
            node_offsets=offsets,
            node_counts=counts,
            edge_index=edge_index,
            edge_weight=torch.cat(parts_w) if parts_w else torch.zeros(0),
            edge_type=torch.cat(parts_t).long() if parts_t else torch.zeros(0, dtype=torch.long),
            edge_types=edge_types,
            features=features,
            feature_masks=masks,
        )

    def _features(
        self, kg: Any, types: list[str], counts: dict[str, int], offsets: dict[str, int], n: int
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        slots: dict[str, int] = {}
        for t in types:
            for name, arr in kg.features.get(t, {}).items():
                if name in slots and slots[name] != arr.shape[1]:
                    raise SchemaError(
                        f"feature slot {name!r} has dims {slots[name]} and {arr.shape[1]} across node types"
                    )
                slots[name] = int(arr.shape[1])
        wanted = list(slots) if self.config.features is None else list(self.config.features)
        missing = [s for s in wanted if s not in slots]
        if missing:
            raise ConfigError(f"view.features names {missing}, not in the graph; it has {sorted(slots)}")
        features, masks = {}, {}
        for name in wanted:
            x = torch.zeros(n, slots[name])
            m = torch.zeros(n, dtype=torch.bool)
            for t in types:
                arr = kg.features.get(t, {}).get(name)
                if arr is None:
                    continue
                rows = torch.as_tensor(np.asarray(arr, dtype=np.float32))
                mask = kg.feature_masks.get(t, {}).get(name)
                mask_t = torch.ones(counts[t], dtype=torch.bool) if mask is None else torch.as_tensor(mask)
                bad = ~torch.isfinite(rows).all(1) & mask_t
                if bad.any():
                    first = kg.node_ids[t][int(bad.nonzero()[0, 0])]
                    raise DataError(
                        f"feature {t}.{name} has NaN or infinite values in {int(bad.sum())} rows (first: id {first!r})"
                    )
                rows = torch.where(mask_t[:, None], rows, torch.zeros(()))
                x[offsets[t] : offsets[t] + counts[t]] = rows
                m[offsets[t] : offsets[t] + counts[t]] = mask_t
            features[name], masks[name] = x, m
        return features, masks

    # ------------------------------------------------------------------ helpers
    def item_features(self, slot: str | None = None) -> Tensor | None:
        """``[num_items, d]`` the items' rows of feature ``slot`` (default: the first slot), or None.

        Used for intra-list diversity "by text features"; items without features have zero rows.
        """
        feats = self.graph.features
        if not feats:
            return None
        name = slot or next(iter(feats))
        off = self.graph.node_offsets["item"]
        return feats[name][off : off + self.num_items]

    def summary(self) -> dict[str, Any]:
        return {
            "num_users": self.num_users,
            "num_items": self.num_items,
            "train": self.train.nnz,
            "valid": self.valid.nnz,
            "test": self.test.nnz,
            "dropped": self.dropped,
            "cold_users": self.cold_users,
            "graph": {**self.graph.schema(), "edges": self.graph.num_edges},
            "split": self.split_info,
        }


def data_digest(data: RecData) -> str:
    """SHA-256 over the graph's edges and the training, validation and test pairs.

    Two splits with the same counts (another split seed) differ here, so a checkpoint trained on
    one cannot be resumed on the other, whose held-out pairs it may have trained on, and a run's
    files edited after the run (``run.json`` records it) are found.
    """
    import hashlib

    digest = hashlib.sha256()
    g = data.graph
    for part in ("train", "valid", "test"):
        pairs = getattr(data, part)
        for t in (pairs.indptr, pairs.indices):
            digest.update(t.to(torch.int64).contiguous().numpy().tobytes())
    for t in (g.edge_index, g.edge_type, g.edge_weight):
        digest.update(t.contiguous().numpy().tobytes())
    return digest.hexdigest()


def hash_tensor(h: Any, t: Tensor) -> None:
    """Feed ``t`` (its dtype, size and bytes) into the hashlib object ``h``."""
    t = t.detach().cpu().contiguous().reshape(-1)
    h.update(f"{t.dtype}:{t.numel()};".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def features_digest(data: RecData) -> str:
    """SHA-256 over the graph's node features and their row masks, slot by slot (sorted by name).

    :func:`data_digest` covers pairs and edges; node features of the same shapes (another
    encoder's vectors) differ only here.
    """
    import hashlib

    digest = hashlib.sha256()
    g = data.graph
    for name in sorted(g.features):
        digest.update(name.encode("utf-8") + b"\0")
        hash_tensor(digest, g.features[name])
        if name in g.feature_masks:
            hash_tensor(digest, g.feature_masks[name])
    return digest.hexdigest()


def data_fingerprint(data: RecData, digest: str | None = None) -> dict[str, Any]:
    """What a resumed run's data must match: counts and :func:`data_digest` (``digest`` when the
    caller has it already)."""
    return {
        "users": data.num_users,
        "items": data.num_items,
        "train": data.train.nnz,
        "edges": data.graph.num_edges,
        "sha256": data_digest(data) if digest is None else digest,
    }
