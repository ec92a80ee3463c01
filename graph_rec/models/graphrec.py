"""GraphRec: feature-initialised, knowledge-aware linear propagation over the whole knowledge graph.

Every node ``v`` of every type (users, items, tags, entities, external KG nodes) gets a layer-0
embedding from its features (Yang et al. call this content-initialised propagation; the linear
layers are LightGCN's, He et al., SIGIR 2020; the relation-aware adjacency follows KGAT, Wang et
al., KDD 2019; the optional id/text alignment follows RLMRec, Ren et al., WWW 2024):

    F(x_v) = fuse_m(W_m x_v^m + b_m) + id_v                  (id_embedding="add")
    F(x_v) = g_t ⊙ fuse_m(W_m x_v^m + b_m) + (1 - g_t) ⊙ id_v (id_embedding="gated", g_t per node type)
    F(x_v) = fuse_m(W_m x_v^m + b_m)                          (id_embedding="none")

``fuse`` is :class:`~graph_rec.models.fusion.ModalityFusion` over the feature slots (text, image,
...); nodes without any feature get zeros from it. With ``E^(0) = F(X)`` ``[N, d]`` and ``Â`` the
normalised adjacency of :class:`~graph_rec.models.propagation.Propagation`:

    H = P F(X),   P = sum_{l=0..L} Â^l / (L + 1)
    s(u, i) = <h_i, h_u> = [P F(X) h_u]_i = sum_j P_ij <F(x_j), h_u>

so an item's score is the adjacency-weighted sum, over the nodes ``j`` of the graph, of the inner
product between ``j``'s layer-0 embedding and the user's propagated representation: the
``<F(x), A h_u>`` of the design. (The last equality uses ``P`` symmetric, true for
``relation_mode`` ``"none"`` and ``"weights"`` with the default ``norm_exponent`` 1/2; otherwise
``s(u, i) = [P F(X)]_i . h_u``.)
``tests/unit/test_graphrec.py`` checks the model's scores against this dense formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from graph_rec.data import GraphTensors, UserItems, check_float, check_int
from graph_rec.errors import ConfigError
from graph_rec.models.base import BatchOutput, RecModel, neg_scores, register
from graph_rec.models.fusion import FusionConfig, ModalityFusion
from graph_rec.models.propagation import RELATION_MODES, Propagation, check_norm_exponent

ID_MODES = ("add", "gated", "none")


@dataclass(frozen=True, kw_only=True)
class GraphRecConfig:
    """Settings of :class:`GraphRec`.

    Args:
        embedding_dim: ``d``, the size of every node representation.
        num_layers: ``L``, propagation layers (0 gives a feature-initialised matrix factorisation).
        id_embedding: ``"add"`` (a learned id embedding added to the projected features),
            ``"gated"`` (a learned per-node-type gate between the two) or ``"none"`` (features only:
            every node then needs features, or gets its layer-0 embedding from neighbours only).
        use_features: use the graph's feature slots (``False``: ids only, i.e. LightGCN over the
            whole knowledge graph).
        fusion: how feature slots are fused: ``"sum"`` of per-slot projections (linear: with
            ``relation_mode="none"`` the features are propagated once, at construction, and each
            step only projects the rows it needs), ``"gated"`` or ``"concat"``
            (:class:`~graph_rec.models.fusion.ModalityFusion`).
        relation_mode: ``"none"``, ``"weights"`` (a learned weight per relation) or ``"attention"``
            (KGAT-style), see :mod:`graph_rec.models.propagation`.
        norm_exponent: ``a`` of the adjacency's normalisation ``D^-a A D^-(1-a)``: 0.5, the
            symmetric LightGCN normalisation, by default (``"none"`` and ``"weights"`` only).
        init_std: standard deviation of the id embeddings at initialisation.
        feature_dropout: dropout on the projected features during training.
        score: ``"dot"``, the inner product ``<h_i, h_u>``, or ``"cosine"``, the same on unit-length
            representations (``<h_i, h_u> / (|h_i| |h_u|)``; pair it with ``loss="softmax"``, whose
            temperature then sets the scale).
        align_weight: weight of the contrastive id/text alignment loss (0 turns it off).
        align_temperature: its InfoNCE temperature.
        drop_scored_edge: in training, score each positive pair ``(u, i)`` as if its own edge were
            not in the graph, as link prediction keeps supervision edges out of message passing:
            every walk that leaves ``u`` (or ``i``) through the edge ``u - i`` is taken out of
            ``h_u`` (``h_i``) before scoring (exact for ``L <= 2`` with the normalisation kept;
            for deeper models, walks that return to the edge later stay in). Test pairs are
            never edges, so the model can no longer score a training positive by its own edge;
            scoring after training is unchanged.
    """

    embedding_dim: int = 64
    num_layers: int = 3
    id_embedding: Literal["add", "gated", "none"] = "add"
    use_features: bool = True
    fusion: Literal["sum", "gated", "concat"] = "sum"
    relation_mode: Literal["none", "weights", "attention"] = "weights"
    norm_exponent: float = 0.5
    init_std: float = 0.1
    feature_dropout: float = 0.0
    score: Literal["dot", "cosine"] = "dot"
    align_weight: float = 0.0
    align_temperature: float = 0.2
    drop_scored_edge: bool = False

    def __post_init__(self) -> None:
        check_int("embedding_dim", self.embedding_dim, minimum=1)
        check_int("num_layers", self.num_layers, minimum=0)
        if self.id_embedding not in ID_MODES:
            raise ConfigError(f"id_embedding must be one of {list(ID_MODES)}, got {self.id_embedding!r}")
        if self.relation_mode not in RELATION_MODES:
            raise ConfigError(f"relation_mode must be one of {list(RELATION_MODES)}, got {self.relation_mode!r}")
        for flag in ("use_features", "drop_scored_edge"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        check_norm_exponent(self.relation_mode, self.norm_exponent)
        check_float("init_std", self.init_std, open_low=True)
        check_float("feature_dropout", self.feature_dropout, high=0.99)
        check_float("align_weight", self.align_weight)
        check_float("align_temperature", self.align_temperature, open_low=True)
        if self.score not in ("dot", "cosine"):
            raise ConfigError(f"score must be 'dot' or 'cosine', got {self.score!r}")
        if self.id_embedding == "none" and not self.use_features:
            raise ConfigError("id_embedding='none' needs use_features=true: the model would have no parameters")


@register
class GraphRec(RecModel):
    """Feature-initialised, relation-aware LightGCN over the whole knowledge graph (module docstring).

    Shapes: ``batch_scores(users [B], pos [B], neg [B, n])``; ``embed() -> ([num_users, d], [num_items, d])``.
    """

    name = "graphrec"
    config_class = GraphRecConfig
    paper = "He et al., LightGCN, SIGIR 2020; Wang et al., KGAT, KDD 2019; Ren et al., RLMRec, WWW 2024"

    def __init__(self, config: GraphRecConfig, graph: GraphTensors, train: UserItems) -> None:
        super().__init__(config, graph, train)
        d = config.embedding_dim
        self.num_nodes = graph.num_nodes
        self.user_offset = graph.node_offsets["user"]
        self.item_offset = graph.node_offsets["item"]
        self.slots = list(graph.features) if config.use_features else []
        if config.id_embedding == "none" and not self.slots:
            raise ConfigError("id_embedding='none' but the data has no feature slots (data.features is empty)")
        for name in self.slots:
            self.register_buffer(f"x_{name}", graph.features[name], persistent=False)
            self.register_buffer(f"m_{name}", graph.feature_masks[name], persistent=False)
        self.fusion = (  # its projections are W_m, b_m of the module docstring
            ModalityFusion(
                FusionConfig(mode=config.fusion, out_dim=d, dropout=config.feature_dropout),
                {s: int(graph.features[s].shape[1]) for s in self.slots},
            )
            if self.slots
            else None
        )
        self.id_emb = nn.Embedding(self.num_nodes, d) if config.id_embedding != "none" else None
        if self.id_emb is not None:
            nn.init.normal_(self.id_emb.weight, std=config.init_std)
        if config.id_embedding == "gated" and self.slots:
            self.gate = nn.Parameter(torch.zeros(len(graph.node_counts), d))
            self.register_buffer("node_type", graph.node_type_index(), persistent=False)
        self.propagation = Propagation(
            graph.edge_index,
            graph.edge_type,
            graph.edge_weight,
            graph.num_nodes,
            graph.num_relations,
            relation_mode=config.relation_mode,
            embedding_dim=d,
            norm_exponent=config.norm_exponent,
        )
        if config.align_weight > 0 and self.slots and self.id_emb is not None:
            self.align_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        # P F(X) = P E_id + sum_m (P (a_m x_m)) W_m^T + (P a_m) b_m^T when F is affine and P fixed
        self.precomputed = (
            bool(self.slots)
            and config.relation_mode == "none"
            and config.fusion == "sum"
            and config.feature_dropout == 0
            and config.id_embedding in ("add", "none")
        )
        if self.precomputed:
            with torch.no_grad():
                for name in self.slots:
                    mask = graph.feature_masks[name]
                    # where, not a product: a NaN in a missing row must not reach propagation
                    x = torch.where(mask[:, None], graph.features[name], 0.0)
                    px, qx = self.propagation.walks(x, config.num_layers)
                    pa, qa = self.propagation.walks(mask.float()[:, None], config.num_layers)
                    self.register_buffer(f"px_{name}", px, persistent=False)
                    self.register_buffer(f"pa_{name}", pa.squeeze(1), persistent=False)
                    if config.drop_scored_edge:  # sums of the walks of 0 .. L - 1 steps
                        self.register_buffer(f"qx_{name}", qx, persistent=False)
                        self.register_buffer(f"qa_{name}", qa.squeeze(1), persistent=False)

    # ------------------------------------------------------------------ layer 0
    def feature_embedding(self) -> Tensor | None:
        """``[N, d]`` the fused, projected features of every node (None without features)."""
        if self.fusion is None:
            return None
        feats = {s: getattr(self, f"x_{s}") for s in self.slots}
        masks = {s: getattr(self, f"m_{s}") for s in self.slots}
        return self.fusion(feats, masks)

    def layer0(self) -> tuple[Tensor, Tensor | None]:
        """``(F(X) [N, d], projected features [N, d] or None)``, the layer-0 embeddings."""
        fx = self.feature_embedding()
        if fx is None:
            return self.id_emb.weight, None
        if self.id_emb is None:
            return fx, fx
        if self.config.id_embedding == "gated":
            g = torch.sigmoid(self.gate)[self.node_type]
            return g * fx + (1 - g) * self.id_emb.weight, fx
        return fx + self.id_emb.weight, fx

    # ------------------------------------------------------------------ sampled training hooks
    def layer0_rows(self, nodes: Tensor) -> Tensor:
        """``[n, d]`` the layer-0 embeddings ``F(x_v)`` of ``[n]`` global node indices, from those rows only.

        Equals ``layer0()[0][nodes]`` (with the same gradients) without building the ``[N, d]``
        matrix: features, masks, id embeddings and the gate are sliced by ``nodes`` first.
        """
        fx = None
        if self.fusion is not None:
            feats = {s: getattr(self, f"x_{s}")[nodes] for s in self.slots}
            masks = {s: getattr(self, f"m_{s}")[nodes] for s in self.slots}
            fx = self.fusion(feats, masks)
        if fx is None:
            return self.id_emb(nodes)
        if self.id_emb is None:
            return fx
        if self.config.id_embedding == "gated":
            g = torch.sigmoid(self.gate)[self.node_type[nodes]]
            return g * fx + (1 - g) * self.id_emb(nodes)
        return fx + self.id_emb(nodes)

    def sampling_offsets(self) -> tuple[int, int]:
        """``(user_offset, item_offset)``: where users and items start in the propagation's node index."""
        return self.user_offset, self.item_offset

    def layer0_reg(self, e0_users: Tensor, e0_pos: Tensor, e0_neg: Tensor) -> Tensor:
        """:meth:`batch_scores`' regulariser from the batch's layer-0 rows.

        Args:
            e0_users: ``[B, d]`` layer-0 rows of the batch's users (one per occurrence).
            e0_pos: ``[B, d]`` of its positives.
            e0_neg: ``[B, n, d]`` (or ``[n, d]`` shared) of its negatives.

        Returns:
            The scalar ``(|e0_users|^2 + |e0_pos|^2 + |e0_neg|^2) / B``.
        """
        return (e0_users.pow(2).sum() + e0_pos.pow(2).sum() + e0_neg.pow(2).sum()) / e0_users.shape[0]

    def score_repr(self, h: Tensor) -> Tensor:
        """The representation scored by inner product: ``h`` itself, or unit-length for ``score="cosine"``."""
        return self._norm(h)

    def propagate(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(H [N, d], F(X) [N, d], projected features or None)``, every node (the general path)."""
        e0, fx = self.layer0()
        return self.propagation(e0, self.config.num_layers), e0, fx

    def _rows(self, nodes: Tensor, h_id: Tensor | None, kind: str = "p") -> tuple[Tensor, Tensor, Tensor]:
        """Precomputed path: ``(H[nodes], F(X)[nodes], projected features[nodes])`` for ``[n]`` global indices.

        ``h_id`` holds the id embeddings' propagated rows ``nodes`` (``[n, d]``, or None without id
        embeddings). ``kind="q"`` gives the sums of walks of ``0 .. L - 1`` steps in place of ``H``
        (``h_id`` then holds the id embeddings' sums; see :meth:`_without_edge`).
        """
        h = h_id if h_id is not None else 0
        e0 = self.id_emb(nodes) if self.id_emb is not None else 0
        fx = 0
        for name in self.slots:
            lin = self.fusion.proj[name]
            h = (
                h
                + getattr(self, f"{kind}x_{name}")[nodes] @ lin.weight.t()
                + getattr(self, f"{kind}a_{name}")[nodes, None] * lin.bias
            )
            mask = getattr(self, f"m_{name}")[nodes, None]
            # the row zeroed before the product too: a NaN in a missing row would make the weight's gradient NaN
            x = torch.where(mask, getattr(self, f"x_{name}")[nodes], 0.0)
            fx = fx + torch.where(mask, x @ lin.weight.t() + lin.bias, 0.0)
        return h, e0 + fx, fx

    def _id_walks(self, rows: Tensor | None = None) -> tuple[Tensor | None, Tensor | None]:
        """The id embeddings' ``(mean of layers 0 .. L, sum of layers 0 .. L - 1)``, or Nones.

        With ``rows`` the mean holds those rows only (:meth:`Propagation.walks`).
        """
        if self.id_emb is None:
            return None, None
        return self.propagation.walks(self.id_emb.weight, self.config.num_layers, rows)

    # ------------------------------------------------------------------ contract
    def embed(self) -> tuple[Tensor, Tensor]:
        if self.precomputed:
            dev = self.propagation.crow.device
            users = torch.arange(self.num_users, device=dev) + self.user_offset
            items = torch.arange(self.num_items, device=dev) + self.item_offset
            h_id = self._id_walks()[0]
            h_users, h_items = (None, None) if h_id is None else (h_id[users], h_id[items])
            return self._norm(self._rows(users, h_users)[0]), self._norm(self._rows(items, h_items)[0])
        h, _, _ = self.propagate()
        return self._norm(self._users(h)), self._norm(self._items(h))

    def _norm(self, h: Tensor) -> Tensor:
        return F.normalize(h, dim=-1) if self.config.score == "cosine" else h

    def _users(self, h: Tensor) -> Tensor:
        return h[self.user_offset : self.user_offset + self.num_users]

    def _items(self, h: Tensor) -> Tensor:
        return h[self.item_offset : self.item_offset + self.num_items]

    def batch_scores(self, users: Tensor, pos: Tensor, neg: Tensor) -> BatchOutput:
        b = users.numel()
        n_shape = (*neg.shape, -1)  # [B, n, d] per pair, or [n, d] shared by the batch
        u_nodes, p_nodes, n_nodes = users + self.user_offset, pos + self.item_offset, neg.reshape(-1) + self.item_offset
        nodes = torch.cat([u_nodes, p_nodes, n_nodes])
        # each distinct node once (negatives repeat a lot), then gathered per occurrence; the last
        # propagation layer is computed for these rows only (Propagation.walks)
        uniq, inverse = torch.unique(nodes, return_inverse=True)
        if self.precomputed:
            h_id, walks_id = self._id_walks(uniq)
            h_u, e0_u, fx_u = self._rows(uniq, h_id)
            h_all, e0_all = h_u[inverse], e0_u[inverse]
            fx_all = fx_u[inverse] if isinstance(fx_u, Tensor) else fx_u
            hu, hp, hn = h_all[:b], h_all[b : 2 * b], h_all[2 * b :].view(n_shape)
            reg = e0_all.pow(2).sum() / b
            if self.config.drop_scored_edge and self.config.num_layers > 0:
                up = torch.cat([u_nodes, p_nodes])
                walks = self._rows(up, None if walks_id is None else walks_id[up], kind="q")[0]
                hu, hp = self._without_edge(u_nodes, p_nodes, hu, hp, walks[:b], walks[b:])
            h_anchor, fx_anchor, anchor_nodes = h_all[: 2 * b], fx_all[: 2 * b], nodes[: 2 * b]
        else:
            e0, fx = self.layer0()
            vals = self.propagation._values_cached(e0)  # once per step: walks and the dropped edge share them
            h_u, walks = self.propagation.walks(e0, self.config.num_layers, uniq, values=vals)
            h_all = h_u[inverse]
            hu, hp, hn = h_all[:b], h_all[b : 2 * b], h_all[2 * b :].view(n_shape)
            reg = e0[nodes].pow(2).sum() / b
            if self.config.drop_scored_edge and self.config.num_layers > 0:
                hu, hp = self._without_edge(u_nodes, p_nodes, hu, hp, walks[u_nodes], walks[p_nodes], vals)
            anchor_nodes = nodes[: 2 * b]
            h_anchor = h_all[: 2 * b]
            fx_anchor = fx[anchor_nodes] if fx is not None else None
        hu, hp, hn = self._norm(hu), self._norm(hp), self._norm(hn)
        pos_s = (hu * hp).sum(-1)
        neg_s = neg_scores(hu, hn)
        extra: dict[str, Tensor] = {}
        if hasattr(self, "align_head") and fx_anchor is not None:
            # one row per distinct node that has features
            uniq, first = _first_occurrence(anchor_nodes)
            has = torch.zeros(uniq.numel(), dtype=torch.bool, device=uniq.device)
            for s in self.slots:
                has |= getattr(self, f"m_{s}")[uniq]
            rows = first[has]
            if rows.numel() > 1:
                extra["align"] = self.config.align_weight * _info_nce(
                    h_anchor[rows], self.align_head(fx_anchor[rows]), self.config.align_temperature
                )
        return BatchOutput(pos=pos_s, neg=neg_s, reg=reg, extra=extra)

    def _without_edge(
        self, u: Tensor, i: Tensor, hu: Tensor, hi: Tensor, walks_u: Tensor, walks_i: Tensor, vals: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(h_u, h_i)`` ``[B, d]`` less the walks that leave ``u`` (``i``) through the edge ``u - i``.

        ``h_u = sum_l Â^l F(X) / (L + 1)``; a walk of ``l`` steps whose first step is ``u -> i``
        contributes ``Â_ui (Â^(l-1) F(X))_i``, so these walks sum to
        ``Â_ui (sum_{l < L} Â^l F(X))_i / (L + 1)``; ``walks_i`` (``walks_u``) are those sums' rows.
        For ``L <= 2`` no other walk crosses the edge (the graph has no self-loops). ``vals``: the
        step's ``Â`` values (default: the cached ones, which need no layer-0 input).
        """
        vals = self.propagation._values_cached(None) if vals is None else vals
        c = 1.0 / (self.config.num_layers + 1)
        a_ui = self.propagation.pair_values(u, i, vals)[:, None]
        a_iu = self.propagation.pair_values(i, u, vals)[:, None]
        return hu - c * a_ui * walks_i, hi - c * a_iu * walks_u

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"{super().extra_repr()}, num_nodes={self.num_nodes}, slots={self.slots}, "
            f"layers={c.num_layers}, relation_mode={c.relation_mode!r}, id_embedding={c.id_embedding!r}"
        )


def _first_occurrence(nodes: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct values of ``nodes`` and the position of each one's first occurrence."""
    uniq, inverse = torch.unique(nodes, return_inverse=True)
    pos = torch.arange(nodes.numel(), device=nodes.device)
    first = torch.full((uniq.numel(),), nodes.numel(), dtype=torch.long, device=nodes.device)
    first = first.scatter_reduce(0, inverse, pos, reduce="amin")
    return uniq, first


def _info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE between two views ``[n, d]`` of the same n nodes (row k matches row k)."""
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
