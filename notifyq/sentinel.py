"""Redis Sentinel: a single-primary server found through its sentinels.

A URL with the scheme ``redis+sentinel://`` (``rediss+sentinel://`` for TLS to the
servers) names the sentinels and the service::

    redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db][?options]

The user and password are the servers' (the primary's and its replicas'); the port of a
sentinel defaults to 26379. ``sentinel_username`` and ``sentinel_password`` in the query
are the sentinels' own; the other options are redis-py's, as in a ``redis://`` URL.

The client this builds is redis-py's sentinel-managed one: every new connection asks the
sentinels where the primary is, and a connection that meets a primary turned replica
(``READONLY``) is dropped. notifyq's backends make every connection from that client's
settings, so workers, waits, listeners and the gateway all follow a failover by
reconnecting, as they do after any lost connection.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as asentinel
import redis.sentinel

from .errors import ValidationError

SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}
DEFAULT_PORT = 26379
_SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")


def is_sentinel_url(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


def parse(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any], dict[str, Any]]:
    """(sentinel addresses, service name, the servers' connection options, the sentinels')."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        if not (host or item) or (port and not port.isdigit()):
            raise ValidationError(f"bad sentinel address {item!r} in {_safe(url)}")
        sentinels.append((host or item, int(port) if port else DEFAULT_PORT))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValidationError(
            f"a sentinel URL names its service: .../service[/db], not {_safe(url)}"
        )
    query = dict(parse_qsl(parts.query))
    sentinel_kwargs = {
        k.removeprefix("sentinel_"): query.pop(k) for k in _SENTINEL_OPTIONS if k in query
    }
    db = path[1] if len(path) == 2 else "0"
    auth = f"{userinfo}@" if userinfo else ""
    server = f"{SCHEMES[parts.scheme]}://{auth}sentinel-primary/{db}?{urlencode(query)}"
    kwargs: dict[str, Any] = redis.connection.parse_url(server)  # type: ignore[no-untyped-call]
    for name in ("host", "port", "connection_class"):  # where and how: the sentinels' say
        kwargs.pop(name, None)
    if parts.scheme == "rediss+sentinel":
        kwargs["ssl"] = True
    return sentinels, path[0], kwargs, sentinel_kwargs


def client(url: str, **options: Any) -> redis.Redis:
    """A client for the service's primary, through its sentinels (no I/O until used)."""
    sentinels, service, kwargs, sentinel_kwargs = parse(url)
    manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        sentinels, sentinel_kwargs=sentinel_kwargs or None
    )
    made = manager.master_for(service, **{**kwargs, **options})  # type: ignore[no-untyped-call]
    return cast(redis.Redis, made)


def async_client(url: str, **options: Any) -> aioredis.Redis:
    """The same for asyncio."""
    sentinels, service, kwargs, sentinel_kwargs = parse(url)
    manager = asentinel.Sentinel(  # type: ignore[no-untyped-call]
        sentinels, sentinel_kwargs=sentinel_kwargs or None
    )
    return cast(aioredis.Redis, manager.master_for(service, **{**kwargs, **options}))


def _safe(url: str) -> str:
    from .connection import redact

    return redact(url)


def watchers(client: Any) -> list[Any]:
    """The clients of the sentinels behind a client made here (none for other clients):
    closing the primary's client leaves their connections open."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    return list(manager.sentinels) if manager is not None else []
