"""What each notifyq role runs on Redis: the ACL rules it needs, and a check before it starts.

A Redis server with ACL users (Redis 7+, Valkey) runs each command only if the
connection's user may run it on those keys and channels. A Lua script the server stops
midway is not rolled back, so a worker whose user lacks one command could leave a job
half moved. So a worker, a listener and a gateway first ask the server, in one script
call (``scripts/access.lua``, ``redis.acl_check_cmd``), whether their user may run every
command their role needs on their queues, and stop with ``AccessDenied`` naming all that
is refused before they touch anything.

(A role that runs no script, an anonymous listener, may lack EVALSHA; it is not checked.)
A role's commands are those it sends itself (listed here) and those its Lua scripts call
(read from the scripts: ``scripts.Script.commands``). ``rules()`` writes them as the rules
of ``ACL SETUSER``; docs/security.md has them for every role::

    python -c "from notifyq import access; print(access.rules('worker'))"
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import scripts
from .connection import is_refusal
from .errors import AccessDenied, ValidationError
from .keys import PREFIX, QueueKeys, check_queue_name
from .ops import Flow, Pipeline, ScriptCall
from .scripts import Script


@dataclass(frozen=True, slots=True)
class Role:
    """What one kind of notifyq client runs: commands it sends, scripts it calls."""

    sends: frozenset[str]  # lower-case; a subcommand as "client|setname"
    scripts: tuple[Script, ...] = ()

    @property
    def commands(self) -> frozenset[str]:
        calls = frozenset().union(*(s.commands for s in self.scripts))
        return self.sends | calls | ({"evalsha", "eval"} if self.scripts else frozenset())


def _role(sends: str, *called: Script) -> Role:
    return Role(frozenset(sends.split()), called)


#: Every connection may be health-checked with PING when it has been idle (30 s).
_ALWAYS = "ping "
#: The wait hub, listeners and the gateway name their connections (CLIENT LIST).
_NAMED = "client|setname "
_STATS = "llen zcard exists hgetall hget "  # Queue.stats(), and a burst worker's "drained?"

ROLES: dict[str, Role] = {
    # enqueue; status, result, progress, info; Job.wait() (the wait hub); cancel
    "producer": _role(
        _ALWAYS + _NAMED + "get exists hget hmget hgetall subscribe unsubscribe wait",
        scripts.ENQUEUE,
        scripts.CANCEL,
    ),
    # claim (after BLPOP on the wake lists), renew leases, progress, settle, housekeeping;
    # its registry entries: written at each beat, deleted (ZREM, DEL) when it stops
    "worker": _role(
        _ALWAYS + _STATS + "blpop zrem del",
        scripts.CLAIM,
        scripts.RENEW,
        scripts.PROGRESS,
        scripts.SETTLE,
        scripts.MAINTAIN,
        scripts.REGISTER,
    ),
    # an anonymous Listener: reads the event streams, writes nothing
    "listener": _role(_ALWAYS + _NAMED + "xread xrevrange hget"),
    # a named Listener: a consumer group on each event stream
    "named-listener": _role(
        _ALWAYS + _NAMED + "xreadgroup xack xautoclaim xinfo|stream xinfo|groups "
        "xinfo|consumers xgroup|delconsumer",
        scripts.JOIN_GROUP,
    ),
    # the WebSocket and HTTP gateway: pub/sub, job snapshots, stream replays, stats
    "gateway": _role(
        _ALWAYS + _NAMED + _STATS + "subscribe unsubscribe xrange xrevrange", scripts.SNAPSHOT
    ),
    # a gateway that serves /metrics (``metrics=True``): this as well, on ``metrics_queues``
    # (``Queue.stats()``, and the listener groups of the event streams)
    "metrics": _role(_ALWAYS + _STATS + "xinfo|groups"),
    # a gateway that takes jobs over HTTP (``enqueue_queues``): this as well
    "http-enqueue": _role("", scripts.ENQUEUE),
    # any role on a Redis Cluster: this as well (the slot map, sharded pub/sub)
    "cluster": _role("cluster|slots ssubscribe sunsubscribe spublish"),
    # stats, pause and resume, dead letters (list, requeue, purge), events_maxlen, rate
    # limits; the worker registry (Queue.workers(): ZREVRANGE and TIME, then HGETALL);
    # `notifyq check` (INFO and CONFIG GET: without them it reports the settings unknown)
    "operator": _role(
        _ALWAYS + _STATS + "lrange set del lpush ltrim hset hdel zrevrange time info config|get",
        scripts.REQUEUE,
        scripts.PURGE_DEAD,
    ),
}


def commands(*roles: str) -> list[str]:
    """The commands of these roles, sorted; ``ValidationError`` for an unknown role."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValidationError(f"unknown role {unknown[0]!r}: one of {', '.join(ROLES)}")
    return sorted(frozenset().union(*(ROLES[r].commands for r in roles)))


