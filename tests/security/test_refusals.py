"""What the TLS server refuses, notifyq reports as one clear error, never a hang.

Bad credentials and untrusted certificates are ``RedisUnavailable`` (the server cannot be
used); a command the user's ACL rules do not allow is ``AccessDenied``, naming what was
refused. The CLI turns both into one line on stderr and an exit code.
"""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from websockets.asyncio.client import connect

import notifyq
import notifyq.asyncio as anq
from notifyq import access, tokens
from notifyq.errors import AccessDenied, RedisUnavailable
from notifyq.gateway import Gateway
from tests.gateway.conftest import Client, until
from tests.support import eventually
from tests.test_cli import Cli, assert_error

from .conftest import ADMIN, ADMIN_PASSWORD, Certs, MakeUser, TlsServer

SECRET = b"security-tests-secret-0123456789"
PROMPT = 5.0  # seconds within which a refusal must be reported


def refused_promptly(call: Callable[[], Any], error: type[Exception], *words: str) -> str:
    """Run ``call``; it must raise ``error`` within ``PROMPT`` seconds, naming ``words``."""
    started = time.monotonic()
    with pytest.raises(error) as caught:
        call()
    assert time.monotonic() - started < PROMPT
    message = str(caught.value)
    for word in words:
        assert word in message, message
    return message


async def arefused_promptly(call: Callable[[], Awaitable[Any]], error: type[Exception],
                            *words: str) -> str:  # fmt: skip
    started = time.monotonic()
    with pytest.raises(error) as caught:
        await asyncio.wait_for(call(), PROMPT)
    assert time.monotonic() - started < PROMPT
    message = str(caught.value)
    for word in words:
        assert word in message, message
    return message


# ---------------------------------------------------------------- who may connect


def bad_urls(tls_server: TlsServer, certs: Certs, user: MakeUser) -> dict[str, tuple[str, str]]:
    """URL and the words its refusal names, for each way of being refused at connect."""
    good = user("producer")
    login = good.split("//", 1)[1].split("@", 1)[0].split(":")[0]
    return {
        "wrong password": (
            tls_server.url(login, "not-the-password"),
            "invalid username-password pair",
        ),
        "unknown user": (tls_server.url("nobody", "x"), "invalid username-password pair"),
        "untrusted server certificate": (
            tls_server.url(login, "x", ssl_ca_certs=str(certs.other_ca)),
            "certificate verify failed",
        ),
        "plain TCP to the TLS port": (
            good.replace("rediss://", "redis://").split("?")[0],
            "127.0.0.1",
        ),
    }


