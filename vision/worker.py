"""The vision worker: many cameras, one detector, one loop.

Each round takes the newest frame of every camera whose analysis is due, lets the motion gate
decide which need the detector, detects those in batches (one inference for several cameras where
the model allows), then tracks and counts each camera's frame. A frame the gate passes over reuses
the camera's last detections: nothing moved, so what was there still is, and a vehicle that has
stopped keeps its track and its dwell time.

One camera's failure never stops another: whatever one camera's frame raises (its stream, its
gate, its analysis, or the detector on its frame alone) is logged, counted and skipped for that
round, and the camera's health (``camera:<id>`` among the loops ``/ready`` reports) says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import supervision as sv

from ioc_core.camera_config import CameraAnalytics
from ioc_core.loops import Loop, forget
from ioc_core.settings import Settings
from vision import metrics
from vision.analytics import Analyser, Observation
from vision.conditions import Transition
from vision.detectors import Detector
from vision.motion import MotionGate
from vision.snapshots import SnapshotStore, annotate
from vision.sources import Frame, Source

SEVERITY = {
    "stopped_vehicle": "major",
    "intrusion": "major",
    "wrong_way": "major",
    "crowding": "minor",
    "congestion": "minor",
    "speeding": "minor",
}
TITLE = {
    "stopped_vehicle": "Stopped vehicle in a no-stopping zone",
    "intrusion": "Intrusion into a restricted zone",
    "wrong_way": "Vehicle driving the wrong way",
    "crowding": "Crowd",
    "congestion": "Congestion",
    "speeding": "Vehicle over the speed limit",
}


class Link(Protocol):
    """Where a camera's results go (MQTT in service; a list in benchmarks)."""

    def counts(self, ts: datetime, values: dict[str, float]) -> None: ...
    def event(self, ts: datetime, event: str, severity: str, title: str, data: dict[str, Any]) -> None: ...
    def status(self, online: bool, health: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CameraSpec:
    id: str
    stream_url: str
    analytics: CameraAnalytics


class CameraRun:
    """One camera inside a worker: its frames, gate, analysis, snapshots and link."""

    def __init__(self, spec: CameraSpec, source: Source, link: Link, settings: Settings) -> None:
        self.spec = spec
        self.source = source
        self.link = link
        self._settings = settings
        self.gate = MotionGate(force_every_s=settings.vision_force_detect_s) if settings.vision_motion_gate else None
        self.snapshots = SnapshotStore(settings.snapshot_dir, spec.id, keep=settings.vision_snapshots_kept)
        self.analyser: Analyser | None = None  # made on the first frame, which tells the frame size
        self.last_detections = sv.Detections.empty()
        self._report_t: float | None = None
        self._report_wall = time.monotonic()
        self._analysed_since_report = 0
        self._last: tuple[Frame, Observation] | None = None
        self._unreported = 0
        self._connected = False
        metrics.CONNECTED.labels(spec.id).set(0)
        self.analysed = 0
        self.detected = 0
        self.rounds = Loop(f"camera:{spec.id}", 1.0)

    def watch_stream(self) -> None:
        """The camera is offline while its stream is down, and says so as soon as that changes. Its
        counts stop with the stream: what was counted is reported up to the last frame, conditions
        still open end, and counting starts afresh (a new tracker, a new interval) when it comes
        back, so the outage is a gap in its readings, not an interval stretched across it."""
        connected = self.source.stats.connected
        if connected != self._connected:
            self._connected = connected
            metrics.CONNECTED.labels(self.spec.id).set(1 if connected else 0)
            if not connected:
                self._close_analysis("stream lost")
            self.link.status(connected, self.health(0.0))

    def wants_detection(self, frame: Frame) -> bool:
        return self.gate is None or self.gate.wants_detection(frame.t, frame.image)

    def analyse(self, frame: Frame, detections: sv.Detections) -> Observation:
        if self.analyser is None:
            h, w = frame.image.shape[:2]
            self.analyser = Analyser(
                self.spec.id, self.spec.analytics, w, h, track_confidence=self._settings.vision_track_confidence
            )
            self._report_t = frame.t
        self.last_detections = detections
        observation = self.analyser.update(frame.t, detections)
        self.analysed += 1
        self._analysed_since_report += 1
        self._unreported += 1
        self._last = (frame, observation)
        metrics.ANALYSED.labels(self.spec.id).inc()
        for transition in observation.transitions:
            self._publish_event(frame, observation, transition)
        if frame.t - self._report_t >= self._settings.vision_counts_interval_s:
            self.report(frame, observation)
        return observation

    def report(self, frame: Frame, observation: Observation) -> None:
        """Counts since the last report, the frames the analysis rate wanted and did not get (a
        stalled stream, a worker behind), the latest snapshot, and the camera's health."""
        wanted = round((frame.t - self._report_t) * self.spec.analytics.analysis_fps)
        analysed = self._analysed_since_report
        self._report_t, self._unreported = frame.t, 0
        values = self.analyser.report(observation.occupancy)
        values |= {"frames_analysed": float(analysed), "frames_lost": float(max(0, wanted - analysed))}
        self.link.counts(frame.wall, values)
        self.snapshots.save("latest.jpg", annotate(frame.image, observation.detections, self.analyser))
        now = time.monotonic()
        fps = self._analysed_since_report / max(now - self._report_wall, 1e-6)
        self._report_wall, self._analysed_since_report = now, 0
        stats = self.source.stats
        metrics.ANALYSED_FPS.labels(self.spec.id).set(fps)
        metrics.DROPPED.labels(self.spec.id).set(stats.frames_dropped)
        self.link.status(True, self.health(fps))

    def health(self, analysed_fps: float) -> dict[str, Any]:
        stats = self.source.stats
        return {
            "analysed_fps": round(analysed_fps, 2),
            "stream_fps": round(stats.fps, 2),
            "frames_read": stats.frames_read,
            "frames_dropped": stats.frames_dropped,
            "frames_detected": self.detected,
            "frames_analysed": self.analysed,
            "reconnects": stats.reconnects,
            "last_frame": stats.last_frame.isoformat() if stats.last_frame else None,
        }

    def _close_analysis(self, reason: str) -> None:
        """End what is being watched and counted, up to the last frame analysed."""
        if self._last is None:
            return
        frame, observation = self._last
        for condition in self.analyser.conditions.values():
            if (transition := condition.end(reason)) is not None:
                self._publish_event(frame, observation, transition)
        if self._unreported:
            self.report(frame, observation)
        self.analyser, self._last, self.last_detections = None, None, sv.Detections.empty()

    def _publish_event(self, frame: Frame, observation: Observation, tr: Transition) -> None:
        name = f"{tr.event}-{frame.wall:%Y%m%dT%H%M%S%f}-{tr.state}.jpg"
        data: dict[str, Any] = {"state": tr.state, "duration_s": tr.duration_s, **tr.data}
        if tr.state != "ongoing":  # a snapshot where the condition starts and where it ends
            data["snapshot"] = self.snapshots.save(name, annotate(frame.image, observation.detections, self.analyser))
        self.link.event(frame.wall, tr.event, SEVERITY[tr.event], TITLE[tr.event], data)
        metrics.EVENTS.labels(self.spec.id, tr.event, tr.state).inc()

    def close(self) -> None:
        """End the conditions still open and report what was counted since the last report, then let
        go of the stream and the link."""
        self._close_analysis("camera stopped")
        self.source.close()
        self.link.close()
        forget(self.rounds.name)


class Worker:
    def __init__(self, settings: Settings, detector: Detector) -> None:
        self.settings = settings
        self.detector = detector
        self.cameras: dict[str, CameraRun] = {}

    def add(self, run: CameraRun) -> None:
        self.cameras[run.spec.id] = run

    def remove(self, camera_id: str) -> None:
        run = self.cameras.pop(camera_id, None)
        if run is not None:
            try:
                run.close()
            except Exception as exc:
                run.rounds.failed(exc)
                forget(run.rounds.name)

    def step(self) -> int:
        """One round over the cameras; how many frames it analysed."""
        due: list[tuple[CameraRun, Frame]] = []
        failed: set[str] = set()
        for run in list(self.cameras.values()):
            try:
                frame = run.source.take()
                if frame is not None:
                    due.append((run, frame))
                    metrics.LAST_FRAME.labels(run.spec.id).set(frame.wall.timestamp())
                elif run.source.finished:  # a file read once: report its last counts and let it go
                    self.remove(run.spec.id)
                    continue
                run.watch_stream()
            except Exception as exc:
                self._failed(run, exc, failed)
        to_detect = []
        for run, frame in due:
            try:
                if run.wants_detection(frame):
                    to_detect.append((run, frame))
            except Exception as exc:
                self._failed(run, exc, failed)
        detections = {id(frame): d for run, frame, d in self._detect(to_detect, failed)}
        analysed = 0
        for run, frame in due:
            if run.spec.id in failed:
                continue
            try:
                run.analyse(frame, detections.get(id(frame), run.last_detections))
                analysed += 1
            except Exception as exc:
                self._failed(run, exc, failed)
        for run in self.cameras.values():
            if run.spec.id not in failed:
                run.rounds.succeeded()
        return analysed

    @staticmethod
    def _failed(run: CameraRun, exc: Exception, failed: set[str]) -> None:
        failed.add(run.spec.id)
        run.rounds.failed(exc)

    def _detect(
        self, items: list[tuple[CameraRun, Frame]], failed: set[str]
    ) -> Iterator[tuple[CameraRun, Frame, sv.Detections]]:
        """Detections in batches; a batch that fails is detected frame by frame, so only the camera
        whose frame the detector cannot take misses its round."""
        size = self.detector.max_batch
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            try:
                yield from self._detect_chunk(chunk)
            except Exception as exc:
                if len(chunk) == 1:
                    self._failed(chunk[0][0], exc, failed)
                    continue
                for item in chunk:
                    try:
                        yield from self._detect_chunk([item])
                    except Exception as one:
                        self._failed(item[0], one, failed)

    def _detect_chunk(self, chunk: list[tuple[CameraRun, Frame]]) -> list[tuple[CameraRun, Frame, sv.Detections]]:
        began = time.perf_counter()
        results = self.detector.detect([frame.image for _, frame in chunk])
        per_frame = (time.perf_counter() - began) / len(chunk)
        out = []
        for (run, frame), d in zip(chunk, results, strict=True):
            metrics.INFERENCE_SECONDS.observe(per_frame)
            metrics.DETECTED.labels(run.spec.id).inc()
            run.detected += 1
            out.append((run, frame, d))
        return out

    def close(self) -> None:
        for camera_id in list(self.cameras):
            self.remove(camera_id)
