"""Tokens: scoped, expiring, unforgeable, and safe on any input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
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


# ---------------------------------------------------------------- fuzz

#: Bounded so that each property runs in a second or two, in CI too.
FUZZ = settings(max_examples=300, deadline=None)  # bounded by count: CI machines vary
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
VALID = [tokens.issue(SECRET, "orders", "job-a", ttl=600, now=1000), tokens.issue(SECRET, "q")]


@FUZZ
@given(st.text(max_size=300) | st.text(alphabet=ALPHABET + ".=", max_size=120))
def test_verify_only_ever_raises_invalid_token(text: str) -> None:
    with pytest.raises(InvalidToken):
        tokens.verify(SECRET, text)


@FUZZ
@given(st.none() | st.integers() | st.binary(max_size=40) | st.lists(st.text(), max_size=2))
def test_a_token_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(InvalidToken, match="malformed"):
        tokens.verify(SECRET, value)


def _mutate(token: str, how: str, at: int, char: str) -> str:
    at %= len(token) + 1
    if how == "replace":
        return token[:at] + char + token[at + 1 :]
    if how == "insert":
        return token[:at] + char + token[at:]
    if how == "delete":
        return token[:at] + token[at + 1 :]
    if how == "truncate":
        return token[:at]
    payload, signature = token.split(".")
    return f"{signature}.{payload}"  # swap


@FUZZ
@given(
    st.sampled_from(VALID),
    st.sampled_from(["replace", "insert", "delete", "truncate", "swap"]),
    st.integers(0, 300),
    st.sampled_from(ALPHABET + ".=+/ %\x00é"),
)
def test_only_the_untouched_token_grants_anything(token: str, how: str, at: int, char: str) -> None:
    """Any edit of a valid token is refused: a forgery, and also another spelling of the
    same bytes (base64 decoders skip stray characters and ignore unused low bits)."""
    changed = _mutate(token, how, at, char)
    if changed == token:
        assert tokens.verify(SECRET, changed, now=1000).queue in ("orders", "q")
        return
    with pytest.raises(InvalidToken):
        tokens.verify(SECRET, changed, now=1000)


@pytest.mark.parametrize("token", VALID, ids=["job", "queue"])
def test_every_one_character_edit_of_a_token_is_refused(token: str) -> None:
    """Exhaustive for single characters, where the fuzz above is a sample: each position
    replaced by, or preceded by, each character of the alphabet, and each deleted."""
    edits = {token[:i] + token[i + 1 :] for i in range(len(token))}
    for i in range(len(token) + 1):
        for char in ALPHABET + ".=":
            edits |= {token[:i] + char + token[i + 1 :], token[:i] + char + token[i:]}
    edits.discard(token)
    accepted = []
    for changed in edits:
        try:
            tokens.verify(SECRET, changed, now=1000)
        except InvalidToken:
            continue
        accepted.append(changed)
    assert accepted == []


claims = st.dictionaries(
    st.sampled_from(["v", "s", "q", "j", "e", "x"]),
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from([1, "job", "queue", "orders", 10**400 // 10**399 * 10**30]),
)


@FUZZ
@given(claims | st.lists(st.integers(), max_size=2) | st.text(max_size=10))
def test_a_signed_payload_gives_a_grant_or_invalid_token(claims: object) -> None:
    """Even what the secret's holder signed is checked: a payload that is not a token's
    claims is refused with InvalidToken, never another error."""
    payload = json.dumps(claims).encode()
    token = f"{tokens._b64(payload)}.{tokens._b64(tokens._sign(SECRET, payload))}"
    try:
        grant = tokens.verify(SECRET, token, now=1000)
    except InvalidToken:
        return
    assert grant.scope in ("job", "queue")
    assert isinstance(grant.queue, str) and isinstance(grant.job_id, str)
    assert grant.expires > 1000


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
