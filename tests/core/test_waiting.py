"""The wait bookkeeping that lets many waits share one pub/sub connection."""

from hypothesis import given
from hypothesis import strategies as st

from notifyq.waiting import Subscriptions


def test_first_wait_subscribes_and_is_checked_on_confirmation() -> None:
    s: Subscriptions[str] = Subscriptions()
    assert s.add("c", "w1") is False
    assert s.plan() == (["c"], [])
    assert s.add("c", "w2") is False  # confirmation still due
    assert s.plan() == ([], [])
    assert s.confirmed("c") == ["w1", "w2"]
    assert s.add("c", "w3") is True  # live: the caller checks at once


def test_last_wait_leaving_unsubscribes() -> None:
    s: Subscriptions[str] = Subscriptions()
    s.add("c", "w")
    s.plan()
    s.confirmed("c")
    s.remove("c", "w")
    assert s.plan() == ([], ["c"])
    assert list(s.channels) == []


def test_resubscribe_before_old_confirmation_waits_for_the_new_one() -> None:
    s: Subscriptions[str] = Subscriptions()
    s.add("c", "a")
    s.plan()  # SUBSCRIBE #1
    s.remove("c", "a")
    s.plan()  # UNSUBSCRIBE
    s.add("c", "b")
    assert s.plan() == (["c"], [])  # SUBSCRIBE #2
    assert s.confirmed("c") == []  # ack of #1: the channel is not live for b yet
    assert s.add("c", "b2") is False
    assert s.confirmed("c") == ["b", "b2"]  # ack of #2


def test_reset_resubscribes_everything_and_rechecks() -> None:
    s: Subscriptions[str] = Subscriptions()
    for ch in "abc":
        s.add(ch, ch)
    s.plan()
    for ch in "abc":
        s.confirmed(ch)
    s.reset()
    subscribe, unsubscribe = s.plan()
    assert sorted(subscribe) == ["a", "b", "c"] and unsubscribe == []
    assert s.confirmed("b") == ["b"]


def test_a_refused_subscribe_fails_its_waits_and_is_asked_again_while_wanted() -> None:
    """The server answers a SUBSCRIBE its ACL rules refuse with one error, in the place of
    that command's confirmations: the oldest unconfirmed SUBSCRIBE is the one refused."""
    s: Subscriptions[str] = Subscriptions()
    s.add("a", "w1")
    s.plan()  # SUBSCRIBE a
    s.add("b", "w2")
    s.add("c", "w3")
    assert sorted(s.plan()[0]) == ["b", "c"]  # SUBSCRIBE b c
    assert s.confirmed("a") == ["w1"]
    channels, waits = s.refused()  # the error is for the second command
    assert (sorted(channels), sorted(waits)) == (["b", "c"], ["w2", "w3"])
    assert s.add("b", "w4") is False  # b is not live
    s.remove("c", "w3")
    assert s.plan() == (["b"], [])  # still wanted: asked again; c was never subscribed
    assert s.refused() == (["b"], ["w2", "w4"])
    assert s.refused() == ([], [])
    s.remove("b", "w2")
    s.remove("b", "w4")
    assert s.plan() == ([], [])
    s.add("d", "w5")
    s.plan()
    assert s.confirmed("d") == ["w5"]  # later confirmations are not thrown off


@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "plan", "ack"]),
                          st.sampled_from("xyz"), st.integers(0, 3)), max_size=60))  # fmt: skip
def test_server_side_subscriptions_match_wanted_channels(steps: list) -> None:
    """Replay random steps against a model server: after a final plan and all acks, the
    server is subscribed to exactly the channels that have waits, and a wait is only
    reported live once its channel's latest SUBSCRIBE is confirmed."""
    s: Subscriptions[int] = Subscriptions()
    server: set[str] = set()
    acks: list[str] = []
    waits: dict[str, set[int]] = {}

    def send() -> None:
        sub, unsub = s.plan()
        for ch in sub:
            server.add(ch)
            acks.append(ch)
        for ch in unsub:
            server.discard(ch)

    for op, ch, w in steps:
        if op == "add":
            if w not in waits.setdefault(ch, set()):
                waits[ch].add(w)
                live = s.add(ch, w)
                assert not live or ch in server
        elif op == "remove" and w in waits.get(ch, set()):
            waits[ch].discard(w)
            s.remove(ch, w)
        elif op == "plan":
            send()
        elif op == "ack" and ch in acks:
            acks.remove(ch)
            s.confirmed(ch)
    send()
    for ch in list(acks):
        s.confirmed(ch)
    assert server == {ch for ch, ws in waits.items() if ws}
