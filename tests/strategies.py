"""Hypothesis strategies shared by the fuzz tests: what a client may send the gateway."""

from __future__ import annotations

from hypothesis import strategies as st

from notifyq import protocol
from notifyq.keys import JOB_ID, QUEUE_NAME

#: Any JSON value, NaN and infinities included (Python's json writes them).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.from_regex(QUEUE_NAME, fullmatch=True) | st.text(max_size=70)
field_values = json_values | names | st.from_regex(protocol.EVENT_ID, fullmatch=True)
#: Objects shaped like a request: a known op or anything, each field valid or anything.
requests = st.fixed_dictionaries(
    {"op": st.sampled_from(["subscribe", "unsubscribe", "ping"]) | json_values},
    optional={
        "token": st.text(max_size=40) | json_values,
        "queue": field_values,
        "job": st.from_regex(JOB_ID, fullmatch=True) | field_values,
        "since": field_values,
        "extra": json_values,
    },
)
