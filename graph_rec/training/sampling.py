"""Vectorised sampling of training batches: shuffled positives and negatives that are not positives."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from graph_rec.data import UserItems
from graph_rec.errors import DataError

MAX_ROUNDS = 20


def sample_negatives(train: UserItems, users: Tensor, num_negatives: int, generator: torch.Generator) -> Tensor:
    """``[B, num_negatives]`` items drawn uniformly among those each user has NOT interacted with.

    Rejection sampling, vectorised: draw for everyone, redraw only the draws that hit a known
    positive, at most ``MAX_ROUNDS`` times. A user whose positives cover the whole catalogue cannot
    have a negative: :class:`DataError` names them (filter such users before training).
    """
    b = users.numel()
    users_rep = users.repeat_interleave(num_negatives)
    neg = torch.randint(0, train.num_items, (b * num_negatives,), generator=generator)
    bad = train.contains(users_rep, neg)
    rounds = 0
    while bool(bad.any()):
        rounds += 1
        if rounds > MAX_ROUNDS:
            full = torch.unique(users_rep[bad])
            counts = train.counts()[full]
            saturated = full[counts >= train.num_items]
            if saturated.numel():
                raise DataError(f"users {saturated[:10].tolist()} have interacted with every item: no negative exists")
            # very dense users: enumerate their complement once
            for u in torch.unique(users_rep[bad]).tolist():
                rows = (users_rep == u) & bad
                mask = torch.ones(train.num_items, dtype=torch.bool)
                mask[train.indices[train.indptr[u] : train.indptr[u + 1]]] = False
                choices = mask.nonzero().squeeze(1)
                pick = torch.randint(0, choices.numel(), (int(rows.sum()),), generator=generator)
                neg[rows] = choices[pick]
            break
        idx = bad.nonzero().squeeze(1)
        neg[idx] = torch.randint(0, train.num_items, (idx.numel(),), generator=generator)
        bad[idx] = train.contains(users_rep[idx], neg[idx])
    return neg.view(b, num_negatives)


def epoch_batches(
    train: UserItems, batch_size: int, num_negatives: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """One epoch: every training pair once, shuffled, as ``(users [B], pos [B], neg [B, n])`` batches."""
    users = train.users()
    items = train.indices
    perm = torch.randperm(train.nnz, generator=generator)
    for start in range(0, train.nnz, batch_size):
        sel = perm[start : start + batch_size]
        u = users[sel]
        yield u, items[sel], sample_negatives(train, u, num_negatives, generator)
