"""Rate limits under ACL users: the operator sets them, a worker obeys them, each with
exactly its role's rules (docs/security.md)."""

from __future__ import annotations

import notifyq

from .conftest import MakeUser


def test_an_operator_sets_a_rate_limit_that_a_worker_under_its_own_rules_obeys(
    user: MakeUser, name: str
) -> None:
    operator = notifyq.Queue(name, user("operator"))
    operator.set_rate_limit(2, 0.2)
    assert operator.stats()["rate_limit"] == {"jobs": 2, "per": 0.2}
    jobs = notifyq.Queue(name, user("producer")).enqueue_many(list(range(5)))
    notifyq.Worker(name, lambda p: p * 10, url=user("worker")).run(burst=True)
    assert [j.result() for j in jobs] == [0, 10, 20, 30, 40]
    operator.clear_rate_limit()
    assert operator.rate_limit() is None
