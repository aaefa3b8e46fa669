"""Scoped, expiring tokens that let a browser follow one job or one queue.

A token is ``<payload>.<signature>``, both base64url without padding. The payload is the
JSON ``{"v":1,"s":scope,"q":queue,"j":job id or "","e":expiry}``: ``scope`` is ``"job"``
(that job only) or ``"queue"`` (a queue's dashboard: all its events); ``e`` is a Unix time
in seconds. The signature is HMAC-SHA256 over the payload bytes with the server secret
(``NOTIFYQ_SECRET``), compared in constant time. A token for job A grants nothing about
job B or about the queue; an expired token grants nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import time
from dataclasses import dataclass

from .errors import InvalidToken, ValidationError
from .keys import check_job_id, check_queue_name

MAX_TOKEN = 1024  # characters; longer input is refused before any work
MAX_TTL = 30 * 24 * 3600  # seconds
MIN_SECRET = 16  # bytes


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token allows: one job of a queue, or the whole queue."""

    scope: str  # "job" | "queue"
    queue: str
    job_id: str  # "" for a queue grant
    expires: int  # Unix seconds

    def allows(self, queue: str, job_id: str | None) -> bool:
        """May the holder follow ``job_id`` of ``queue`` (``None``: the queue itself)?"""
        if queue != self.queue:
            return False
        if self.scope == "queue":
            return True
        return job_id is not None and hmac.compare_digest(job_id, self.job_id)


def secret_from_env() -> bytes:
    """``NOTIFYQ_SECRET`` as bytes; a clear error when it is missing or too short."""
    value = os.environ.get("NOTIFYQ_SECRET", "")
    if len(value.encode()) < MIN_SECRET:
        raise ValidationError(
            f"NOTIFYQ_SECRET must be set to at least {MIN_SECRET} bytes "
            '(e.g. python -c "import secrets; print(secrets.token_urlsafe(32))")'
        )
    return value.encode()


def check_secret(secret: object) -> bytes:
    """``secret`` if it can sign tokens: bytes, at least ``MIN_SECRET`` of them."""
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET:
        raise ValidationError(f"the token secret must be at least {MIN_SECRET} bytes (bytes)")
    return secret


def check_ttl(ttl: object, name: str = "ttl") -> float:
    """``ttl`` if it is a token lifetime: more than 0 and at most ``MAX_TTL`` seconds."""
    if (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or not 0 < ttl <= MAX_TTL
    ):
        raise ValidationError(f"{name} must be between 0 and {MAX_TTL} seconds, not {ttl!r}")
    return float(ttl)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict base64url: only its alphabet, no padding, and the one spelling ``_b64`` gives
    (the decoder alone would skip stray characters and ignore unused low bits, so that
    several strings would carry one token)."""
    if not _BASE64URL.fullmatch(text):
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical base64url of its bytes")
    return data


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def _sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


def issue(
    secret: bytes,
    queue: str,
    job_id: str | None = None,
    *,
    ttl: float = 3600,
    now: float | None = None,
) -> str:
    """A token for ``job_id`` of ``queue`` (or, with no job id, for the whole queue)."""
    check_secret(secret)
    check_ttl(ttl)
    check_queue_name(queue)
    if job_id is not None:
        check_job_id(job_id)
    expires = int((time.time() if now is None else now) + ttl)
    claims = {"v": 1, "s": "job" if job_id else "queue", "q": queue, "j": job_id or "",
              "e": expires}  # fmt: skip
    payload = json.dumps(claims, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def verify(secret: bytes, token: object, *, now: float | None = None) -> Grant:
    """The grant a token carries; ``InvalidToken`` (never any other error) if it is bad."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN or token.count(".") != 1:
        raise InvalidToken("malformed token")
    payload_text, signature_text = token.split(".")
    try:
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token") from None
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise InvalidToken("bad signature")
    try:
        claims = json.loads(payload)
        grant = Grant(claims["s"], claims["q"], claims["j"], int(claims["e"]))
    except (ValueError, KeyError, TypeError, OverflowError):
        raise InvalidToken("malformed token") from None
    if claims.get("v") != 1 or grant.scope not in ("job", "queue"):
        raise InvalidToken("unsupported token")
    if not isinstance(grant.queue, str) or not isinstance(grant.job_id, str):
        raise InvalidToken("malformed token")
    if grant.expires <= (time.time() if now is None else now):
        raise InvalidToken("token expired")
    return grant
