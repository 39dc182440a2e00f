"""Record MQTT traffic or export stored readings to a file, and replay a file onto the broker.

A recording is JSON lines, one message a line: ``{"at": <arrival, epoch seconds>, "topic": ...,
"payload": <text>}`` (``"payload_b64"`` for bytes that are not UTF-8). An export writes the same
lines, one message per sensor and time, ``at`` being the readings' own time. Replay keeps the
inter-arrival times, divided by the speed, and can move every timestamp in the payloads so that
the recording ends when the replay does.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import psycopg

from ioc_core import topics
from ioc_core.mqtt import parse_url
from simulators.publish import Publisher
from simulators.runner import RunStats, progress_bar


def _line(at: float, topic: str, payload: bytes) -> bytes:
    try:
        doc: dict[str, Any] = {"at": at, "topic": topic, "payload": payload.decode()}
    except UnicodeDecodeError:
        doc = {"at": at, "topic": topic, "payload_b64": base64.b64encode(payload).decode()}
    return orjson.dumps(doc) + b"\n"


def record_mqtt(
    mqtt_url: str,
    topic: str,
    out: Path,
    seconds: float,
    stop: threading.Event,
    subscribed: threading.Event | None = None,
) -> int:
    """Every message on ``topic`` for ``seconds`` (or until ``stop``) into ``out``; ``subscribed``
    is set once the broker has confirmed the subscription, from when nothing is missed."""
    subscribed = subscribed or threading.Event()
    address = parse_url(mqtt_url)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    if address.username:
        client.username_pw_set(address.username, address.password)
    count = 0
    lock = threading.Lock()
    with out.open("wb") as f:

        def on_message(_c, _u, message: paho.MQTTMessage) -> None:
            nonlocal count
            with lock:
                f.write(_line(time.time(), message.topic, message.payload))
                count += 1

        client.on_message = on_message
        client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda *_: subscribed.set()
        client.connect(address.host, address.port)
        client.loop_start()
        started = time.monotonic()
        with progress_bar("recording") as bar:
            task = bar.add_task("record", total=seconds, rate="")
            while not stop.wait(min(0.5, max(0.0, started + seconds - time.monotonic()))):
                elapsed = time.monotonic() - started
                bar.update(task, completed=min(elapsed, seconds), rate=f"{count / max(elapsed, 1e-9):,.0f} msg/s")
                if elapsed >= seconds:
                    break
        client.disconnect()
        client.loop_stop()
    return count


def export_readings(database_url: str, out: Path, since: datetime, until: datetime, sensor_like: str = "%") -> int:
    """Stored readings in [since, until) as one message per sensor and time, in time order."""
    count = 0
    with psycopg.connect(database_url) as conn:
        total = conn.execute(
            "SELECT count(DISTINCT (time, sensor_id)) FROM readings"
            " WHERE time >= %s AND time < %s AND sensor_id LIKE %s",
            (since, until, sensor_like),
        ).fetchone()[0]
    with (
        psycopg.connect(database_url) as conn,
        conn.cursor(name="export") as cur,
        out.open("wb") as f,
        progress_bar("exporting") as bar,
    ):
        task = bar.add_task("export", total=total, rate="")
        started = time.monotonic()
        cur.itersize = 10_000
        cur.execute(
            "SELECT time, sensor_id, jsonb_object_agg(metric, value) FROM readings"
            " WHERE time >= %s AND time < %s AND sensor_id LIKE %s GROUP BY time, sensor_id ORDER BY time",
            (since, until, sensor_like),
        )
        for at, sensor_id, values in cur:
            payload = orjson.dumps({"ts": at.isoformat(), "values": values})
            f.write(_line(at.timestamp(), topics.sensor_readings(sensor_id), payload))
            count += 1
            if count % 10_000 == 0 or count == total:
                rate = count / max(time.monotonic() - started, 1e-9)
                bar.update(task, completed=count, rate=f"{rate:,.0f} msg/s")
    return count


def _messages(path: Path) -> Iterator[tuple[float, str, bytes]]:
    with path.open("rb") as f:
        for raw in f:
            doc = orjson.loads(raw)
            payload = doc["payload"].encode() if "payload" in doc else base64.b64decode(doc["payload_b64"])
            yield doc["at"], doc["topic"], payload


def shift_timestamps(payload: bytes, shift_s: float) -> bytes:
    """The payload with every ``ts`` moved by ``shift_s``; anything else, or what is not JSON, as it was."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        if not isinstance(item, dict) or "ts" not in item:
            continue
        ts = item["ts"]
        if isinstance(ts, int | float) and not isinstance(ts, bool):
            item["ts"] = round(ts + shift_s * 1000)
        elif isinstance(ts, str):
            with contextlib.suppress(ValueError):
                item["ts"] = (datetime.fromisoformat(ts) + timedelta(seconds=shift_s)).isoformat()
    return orjson.dumps(doc)


def replay_file(mqtt_url: str, path: Path, speed: float, shift_to_now: bool, stop: threading.Event) -> RunStats:
    """Publish a recording; ``speed`` 0 sends as fast as the broker takes it."""
    first = last = None
    total = 0
    for at, _, _ in _messages(path):
        first = at if first is None else first
        last, total = at, total + 1
    stats = RunStats()
    if total == 0:
        return stats
    publisher = Publisher(mqtt_url, f"sim-replay-{int(time.time())}")
    started_wall, started = time.time(), time.monotonic()
    span = (last - first) / speed if speed else 0.0
    shift = (started_wall + span) - last if shift_to_now else 0.0
    batch: list[tuple[str, bytes]] = []
    with progress_bar("replaying") as bar:
        task = bar.add_task("replay", total=total, rate="")
        for at, topic, payload in _messages(path):
            if stop.is_set():
                break
            if speed:
                due = started + (at - first) / speed
                if due > time.monotonic():
                    publisher.send(batch)
                    batch = []
                    stop.wait(due - time.monotonic())
            batch.append((topic, shift_timestamps(payload, shift) if shift_to_now else payload))
            if len(batch) >= 1000:
                publisher.send(batch)
                batch = []
            stats.messages += 1
            if stats.messages % 1000 == 0 or stats.messages == total:
                rate = stats.messages / max(time.monotonic() - started, 1e-9)
                bar.update(task, completed=stats.messages, rate=f"{rate:,.0f} msg/s")
        publisher.send(batch)
        publisher.close()
    stats.seconds = time.monotonic() - started
    return stats
