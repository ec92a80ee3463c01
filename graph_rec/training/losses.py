"""Ranking losses over a batch of positive and negative scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr_loss(pos: Tensor, neg: Tensor, mask: Tensor | None = None) -> Tensor:
    """Bayesian personalised ranking: ``mean(-log sigmoid(s_ui - s_uj))`` over ``[B]`` x ``[B, n]``.

    ``mask`` ``[B, n]``: True for negatives to leave out (known positives among shared negatives).
    """
    terms = -F.logsigmoid(pos[:, None] - neg)
    if mask is None:
        return terms.mean()
    keep = ~mask
    return (terms * keep).sum() / keep.sum().clamp_min(1)


def softmax_loss(pos: Tensor, neg: Tensor, temperature: float, mask: Tensor | None = None) -> Tensor:
    """Sampled softmax: cross-entropy of the positive among itself and its ``n`` negatives, ``/ temperature``.

    With uniform negatives the log-q correction is a constant and is omitted (Wu et al., "On the
    Effectiveness of Sampled Softmax Loss for Item Recommendation", TOIS 2024). ``mask`` ``[B, n]``
    removes negatives (known positives among shared negatives) from the partition function.
    """
    if mask is not None:  # masked negatives drop out of the partition function
        neg = neg.masked_fill(mask, float("-inf"))
    logits = torch.cat([pos[:, None], neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device))
