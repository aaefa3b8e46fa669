"""Bad values at every external input that has no test elsewhere: Python API arguments,
the command line and its environment, HTTP requests. Each is refused with the error that
docs/security.md ("External inputs") names, and refused before anything is written.
"""

from __future__ import annotations

import asyncio
import math
import pathlib
from datetime import timedelta
from typing import Any

import pytest
import redis

import notifyq
import notifyq.asyncio as anq
from notifyq import Queue, tokens
from notifyq.errors import (
    PayloadTooLarge,
    SerializationError,
    ValidationError,
)
from notifyq.gateway import Gateway

from ..gateway.conftest import SECRET as GATEWAY_SECRET
from ..gateway.test_http import fetch
from ..test_cli import SECRET, Cli, assert_error, cli

__all__ = ["cli"]  # the fixture, imported for the command-line tests below

# ---------------------------------------------------------------- Python API: enqueue

deep: list[Any] = []
for _ in range(100_000):
    deep = [deep]

BAD_ENQUEUES: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("payload-deep", {"payload": deep}, SerializationError, "nested too deeply"),
    ("payload-surrogate", {"payload": "\ud800"}, SerializationError, "not valid Unicode"),
    ("payload-inf", {"payload": {"x": math.inf}}, SerializationError, "not JSON"),
    ("job_id-int", {"job_id": 5}, ValidationError, "invalid job id"),
    ("idempotency_key-int", {"idempotency_key": 5}, ValidationError, "idempotency_key"),
    ("idempotency_key-long", {"idempotency_key": "k" * 257}, ValidationError, "1 to 256"),
    ("delay-nan", {"delay": math.nan}, ValidationError, "delay must be a number"),
    ("delay-text", {"delay": "soon"}, ValidationError, "delay must be a number"),
    ("delay-negative-timedelta", {"delay": timedelta(seconds=-1)}, ValidationError, ">= 0"),
    ("timeout-negative", {"timeout": -1}, ValidationError, "timeout must be > 0"),
    ("max_attempts-text", {"max_attempts": "3"}, ValidationError, "max_attempts"),
    ("result_ttl-text", {"result_ttl": "1h"}, ValidationError, "result_ttl"),
    ("result_ttl-too-long", {"result_ttl": 10**12}, ValidationError, "at most"),
    ("priority-none-of-them", {"priority": 1}, ValidationError, "priority"),
    ("group-space", {"group": "a b"}, ValidationError, "invalid group"),
    ("group-too-long", {"group": "g" * 65}, ValidationError, "invalid group"),
    ("group-not-normal", {"group": "g", "priority": "high"}, ValidationError, "normal only"),
]


