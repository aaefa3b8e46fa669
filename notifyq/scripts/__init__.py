"""The Lua scripts that make every state transition, loaded once at import.

Each script is ``_prelude.lua`` (shared helpers, less the functions the script does not
use) followed by its own file. Scripts are
called with EVALSHA; the SHA1 is computed here, so no round trip is needed to learn it,
and a server that does not know a script (restarted, flushed) gets it by EVAL.

Each script also has a *sharded* flavour, for Redis Cluster: the same source with
``SPUBLISH`` for ``PUBLISH``, so that a queue's messages are published on the shard that
holds its keys and reach only the subscribers of that shard (docs/scaling.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str
    #: Every command the script can call, lower-case, a subcommand as ``xgroup|create``
    #: (its own calls and those of the prelude functions it uses): its ACL needs.
    commands: frozenset[str] = frozenset()
    sharded: Script | None = None  # the flavour for Redis Cluster (SPUBLISH)


_CLASSIC = "local PUBLISH = 'PUBLISH'"


#: ``redis.call('HSET', ...)``, ``redis.pcall(...)``, ``pcall(redis.call, 'XGROUP', 'CREATE', ...)``
_CALL = re.compile(r"(?:redis\.p?call\(|pcall\(redis\.call,)\s*'(\w+)'(?:\s*,\s*'([A-Z]+)')?")
#: Commands whose first argument is a subcommand with ACL rules of its own.
_CONTAINERS = {"xgroup", "xinfo", "client", "object", "config", "script"}
_COMMENT = re.compile(r"(?:^|(?<=\s))--.*$", re.MULTILINE)
_FUNCTION = re.compile(r"^local function (\w+)\(.*?^end$", re.MULTILINE | re.DOTALL)


def calls(code: str) -> set[str]:
    """The commands ``redis.call`` and ``redis.pcall`` run in a piece of Lua."""
    found = {"publish"} if "redis.call(PUBLISH," in code else set()  # the prelude's constant
    for name, sub in _CALL.findall(code):
        name = name.lower()
        found.add(f"{name}|{sub.lower()}" if sub and name in _CONTAINERS else name)
    return found


def _used(functions: dict[str, str], body: str) -> set[str]:
    """The prelude functions ``body`` names, and those they name, and so on."""
    used: set[str] = set()
    todo = [body]
    while todo:
        code = _COMMENT.sub("", todo.pop())
        for name, function in functions.items():
            if name not in used and re.search(rf"\b{name}\(", code):
                used.add(name)
                todo.append(function)
    return used


def _load(name: str) -> Script:
    """The script ``name``: the prelude, less the functions the script never uses (each one
    defined is work at every call: a closure made, its upvalues bound), then its body."""
    folder = resources.files(__name__)
    prelude = folder.joinpath("_prelude.lua").read_text(encoding="utf-8")
    body = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    functions = {m.group(1): m.group(0) for m in _FUNCTION.finditer(prelude)}
    used = _used(functions, body)
    kept = _FUNCTION.sub(lambda m: m.group(0) if m.group(1) in used else "", prelude)
    source = re.sub(r"\n{3,}", "\n\n", kept) + "\n" + body
    if source.count(_CLASSIC) != 1:
        raise RuntimeError(f"{name}.lua: the prelude must name the publish command once")
    commands = frozenset(calls(body).union(*(calls(functions[n]) for n in used)))
    sharded = _script(
        name,
        source.replace(_CLASSIC, "local PUBLISH = 'SPUBLISH'"),
        frozenset("spublish" if c == "publish" else c for c in commands),
    )
    return _script(name, source, commands, sharded)


def _script(
    name: str, source: str, commands: frozenset[str], sharded: Script | None = None
) -> Script:
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest(), commands, sharded)  # noqa: S324


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
ACCESS = _load("access")
REGISTER = _load("register")

ALL = (ENQUEUE, CLAIM, MAINTAIN, RENEW, SETTLE, PROGRESS, CANCEL, REQUEUE, PURGE_DEAD, JOIN_GROUP,
       SNAPSHOT, ACCESS, REGISTER)  # fmt: skip
