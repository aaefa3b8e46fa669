"""``redis+sentinel://`` URLs (notifyq.sentinel.parse), without I/O."""

from __future__ import annotations

import pytest

from notifyq import sentinel
from notifyq.errors import ValidationError


def test_hosts_service_db_and_both_kinds_of_credentials() -> None:
    url = (
        "redis+sentinel://app:secret@10.0.0.1:26380,10.0.0.2/orders-primary/2"
        "?sentinel_password=watch&socket_timeout=3"
    )
    hosts, service, server, watchers = sentinel.parse(url)
    assert hosts == [("10.0.0.1", 26380), ("10.0.0.2", 26379)]
    assert service == "orders-primary"
    assert (server["username"], server["password"], server["db"]) == ("app", "secret", 2)
    assert server["socket_timeout"] == 3.0
    assert "host" not in server and "port" not in server  # the sentinels say where
    assert watchers == {"password": "watch"}


def test_tls_to_the_servers() -> None:
    _, _, server, _ = sentinel.parse("rediss+sentinel://h/svc?ssl_cert_reqs=none")
    assert server["ssl"] is True and server["ssl_cert_reqs"] == "none"
    assert "connection_class" not in server


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h:26379",  # no service
        "redis+sentinel://h:26379/svc/db",  # a db that is not a number
        "redis+sentinel://h:26379/svc/0/more",
        "redis+sentinel://h:port/svc",
    ],
)
def test_malformed_urls_are_refused_with_the_password_hidden(url: str) -> None:
    with pytest.raises(ValidationError, match="sentinel") as err:
        sentinel.parse(url.replace("//", "//u:hunter2@"))
    assert "hunter2" not in str(err.value)
