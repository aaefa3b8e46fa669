"""Tokens: scoped, expiring, unforgeable, and safe on any input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifyq import tokens
from notifyq.errors import ValidationError
from notifyq.tokens import InvalidToken

SECRET = b"s" * 32


def test_job_token_grants_that_job_only() -> None:
    grant = tokens.verify(SECRET, tokens.issue(SECRET, "orders", "job-a"))
    assert (grant.scope, grant.queue, grant.job_id) == ("job", "orders", "job-a")
    assert grant.allows("orders", "job-a")
    assert not grant.allows("orders", "job-b")
    assert not grant.allows("orders", None)  # not the queue
    assert not grant.allows("other", "job-a")


def test_queue_token_grants_the_queue() -> None:
    grant = tokens.verify(SECRET, tokens.issue(SECRET, "orders"))
    assert grant.scope == "queue"
    assert grant.allows("orders", None) and grant.allows("orders", "any-job")
    assert not grant.allows("other", None)


def test_expired_token_is_refused() -> None:
    token = tokens.issue(SECRET, "orders", "j", ttl=10, now=1000)
    assert tokens.verify(SECRET, token, now=1009).job_id == "j"
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(SECRET, token, now=1010)


def test_forgeries_are_refused() -> None:
    token = tokens.issue(SECRET, "orders", "job-a")
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify(b"t" * 32, token)  # another secret
    payload, signature = token.split(".")
    other_payload = tokens.issue(SECRET, "orders", "job-b").split(".")[0]
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify(SECRET, f"{other_payload}.{signature}")  # payload swapped
    with pytest.raises(InvalidToken):
        tokens.verify(SECRET, f"{payload}.")


@pytest.mark.parametrize("bad", [None, 1, "", "x", "a.b.c", "." * 3, "%%%.%%%", "a" * 5000])
def test_garbage_is_a_clean_refusal(bad: object) -> None:
    with pytest.raises(InvalidToken):
        tokens.verify(SECRET, bad)


@given(st.text(max_size=300))
def test_verify_only_ever_raises_invalid_token(text: str) -> None:
    with pytest.raises(InvalidToken):
        tokens.verify(SECRET, text)


def test_issue_validates_its_arguments() -> None:
    with pytest.raises(ValidationError, match="secret"):
        tokens.issue(b"short", "q")
    with pytest.raises(ValidationError, match="ttl"):
        tokens.issue(SECRET, "q", ttl=0)
    with pytest.raises(ValidationError, match="queue name"):
        tokens.issue(SECRET, "bad name")
    with pytest.raises(ValidationError, match="job id"):
        tokens.issue(SECRET, "q", "bad/id")


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFYQ_SECRET", raising=False)
    with pytest.raises(ValidationError, match="NOTIFYQ_SECRET"):
        tokens.secret_from_env()
    monkeypatch.setenv("NOTIFYQ_SECRET", "x" * 20)
    assert tokens.secret_from_env() == b"x" * 20


def test_job_and_queue_handles_issue_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    from notifyq.client import JobBase, QueueBase

    monkeypatch.setenv("NOTIFYQ_SECRET", "k" * 32)
    queue = QueueBase("orders", 1000)
    queue.name = "orders"
    job = JobBase(queue, "j1")
    assert tokens.verify(b"k" * 32, job.token(60)).job_id == "j1"
    assert tokens.verify(b"k" * 32, queue.token(60)).scope == "queue"
    assert tokens.verify(SECRET, job.token(secret=SECRET)).allows("orders", "j1")
