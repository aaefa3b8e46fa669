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


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# NaN and Infinity are not JSON: encode refuses them, so decode does too (a browser's
# JSON.parse would fail on a value that held one)
_decoder = json.JSONDecoder(parse_constant=_no_constants)


def encode(value: Any, *, limit: int, what: str = "payload") -> str:
    """Encode ``value`` as compact JSON; refuse what JSON cannot hold or what is too big."""
    try:
        text = _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"{what} is not JSON-serialisable: {exc}") from exc
    except RecursionError:
        raise SerializationError(f"{what} is nested too deeply to encode as JSON") from None
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode())
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for it
            raise SerializationError(f"{what} holds a string that is not valid Unicode") from None
    if size > limit:
        raise PayloadTooLarge(f"{what} is {size} bytes encoded; the limit is {limit}")
    return text


def decode(raw: bytes | str, *, what: str = "value") -> Any:
    """Decode JSON read back from Redis; bad data is a ``CorruptRecord``, not a crash."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        return _decoder.decode(text)
    except (ValueError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
        raise CorruptRecord(f"{what} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise CorruptRecord(f"{what} is JSON nested too deeply to decode") from None


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


def loose_text(value: bytes | str | None) -> str | None:
    """As ``text``, for values something else may have written: bytes that are not UTF-8
    show as ``\\xNN`` instead of failing."""
    if value is None or isinstance(value, str):
        return value
    return value.decode(errors="backslashreplace")


def integer(value: str | None) -> int | None:
    """A number field of a record (digits, as the scripts write them); None if it is absent
    or holds something else."""
    if value and value.isascii() and value.isdigit() and len(value) <= 20:
        return int(value)
    return None
