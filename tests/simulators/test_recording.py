"""Record MQTT traffic and replay it at speed; export stored readings; the command line's help."""

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
from typer.testing import CliRunner

from simulators.cli import app
from simulators.recording import export_readings, record_mqtt, replay_file, shift_timestamps
from tests.support import Broker, Collector, publish_all, publisher, wait_until


def test_traffic_recorded_then_replayed_at_10x_keeps_its_rhythm_and_can_end_now(
    own_broker: Broker, tmp_path: Path
) -> None:
    broker = own_broker  # no ingest stores what it sends
    out = tmp_path / "rec.jsonl"
    stop, subscribed = threading.Event(), threading.Event()
    recorder = threading.Thread(
        target=record_mqtt, args=(broker.url_for("simulator"), "ioc/v1/sensors/#", out, 30, stop, subscribed)
    )
    recorder.start()
    assert subscribed.wait(30)
    client = publisher(broker.port)
    base = int(time.time() * 1000)
    for i in range(5):  # five messages, 0.4 s apart
        publish_all(
            client, [(f"ioc/v1/sensors/s-{i}/readings", orjson.dumps({"ts": base + i * 400, "values": {"x": i}}))]
        )
        time.sleep(0.4)
    time.sleep(0.3)
    stop.set()
    recorder.join()
    client.disconnect()
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["topic"] for line in lines] == [f"ioc/v1/sensors/s-{i}/readings" for i in range(5)]
    assert 1.4 < lines[-1]["at"] - lines[0]["at"] < 2.5

    collector = Collector(broker.port, "ioc/v1/sensors/#")
    started = time.monotonic()
    stats = replay_file(broker.url_for("simulator"), out, 10, True, threading.Event())
    wait_until(lambda: len(collector.messages) == 5, what="the replayed messages")
    assert stats.messages == 5 and time.monotonic() - started < 1.5  # 1.6 s of traffic in a tenth of it
    ts = [orjson.loads(p)["ts"] for _, p in collector.messages]
    assert ts == [t + (ts[0] - base) for t in (base + i * 400 for i in range(5))]  # spacing kept
    assert abs(ts[-1] / 1000 - time.time()) < 1  # shifted so that the recording ends now
    collector.close()


def test_timestamps_shift_in_every_form_and_anything_else_is_left_alone() -> None:
    assert orjson.loads(shift_timestamps(b'{"ts": 1000, "values": {"a": 1}}', 2)) == {"ts": 3000, "values": {"a": 1}}
    shifted = orjson.loads(shift_timestamps(b'[{"ts": "2026-01-01T00:00:00+07:00"}, {"values": {}}]', 60))
    assert shifted == [{"ts": "2026-01-01T00:01:00+07:00"}, {"values": {}}]
    assert shift_timestamps(b"online", 60) == b"online"


def test_a_window_of_stored_readings_exports_as_one_message_per_sensor_and_time_and_replays_as_now(
    database_url: str, broker: Broker, tmp_path: Path
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    with psycopg.connect(database_url, autocommit=True) as db, db.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (time, sensor_id, metric, value) VALUES (%s, %s, %s, %s)",
            [
                (t0, "exp-1", "pm25", 10.0),
                (t0, "exp-1", "pm10", 20.0),
                (t0 + timedelta(minutes=1), "exp-1", "pm25", 11.0),
                (t0 + timedelta(minutes=1), "exp-2", "pm25", 30.0),
                (t0 + timedelta(minutes=9), "exp-1", "pm25", 99.0),  # outside the window
            ],
        )
    out = tmp_path / "export.jsonl"
    assert export_readings(database_url, out, t0, t0 + timedelta(minutes=5), "exp-%") == 3
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert lines[0]["topic"] == "ioc/v1/sensors/exp-1/readings"
    assert orjson.loads(lines[0]["payload"])["values"] == {"pm25": 10.0, "pm10": 20.0}
    assert [line["at"] - lines[0]["at"] for line in lines] == [0, 60, 60]

    collector = Collector(broker.port, "ioc/v1/sensors/+/readings")
    replay_file(broker.url_for("simulator"), out, 1000, True, threading.Event())  # a minute in 60 ms, moved to end now
    wait_until(lambda: len([t for t, _ in collector.messages if "/exp-" in t]) == 3, what="the export replayed")
    last = datetime.fromisoformat(orjson.loads([p for t, p in collector.messages if "/exp-" in t][-1])["ts"])
    assert abs((last - datetime.now(UTC)).total_seconds()) < 2
    collector.close()


@pytest.mark.parametrize("command", ["city", "cameras", "scenario", "record", "export", "replay"])
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert len(result.output.splitlines()) > 5


def test_a_speed_beyond_1000x_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_text("")
    result = CliRunner().invoke(app, ["replay", str(tmp_path / "r.jsonl"), "--speed", "5000"])
    assert result.exit_code == 2 and "1000x" in result.output


def test_a_city_with_no_units_to_place_sensors_in_says_so_and_exits_2(database_url: str, monkeypatch) -> None:
    from ioc_core.settings import get_settings

    monkeypatch.setenv("IOC_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["city", "--unit", "nowhere", "--no-register"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "no such units" in result.output
