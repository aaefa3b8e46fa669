"""Routing operations to the master of their queue's slot (notifyq.cluster), without I/O."""

from __future__ import annotations

import pytest
from redis.crc import key_slot
from redis.exceptions import MovedError, ResponseError

from notifyq import ops, scripts
from notifyq.cluster import (
    Topology,
    group_by_node,
    keys_of,
    message_kind,
    node_url,
    redirected,
    sharded,
    slot_of,
    subscribe_commands,
)
from notifyq.errors import ValidationError
from notifyq.keys import QueueKeys

A, B = QueueKeys("a"), QueueKeys("b")


@pytest.mark.parametrize(
    ("command", "keys"),
    [
        (ops.Command("HGET", A.job("1"), "state"), [A.job("1")]),
        (ops.Command("BLPOP", A.wake, B.wake, 0.5), [A.wake, B.wake]),
        (ops.Command("EXISTS", A.job("1"), A.job("2")), [A.job("1"), A.job("2")]),
        (ops.Command("XINFO", "GROUPS", A.events), [A.events]),
        (ops.Command("XGROUP", "DELCONSUMER", A.events, "g", "c"), [A.events]),
        (
            ops.Command("XREADGROUP", "GROUP", "g", "c", "COUNT", 10, "STREAMS", A.events, ">"),
            [A.events],
        ),
        (
            ops.Command("XREAD", "COUNT", 5, "STREAMS", A.events, B.events, "0", "0"),
            [A.events, B.events],
        ),
        (ops.Command("PING"), []),
        (ops.Command("CLUSTER", "SLOTS"), []),
    ],
)
def test_keys_of_each_command_shape(command: ops.Command, keys: list[str]) -> None:
    assert keys_of(command) == keys


def test_one_queue_is_one_slot_and_two_queues_are_refused_in_one_command() -> None:
    assert slot_of(ops.Command("LLEN", A.wake)) == key_slot(b"a")
    call = ops.ScriptCall(scripts.CLAIM, [A.base], ["w", 1, 1000, "a"])
    assert slot_of(call) == key_slot(b"a")
    with pytest.raises(ValidationError, match="several queues"):
        slot_of(ops.Command("BLPOP", A.wake, B.wake, 1))


def test_a_pipeline_is_split_per_master_in_order() -> None:
    slot_a, slot_b = key_slot(b"a"), key_slot(b"b")
    assert slot_a // 8192 != slot_b // 8192  # the two halves below
    topology = Topology([[0, 8191, [b"10.0.0.1", 7000, b"x"]], [8192, 16383, [b"10.0.0.2", 7001]]])
    calls = [
        ops.Command("LLEN", A.wake),
        ops.Command("LLEN", B.wake),
        ops.Command("GET", A.job("1")),
    ]
    groups = group_by_node(calls, topology)
    first, second = ("10.0.0.1:7000", "10.0.0.2:7001")[:: 1 if slot_a < 8192 else -1]
    assert groups == {first: [0, 2], second: [1]}
    assert topology.shard(slot_a) in (0, 8192)


def test_scripts_run_in_their_sharded_flavour() -> None:
    call = sharded(ops.ScriptCall(scripts.SETTLE, [A.base], ["a"]))
    assert isinstance(call, ops.ScriptCall)
    assert "'SPUBLISH'" in call.script.source and "'SPUBLISH'" not in scripts.SETTLE.source
    assert call.script.sha != scripts.SETTLE.sha
    plain = ops.Command("GET", A.job("1"))
    assert sharded(plain) is plain


def test_sharded_subscriptions_go_one_slot_per_command() -> None:
    channels = [A.done_channel("1"), B.done_channel("2"), A.done_channel("3")]
    assert subscribe_commands("SUBSCRIBE", channels, sharded=False) == [("SUBSCRIBE", *channels)]
    assert sorted(subscribe_commands("SUBSCRIBE", channels, sharded=True)) == sorted(
        [("SSUBSCRIBE", channels[0], channels[2]), ("SSUBSCRIBE", channels[1])]
    )
    assert subscribe_commands("UNSUBSCRIBE", [], sharded=True) == []
    assert [message_kind(k) for k in ("smessage", "ssubscribe", "message")] == [
        "message",
        "subscribe",
        "message",
    ]


def test_node_urls_keep_credentials_and_tls_settings() -> None:
    url = "rediss+cluster://user:secret@10.0.0.1:7000?ssl_ca_certs=/ca.pem"
    assert (
        node_url(url, "10.0.0.3:7002")
        == "rediss://user:secret@10.0.0.3:7002/0?ssl_ca_certs=/ca.pem"
    )
    assert node_url("redis+cluster://h:1", "h:2") == "redis://h:2/0"


def test_which_errors_mean_ask_the_cluster_again() -> None:
    assert redirected(MovedError("3999 127.0.0.1:6381"))
    assert redirected(ResponseError("CLUSTERDOWN The cluster is down"))
    assert not redirected(ResponseError("WRONGTYPE Operation against a key"))
