"""Token forgery, with no network: a token is all or nothing.

(tests/core/test_tokens.py covers another secret, swapped payloads, garbage and expiry;
tests/gateway/test_security.py the same refusals over WebSocket and HTTP.)
"""

from __future__ import annotations

import base64
import json
import string

import pytest

from notifyq import tokens
from notifyq.errors import InvalidToken

SECRET = b"token-forgery-tests-secret-000000"
NOW = 1_800_000_000.0


def token_for(job: str = "job-1") -> str:
    return tokens.issue(SECRET, "orders", job, ttl=600, now=NOW)


def claims_of(token: str) -> dict[str, object]:
    payload = token.split(".")[0]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return claims


def with_claims(token: str, **changes: object) -> str:
    signature = token.split(".")[1]
    claims = {**claims_of(token), **changes}
    raw = json.dumps(claims, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + signature


@pytest.mark.parametrize(
    "changes",
    [{"j": "job-2"}, {"q": "billing"}, {"s": "queue", "j": ""}, {"e": int(NOW) + 10**7},
     {"v": 2}, {"x": "extra"}],
    ids=["job", "queue", "scope", "expiry", "version", "extra field"],
)  # fmt: skip
def test_claims_changed_under_the_same_signature_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidToken, match="bad signature"):
        tokens.verify(SECRET, with_claims(token_for(), **changes), now=NOW)


def test_every_truncation_is_refused() -> None:
    token = token_for()
    for cut in range(len(token)):
        with pytest.raises(InvalidToken):
            tokens.verify(SECRET, token[:cut], now=NOW)
        with pytest.raises(InvalidToken):
            tokens.verify(SECRET, token[cut + 1 :], now=NOW)


def test_a_changed_character_is_refused_or_means_the_same_bytes() -> None:
    """base64 leaves a few bits unused in a segment's last character: changing only those
    gives another spelling of the same token (same claims, same signature). Any other
    change is refused."""
    token = token_for()
    grant = tokens.verify(SECRET, token, now=NOW)
    alphabet = string.ascii_letters + string.digits + "-_"
    same = 0
    for i, old in enumerate(token):
        for new in alphabet:
            if new == old:
                continue
            changed = token[:i] + new + token[i + 1 :]
            try:
                got = tokens.verify(SECRET, changed, now=NOW)
            except InvalidToken:
                continue
            assert got == grant  # only an unused bit moved
            assert i in (token.index(".") - 1, len(token) - 1)  # a segment's last character
            same += 1
    assert same < 20


def test_a_token_never_grants_past_its_expiry() -> None:
    token = token_for()
    assert tokens.verify(SECRET, token, now=NOW + 599).job_id == "job-1"
    for later in (NOW + 600, NOW + 601, NOW + 10**9):
        with pytest.raises(InvalidToken, match="expired"):
            tokens.verify(SECRET, token, now=later)