def _subscribes(roles: Iterable[str]) -> bool:
    return any(c in ("subscribe", "publish", "ssubscribe", "spublish") for c in commands(*roles))


def rules(*roles: str, queue: str | None = None) -> str:
    """ACL SETUSER rules for a user that plays these roles: their commands, on every
    notifyq key and channel, or on those of one ``queue`` only.

    >>> rules("listener")
    'resetkeys ~nq:* resetchannels -@all +client|setname +hget +ping +xread +xrevrange'
    """
    base = f"{PREFIX}:*" if queue is None else f"{QueueKeys(check_queue_name(queue)).base}*"
    channels = ["resetchannels", f"&{base}"] if _subscribes(roles) else ["resetchannels"]
    allowed = [f"+{c}" for c in commands(*roles)]
    return " ".join(["resetkeys", f"~{base}", *channels, "-@all", *allowed])


#: Each command as ``scripts/access.lua`` checks it, ``K`` standing for a key or channel of
#: the queue: with every argument the command requires, since ``redis.acl_check_cmd``
#: does not count them and Redis 7.0 reads past the end when one is missing (and crashes).
SAMPLES = {
    "cluster|slots": "", "config|get": "maxmemory-policy", "info": "server",
    "spublish": "K m", "ssubscribe": "K", "sunsubscribe": "K", "wait": "0 0",
    "blpop": "K 0", "client|setname": "n", "del": "K", "eval": "x 1 K", "evalsha": "x 1 K",
    "exists": "K", "expire": "K 1", "get": "K", "hdel": "K f", "hget": "K f", "hgetall": "K",
    "hincrby": "K f 1", "hmget": "K f", "hset": "K f v", "llen": "K", "lpush": "K v",
    "lmove": "K K RIGHT LEFT", "lpop": "K", "lrange": "K 0 1", "lrem": "K 0 v", "ltrim": "K 0 1",
    "persist": "K", "ping": "", "pexpire": "K 1",
    "publish": "K m", "rpop": "K", "rpush": "K v", "set": "K v", "subscribe": "K", "time": "",
    "type": "K",
    "unsubscribe": "K", "xack": "K g 0-1", "xadd": "K * f v", "xautoclaim": "K g c 0 0-0",
    "xgroup|create": "K g $", "xgroup|delconsumer": "K g c", "xgroup|setid": "K g $",
    "xinfo|consumers": "K g", "xinfo|groups": "K", "xinfo|stream": "K", "xrange": "K - +",
    "xread": "STREAMS K 0", "xreadgroup": "GROUP g c STREAMS K >", "xrevrange": "K + -",
    "zadd": "K 1 m", "zcard": "K", "zrange": "K 0 1", "zrangebyscore": "K 0 1", "zrem": "K m",
    "zremrangebyscore": "K 0 1", "zrevrange": "K 0 1",
}  # fmt: skip


def sample(command: str, keys: QueueKeys) -> str:
    """``command`` as ``scripts/access.lua`` checks it, on a key (or channel) of ``keys``."""
    args = SAMPLES[command].replace("K", keys.events)  # inside every pattern of the queue
    return " ".join([*command.split("|"), *args.split()])


def check(roles: Sequence[str], queues: Sequence[QueueKeys], url: str) -> Flow[None]:
    """Raise ``AccessDenied`` naming every command of ``roles`` the connection's user may
    not run on the keys and channels of ``queues``. ``url`` is for the message."""
    names = commands(*roles)
    asked = [(keys, name) for keys in queues for name in names]
    if not asked:
        return
    call = ScriptCall(scripts.ACCESS, [], [sample(n, k) for k, n in asked])
    [refused] = yield Pipeline([call], errors_as_replies=True)
    if isinstance(refused, Exception):
        if is_refusal(refused) and not any(ROLES[r].scripts for r in roles):
            return  # a role that runs no script may lack EVALSHA: each command says no itself
        raise refused
    if refused:
        what = [asked[int(i) - 1] for i in refused]
        missing = ", ".join(f"+{n} on {k.base}*" for k, n in what)
        raise AccessDenied(url, f"what a {' and '.join(roles)} needs: {missing}")
