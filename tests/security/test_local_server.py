"""Another user of the same machine cannot reach the embedded server.

With no URL, notifyq runs its own Valkey (``notifyq.embedded``): no TCP port, a unix
socket only its user may open, in a home folder only its user may enter (where the
server also keeps its data). Any process of that same user can use it: see the threat
model in docs/security.md.
"""

from __future__ import annotations

import pathlib
import stat

import redis

from notifyq.embedded import ensure_server
from tests.test_embedded import home  # noqa: F401  (the fixture: a fresh home, stopped after)


def test_the_embedded_server_is_reachable_by_its_user_only(home: pathlib.Path) -> None:  # noqa: F811
    url = ensure_server(home)
    assert url.startswith("unix://")
    client = redis.Redis.from_url(url)
    try:
        assert client.config_get("port") == {"port": "0"}  # no TCP listener at all
        assert client.config_get("unixsocketperm") == {"unixsocketperm": "700"}
    finally:
        client.close()
    socket_mode = (home / "valkey.sock").stat().st_mode
    assert stat.S_ISSOCK(socket_mode)
    assert stat.S_IMODE(socket_mode) & 0o077 == 0
    assert stat.S_IMODE(home.stat().st_mode) & 0o077 == 0
