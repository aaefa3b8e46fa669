"""JSON log lines, without a server: fields, job fields, exceptions, formats."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from notifyq import logs
from notifyq.errors import ValidationError


def record(**extra: object) -> logging.LogRecord:
    log = logging.getLogger("notifyq.test")
    return log.makeRecord("notifyq.test", logging.INFO, __file__, 1, "job %s: %s", ("j1", "ok"),
                          None, extra=extra)  # fmt: skip


def test_a_record_is_one_json_line_with_its_job_fields() -> None:
    extra = logs.job_extra("orders", "j1", 2, "w1")
    line = logs.JsonFormatter().format(record(**extra))
    assert "\n" not in line
    out = json.loads(line)
    assert (out["level"], out["logger"], out["message"]) == ("INFO", "notifyq.test", "job j1: ok")
    assert (out["job_id"], out["queue"], out["attempt"], out["worker"]) == ("j1", "orders", 2, "w1")
    assert out["time"].endswith("Z") and len(out["time"]) == len("2024-06-01T12:00:40.123Z")


def test_fields_a_record_lacks_are_left_out_and_odd_values_are_shown() -> None:
    out = json.loads(logs.JsonFormatter().format(record(job_id=object())))
    assert "queue" not in out and "attempt" not in out
    assert out["job_id"].startswith("<object")
    assert logs.job_extra("q", "j") == {"job_id": "j", "queue": "q"}


def test_an_exception_is_a_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        log = logging.getLogger("notifyq.test")
        r = log.makeRecord("notifyq.test", logging.ERROR, __file__, 1, "failed", (),
                           sys.exc_info())  # fmt: skip
    out = json.loads(logs.JsonFormatter().format(r))
    assert out["message"] == "failed"
    assert "ValueError: boom" in out["exception"] and "Traceback" in out["exception"]


def test_configure_sends_json_lines_to_a_stream() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.configure("json", stream=stream)
        logging.getLogger("notifyq.worker").info("hello", extra=logs.job_extra("q", "j"))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    out = json.loads(stream.getvalue())
    assert (out["message"], out["job_id"]) == ("hello", "j")


@pytest.mark.parametrize("bad", ["xml", "", "JSON", None])
def test_a_format_that_is_not_text_or_json_is_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="text, json"):
        logs.check_format(bad)


def test_the_format_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(logs.ENV, raising=False)
    assert logs.format_from_env() == "text"
    monkeypatch.setenv(logs.ENV, "json")
    assert logs.format_from_env() == "json"
    monkeypatch.setenv(logs.ENV, "xml")
    with pytest.raises(ValidationError, match="NOTIFYQ_LOG_FORMAT must be one of text, json"):
        logs.format_from_env()