CASES = ["wrong password", "unknown user", "untrusted server certificate",
         "plain TCP to the TLS port"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_refused_connections_raise_redis_unavailable(
    tls_server: TlsServer, certs: Certs, user: MakeUser, name: str, case: str
) -> None:
    url, words = bad_urls(tls_server, certs, user)[case]
    queue = notifyq.Queue(name, url)
    message = refused_promptly(lambda: queue.enqueue(1), RedisUnavailable, words)
    assert "not-the-password" not in message
    job = notifyq.Job(queue, "some-job")
    refused_promptly(lambda: job.wait(30), RedisUnavailable, words)  # the wait hub's connection
    refused_promptly(lambda: notifyq.Listener(name, url=url).start(), RedisUnavailable, words)


@pytest.mark.parametrize("case", CASES)
async def test_refused_connections_raise_redis_unavailable_in_asyncio(
    tls_server: TlsServer, certs: Certs, user: MakeUser, name: str, case: str,
    close_async_backends: None,
) -> None:  # fmt: skip
    url, words = bad_urls(tls_server, certs, user)[case]
    queue = anq.Queue(name, url)
    await arefused_promptly(lambda: queue.enqueue(1), RedisUnavailable, words)
    await arefused_promptly(lambda: anq.Job(queue, "a-job").wait(30), RedisUnavailable, words)
    await arefused_promptly(lambda: anq.Listener(name, url=url).start(), RedisUnavailable, words)
    gateway = Gateway(url, secret=SECRET, port=0)
    await arefused_promptly(gateway.start, RedisUnavailable, words)


@pytest.mark.parametrize("case", CASES)
def test_the_cli_reports_a_refused_connection_in_one_line(
    tls_server: TlsServer, certs: Certs, user: MakeUser, name: str, case: str,
    tmp_path: pathlib.Path,
) -> None:  # fmt: skip
    url, words = bad_urls(tls_server, certs, user)[case]
    cli = Cli(url, tmp_path)
    assert_error(cli("enqueue", name, "1", url=None, env={"NOTIFYQ_URL": url}), 6, words)
    assert_error(cli("result", "some-job", "-q", name), 6, "Redis unavailable")


def test_mutual_tls_takes_only_clients_with_a_trusted_certificate(
    strict_tls_server: TlsServer, certs: Certs, name: str
) -> None:
    login = {"ssl_certfile": str(certs.client_cert), "ssl_keyfile": str(certs.client_key)}
    stranger = {"ssl_certfile": str(certs.stranger_cert), "ssl_keyfile": str(certs.stranger_key)}
    for params in ({}, stranger):  # no certificate; one from a CA the server does not know
        url = strict_tls_server.url(ADMIN, ADMIN_PASSWORD, **params)
        refused_promptly(lambda u=url: notifyq.Queue(name, u).enqueue(1), RedisUnavailable)
    url = strict_tls_server.url(ADMIN, ADMIN_PASSWORD, **login)
    job = notifyq.Queue(name, url).enqueue({"n": 1})
    notifyq.Worker(name, lambda p: p["n"] + 1, url=url).run(burst=True)
    assert job.wait(5) == 2


# ---------------------------------------------------------------- what a user may do


def test_a_producer_refused_a_command_in_a_script_is_told_which_line(
    user: MakeUser, name: str
) -> None:
    url = user("producer", drop=("xadd",))
    message = refused_promptly(
        lambda: notifyq.Queue(name, url).enqueue(1), AccessDenied, "enqueue", "XADD"
    )
    assert "docs/security.md" in message


def test_keys_of_another_queue_are_refused(user: MakeUser, name: str) -> None:
    url = user(rules=access.rules("producer", queue=f"{name}-mine"))
    notifyq.Queue(f"{name}-mine", url).enqueue(1)  # its own queue: fine
    refused_promptly(
        lambda: notifyq.Queue(name, url).enqueue(1), AccessDenied, "keys", f"nq:{{{name}}}"
    )


def channels_of_one_queue(queue: str) -> str:
    """The producer's rules, with pub/sub allowed on one queue's channels only."""
    return access.rules("producer").replace("&nq:*", f"&nq:{{{queue}}}:*")


def test_a_wait_the_server_will_not_subscribe_fails_at_once_and_others_go_on(
    user: MakeUser, name: str
) -> None:
    other = f"{name}-other"
    url, producer = user(rules=channels_of_one_queue(name)), user("producer")
    refused = notifyq.Job(notifyq.Queue(other, url), notifyq.Queue(other, producer).enqueue(1).id)
    allowed = notifyq.Queue(name, url).enqueue(2)
    refused_promptly(lambda: refused.wait(30), AccessDenied, "SUBSCRIBE", f"nq:{{{other}}}")
    notifyq.Worker(name, lambda p: p * 10, url=user("worker")).run(burst=True)
    assert allowed.wait(5) == 20  # the same wait hub still works for what it may do
    refused_promptly(lambda: refused.wait(30), AccessDenied, "SUBSCRIBE")  # and says so again


async def test_an_asyncio_wait_the_server_will_not_subscribe_fails_at_once(
    user: MakeUser, name: str, close_async_backends: None
) -> None:
    other = f"{name}-other"
    url, producer = user(rules=channels_of_one_queue(name)), user("producer")
    refused = anq.Job(anq.Queue(other, url), (await anq.Queue(other, producer).enqueue(1)).id)
    allowed = await anq.Queue(name, url).enqueue(2)
    await arefused_promptly(lambda: refused.wait(30), AccessDenied, "SUBSCRIBE")
    waiting = asyncio.create_task(allowed.wait(5))
    await anq.Worker(name, lambda p: p * 10, url=user("worker")).run(burst=True)
    assert await waiting == 20


def test_a_refused_unsubscribe_is_logged_and_later_waits_still_work(
    user: MakeUser, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server refuses UNSUBSCRIBE with an error reply like a refused SUBSCRIBE; it
    must not be taken for the refusal of a later SUBSCRIBE."""
    queue = notifyq.Queue(name, user("producer", drop=("unsubscribe",)))
    first, second = queue.enqueue(1), queue.enqueue(2)
    notifyq.Worker(name, lambda p: p * 3, url=user("worker")).run(burst=True)
    assert first.wait(5) == 3  # done: its channel is unsubscribed, which is refused
    eventually(lambda: any("'unsubscribe'" in r.getMessage() for r in caplog.records))
    assert second.wait(5) == 6


async def test_a_refused_unsubscribe_is_logged_and_later_asyncio_waits_still_work(
    user: MakeUser, name: str, close_async_backends: None, caplog: pytest.LogCaptureFixture
) -> None:
    queue = anq.Queue(name, user("producer", drop=("unsubscribe",)))
    jobs = await queue.enqueue_many([1, 2, 3])
    await anq.Worker(name, lambda p: p * 3, url=user("worker")).run(burst=True)
    assert [await job.wait(5) for job in jobs] == [3, 6, 9]
    await until(lambda: any("'unsubscribe'" in r.getMessage() for r in caplog.records))


def test_a_wait_whose_user_may_not_name_its_connection_says_so(user: MakeUser, name: str) -> None:
    url = user("producer", drop=("client|setname",))
    job = notifyq.Queue(name, url).enqueue(1)
    refused_promptly(lambda: job.wait(30), AccessDenied, "client|setname")


def test_a_worker_refused_a_command_stops_before_it_touches_a_job(
    user: MakeUser, admin: redis.Redis, name: str
) -> None:
    job = notifyq.Queue(name, user("producer")).enqueue(1)
    worker = notifyq.Worker(name, lambda p: p, url=user("worker", drop=("xadd",)))
    refused_promptly(lambda: worker.run(burst=True), AccessDenied, f"+xadd on nq:{{{name}}}:*")
    assert job.status() == "queued"
    assert admin.llen(f"nq:{{{name}}}:pending:normal") == 1
    assert admin.llen(f"nq:{{{name}}}:quarantine") == 0


async def test_an_asyncio_worker_refused_a_command_stops_before_it_touches_a_job(
    user: MakeUser, name: str, close_async_backends: None
) -> None:
    job = await anq.Queue(name, user("producer")).enqueue(1)
    worker = anq.Worker(name, lambda p: p, url=user("worker", drop=("hset", "rpop")))
    message = await arefused_promptly(lambda: worker.run(burst=True), AccessDenied, "+hset")
    assert "+rpop" in message  # every refusal at once
    assert await job.status() == "queued"


@pytest.mark.parametrize(("role", "missing"), [("listener", "xrevrange"),
                                               ("named-listener", "xgroup|create"),
                                               ("named-listener", "xreadgroup")])  # fmt: skip
def test_a_listener_refused_a_command_fails_to_start(
    user: MakeUser, name: str, role: str, missing: str
) -> None:
    url = user(role, drop=(missing,))
    listener = notifyq.Listener(name, "billing" if role == "named-listener" else None, url=url)
    refused_promptly(listener.start, AccessDenied, missing)


def test_an_anonymous_listener_refused_its_reads_says_so_in_its_log(
    user: MakeUser, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An anonymous listener runs no script, so its user needs no EVALSHA and it is not
    checked at start beyond its first reads; a refused XREAD is logged, again and again
    (with a growing delay), in case the rules change."""
    with notifyq.Listener(name, url=user("listener", drop=("xread",))):
        eventually(lambda: any("'xread'" in r.getMessage() for r in caplog.records))
    [record, *_] = [r for r in caplog.records if "'xread'" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "refused" in record.getMessage()


async def test_a_gateway_refused_a_queue_ends_that_subscription_only(
    user: MakeUser, name: str, close_async_backends: None
) -> None:
    other = f"{name}-other"
    url = user(rules=access.rules("gateway").replace("&nq:*", f"&nq:{{{name}}}:*"))
    producer = user("producer")
    mine = await anq.Queue(name, producer).enqueue(1)
    theirs = await anq.Queue(other, producer).enqueue(2)
    gw = Gateway(url, secret=SECRET, port=0)
    async with gw, connect(f"ws://127.0.0.1:{gw.port}/ws", proxy=None) as ws:
        client = Client(ws)
        await client.subscribe(tokens.issue(SECRET, other, theirs.id), other, theirs.id)
        await client.expect("subscribed", queue=other, job=theirs.id)
        error = await client.error("internal_error")
        assert error["job"] == theirs.id
        assert "u-" not in error["message"]  # the gateway's Redis user stays in its log
        await client.follow(tokens.issue(SECRET, name, mine.id), name, mine.id)
        await client.quiet()


async def test_a_gateway_that_may_not_enqueue_fails_to_start(
    user: MakeUser, name: str, close_async_backends: None
) -> None:
    url = user("gateway", "http-enqueue", drop=("xadd",))
    gateway = Gateway(url, secret=SECRET, port=0, enqueue_queues=[name], enqueue_key="k" * 20)
    await arefused_promptly(gateway.start, AccessDenied, "+xadd")


def test_the_cli_reports_a_refused_command_in_one_line(
    user: MakeUser, name: str, tmp_path: pathlib.Path
) -> None:
    cli = Cli(user("producer", drop=("xadd",)), tmp_path)
    assert_error(cli("enqueue", name, "1"), 1, "refused", "XADD")
    notifyq.Queue(name, user("producer")).enqueue(1)
    cli = Cli(user("worker", drop=("zadd",)), tmp_path)
    proc = cli("worker", "cli_handlers:double", "-q", name, "--burst")
    *_, last = proc.stderr.splitlines()  # after the worker's log lines
    assert proc.returncode == 1
    assert last.startswith("notifyq: error: ") and "+zadd" in last
    assert "Traceback" not in proc.stderr
