"""``notifyq worker --batch-size N --batch-wait S``, run as a real subprocess."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

import notifyq

from .test_cli import Cli, assert_error

BATCH_HANDLERS = textwrap.dedent(
    """
    def send(jobs):
        return [{"order": job.payload, "batch": len(jobs)} for job in jobs]

    async def asend(jobs):
        return [{"order": job.payload, "batch": len(jobs)} for job in jobs]
    """
)


@pytest.fixture
def cli(redis_url: str, tmp_path: pathlib.Path) -> Cli:
    runner = Cli(redis_url, tmp_path)
    (tmp_path / "batch_handlers.py").write_text(BATCH_HANDLERS)
    return runner


@pytest.mark.parametrize("handler", ["batch_handlers:send", "batch_handlers:asend"])
def test_worker_batch_size_calls_the_handler_with_batches(
    cli: Cli, queue: notifyq.Queue, name: str, handler: str
) -> None:
    jobs = queue.enqueue_many(list(range(7)))
    proc = cli("worker", handler, "-q", name, "--burst", "--batch-size", "3",
               "--batch-wait", "0.2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = [job.result() for job in jobs]
    assert [r["order"] for r in results] == list(range(7))
    assert all(1 <= r["batch"] <= 3 for r in results)
    batches = sum(1 / r["batch"] for r in results)  # each job counts 1/len of its batch
    assert round(batches) >= 3  # 7 jobs in batches of 3 at most


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("--batch-wait", "1"), 2, ["batch_wait is for batch handlers"]),
        (("--batch-size", "501"), 2, ["batch_size must be an integer from 1 to 500"]),
    ],
)
def test_worker_refuses_bad_batch_options(
    cli: Cli, name: str, args: tuple[str, ...], code: int, words: list[str]
) -> None:
    assert_error(cli("worker", "batch_handlers:send", "-q", name, *args), code, *words)


@pytest.mark.parametrize(
    "args", [("--batch-size", "0"), ("--batch-size", "2", "--batch-wait", "-1")]
)
def test_worker_batch_options_of_the_wrong_kind_exit_2(cli: Cli, args: tuple[str, ...]) -> None:
    proc = cli("worker", "batch_handlers:send", *args)
    assert proc.returncode == 2 and "usage: notifyq" in proc.stderr
