"""The availability study's mask (benchmarks/availability.py): which items a user may be shown."""

from __future__ import annotations

import numpy as np
import torch

from tests.benchmark_scripts import load_benchmark

availability = load_benchmark("availability")


def test_an_item_is_available_once_first_rated_no_later_than_the_users_last_interaction():
    # items 0, 1, 2 first rated at t = 10, 20, 30 (item 1 also later, at 50); item 3 never rated
    items, times = np.array([0, 1, 2, 1]), np.array([10, 20, 30, 50])
    # user 0 last active at 20 (earlier at 5), user 1 at 30, user 2 never
    users, last = np.array([0, 0, 1]), np.array([5, 20, 30])
    mask = availability.availability(items, times, users, last, num_users=3, num_items=4)
    assert mask.tolist() == [
        [True, True, False, False],  # the tie at t = 20 counts as available
        [True, True, True, False],
        [False, False, False, False],
    ]


def test_masked_scores_push_unavailable_items_below_every_available_one():
    mask = torch.tensor([[True, False, True], [False, True, True]])

    def scorer(users):
        return torch.tensor([[1.0, 9.0, -3.0], [5.0, -1.0, 0.0]])[users]

    s = availability._masked(scorer, mask)(torch.tensor([1, 0]))
    assert s[0, 1] == -1.0 and s[0, 2] == 0.0 and s[1, 0] == 1.0 and s[1, 2] == -3.0
    assert s[0, 0] == float("-inf") and s[1, 1] == float("-inf")  # never listed, as the evaluator's masks
    assert torch.topk(s[1], 2).indices.tolist() == [0, 2]
