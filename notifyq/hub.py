"""The blocking wait hub: one pub/sub connection and one reader thread per process.

Waiting threads register with ``Subscriptions`` and SUBSCRIBE under a lock (so commands
reach the server in the order they were planned); the reader thread reads confirmations
and messages, checks result keys when a channel goes live, and wakes the waiters. After a
lost connection it reconnects with backoff, subscribes again and re-checks every wait.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import redis

from .cluster import message_kind, subscribe_commands
from .codec import text
from .connection import reraise, wrap
from .errors import AccessDenied, RedisUnavailable, ResultTimeout
from .keys import QueueKeys
from .ops import Command
from .waiting import MISSING, Subscriptions, check, done_message

if TYPE_CHECKING:
    from .connection import Backend

log = logging.getLogger("notifyq.wait")

#: CLIENT SETNAME of the pub/sub connection, so operators can spot it in CLIENT LIST.
HUB_CLIENT_NAME = "notifyq-wait"
#: Seconds before a failed result check is tried again.
RECHECK_DELAY = 0.2


class _Wait:
    __slots__ = ("done", "job_id", "keys", "value")

    def __init__(self, keys: QueueKeys, job_id: str) -> None:
        self.keys, self.job_id = keys, job_id
        self.done = threading.Event()
        self.value: object = None

    def resolve(self, value: object) -> None:
        if not self.done.is_set():
            self.value = value
            self.done.set()


class WaitHub:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._subs: Subscriptions[_Wait] = Subscriptions()
        self._lock = threading.Lock()
        self._conn: Any = None
        self._connected = False  # False from a lost connection until the reader is back
        self._thread: threading.Thread | None = None
        self._closed = False

    def wait(self, keys: QueueKeys, job_id: str, timeout: float | None) -> object:
        """Block until the job's outcome is known: its outcome record, or ``MISSING``;
        ``CorruptRecord`` if its result key holds something else; ``timeout`` None: no
        limit."""
        w = _Wait(keys, job_id)
        channel = keys.done_channel(job_id)
        with self._lock:
            self._start()
            live = self._subs.add(channel, w)
            self._flush()
        try:
            if live:
                self._check([w])
            if not w.done.wait(timeout):
                raise ResultTimeout(job_id, timeout or 0.0)
            if isinstance(w.value, Exception):
                raise w.value
            return w.value
        finally:
            with self._lock:
                self._subs.remove(channel, w)
                self._flush()

    # -- everything below runs under self._lock or in the reader thread

    def _start(self) -> None:
        if self._thread is None:
            self._connect()
            self._thread = threading.Thread(target=self._read, name="notifyq-wait", daemon=True)
            self._thread.start()

    def _connect(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()  # a send may have reopened the old one: nobody reads it
        conn = self._backend.pubsub_connection(HUB_CLIENT_NAME)
        try:
            conn.connect()
        except (redis.RedisError, OSError) as exc:  # RedisUnavailable, or AccessDenied
            conn.disconnect()
            reraise(exc, self._backend.url, Command("CLIENT", "SETNAME", HUB_CLIENT_NAME))
        self._conn, self._connected = conn, True

    def _reconnect(self) -> None:
        """A new connection, subscribed to every channel wanted. A wait that began since
        the loss may have sent its SUBSCRIBE on the old connection object (redis-py
        reconnects it on send, and nothing reads it): ``_connect`` closes that one, and every
        channel is subscribed again here, on the connection the reader reads."""
        self._connect()
        self._subs.reset()
        self._flush()

    def _flush(self) -> None:
        if not self._connected:
            return  # the reader subscribes every wanted channel once it is back
        subscribe, unsubscribe = self._subs.plan()
        sharded = self._backend.sharded
        try:
            for command in subscribe_commands("SUBSCRIBE", subscribe, sharded):
                self._conn.send_command(*command)
            for command in subscribe_commands("UNSUBSCRIBE", unsubscribe, sharded):
                self._conn.send_command(*command)
        except (redis.ConnectionError, OSError):
            pass  # the reader sees the same failure, reconnects and subscribes again

    def _check(self, waits: list[_Wait]) -> None:
        try:
            found = self._backend.run(check([(w.keys, w.job_id) for w in waits]))
        except AccessDenied as exc:  # not an outage: these waits cannot succeed
            for w in waits:
                w.resolve(exc)
            return
        except RedisUnavailable as exc:
            log.debug("check failed, retrying: %s", exc)
            if not self._closed:  # the pub/sub connection may be fine: check again soon
                retry = threading.Timer(RECHECK_DELAY, self._check, [waits])
                retry.daemon = True
                retry.start()
            return
        for w, value in zip(waits, found, strict=True):
            if value is not None:
                w.resolve(value)

    def _read(self) -> None:
        delay = 0.05
        while not self._closed:
            try:
                reply = self._conn.read_response(push_request=True)
            except (redis.ConnectionError, redis.TimeoutError, OSError, AttributeError):
                if self._closed:
                    return
                with self._lock:
                    self._connected = False
                    self._subs.reset()
                while not self._closed:
                    log.warning("wait hub lost its connection; reconnecting in %.2fs", delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    try:
                        with self._lock:
                            self._reconnect()
                        break
                    except (RedisUnavailable, AccessDenied) as exc:
                        log.warning("wait hub: %s", exc)
                        continue
                continue
            except redis.ResponseError as exc:
                self._refused(exc)
                continue
            delay = 0.05
            kind, channel = message_kind(text(reply[0]) or ""), text(reply[1]) or ""
            if kind == "message":
                with self._lock:
                    waits = self._subs.message(channel)
                record = done_message(channel, reply[2], waits[0].job_id) if waits else None
                for w in waits if record is not None else ():
                    w.resolve(record)
            elif kind == "subscribe":
                with self._lock:
                    waits = self._subs.confirmed(channel)
                if waits:
                    self._check(waits)

    def _refused(self, exc: redis.ResponseError) -> None:
        """An error reply on the pub/sub connection: the server refused a SUBSCRIBE (its
        ACL rules), so the waits on its channels fail with the reason."""
        if "'unsubscribe'" in str(exc):
            log.error("wait hub: %s", wrap(exc, self._backend.url, Command("UNSUBSCRIBE")))
            return
        with self._lock:
            channels, waits = self._subs.refused()
        err = wrap(exc, self._backend.url, Command("SUBSCRIBE", *channels))
        for w in waits:
            w.resolve(err)

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.disconnect()
        if self._thread is not None:
            self._thread.join(timeout=2)


__all__ = ["MISSING", "WaitHub"]
