"""sumtree.vy (through the test harness): the 4-ary packed tree walks as contracts.spec's locate."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.spec import challenge


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(
    slots=st.lists(st.integers(0, 2**40), min_size=1, max_size=90),
    data=st.data(),
)
def test_find_after_appends_and_clears(ledger, slots, data):
    cleared = data.draw(st.lists(st.integers(0, len(slots) - 1), unique=True, max_size=len(slots)))
    live = [0 if i in cleared else n for i, n in enumerate(slots)]
    total = sum(live)
    if total == 0:
        return
    for index in {0, total - 1, data.draw(st.integers(0, total - 1))}:
        got = ledger.harness.locate.call(slots, cleared, index)
        assert tuple(got) == challenge.locate(index, live)
