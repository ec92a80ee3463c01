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
    train: UserItems, batch_size: int, num_negatives: int, generator: torch.Generator, *, shared: bool = False
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """One epoch: every training pair once, shuffled, as ``(users [B], pos [B], neg)`` batches.

    ``neg`` is ``[B, n]``, drawn per pair and never a positive of its user; with ``shared`` it is
    ``[n]`` items drawn uniformly once for the batch (the caller masks the collisions, see
    :func:`shared_negative_mask`).
    """
    users = train.users()
    items = train.indices
    perm = torch.randperm(train.nnz, generator=generator)
    for start in range(0, train.nnz, batch_size):
        sel = perm[start : start + batch_size]
        u = users[sel]
        if shared:  # distinct items, uniformly
            if num_negatives < train.num_items:
                neg = torch.randperm(train.num_items, generator=generator)[:num_negatives]
            else:
                neg = torch.randint(0, train.num_items, (num_negatives,), generator=generator)
            yield u, items[sel], neg
        else:
            yield u, items[sel], sample_negatives(train, u, num_negatives, generator)


def shared_negative_mask(train: UserItems, users: Tensor, neg: Tensor) -> Tensor:
    """``[B, n]`` True where shared negative ``neg[j]`` is a training positive of ``users[b]``.

    Walks the positives of the batch's distinct users once (not the ``B x n`` grid, and not once
    per occurrence: batches drawn pair by pair repeat heavy users): cost ``O(sum of their degrees)``
    plus a gather of the ``B x n`` result.
    """
    b, n = users.numel(), neg.numel()
    if neg.unique().numel() != n:  # repeated items: test every cell
        return train.contains(users.repeat_interleave(n), neg.repeat(b)).view(b, n)
    distinct, inverse = torch.unique(users, return_inverse=True)
    mask = torch.zeros(distinct.numel(), n, dtype=torch.bool)
    where = torch.full((train.num_items,), -1, dtype=torch.long)
    where[neg] = torch.arange(n)
    row, item = train.rows(distinct)
    col = where[item]
    hit = col >= 0
    mask[row[hit], col[hit]] = True
    return mask[inverse]
