"""A small live client: log in, take the feed's position, subscribe from it, print, and resume from
the newest position after a disconnection.

python docs/examples/live_client.py --user hai-chau-room --units hai-chau
"""

import argparse
import asyncio
import getpass
import json

import httpx
import websockets


async def follow(base: str, token: str, units: list[str] | None) -> None:
    # Take the position before reading any state through REST: nothing committed after it is missed.
    since = httpx.get(f"{base}/api/v1/live/position", headers={"Authorization": f"Bearer {token}"}).json()["position"]
    while True:
        try:
            async with websockets.connect(base.replace("http", "ws", 1) + "/ws") as ws:
                await ws.send(json.dumps({"type": "auth", "token": token}))
                await ws.send(json.dumps({"type": "subscribe", "units": units, "values": True, "since": since}))
                async for frame in ws:
                    first = json.loads(frame)
                    for message in first["messages"] if first["type"] == "batch" else [first]:
                        if message["type"] == "position":
                            since = message["position"]  # every event it shows has arrived
                        elif message["type"] == "event":
                            print("event", message["event"]["kind"], message["event"]["title"])
                        elif message["type"] == "values":
                            for v in message["values"]:
                                print("value", v["sensor_id"], v["metric"], v["value"])
                        elif message["type"] == "reset":
                            since = message["position"]
                            print("cannot resume:", message["reason"], "(reload the state through REST)")
        except (OSError, websockets.ConnectionClosed) as exc:
            print(f"disconnected ({exc}); resuming from {since}")
            await asyncio.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default="http://127.0.0.1:8080")
    parser.add_argument("--user", required=True)
    parser.add_argument("--units", help="comma-separated unit ids; default: every unit of the token")
    args = parser.parse_args()
    login = httpx.post(
        f"{args.api}/api/v1/auth/login", json={"username": args.user, "password": getpass.getpass()}
    ).raise_for_status()
    units = args.units.split(",") if args.units else None
    asyncio.run(follow(args.api, login.json()["access_token"], units))


if __name__ == "__main__":
    main()
