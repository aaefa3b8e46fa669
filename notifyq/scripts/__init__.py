"""The Lua scripts that make every state transition, loaded once at import.

Each script is ``_prelude.lua`` (shared helpers) followed by its own file. Scripts are
called with EVALSHA; the SHA1 is computed here, so no round trip is needed to learn it,
and a server that does not know a script (restarted, flushed) gets it by EVAL.
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


def _load(name: str) -> Script:
    folder = resources.files(__name__)
    prelude = folder.joinpath("_prelude.lua").read_text(encoding="utf-8")
    body = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    source = f"{prelude}\n{body}"
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())  # noqa: S324


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
