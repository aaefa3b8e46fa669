"""The web demo in a real browser: headless Chromium (Debian's ``/usr/bin/chromium``) driven
by Playwright, against the commands a user runs (``notifyq gateway``, ``notifyq worker``,
``notifyq demo``) as subprocesses.

Screenshots go to ``test-artifacts/``. Without ``/usr/bin/chromium`` these tests fail:
``make browser`` installs it.
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from notifyq import tokens

ROOT = pathlib.Path(__file__).resolve().parents[2]
WEB_DEMO = ROOT / "web_demo"
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SECRET = "browser-tests-secret-0123456789"
ENQUEUE_KEY = "browser-tests-enqueue-key-0123"

pytestmark = pytest.mark.browser
expect.set_options(timeout=20_000)  # for assertions on the page; a wait ends as soon as it holds


# ------------------------------------------------------------------ processes


class Proc:
    """A command running in the background; a thread collects its output line by line."""

    def __init__(self, args: list[str], *, cwd: pathlib.Path = ROOT, **env: str) -> None:
        environ = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        self.popen = subprocess.Popen(
            args, cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        )  # fmt: skip
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        """The first line (from now on) that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no line matching {pattern!r} in {timeout}s:\n{self.output}"
            try:
                line = self._new.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, (
                f"exited ({self.popen.poll()}) before a line matching {pattern!r}:\n{self.output}"
            )
            if re.search(pattern, line):
                return line.strip()

    def stop(self, sig: signal.Signals, timeout: float = 15) -> int:
        """Send ``sig`` and wait for the process to exit; its exit code."""
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout}s after {sig.name}:\n{self.output}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()  # by its PID
            self.popen.wait(10)
        self._reader.join(10)
        assert self.popen.stdout is not None
        self.popen.stdout.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Every process a test starts goes in here; each is killed at the end."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_gateway(procs: list[Proc], redis_url: str, queue_name: str, port: int) -> Proc:
    gateway = Proc(
        [sys.executable, "-m", "notifyq", "gateway", "--port", str(port),
         "--static", str(WEB_DEMO), "--enqueue-queue", queue_name],
        NOTIFYQ_URL=redis_url, NOTIFYQ_SECRET=SECRET, NOTIFYQ_ENQUEUE_KEY=ENQUEUE_KEY,
    )  # fmt: skip
    procs.append(gateway)
    assert gateway.wait_for(r"^gateway: http://") == f"gateway: http://127.0.0.1:{port}/"
    return gateway


def start_worker(procs: list[Proc], redis_url: str, queue_name: str) -> Proc:
    worker = Proc(
        [sys.executable, "-m", "notifyq", "worker", "demo_handlers:handle", "-q", queue_name],
        cwd=EXAMPLES, NOTIFYQ_URL=redis_url,
    )  # fmt: skip
    procs.append(worker)
    worker.wait_for(rf"started on {re.escape(queue_name)}$")
    return worker


def page_url(port: int, queue_name: str, step_ms: int) -> str:
    dashboard = tokens.issue(SECRET.encode(), queue_name, ttl=600)
    return f"http://127.0.0.1:{port}/#key={ENQUEUE_KEY}&dashboard={dashboard}&step_ms={step_ms}"


# ------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`make browser` installs it: apt-get install -y chromium)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page; the test fails if the page's script throws."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page threw: {errors}"


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def open_demo(page: Page, url: str, queue_name: str) -> None:
    page.goto(url)
    expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#queue-name")).to_have_text(queue_name)
    expect(page.locator("#feed")).to_have_attribute("data-subscribed", "true")


def start_job(page: Page, button: str) -> Locator:
    """Click ``button``; the new job's card."""
    before = page.locator(".card").count()
    page.get_by_role("button", name=button).click()
    expect(page.locator(".card")).to_have_count(before + 1)
    job_id = data(page.locator(".card").first, "job-id")  # newest first
    return page.locator(f".card[data-job-id='{job_id}']")


def data(card: Locator, name: str) -> str:
    value = card.get_attribute(f"data-{name}")
    assert value is not None, f"the card has no data-{name}"
    return value


def assert_applied_once(card: Locator) -> None:
    """Each event applied once, in order: ids (``ms-seq``) strictly increasing."""
    applied = [tuple(map(int, i.split("-"))) for i in data(card, "applied").split()]
    assert applied == sorted(set(applied)), applied
    assert data(card, "events") == str(len(applied))
    assert data(card, "completions") == "1"


def progress_seen(card: Locator) -> list[int]:
    return [int(float(v)) for v in data(card, "progress-seen").split()]


# ------------------------------------------------------------------ tests


