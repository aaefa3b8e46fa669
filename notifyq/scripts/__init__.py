"""The Lua scripts that make every state transition, loaded once at import.

Each script is ``_prelude.lua`` (shared helpers) followed by its own file. Scripts are
called with EVALSHA; the SHA1 is computed here, so no round trip is needed to learn it,
and a server that does not know a script (restarted, flushed) gets it by EVAL.

Each script also has a *sharded* flavour, for Redis Cluster: the same source with
``SPUBLISH`` for ``PUBLISH``, so that a queue's messages are published on the shard that
holds its keys and reach only the subscribers of that shard (docs/scaling.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str
    sharded: Script | None = None  # the flavour for Redis Cluster


_CLASSIC = "local PUBLISH = 'PUBLISH'"


def _script(name: str, source: str, sharded: Script | None = None) -> Script:
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest(), sharded)  # noqa: S324


def _load(name: str) -> Script:
    folder = resources.files(__name__)
    prelude = folder.joinpath("_prelude.lua").read_text(encoding="utf-8")
    body = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    source = f"{prelude}\n{body}"
    if source.count(_CLASSIC) != 1:
        raise RuntimeError(f"{name}.lua: the prelude must name the publish command once")
    sharded = _script(name, source.replace(_CLASSIC, "local PUBLISH = 'SPUBLISH'"))
    return _script(name, source, sharded)


ENQUEUE = _load("enqueue")
CLAIM = _load("claim")
MAINTAIN = _load("maintain")
RENEW = _load("renew")
SETTLE = _load("settle")
PROGRESS = _load("progress")
CANCEL = _load("cancel")
REQUEUE = _load("requeue")
PURGE_DEAD = _load("purge_dead")
JOIN_GROUP = _load("join_group")
SNAPSHOT = _load("snapshot")

ALL = (ENQUEUE, CLAIM, MAINTAIN, RENEW, SETTLE, PROGRESS, CANCEL, REQUEUE, PURGE_DEAD, JOIN_GROUP,
       SNAPSHOT)  # fmt: skip
