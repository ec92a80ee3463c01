"""The session study's pieces (benchmarks/sessions.py): sessions cut at gaps, each session folded in
by iALS's exact normal equations, and the soft maximum over a user's sessions."""

from __future__ import annotations

import numpy as np
import torch

from tests.benchmark_scripts import load_benchmark

sessions = load_benchmark("sessions")


def test_a_session_ends_at_a_new_user_or_a_gap_longer_than_the_limit():
    users = np.array([1, 0, 0, 1, 0, 1])
    times = np.array([100, 50, 10, 160, 200, 5000])
    order, session = sessions.session_ids(users, times, gap=60)
    # user 0 at 10, 50 (gap 40: same session), 200 (gap 150: new); user 1 at 100, 160 (gap 60: same), 5000
    assert order.tolist() == [2, 1, 4, 0, 3, 5]
    assert session.tolist() == [0, 0, 1, 2, 2, 3]


def test_each_session_is_folded_in_as_the_weighted_least_squares_solution(monkeypatch):
    monkeypatch.setattr(sessions, "CHUNK", 2)  # sessions solved across chunk boundaries
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    items = torch.tensor([0, 3, 1, 2, 5, 6, 4, 0])
    session = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4])
    reg, alpha = 0.7, 4.0
    got = sessions.fold_in(items, session, 5, y, reg=reg, alpha=alpha)
    for s in range(5):
        # sum_j c_j (p_j - x . y_j)^2 + reg |x|^2 with c = alpha, p = 1 on the session's items, c = 1, p = 0 elsewhere
        c = torch.ones(7, dtype=torch.float64)
        p = torch.zeros(7, dtype=torch.float64)
        c[items[session == s]] = alpha
        p[items[session == s]] = 1.0
        want = torch.linalg.solve(y.t() @ (c[:, None] * y) + reg * torch.eye(3, dtype=torch.float64), y.t() @ (c * p))
        torch.testing.assert_close(got[s], want)


def test_the_soft_maximum_is_tau_logsumexp_over_each_users_sessions():
    scores = torch.tensor([[1.0, 0.0, 2.0], [3.0, -1.0, 0.5], [0.2, 0.4, 0.6]])
    owner = torch.tensor([1, 0, 1])  # user 0 has session 1; user 1 has sessions 0 and 2
    tau = 0.3
    got = sessions.soft_max_over_sessions(scores, owner, 2, tau)
    torch.testing.assert_close(got[0], scores[1])
    torch.testing.assert_close(got[1], tau * torch.logsumexp(scores[[0, 2]] / tau, dim=0))
    # a small tau is the maximum, without overflow
    sharp = sessions.soft_max_over_sessions(scores * 100, owner, 2, 1e-3)
    torch.testing.assert_close(sharp[1], (scores[[0, 2]] * 100).max(0).values)
