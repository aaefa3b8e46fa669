"""JSON on the wire, with size limits. Never pickle: whoever can write to Redis must not be
able to make a worker run code."""

from __future__ import annotations

import json
import traceback
from typing import Any

from .errors import CorruptRecord, PayloadTooLarge, SerializationError

DEFAULT_MAX_PAYLOAD = 512 * 1024  # bytes, encoded
DEFAULT_MAX_RESULT = 512 * 1024
MAX_TRACEBACK = 8 * 1024
MAX_MESSAGE = 4 * 1024

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_decoder = json.JSONDecoder()


def encode(value: Any, *, limit: int, what: str = "payload") -> str:
    """Encode ``value`` as compact JSON; refuse what JSON cannot hold or what is too big."""
    try:
        text = _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} is not JSON-serialisable: {exc}") from exc
    # a character is 1 to 4 bytes: count bytes only when the length alone cannot decide
    if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
        size = len(text.encode())
        raise PayloadTooLarge(f"{what} is {size} bytes encoded; the limit is {limit}")
    return text


def decode(raw: bytes | str, *, what: str = "value") -> Any:
    """Decode JSON read back from Redis; bad data is a ``CorruptRecord``, not a crash."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        return _decoder.decode(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptRecord(f"{what} is not valid JSON: {exc}") from exc


def error_record(exc: BaseException, *, with_traceback: bool = True) -> dict[str, Any]:
    """How a failure is stored: type, message and (truncated) traceback."""
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not lose the failure
        message = f"<unprintable {type(exc).__name__}>"
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "…"
    record: dict[str, Any] = {"type": type(exc).__name__, "message": message}
    if with_traceback:
        tb = "".join(traceback.format_exception(exc))
        if len(tb) > MAX_TRACEBACK:
            tb = "…" + tb[-MAX_TRACEBACK:]
        record["traceback"] = tb
    return record


def text(value: bytes | str | None) -> str | None:
    """Redis replies as ``str`` whatever the client's ``decode_responses`` setting."""
    if value is None or isinstance(value, str):
        return value
    return value.decode()
