"""Batches bounded in both count and size, for work whose cost grows with what a batch holds."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def bounded_batches(items: Iterable[T], max_count: int, max_size: int, size: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` with at most ``max_count`` items and ``max_size`` in total ``size``.

    An item larger than ``max_size`` on its own is a batch of one; order is kept.
    """
    batch: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if batch and (len(batch) >= max_count or total + n > max_size):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += n
    if batch:
        yield batch
