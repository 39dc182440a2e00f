"""A rate's ``Window`` keeps only what can still be a window's lowest or highest: the change it
gives must be the change over every reading, for any sequence, either direction, and any rule's
window up to the one kept; also when its older part comes from the database afterwards."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from ioc_core.rules import parse_params
from ioc_core.rules.rate import Window

T0 = datetime(2026, 12, 6, tzinfo=UTC)
KEPT_S = 900  # the longest window on the metric

readings = st.lists(
    st.tuples(st.integers(1, 120), st.integers(0, 12)),  # seconds since the one before, value in tenths
    min_size=1,
    max_size=200,
).map(
    lambda steps: [
        (T0 + timedelta(seconds=sum(s for s, _ in steps[: i + 1])), v / 10) for i, (_, v) in enumerate(steps)
    ]
)
rules = st.builds(
    lambda direction, window_s: parse_params("rate", {"direction": direction, "delta": 0.2, "window_s": window_s}),
    st.sampled_from(["up", "down"]),
    st.integers(1, KEPT_S),
)


@given(readings, rules)
def test_the_change_within_the_window_is_the_change_over_every_reading(series, rule) -> None:
    window = Window()
    for i, (t, v) in enumerate(series):
        window.add(t, v)
        window.drop_before(t - timedelta(seconds=KEPT_S))
        r = SimpleNamespace(time=t, value=v)
        assert rule.change_within(r, window) == rule.change_over(r, series[: i + 1])
    assert len(window) <= len(series)


@given(readings, rules, st.integers(0, 200))
def test_a_window_completed_from_stored_readings_gives_the_same_change(series, rule, split) -> None:
    """The newest readings arrive first (a worker's first batch after a start); the older ones are
    read back from the database, newest first, and put in front."""
    stored, arrived = series[: split % len(series)], series[split % len(series) :]
    window = Window()
    for t, v in arrived:
        window.add(t, v)
    last = arrived[-1][0]
    window.drop_before(last - timedelta(seconds=KEPT_S))
    first = window.oldest()
    for t, v in reversed([(t, v) for t, v in stored if first - timedelta(seconds=KEPT_S) <= t < first]):
        window.add_older(t, v)
    r = SimpleNamespace(time=last, value=arrived[-1][1])
    assert rule.change_within(r, window) == rule.change_over(r, series)