@pytest.mark.parametrize(
    ("options", "error", "words"), [c[1:] for c in BAD_ENQUEUES], ids=[c[0] for c in BAD_ENQUEUES]
)
def test_enqueue_refuses_a_bad_argument_and_writes_nothing(
    queue: Queue, r: redis.Redis, options: dict[str, Any], error: type[Exception], words: str
) -> None:
    options = {"payload": 1, **options}
    with pytest.raises(error, match=words) as refused:
        queue.enqueue(options.pop("payload"), **options)
    assert isinstance(refused.value, ValidationError)  # and so a ValueError
    assert not list(r.scan_iter(match=f"{queue.keys.base}*"))


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "10"}, "batch_size"),
        ({"max_attempts": 0}, "max_attempts"),
    ],
)
async def test_enqueue_many_refuses_a_bad_argument_and_writes_nothing(
    aqueue: anq.Queue, r: redis.Redis, options: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        await aqueue.enqueue_many([1, 2], **options)
    assert not list(r.scan_iter(match=f"{aqueue.keys.base}*"))


def test_a_payload_over_a_queues_own_limit_is_refused(redis_url: str, name: str) -> None:
    with pytest.raises(PayloadTooLarge, match="limit is 10"):
        Queue(name, redis_url, max_payload=10).enqueue("x" * 10)
    for bad in (0, "1k", True):
        with pytest.raises(ValidationError, match="max_payload"):
            Queue(name, redis_url, max_payload=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Python API: the rest


@pytest.mark.parametrize("timeout", [-1, math.nan, math.inf, "5", True])
def test_wait_refuses_a_bad_timeout(queue: Queue, timeout: Any) -> None:
    job = queue.enqueue(1)
    with pytest.raises(ValidationError, match="timeout"):
        job.wait(timeout=timeout)


@pytest.mark.parametrize("timeout", [-1, math.nan, "5"])
async def test_wait_refuses_a_bad_timeout_asyncio(aqueue: anq.Queue, timeout: Any) -> None:
    job = await aqueue.enqueue(1)
    with pytest.raises(ValidationError, match="timeout"):
        await job.wait(timeout=timeout)


def test_listings_refuse_bad_bounds(queue: Queue) -> None:
    for method in (queue.dead_letters, queue.quarantined):
        with pytest.raises(ValidationError, match="start"):
            method(start=-1)
        with pytest.raises(ValidationError, match="count"):
            method(count="10")
        assert method(count=0) == []
    for maxlen in (0, "10", True, 1.5):
        with pytest.raises(ValidationError, match="events_maxlen"):
            queue.set_events_maxlen(maxlen)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="unknown event type"):
        queue.on("finished")


WORKER_SETTINGS: list[tuple[str, dict[str, Any], str]] = [
    ("concurrency-0", {"concurrency": 0}, "concurrency"),
    ("concurrency-bool", {"concurrency": True}, "concurrency"),
    ("concurrency-text", {"concurrency": "4"}, "concurrency"),
    ("lease-0", {"lease": 0}, "lease must be > 0"),
    ("lease-inf", {"lease": math.inf}, "lease must be a number"),
    ("lease-nan", {"lease": math.nan}, "lease must be a number"),
    ("lease-text", {"lease": "30"}, "lease must be a number"),
    ("timeout-0", {"timeout": 0}, "timeout must be > 0"),
    ("grace-negative", {"grace": -1}, "grace must be >= 0"),
    ("backoff-one", {"backoff": (1,)}, "backoff must be"),
    ("backoff-text", {"backoff": "fast"}, "backoff must be"),
    ("backoff-negative", {"backoff": (-1, 5)}, "backoff base"),
    ("backoff-upside-down", {"backoff": (5, 1)}, "more than its cap"),
    ("max_result-0", {"max_result": 0}, "max_result"),
    ("name", {"name": "a worker"}, "invalid job id"),
]


@pytest.mark.parametrize("flavour", [notifyq.Worker, anq.Worker], ids=["sync", "asyncio"])
@pytest.mark.parametrize(
    ("settings", "words"), [c[1:] for c in WORKER_SETTINGS], ids=[c[0] for c in WORKER_SETTINGS]
)
def test_a_worker_refuses_a_bad_setting(
    redis_url: str, flavour: Any, settings: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        flavour("q", lambda p: p, url=redis_url, **settings)


@pytest.mark.parametrize("flavour", [notifyq.Worker, anq.Worker], ids=["sync", "asyncio"])
def test_a_worker_refuses_no_queue_a_bad_queue_and_a_handler_it_cannot_call(
    redis_url: str, flavour: Any
) -> None:
    with pytest.raises(ValidationError, match="at least one queue"):
        flavour([], lambda p: p, url=redis_url)
    with pytest.raises(ValidationError, match="invalid queue name"):
        flavour("a queue", lambda p: p, url=redis_url)
    with pytest.raises(ValidationError, match="callable"):
        flavour("q", "module:function", url=redis_url)


LISTENER_SETTINGS: list[tuple[str, list[Any], dict[str, Any], str]] = [
    ("no-queue", [[]], {}, "at least one queue"),
    ("name", [["q"], "-billing"], {}, "invalid listener name"),
    ("name-int", [["q"], 7], {}, "invalid listener name"),
    ("batch-0", [["q"]], {"batch": 0}, "batch"),
    ("block-0", [["q"]], {"block": 0}, "block must be > 0"),
    ("block-text", [["q"]], {"block": "1s"}, "block must be a number"),
    ("claim_after-negative", [["q"], "billing"], {"claim_after": -1}, "claim_after"),
]


@pytest.mark.parametrize("flavour", [notifyq.Listener, anq.Listener], ids=["sync", "asyncio"])
@pytest.mark.parametrize(
    ("args", "settings", "words"),
    [c[1:] for c in LISTENER_SETTINGS],
    ids=[c[0] for c in LISTENER_SETTINGS],
)
def test_a_listener_refuses_a_bad_setting(
    redis_url: str, flavour: Any, args: list[Any], settings: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError, match=words):
        flavour(*args, url=redis_url, **settings)


@pytest.mark.parametrize("ttl", [0, -5, math.nan, math.inf, "1h", True, tokens.MAX_TTL + 1])
def test_a_token_ttl_that_is_not_a_lifetime_is_refused(queue: Queue, ttl: Any) -> None:
    job = queue.enqueue(1)
    with pytest.raises(ValidationError, match="ttl must be between"):
        job.token(ttl, secret=b"k" * 32)
    with pytest.raises(ValidationError, match="ttl must be between"):
        queue.token(ttl, secret=b"k" * 32)


@pytest.mark.parametrize("secret", [b"short", "a str of more than 16 chars", b""])
def test_a_secret_that_cannot_sign_is_refused(
    queue: Queue, redis_url: str, secret: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="secret"):
        queue.token(secret=secret)
    with pytest.raises(ValidationError, match="secret"):
        Gateway(redis_url, secret=secret)
    monkeypatch.setenv("NOTIFYQ_SECRET", "too-short")
    with pytest.raises(ValidationError, match="NOTIFYQ_SECRET"):
        queue.token()


def test_gateway_settings_are_checked(redis_url: str, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValidationError, match="token_ttl"):
        Gateway(redis_url, secret=GATEWAY_SECRET, token_ttl=0)
    with pytest.raises(ValidationError, match="enqueue key"):
        Gateway(redis_url, secret=GATEWAY_SECRET, enqueue_queues=["q"], enqueue_key="short")
    with pytest.raises(ValidationError, match="invalid queue name"):
        Gateway(redis_url, secret=GATEWAY_SECRET, enqueue_queues=["a b"], enqueue_key="k" * 16)
    with pytest.raises(ValidationError, match=r"no index\.html"):
        Gateway(redis_url, secret=GATEWAY_SECRET, static=tmp_path)


MALFORMED_URLS = [
    "nonsense",
    "http://127.0.0.1:6379",
    "redis://127.0.0.1:port/0",
    "redis://127.0.0.1:99999/0",
    "redis://127.0.0.1/0?socket_timeout=soon",
    "redis://:pw@[::1/0",
]


@pytest.mark.parametrize("url", MALFORMED_URLS)
async def test_a_malformed_url_is_refused_by_every_entry_point(url: str) -> None:
    makers = [
        lambda: notifyq.Queue("q", url),
        lambda: anq.Queue("q", url),
        lambda: notifyq.Worker("q", lambda p: p, url=url),
        lambda: anq.Worker("q", lambda p: p, url=url),
        lambda: notifyq.Listener("q", url=url),
        lambda: anq.Listener("q", url=url),
        lambda: Gateway(url, secret=GATEWAY_SECRET),
    ]
    for make in makers:
        with pytest.raises(ValidationError, match="is not a Redis URL") as refused:
            make()
        assert "pw" not in str(refused.value)  # the password is not shown


def test_a_malformed_notifyq_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYQ_URL", "localhost:6379")
    with pytest.raises(ValidationError, match="NOTIFYQ_URL 'localhost:6379' is not a Redis URL"):
        notifyq.Queue("q")


# ---------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (("--url", "nonsense", "stats"), {}, "the Redis URL 'nonsense' is not a Redis URL"),
        (("stats",), {"NOTIFYQ_URL": "localhost:6379"}, "NOTIFYQ_URL 'localhost:6379'"),
        (("gateway", "--port", "0"), {"NOTIFYQ_SECRET": "short"}, "at least 16 bytes"),
        (("worker", "broken_handlers:handle"), {}, "SyntaxError"),
        (("worker", "raising_handlers:handle"), {}, "RuntimeError: no database"),
        (("worker", "cli_handlers:HANDLERS_VERSION"), {}, "is not callable"),
        (("worker", "cli_handlers:double", "--lease", "0"), {}, "lease must be > 0"),
        (("enqueue", "q", "[1, NaN]"), {}, "not valid JSON"),
        (("enqueue", "q", '"\\ud800"'), {}, "not valid Unicode"),
        (("enqueue", "q", "{}", "--id=-x"), {}, "invalid job id"),
    ],
)
def test_command_line_refusals_exit_2_with_one_line(
    cli: Cli, args: tuple[str, ...], env: dict[str, str], words: str
) -> None:
    (cli.cwd / "broken_handlers.py").write_text("def handle(payload):\n    return (\n")
    (cli.cwd / "raising_handlers.py").write_text("raise RuntimeError('no database')\n")
    with (cli.cwd / "cli_handlers.py").open("a") as f:
        f.write("\nHANDLERS_VERSION = 1\n")
    url = None if "NOTIFYQ_URL" in env or "--url" in args else ""
    assert_error(cli(*args, url=url, env={**SECRET, **env}), 2, words)


