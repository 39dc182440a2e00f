"""Property-based fuzzing of ingest's parser and validation: whatever arrives, parsing returns
readings that are valid and rejections that carry a reason, and never raises."""

import math
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.payloads import (
    DEVICE_ID,
    METRIC_NAME,
    CameraEvent,
    Limits,
    Parsed,
    Rejection,
    StatusChange,
    parse_camera_event,
    parse_gateway_message,
    parse_sensor_message,
    parse_status_message,
)
from ioc_core.topics import route
from tests.support import publish_all, publisher, wait_until

RECEIVED = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
LIMITS = Limits(ranges={"s-1": {"pm25": (0.0, 1000.0)}})
CODES = {
    "malformed_json",
    "wrong_type",
    "bad_sensor_id",
    "bad_timestamp",
    "future_timestamp",
    "too_old",
    "missing_values",
    "bad_metric_name",
    "not_finite",
    "out_of_range",
    "bad_status",
    "bad_event",
}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=25,
)
timestamps = (
    st.none()
    | st.integers(min_value=-(2**62), max_value=2**62)
    | st.floats()
    | st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
    | st.text(max_size=40)
)
# Objects shaped like readings, with every field free to be wrong.
reading_like = st.fixed_dictionaries(
    {},
    optional={
        "ts": timestamps,
        "values": st.dictionaries(st.text(max_size=70), json_scalars, max_size=6) | json_values,
        "sensor_id": st.text(max_size=140) | json_scalars,
    },
)
payloads = (
    st.binary(max_size=300)
    | json_values.map(orjson.dumps)
    | reading_like.map(orjson.dumps)
    | st.lists(reading_like, max_size=8).map(orjson.dumps)
    # NaN and Infinity are not JSON, but devices send them
    | st.sampled_from(
        [b'{"values": {"pm25": NaN}}', b'{"values": {"pm25": Infinity}}', b'[{"values": {"x": -Infinity}}]']
    )
)


def check(parsed: Parsed, sensor_id: str | None = None) -> None:
    """Every part of a message is either a valid reading or a rejection with a reason."""
    assert isinstance(parsed, Parsed)
    for rejection in parsed.rejections:
        assert rejection.code in CODES and rejection.detail, rejection
    for reading in parsed.readings:
        assert DEVICE_ID.fullmatch(reading.sensor_id) and METRIC_NAME.fullmatch(reading.metric)
        assert sensor_id is None or reading.sensor_id == sensor_id
        assert isinstance(reading.value, float) and math.isfinite(reading.value)
        assert RECEIVED - LIMITS.max_age <= reading.time <= RECEIVED + LIMITS.max_future
        lo, hi = LIMITS.ranges.get(reading.sensor_id, {}).get(reading.metric, (None, None))
        assert (lo is None or reading.value >= lo) and (hi is None or reading.value <= hi)


@FUZZ
@given(payloads)
def test_a_sensor_message_never_raises_and_accounts_for_every_part(payload: bytes) -> None:
    check(parse_sensor_message("s-1", payload, RECEIVED, LIMITS), "s-1")


@FUZZ
@given(payloads)
def test_a_gateway_message_never_raises_and_accounts_for_every_part(payload: bytes) -> None:
    check(parse_gateway_message(payload, RECEIVED, LIMITS))


@FUZZ
@given(
    payloads
    | st.fixed_dictionaries(
        {},
        optional={
            "event": json_scalars,
            "severity": json_scalars,
            "title": json_scalars,
            "data": json_values,
            "ts": timestamps,
        },
    ).map(orjson.dumps)
)
def test_a_camera_event_is_an_event_or_a_rejection_with_a_reason(payload: bytes) -> None:
    result = parse_camera_event("cam-1", payload, RECEIVED, LIMITS)
    if isinstance(result, Rejection):
        assert result.code in CODES and result.detail
    else:
        assert isinstance(result, CameraEvent) and METRIC_NAME.fullmatch(result.event) and len(result.title) <= 200
        assert result.time <= RECEIVED + LIMITS.max_future


@FUZZ
@given(payloads | st.sampled_from([b"online", b" offline\n", b'{"status": "online", "fps": 5}']))
def test_a_status_message_is_a_change_or_a_rejection_with_a_reason(payload: bytes) -> None:
    result = parse_status_message("dev-1", payload, RECEIVED)
    if isinstance(result, Rejection):
        assert result.code == "bad_status" and result.detail
    else:
        assert isinstance(result, StatusChange) and result.status in ("online", "offline")


@FUZZ
@given(st.text(max_size=200) | st.lists(st.text(max_size=30), max_size=6).map("/".join))
def test_any_topic_is_routed_or_refused_without_raising(topic: str) -> None:
    where = route(topic) or route("ioc/v1/" + topic)
    assert where is None or DEVICE_ID.fullmatch(where.device_id)


@FUZZ
@given(
    st.dictionaries(
        st.from_regex(METRIC_NAME, fullmatch=True),
        st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
        min_size=1,
        max_size=8,
    ),
    st.integers(min_value=-int(LIMITS.max_age.total_seconds()) + 1, max_value=int(LIMITS.max_future.total_seconds())),
)
def test_a_valid_reading_is_kept_exactly(values: dict[str, float], offset_s: int) -> None:
    ts = RECEIVED + timedelta(seconds=offset_s)
    parsed = parse_sensor_message("s-2", orjson.dumps({"ts": ts.isoformat(), "values": values}), RECEIVED, LIMITS)
    assert parsed.rejections == []
    assert {(r.metric, r.value, r.time) for r in parsed.readings} == {(m, float(v), ts) for m, v in values.items()}


# Strings PostgreSQL refuses in text and jsonb (NUL), and (escaped in the bytes) an unpaired surrogate.
hostile_text = st.sampled_from(["\x00", "a\x00b", "\\u0000", "💧" * 50, "' OR 1=1 --"])
hostile = st.fixed_dictionaries(
    {"event": st.just("crowding")},
    optional={"title": hostile_text, "data": st.dictionaries(hostile_text, hostile_text, max_size=2)},
).map(orjson.dumps) | st.just(b'{"event": "crowding", "title": "\\u0000", "data": {"k\\u0000": "\\ud800"}}')


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    messages=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "sensors/fz-1/readings",
                    "gateways/fz-gw/readings",
                    "cameras/fz-cam/events",
                    "cameras/fz-cam/counts",
                    "devices/fz-1/status",
                    "sensors/fz-1/other",
                ]
            ),
            payloads | hostile,
        ),
        min_size=150,
        max_size=150,
    )
)
def test_the_running_service_takes_any_batch_and_keeps_going(broker, ingest, database_url, messages) -> None:
    """Through the real broker into the real ingest and database: whatever the batch holds, the
    worker stays up, each refusal is a dead letter with a reason, and a good reading sent after
    the batch is stored."""
    sentinel = f"fz-ok-{uuid.uuid4().hex[:8]}"
    client = publisher(broker.port)
    publish_all(client, [(f"ioc/v1/{topic}", payload) for topic, payload in messages])
    publish_all(client, [(f"ioc/v1/sensors/{sentinel}/readings", b'{"values": {"pm25": 1}}')])
    client.disconnect()
    with psycopg.connect(database_url, autocommit=True) as conn:
        wait_until(
            lambda: conn.execute("SELECT 1 FROM readings WHERE sensor_id = %s", (sentinel,)).fetchone(),
            timeout=30,
            what="the reading sent after the fuzzed batch",
        )
        assert conn.execute("SELECT count(*) FROM dead_letters WHERE reason = '' OR reason IS NULL").fetchone()[0] == 0
    assert ingest.process.poll() is None
