"""The demo city's cameras: the shared footage served as live MJPEG streams and registered with
their places, counting lines and watched zones, so the vision worker reads them as real cameras."""

from __future__ import annotations

import threading

import psycopg
from psycopg.types.json import Jsonb

from ioc_core.camera_config import CameraAnalytics
from ioc_core.settings import Settings
from simulators.mjpeg import MjpegServer

# id, name, video, lat, lon, analytics
CAMERAS = [
    (
        "cam-rong-bridge",
        "Rồng bridge, westbound",
        "bridge_traffic_720p.mp4",
        16.0612,
        108.2262,
        {
            "lines": [{"name": "bridge", "points": [[1, 0.6], [0, 0.6]]}],
            "zones": [{"name": "deck", "points": [[0, 0.45], [1, 0.45], [1, 1], [0, 1]], "max_vehicles": 12}],
        },
    ),
    (
        "cam-han-market-crossing",
        "Hàn market, Trần Phú crossing",
        "crosswalk_720p.mp4",
        16.0682,
        108.2244,
        {"zones": [{"name": "crossing", "points": [[0, 0.75], [1, 0.75], [1, 1], [0, 1]], "max_people": 8}]},
    ),
    (
        "cam-expressway-hoa-vang",
        "Expressway, Hòa Vang",
        "highway_720p.mp4",
        15.9985,
        108.1478,
        {
            "lines": [{"name": "near", "points": [[0.7, 0.7], [0.25, 0.7]]}],
            "zones": [
                {"name": "near", "points": [[0.2, 0.55], [0.75, 0.55], [0.95, 1], [0, 1]], "max_vehicles": 6},
                {"name": "shoulder", "points": [[0.62, 0.55], [0.72, 0.55], [0.9, 1], [0.78, 1]], "max_dwell_s": 20},
            ],
        },
    ),
]


def register_cameras(database_url: str, server: MjpegServer) -> None:
    """Register each camera at its stream's URL; a camera already there keeps its settings but
    follows the stream (the server's port may have changed)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for camera_id, name, _, lat, lon, analytics in CAMERAS:
            config = CameraAnalytics.model_validate(analytics).model_dump(mode="json")
            conn.execute(
                "INSERT INTO cameras (id, name, lat, lon, stream_url, analytics) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET stream_url = excluded.stream_url",
                (camera_id, name, lat, lon, server.url(camera_id), Jsonb(config)),
            )


def serve_demo_cameras(settings: Settings, port: int, do_register: bool, stop: threading.Event) -> None:
    media = settings.shared_dir / "media"
    if not media.is_dir():
        raise SystemExit(f"no demo cameras: the shared footage is not in {media}")
    server = MjpegServer({c[0]: media / c[2] for c in CAMERAS}, port=port).start()
    if do_register:
        register_cameras(settings.database_url, server)
    print(f"cameras streaming: {', '.join(server.url(c[0]) for c in CAMERAS)}", flush=True)
    stop.wait()
    server.stop()