def test_an_unreachable_notifyq_url_exits_6(cli: Cli) -> None:
    proc = cli("stats", url=None, env={"NOTIFYQ_URL": "redis://127.0.0.1:1/0"})
    assert_error(proc, 6, "Redis unavailable at redis://127.0.0.1:1/0")


def test_a_corrupt_record_exits_1_with_its_message(cli: Cli, queue: Queue, r: redis.Redis) -> None:
    r.hset(queue.keys.stats, "completed", "lots")
    assert_error(cli("stats", queue.name), 1, "stats field", "'completed'", "not a count")
    job = queue.enqueue(1)
    r.set(queue.keys.result(job.id), "{oops")
    assert_error(cli("result", job.id, "-q", queue.name), 1, "not valid JSON")


def test_a_record_with_fields_notifyq_cannot_read_is_still_listed(
    cli: Cli, queue: Queue, r: redis.Redis
) -> None:
    job = queue.enqueue(1)
    r.hset(queue.keys.job(job.id), mapping={"max_attempts": "three", "payload": b"\xff"})
    notifyq.Worker(queue, lambda p: p).run(burst=True)  # dead-lettered: max_attempts
    proc = cli("dead", "list", queue.name, "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"max_attempts": "three"' in proc.stdout and '"payload": "\\\\xff"' in proc.stdout


# ---------------------------------------------------------------- HTTP requests


async def raw_http(gw: Gateway, request: bytes) -> bytes:
    """Send bytes to the gateway's port; everything it answers before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return answer


POST = "POST /queues/{q}/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
POST += "Content-Type: application/json\r\n"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        ("Content-Length: many\r\n\r\n{}", b"400"),
        ("Content-Length: -2\r\n\r\n{}", b"400"),
        ("Content-Length: 99999999999999999999\r\n\r\n{}", b"413"),
    ],
)
async def test_a_post_with_a_content_length_that_is_not_a_size_is_answered(
    gateway: Any, aqueue: anq.Queue, head: str, status: bytes
) -> None:
    gw = await gateway(enqueue_queues=[aqueue.name], enqueue_key="k" * 20)
    answer = await raw_http(gw, (POST.format(q=aqueue.name, key="k" * 20) + head).encode())
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer
    assert b'"error":' in answer
    assert (await aqueue.stats())["totals"].get("enqueued", 0) == 0


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
        (b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
        (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"400",
        ),
        (b"GARBAGE\r\n\r\n", b""),  # not HTTP: closed without an answer
        (b"\x00\xff\r\n\r\n", b""),
        ("GET /jobs/é HTTP/1.1\r\nHost: x\r\n\r\n".encode(), b""),
    ],
    ids=["header-too-big", "uri-too-long", "websocket-without-key", "garbage", "binary", "utf8"],
)
async def test_a_request_the_gateway_cannot_parse_is_refused_and_it_keeps_serving(
    gw: Gateway, request_bytes: bytes, status: bytes
) -> None:
    answer = await raw_http(gw, request_bytes)
    if status:
        assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:80]
    else:
        assert answer == b""
    assert (await fetch(gw, "/healthz")).status == 200