def test_an_order_runs_live_from_click_to_receipt(
    page: Page, procs: list[Proc], redis_url: str, name: str
) -> None:
    port = free_port()
    start_gateway(procs, redis_url, name, port)
    start_worker(procs, redis_url, name)
    open_demo(page, page_url(port, name, step_ms=300), name)

    card = start_job(page, "Place an order")
    job_id = data(card, "job-id")
    # shown active, with its progress bar filling
    page.wait_for_function(
        "id => { const c = document.querySelector(`[data-job-id='${id}']`);"
        " return c.dataset.state === 'active' && c.querySelector('.state').textContent === 'active'"
        " && c.querySelector('progress').value > 0; }",
        arg=job_id,
    )
    expect(card).to_have_attribute("data-state", "completed")

    payload: dict[str, Any] = json.loads(data(card, "payload"))
    receipt = f"R-{payload['order_id']}"
    result = json.loads(data(card, "result"))
    assert result == {"receipt": receipt, "charged_cents": payload["amount_cents"]}
    expect(card.locator(".result")).to_contain_text(f"Receipt {receipt}")
    expect(card.locator(".state")).to_have_text("completed")
    expect(card.locator("progress")).to_have_attribute("value", "100")
    assert data(card, "history") == "queued active completed"
    seen = progress_seen(card)
    assert seen == sorted(set(seen)) and seen[-1] == 100 and {25, 50, 75} <= set(seen), seen
    assert_applied_once(card)

    # the dashboard: counts polled over HTTP, the queue's events over the socket
    expect(page.locator("#count-completed")).to_have_text("1")
    expect(page.locator("#count-pending")).to_have_text("0")
    expect(page.locator("#count-active")).to_have_text("0")
    feed = page.locator(f".feed-item[data-event-id]:has-text('{job_id}')")
    expect(feed.first).to_have_attribute("data-type", "completed")  # newest first
    types = [feed.nth(i).get_attribute("data-type") for i in range(feed.count())]
    assert types[0] == "completed" and types.count("completed") == 1, types
    assert types.count("progress") >= 4, types  # 25..100 at least: they come after the click
    ids = [feed.nth(i).get_attribute("data-event-id") for i in range(feed.count())]
    assert len(ids) == len(set(ids)), ids  # each event once, though two subscriptions bring it
    screenshot(page, "web_demo.png")


def test_the_page_rides_out_a_gateway_restart(
    page: Page, procs: list[Proc], redis_url: str, name: str
) -> None:
    port = free_port()
    gateway = start_gateway(procs, redis_url, name, port)
    start_worker(procs, redis_url, name)
    open_demo(page, page_url(port, name, step_ms=1500), name)
    status = page.locator("#status")

    card = start_job(page, "Place an order")
    page.wait_for_function(
        "id => Number(document.querySelector(`[data-job-id='${id}']`).dataset.progress) > 0",
        arg=data(card, "job-id"),
    )
    assert gateway.stop(signal.SIGTERM) == 0
    expect(status).to_have_text("reconnecting…")
    assert data(card, "state") == "active"  # the job goes on without the gateway

    start_gateway(procs, redis_url, name, port)  # the same port: the page finds it again
    expect(status).to_have_text("connected")
    expect(status).to_have_attribute("data-connects", "2")
    expect(card).to_have_attribute("data-state", "completed", timeout=30_000)

    assert_applied_once(card)
    seen = progress_seen(card)
    assert seen == sorted(set(seen)) and seen[-1] == 100, seen
    assert data(card, "history") == "queued active completed"
    expect(card.locator(".result")).to_contain_text("Receipt R-")
    screenshot(page, "web_demo_restart.png")


def test_with_no_socket_the_page_follows_jobs_by_polling(
    page: Page, procs: list[Proc], redis_url: str, name: str
) -> None:
    port = free_port()
    start_gateway(procs, redis_url, name, port)
    start_worker(procs, redis_url, name)
    page.route_web_socket(re.compile(r"/ws$"), lambda ws: ws.close())  # every socket dies
    page.goto(page_url(port, name, step_ms=300))
    expect(page.locator("#status")).to_have_text("reconnecting…")

    card = start_job(page, "Place an order")
    expect(card).to_have_attribute("data-state", "completed")
    assert data(card, "events") == "0"  # no event came: GET /jobs/<id> told it all
    assert data(card, "completions") == "1"
    payload = json.loads(data(card, "payload"))
    assert json.loads(data(card, "result"))["receipt"] == f"R-{payload['order_id']}"
    expect(card.locator("progress")).to_have_attribute("value", "100")
    expect(page.locator("#count-completed")).to_have_text("1")


def test_notifyq_demo_serves_the_page(page: Page, procs: list[Proc]) -> None:
    port = free_port()
    demo = Proc([sys.executable, "-m", "notifyq", "demo", "--port", str(port)])
    procs.append(demo)
    url = demo.wait_for(r"^open http://", timeout=60).split()[1]
    assert url.startswith(f"http://127.0.0.1:{port}/#key=")
    open_demo(page, url, "demo")

    card = start_job(page, "Send an SMS")
    expect(card).to_have_attribute("data-state", "completed")
    history = data(card, "history").split()
    assert history[-1] == "completed" and "retrying" in history, history
    assert history.index("retrying") < history.index("active", history.index("retrying"))
    assert_applied_once(card)
    payload = json.loads(data(card, "payload"))
    assert json.loads(data(card, "result")) == {"delivered_to": payload["to"], "attempt": 2}
    expect(card.locator(".result")).to_contain_text(f"Delivered to {payload['to']}")

    started = time.monotonic()
    assert demo.stop(signal.SIGINT) == 0, demo.output
    assert time.monotonic() - started < 10
    assert "Traceback" not in demo.output, demo.output
