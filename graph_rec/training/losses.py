"""Ranking losses over a batch of positive and negative scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr_loss(pos: Tensor, neg: Tensor) -> Tensor:
    """Bayesian personalised ranking: ``mean(-log sigmoid(s_ui - s_uj))`` over ``[B]`` x ``[B, n]``."""
    return -F.logsigmoid(pos[:, None] - neg).mean()


def softmax_loss(pos: Tensor, neg: Tensor, temperature: float) -> Tensor:
    """Sampled softmax: cross-entropy of the positive among itself and its ``n`` negatives, ``/ temperature``.

    With uniform negatives the log-q correction is a constant and is omitted (Wu et al., "On the
    Effectiveness of Sampled Softmax Loss for Item Recommendation", TOIS 2024).
    """
    logits = torch.cat([pos[:, None], neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device))
