"""Parsing and validation of reading messages: every refused part has a reason."""

from datetime import UTC, datetime, timedelta

import pytest

from ingest.payloads import Limits, parse_gateway_message, parse_sensor_message, parse_time
from ioc_core.topics import route

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LIMITS = Limits(ranges={"aq-1": {"pm25": (0, 1000)}})


def codes(parsed) -> list[str]:
    return [r.code for r in parsed.rejections]


def test_single_reading_with_rfc3339_time() -> None:
    parsed = parse_sensor_message("aq-1", b'{"ts": "2026-11-24T11:59:00+07:00", "values": {"pm25": 35.2}}', NOW, LIMITS)
    assert codes(parsed) == []
    [r] = parsed.readings
    assert (r.sensor_id, r.metric, r.value) == ("aq-1", "pm25", 35.2)
    assert r.time == datetime(2026, 11, 24, 4, 59, tzinfo=UTC)


def test_epoch_milliseconds_and_absent_time() -> None:
    ms = int((NOW - timedelta(seconds=10)).timestamp() * 1000)
    parsed = parse_sensor_message(
        "aq-1", f'[{{"ts": {ms}, "values": {{"pm10": 5}}}}, {{"values": {{"pm10": 6}}}}]'.encode(), NOW, LIMITS
    )
    assert [r.time for r in parsed.readings] == [NOW - timedelta(seconds=10), NOW]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"{not json", "malformed_json"),
        (b'{"values": {"pm25": NaN}}', "malformed_json"),
        (b'{"values": {"pm25": "high"}}', "wrong_type"),
        (b'{"values": {"pm25": true}}', "wrong_type"),
        (b'{"values": {"pm25": 1e999}}', "malformed_json"),
        (b'{"values": {"pm25": 5000}}', "out_of_range"),
        (b'{"values": {"PM 2.5": 5}}', "bad_metric_name"),
        (b'{"values": {}}', "missing_values"),
        (b'"just text"', "wrong_type"),
        (b'{"ts": "yesterday", "values": {"pm25": 1}}', "bad_timestamp"),
        (b'{"ts": "2026-11-24T12:00:00", "values": {"pm25": 1}}', "bad_timestamp"),
        (b'{"ts": "2026-11-24T12:06:00Z", "values": {"pm25": 1}}', "future_timestamp"),
        (b'{"ts": "2020-01-01T00:00:00Z", "values": {"pm25": 1}}', "too_old"),
    ],
)
def test_bad_input_is_refused_with_its_reason(payload: bytes, code: str) -> None:
    parsed = parse_sensor_message("aq-1", payload, NOW, LIMITS)
    assert parsed.readings == []
    assert codes(parsed) == [code]
    assert str(parsed.rejections[0]).startswith(code + ": ")


def test_valid_readings_of_a_partly_bad_gateway_batch_are_kept() -> None:
    payload = (
        b'[{"sensor_id": "aq-1", "values": {"pm25": 10, "pm10": "x"}},'
        b' {"sensor_id": "bad id!", "values": {"pm25": 1}},'
        b' {"sensor_id": "wl-2", "values": {"water_level": 1.25}}, 42]'
    )
    parsed = parse_gateway_message(payload, NOW, LIMITS)
    assert [(r.sensor_id, r.metric) for r in parsed.readings] == [("aq-1", "pm25"), ("wl-2", "water_level")]
    assert codes(parsed) == ["wrong_type", "bad_sensor_id", "wrong_type"]


def test_timestamp_forms() -> None:
    assert parse_time("2026-11-24T12:00:00Z", NOW) == NOW
    assert parse_time(None, NOW) == NOW
    with pytest.raises(ValueError, match="epoch"):
        parse_time([1], NOW)


def test_routes() -> None:
    assert route("ioc/v1/sensors/aq-1/readings").kind == "readings"
    assert route("ioc/v1/gateways/gw-7/readings").kind == "gateway"
    assert route("ioc/v1/cameras/cam-3/counts").device_id == "cam-3"
    assert route("ioc/v1/sensors/aq-1/other") is None
    assert route("elsewhere/aq-1/readings") is None
