"""Camera feeds as frames, newest first: files, RTSP and HTTP (MJPEG) streams through OpenCV/FFmpeg.

A live source reads its stream on its own thread at the stream's pace and keeps one frame, the
newest, so a detector that falls behind never builds a backlog: it simply gets fewer, fresher
frames. Frames are only colour-converted (``retrieve``) when the analysis rate wants one; the rest
are grabbed and skipped. A frame converted but replaced before the worker took it is *dropped*, and
counted. A stream that stops is reopened with exponential backoff.

A file can also be read as fast as possible (tests, benchmarks): then the worker gets every frame
the analysis rate wants, in video time, and the source skips the others.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Frame:
    image: np.ndarray  # BGR, as OpenCV decodes
    t: float  # seconds on the source's own clock: stream time for fast files, monotonic otherwise
    wall: datetime  # when the frame was seen (or would have been, for a file read fast)


@dataclass(slots=True)
class SourceStats:
    frames_read: int = 0
    frames_dropped: int = 0  # converted for analysis, then replaced by a newer one before it was taken
    reconnects: int = 0
    connected: bool = False
    last_frame: datetime | None = None
    fps: float = 0.0  # the stream's own rate


class Source(Protocol):
    stats: SourceStats
    finished: bool

    def take(self) -> Frame | None:
        """The newest frame not yet taken, or None when there is none yet."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where frames come from. ``file:`` URLs and plain paths may say ``?loop=0`` and ``?realtime=0``."""

    url: str
    loop: bool = True
    realtime: bool = True

    @classmethod
    def parse(cls, url: str) -> SourceSpec:
        parts = urlsplit(url)
        if parts.scheme in ("rtsp", "rtsps", "http", "https", "rtmp"):
            return cls(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = parts.path if parts.scheme == "file" else url.split("?", 1)[0]
        return cls(path, loop=query.get("loop", "1") != "0", realtime=query.get("realtime", "1") != "0")

    @property
    def is_file(self) -> bool:
        return "://" not in self.url


def open_source(url: str, analysis_fps: float) -> Source:
    spec = SourceSpec.parse(url)
    if spec.is_file and not Path(spec.url).is_file():
        raise FileNotFoundError(f"no video file {spec.url!r}")
    if spec.is_file and not spec.realtime:
        return FastFileSource(spec.url, analysis_fps, loop=spec.loop)
    return LiveSource(spec, analysis_fps)


class LiveSource:
    """A stream (or a file at its own pace) read on a thread; the newest wanted frame is kept."""

    def __init__(self, spec: SourceSpec, analysis_fps: float, *, max_backoff_s: float = 30.0) -> None:
        self.spec = spec
        self.stats = SourceStats()
        self.finished = False
        self._interval = 1.0 / analysis_fps
        self._max_backoff_s = max_backoff_s
        self._slot: Frame | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"source:{spec.url[:40]}", daemon=True)
        self._thread.start()

    def take(self) -> Frame | None:
        with self._lock:
            frame, self._slot = self._slot, None
        return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            cap = cv2.VideoCapture(self.spec.url, cv2.CAP_FFMPEG)
            if cap.isOpened():
                failures = 0
                self.stats.connected = True
                ended = self._read(cap)
                self.stats.connected = False
                cap.release()
                if self._stop.is_set():
                    return
                if ended and not self.spec.loop:
                    self.finished = True
                    return
                if ended:
                    continue  # a file at its end: start it again
            else:
                cap.release()
            failures += 1
            self.stats.reconnects += 1
            delay = min(self._max_backoff_s, 0.5 * 2 ** min(failures - 1, 16))
            log.warning("camera stream %s unavailable, retrying in %.1f s", self.spec.url, delay)
            self._stop.wait(delay)

    def _read(self, cap: cv2.VideoCapture) -> bool:
        """Read until the stream fails (False) or a file ends (True)."""
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.stats.fps = fps if 0 < fps < 240 else 0.0
        pace = 1.0 / self.stats.fps if self.spec.is_file and self.stats.fps else 0.0
        started, n, next_wanted = time.monotonic(), 0, 0.0
        while not self._stop.is_set():
            if not cap.grab():
                return self.spec.is_file and n > 0
            n += 1
            now = time.monotonic()
            if pace:  # a file shown at its own rate, as a camera would deliver it
                ahead = started + n * pace - now
                if ahead > 0:
                    self._stop.wait(ahead)
                    now = time.monotonic()
            self.stats.frames_read += 1
            self.stats.last_frame = datetime.now(UTC)
            if now < next_wanted:
                continue
            ok, image = cap.retrieve()
            if not ok:
                return False
            next_wanted = max(next_wanted + self._interval, now - self._interval)
            frame = Frame(image, now, self.stats.last_frame)
            with self._lock:
                if self._slot is not None:
                    self.stats.frames_dropped += 1
                self._slot = frame
        return False


class FastFileSource:
    """A video file read as fast as the worker pulls, one frame per analysis interval of video time.

    A thread decodes a few wanted frames ahead, so decoding overlaps detection as it does for a
    live source; the worker still sees every wanted frame, in order.
    """

    def __init__(self, path: str, analysis_fps: float, *, loop: bool = False, start: datetime | None = None) -> None:
        self.path = path
        self.stats = SourceStats(connected=True)
        self.finished = False
        self._loop = loop
        self._cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.stats.fps = fps if fps > 0 else 25.0
        self._interval = 1.0 / analysis_fps
        self._start = start or datetime.now(UTC)
        self._ahead: queue.Queue[Frame | None] = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._decode, name=f"source:{path[-40:]}", daemon=True)
        self._thread.start()

    def take(self) -> Frame | None:
        if self.finished:
            return None
        frame = self._ahead.get()
        if frame is None:
            self.finished = True
            return None
        self.stats.last_frame = frame.wall
        return frame

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a decoder waiting for room
            with contextlib.suppress(queue.Empty):
                self._ahead.get_nowait()
            self._thread.join(timeout=0.05)
        self._cap.release()

    def _decode(self) -> None:
        frame_s, n, wanted = 1.0 / self.stats.fps, 0, 0.0  # n: frames grabbed, over every loop
        while not self._stop.is_set():
            if not self._cap.grab():
                if not self._loop or n == 0:
                    break
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                continue
            t = n * frame_s
            n += 1
            self.stats.frames_read += 1
            if t + 1e-6 < wanted:
                continue
            ok, image = self._cap.retrieve()
            if ok:
                wanted += self._interval
                self._ahead.put(Frame(image, t, self._start + timedelta(seconds=t)))
        self._ahead.put(None)
