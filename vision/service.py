"""The vision worker as a service: its cameras come from the registry, its results go to MQTT.

Cameras are sharded between workers by a stable hash of their id (``IOC_VISION_SHARD``), and the
registry is reread every ``IOC_VISION_REFRESH_S``: a camera added, changed or removed is started,
restarted or stopped without restarting the worker.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib

import psycopg
from psycopg.rows import dict_row
from pydantic import ValidationError

from ioc_core.camera_config import DEFAULT_CLASSES, CameraAnalytics
from ioc_core.loops import Loop
from ioc_core.settings import Settings
from vision.detectors import Detector, load_detector
from vision.link import CameraLink
from vision.sources import open_source
from vision.worker import CameraRun, CameraSpec, Worker

log = logging.getLogger(__name__)


def in_shard(camera_id: str, shard: tuple[int, int]) -> bool:
    index, count = shard
    return zlib.crc32(camera_id.encode()) % count == index


def registered_cameras(settings: Settings) -> dict[str, CameraSpec]:
    """This shard's cameras with a stream; a camera whose analytics do not validate is skipped, loudly."""
    with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT id, stream_url, analytics FROM cameras WHERE stream_url IS NOT NULL").fetchall()
    specs = {}
    for row in rows:
        if not in_shard(row["id"], settings.vision_shard):
            continue
        try:
            specs[row["id"]] = CameraSpec(
                row["id"], row["stream_url"], CameraAnalytics.model_validate(row["analytics"])
            )
        except ValidationError as exc:
            log.error("camera %s skipped: its analytics are not valid: %s", row["id"], exc)
    return specs


def build_detector(settings: Settings) -> Detector:
    if settings.vision_model is None:
        raise SystemExit("no detector weights: set IOC_VISION_MODEL (and IOC_VISION_ENGINE for an ONNX-only worker)")
    return load_detector(
        settings.vision_engine,
        settings.vision_model,
        list(DEFAULT_CLASSES),
        confidence=settings.vision_confidence,
        iou=settings.vision_iou,
        imgsz=settings.vision_imgsz,
        threads=settings.vision_threads,
    )


class VisionService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker = Worker(settings, build_detector(settings))
        self.stop = threading.Event()
        self._specs: dict[str, CameraSpec] = {}
        self._rounds = Loop("vision-rounds", 1.0)
        self._sync = Loop("camera-registry", settings.vision_refresh_s)

    def sync(self) -> None:
        """Start, restart and stop cameras to match the registry."""
        try:
            wanted = registered_cameras(self.settings)
        except psycopg.Error as exc:
            self._sync.failed(exc)  # the registry unavailable: keep the current cameras
            return
        self._sync.succeeded()
        for camera_id, spec in list(self._specs.items()):
            if wanted.get(camera_id) != spec:
                self.worker.remove(camera_id)
                del self._specs[camera_id]
        for camera_id, spec in wanted.items():
            if camera_id in self._specs:  # running, or a file it has finished reading
                continue
            try:
                source = open_source(spec.stream_url, spec.analytics.analysis_fps)
            except (OSError, ValueError) as exc:
                log.error("camera %s not started: %s", camera_id, exc)
                continue
            link = CameraLink(self.settings.mqtt_url, camera_id, self.settings.vision_worker_id)
            self.worker.add(CameraRun(spec, source, link, self.settings))
            self._specs[camera_id] = spec
            log.info("camera started", extra={"camera": camera_id, "url": spec.stream_url})

    def run(self) -> None:
        """Analyse until stopped, rereading the registry between rounds when it is time. Whatever a
        round or a sync raises beyond one camera is logged, counted and retried after a backoff."""
        next_sync = 0.0
        try:
            while not self.stop.is_set():
                try:
                    if time.monotonic() >= next_sync:
                        next_sync = time.monotonic() + self.settings.vision_refresh_s
                        self.sync()
                    analysed = self.worker.step()
                except Exception as exc:
                    self.stop.wait(self._rounds.failed(exc))
                    continue
                self._rounds.succeeded()
                if analysed == 0:
                    self.stop.wait(0.005)  # no camera had a new frame
        finally:
            self.worker.close()
