"""One bare MQTT subscriber, the ingest benchmark's baseline: it resumes a persistent session (the
same protocol, session and QoS as an ingest worker's), counts and acknowledges what the broker
sends, and stops once nothing has come for ``--idle`` seconds. It prints one JSON line: the
messages, and the wall-clock times of the first and last (so several processes share a clock).

    python -m bench.bare_subscriber --port P --client-id ID [--username U --password W] [--idle 2]
"""

import argparse
import json
import threading
import time

import paho.mqtt.client as paho


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--idle", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    count, first, last = 0, None, None
    lock = threading.Lock()

    def on_message(c, u, m) -> None:
        nonlocal count, first, last
        now = time.time()
        with lock:
            count += 1
            first = first or now
            last = now

    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=paho.MQTTv311, clean_session=False
    )
    if args.username:
        client.username_pw_set(args.username, args.password)
    client.on_message = on_message
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    started = time.monotonic()
    while time.monotonic() - started < args.timeout:
        time.sleep(0.2)
        with lock:
            quiet_since = last if last is not None else None
        if quiet_since is not None and time.time() - quiet_since > args.idle:
            break
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"messages": count, "first": first, "last": last}), flush=True)


if __name__ == "__main__":
    main()
