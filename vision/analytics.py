"""One camera's analytics: tracking, line crossings, zone occupancy, dwell, and the conditions watched.

Detections are tracked with ByteTrack (``trackers``), counted on lines with supervision's
``LineZone`` and in zones with ``PolygonZone``, both on the bottom centre of the box: a vehicle's
contact with the road, which stays on the right side of a line in dense queues where the default
four corners rarely all change side. Riders are not pedestrians: a person whose box sits on a
motorcycle's or bicycle's is dropped before tracking.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from ioc_core.camera_config import VEHICLES, CameraAnalytics, Zone
from vision.conditions import Condition, Transition
from vision.speed import SpeedMeter

_ANCHOR = (sv.Position.BOTTOM_CENTER,)


@dataclass(slots=True)
class Observation:
    """What one analysed frame showed."""

    t: float
    detections: sv.Detections  # tracked, riders removed
    occupancy: dict[str, Counter[str]]  # zone -> class -> objects now inside
    transitions: list[Transition]


def drop_riders(detections: sv.Detections) -> sv.Detections:
    """People whose box overlaps a two-wheeler's mostly are its riders, not pedestrians."""
    names = detections.data.get("class_name")
    if names is None or len(detections) == 0:
        return detections
    people = np.flatnonzero(names == "person")
    bikes = np.flatnonzero((names == "motorcycle") | (names == "bicycle"))
    if len(people) == 0 or len(bikes) == 0:
        return detections
    p, b = detections.xyxy[people], detections.xyxy[bikes]
    ix = np.clip(np.minimum(p[:, None, 2], b[None, :, 2]) - np.maximum(p[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(p[:, None, 3], b[None, :, 3]) - np.maximum(p[:, None, 1], b[None, :, 1]), 0, None)
    person_area = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    riding = ((ix * iy) / np.maximum(person_area[:, None], 1)).max(axis=1) >= 0.3
    keep = np.ones(len(detections), dtype=bool)
    keep[people[riding]] = False
    return detections[keep]


class Analyser:
    """One camera's analysis, kept between frames."""

    def __init__(
        self,
        camera_id: str,
        config: CameraAnalytics,
        width: int,
        height: int,
        *,
        track_confidence: float = 0.3,
        lost_after_s: float = 2.0,
        start_after_s: float = 1.0,
        clear_after_s: float = 3.0,
        update_every_s: float = 10.0,
    ) -> None:
        self.camera_id = camera_id
        self.config = config
        self._classes = np.array(config.classes, dtype=object)
        fps = config.analysis_fps
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(lost_after_s * fps)),
            frame_rate=fps,
            track_activation_threshold=track_confidence,
            high_conf_det_threshold=track_confidence,
            minimum_consecutive_frames=2,
        )
        size = np.array([width, height], dtype=np.float64)
        self.lines = {
            line.name: sv.LineZone(
                start=sv.Point(*(np.array(line.points[0]) * size)),
                end=sv.Point(*(np.array(line.points[1]) * size)),
                triggering_anchors=_ANCHOR,
            )
            for line in config.lines
        }
        self.zones = {
            zone.name: (
                zone,
                sv.PolygonZone(
                    polygon=(np.array(zone.points) * size).round().astype(np.int64), triggering_anchors=_ANCHOR
                ),
            )
            for zone in config.zones
        }
        self.speed_meters = [SpeedMeter(zone, width, height) for zone in config.speed_zones]
        self._entered: dict[tuple[str, int], float] = {}  # (zone, track) -> when it came in
        timing = {"start_after_s": start_after_s, "clear_after_s": clear_after_s, "update_every_s": update_every_s}
        self.conditions = {
            event: Condition(event, **timing) for event in ("stopped_vehicle", "crowding", "congestion", "intrusion")
        }
        # A wrong-way crossing or a vehicle over the limit is a fact at once, not a state to confirm.
        instant = {**timing, "start_after_s": 0.0}
        self.conditions |= {event: Condition(event, **instant) for event in ("wrong_way", "speeding")}
        self._crossings: Counter[str] = Counter()  # metric name -> crossings since the last report

    def update(self, t: float, detections: sv.Detections) -> Observation:
        names = detections.data.get("class_name")
        if names is not None and len(detections):
            detections = detections[np.isin(names, self._classes)]  # this camera's classes of interest
        tracked = self._tracker.update(drop_riders(detections))
        if tracked.tracker_id is not None:
            tracked = tracked[tracked.tracker_id >= 0]  # confirmed tracks only
        names = tracked.data.get("class_name", np.array([], dtype=object))
        findings: dict[str, dict[str, list]] = {}
        for line in self.config.lines:
            crossed_in, crossed_out = self.lines[line.name].trigger(tracked)
            for direction, crossed in (("in", crossed_in), ("out", crossed_out)):
                for cls in names[crossed]:
                    self._crossings[f"{line.name}_{cls}_{direction}"] += 1
                if line.allowed is not None and direction != line.allowed:
                    self._wrong_way(line.name, tracked[crossed], findings)
        for meter in self.speed_meters:
            if over := meter.update(t, tracked):
                tracks = [{**o, "track": f"{self.camera_id}:{o['track']}"} for o in over]
                limit = meter.zone.limit_kmh
                findings.setdefault("speeding", {"zones": []})["zones"].append(
                    {"zone": meter.zone.name, "limit_kmh": limit, "tracks": tracks}
                )
        occupancy: dict[str, Counter[str]] = {}
        for zone_name, (zone, polygon) in self.zones.items():
            inside = polygon.trigger(tracked) if len(tracked) else np.zeros(0, dtype=bool)
            occupancy[zone_name] = Counter(names[inside].tolist())
            self._judge_zone(t, zone, tracked[inside], occupancy[zone_name], findings)
        transitions = [
            tr for event, cond in self.conditions.items() if (tr := cond.update(t, findings.get(event))) is not None
        ]
        return Observation(t, tracked, occupancy, transitions)

    def _wrong_way(self, line: str, crossed: sv.Detections, findings: dict[str, dict[str, list]]) -> None:
        names = crossed.data.get("class_name", np.array([], dtype=object))
        tracks = [
            {"track": f"{self.camera_id}:{track}", "class": cls}
            for track, cls in zip(crossed.tracker_id.tolist(), names, strict=True)
            if cls in VEHICLES
        ]
        if tracks:
            findings.setdefault("wrong_way", {"lines": []})["lines"].append({"line": line, "tracks": tracks})

    def _judge_zone(
        self, t: float, zone: Zone, inside: sv.Detections, occupancy: Counter[str], findings: dict[str, dict[str, list]]
    ) -> None:
        vehicles = sum(n for cls, n in occupancy.items() if cls in VEHICLES)
        people = occupancy.get("person", 0)
        present = set()
        stopped = []
        ids = inside.tracker_id if inside.tracker_id is not None else np.zeros(0, dtype=np.int64)
        for track, cls in zip(ids.tolist(), inside.data.get("class_name", []), strict=False):
            key = (zone.name, track)
            present.add(key)
            since = self._entered.setdefault(key, t)
            if zone.max_dwell_s is not None and cls in VEHICLES and t - since >= zone.max_dwell_s:
                stopped.append({"track": f"{self.camera_id}:{track}", "class": cls, "dwell_s": round(t - since, 1)})
        for key in [k for k in self._entered if k[0] == zone.name and k not in present]:
            del self._entered[key]

        def found(event: str, **what: object) -> None:
            findings.setdefault(event, {"zones": []})["zones"].append({"zone": zone.name, **what})

        if stopped:
            found("stopped_vehicle", tracks=stopped)
        if zone.max_people is not None and people > zone.max_people:
            found("crowding", people=people)
        if zone.max_vehicles is not None and vehicles > zone.max_vehicles:
            found("congestion", vehicles=vehicles)
        if zone.restricted and (people or vehicles):
            found("intrusion", objects=dict(occupancy))

    def report(self, occupancy: dict[str, Counter[str]]) -> dict[str, float]:
        """The counts since the last report (every line, class and direction, zeros included),
        and each zone's occupancy by class now; then start a new interval."""
        values: dict[str, float] = {}
        for line_name in self.lines:
            for cls in self.config.classes:
                for direction in ("in", "out"):
                    metric = f"{line_name}_{cls}_{direction}"
                    values[metric] = float(self._crossings[metric])
        for zone_name in self.zones:
            counts = occupancy.get(zone_name, Counter())
            for cls in self.config.classes:
                values[f"{zone_name}_{cls}"] = float(counts.get(cls, 0))
        for meter in self.speed_meters:
            values |= meter.report()
        self._crossings.clear()
        return values
