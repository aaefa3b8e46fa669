"""The state table, and that the Lua scripts only use states it names."""

import re
from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifyq import states

EVENTS = sorted({event for _, event in states.TRANSITIONS})


def test_every_transition_leads_to_a_known_state() -> None:
    for (before, _), after in states.TRANSITIONS.items():
        assert before is None or before in states.STATES
        assert after in states.STATES


def test_terminal_states_have_no_way_out_except_requeue_of_dead() -> None:
    for (before, event), _ in states.TRANSITIONS.items():
        if before in states.TERMINAL:
            assert (before, event) == (states.DEAD, "requeue")


def test_every_state_is_reachable_from_enqueue() -> None:
    seen, frontier = set(), {None}
    while frontier:
        state = frontier.pop()
        for (before, _), after in states.TRANSITIONS.items():
            if before == state and after not in seen:
                seen.add(after)
                frontier.add(after)
    assert seen == set(states.STATES)


@given(st.sampled_from([None, *states.STATES]), st.sampled_from(EVENTS))
def test_next_state_agrees_with_the_table(state: str | None, event: str) -> None:
    if (state, event) in states.TRANSITIONS:
        assert states.next_state(state, event) == states.TRANSITIONS[(state, event)]
    else:
        with pytest.raises(ValueError, match="no transition"):
            states.next_state(state, event)


def test_scripts_write_only_states_from_the_table() -> None:
    folder = resources.files("notifyq.scripts")
    written = set()
    for entry in folder.iterdir():
        if entry.name.endswith(".lua"):
            source = entry.read_text()
            for call in re.findall(r"redis\.call\('HSET'[^)]*\)", source):
                written |= set(re.findall(r"'state', '([a-z]+)'", call))
            written |= set(re.findall(r"state = '([a-z]+)'", source))
            written |= set(re.findall(r"finish\(base, queue, id, '([a-z]+)'", source))
    assert written, "no state writes found: the pattern is stale"
    assert written <= set(states.STATES), written - set(states.STATES)
