"""``python -m vision.demo``: register the shared footage as three cameras of the demo city.

Each video is played at its own pace and looped, as a camera would deliver it, with a counting
line and a watched zone. Cameras already registered are left as they are.
"""

import sys

import psycopg
from psycopg.types.json import Jsonb

from ioc_core.camera_config import CameraAnalytics
from ioc_core.settings import get_settings

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


def main() -> None:
    settings = get_settings()
    media = settings.shared_dir / "media"
    if not media.is_dir():
        print(f"no demo cameras: the shared footage is not in {media}", file=sys.stderr)
        return
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for camera_id, name, video, lat, lon, analytics in CAMERAS:
            config = CameraAnalytics.model_validate(analytics).model_dump(mode="json")
            conn.execute(
                "INSERT INTO cameras (id, name, lat, lon, stream_url, analytics) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                (camera_id, name, lat, lon, str(media / video), Jsonb(config)),
            )
    print(f"demo cameras registered: {', '.join(c[0] for c in CAMERAS)}")


if __name__ == "__main__":
    main()
