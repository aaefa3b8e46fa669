"""The claim-side features at once: a rate-limited queue with fair groups, served by a
batch worker. Each keeps its promise when the others are on."""

from __future__ import annotations

import redis

import notifyq
from notifyq import ActiveJob

from ..rates_check import assert_within_limit, start_times
from ..rotation import assert_rotation_sound


def test_a_rate_limited_batch_worker_takes_groups_in_turn(
    queue: notifyq.Queue, r: redis.Redis
) -> None:
    queue.set_rate_limit(4, 0.3)
    queue.pause()  # every job waits before the worker looks
    flood = queue.enqueue_many([f"a{i}" for i in range(16)], group="a")
    few = queue.enqueue_many([f"b{i}" for i in range(2)], group="b")
    queue.resume()
    batches: list[list[str]] = []

    def handle(jobs: list[ActiveJob]) -> list[str]:
        batches.append([job.payload for job in jobs])
        return [job.payload.upper() for job in jobs]

    notifyq.Worker(queue, handle, batch_size=8, batch_wait=0.05).run(burst=True)

    # the limit: never more than 4 starts in any 300 ms, whatever the batches
    assert_within_limit(start_times(r, queue.name), 4, 300)
    # fairness: b's two jobs were in the first batch, taken in turn with a's
    assert batches[0][:4] == ["a0", "b0", "a1", "b1"], batches
    # each job its own result, FIFO within its group
    assert [j.result() for j in flood + few] == [f"A{i}" for i in range(16)] + ["B0", "B1"]
    served = [p for b in batches for p in b]
    assert [p for p in served if p[0] == "a"] == [f"a{i}" for i in range(16)]
    assert assert_rotation_sound(r, queue.keys) == []
