"""Speeds in a calibrated stretch of road: a track's bottom centre mapped from the image onto the
road plane (a perspective transform from the zone's four points to its real length and width),
and its speed the distance covered over the last second.

A second at 5 analysed frames is six positions: long enough that a box's jitter of a few pixels
moves the figure by a few km/h, short enough to follow a vehicle that brakes. A track is measured
only once it has been in the zone that long.
"""

from __future__ import annotations

import math
from collections import deque

import cv2
import numpy as np
import supervision as sv

from ioc_core.camera_config import VEHICLES, SpeedZone

_ANCHOR = sv.Position.BOTTOM_CENTER


class SpeedMeter:
    def __init__(self, zone: SpeedZone, width: int, height: int, window_s: float = 0.8) -> None:
        self.zone = zone
        corners = (np.array(zone.points) * [width, height]).astype(np.float32)
        road = np.array(
            [[0, 0], [zone.width_m, 0], [zone.width_m, zone.length_m], [0, zone.length_m]], dtype=np.float32
        )
        self._to_road = cv2.getPerspectiveTransform(corners, road)
        self._area = sv.PolygonZone(polygon=corners.round().astype(np.int64), triggering_anchors=(_ANCHOR,))
        self._window = window_s
        self._paths: dict[int, deque[tuple[float, float, float]]] = {}  # track -> (t, x m, y m)
        self.measured: dict[int, tuple[str, float]] = {}  # track -> (class, km/h), since the last report

    def update(self, t: float, tracked: sv.Detections) -> list[dict]:
        """Measure the vehicles in the zone; those over the limit, as findings."""
        if len(tracked) == 0 or tracked.tracker_id is None:
            self._paths.clear()
            return []
        inside = self._area.trigger(tracked)
        here = tracked[inside]
        names = here.data.get("class_name", np.array([], dtype=object))
        points = here.get_anchors_coordinates(_ANCHOR).reshape(-1, 1, 2).astype(np.float32)
        on_road = cv2.perspectiveTransform(points, self._to_road).reshape(-1, 2) if len(here) else points.reshape(-1, 2)
        over = []
        for track, cls, (x, y) in zip(here.tracker_id.tolist(), names, on_road.tolist(), strict=True):
            if cls not in VEHICLES:
                continue
            path = self._paths.setdefault(track, deque())
            path.append((t, x, y))
            while len(path) > 1 and t - path[1][0] >= self._window:
                path.popleft()
            t0, x0, y0 = path[0]
            if t - t0 < self._window:
                continue
            kmh = math.hypot(x - x0, y - y0) / (t - t0) * 3.6
            self.measured[track] = (cls, kmh)
            if self.zone.limit_kmh is not None and kmh > self.zone.limit_kmh:
                over.append({"track": track, "class": cls, "speed_kmh": round(kmh, 1)})
        for track in set(self._paths) - set(here.tracker_id.tolist()):
            del self._paths[track]  # left the zone, or lost
        return over

    def report(self) -> dict[str, float]:
        """The mean speed of each class measured since the last report (none measured: no value,
        so a chart shows a gap rather than zero); then start a new interval."""
        by_class: dict[str, list[float]] = {}
        for cls, kmh in self.measured.values():
            by_class.setdefault(cls, []).append(kmh)
        self.measured.clear()
        return {f"{self.zone.name}_speed_kmh_{cls}": round(sum(v) / len(v), 1) for cls, v in by_class.items()}
