"""The vision worker's parts on their own: debouncing, the motion gate, riders, dwell, sources."""

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv
from pydantic import ValidationError

from ioc_core import loops
from ioc_core.camera_config import CameraAnalytics
from ioc_core.settings import Settings
from simulators.mjpeg import MjpegServer
from tests.support import free_port, wait_until
from vision.analytics import Analyser, drop_riders
from vision.conditions import Condition
from vision.motion import MotionGate
from vision.service import in_shard
from vision.sources import FastFileSource, LiveSource, SourceSpec
from vision.worker import CameraRun, CameraSpec, Worker


def detections(boxes: list[tuple[float, float, float, float]], names: list[str], conf: float = 0.9) -> sv.Detections:
    ids = {"person": 0, "car": 2, "motorcycle": 3}
    d = sv.Detections(
        xyxy=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        confidence=np.full(len(boxes), conf, dtype=np.float32),
        class_id=np.array([ids[n] for n in names], dtype=np.int64),
    )
    d.data["class_name"] = np.array(names, dtype=object)
    return d


def test_a_condition_starts_after_holding_survives_a_flicker_reports_its_duration_and_ends() -> None:
    c = Condition("crowding", start_after_s=1, clear_after_s=3, update_every_s=10)
    seen = {"zones": [{"zone": "z", "people": 30}]}
    assert c.update(0.0, seen) is None
    started = c.update(1.0, seen)
    assert started.state == "started" and started.data == seen
    assert c.update(2.0, None) is None  # missed for one frame: still a crowd
    assert c.update(3.0, seen) is None
    ongoing = c.update(11.0, seen)
    assert ongoing.state == "ongoing" and ongoing.duration_s == 11.0
    assert c.update(13.0, None) is None
    ended = c.update(14.0, None)
    assert ended.state == "ended" and ended.duration_s == 11.0
    assert c.update(15.0, None) is None and c.end() is None


def test_a_condition_still_open_when_the_camera_stops_ends_then() -> None:
    c = Condition("congestion", start_after_s=0, clear_after_s=3, update_every_s=10)
    assert c.update(0.0, {"zones": []}).state == "started"
    ended = c.end()
    assert ended.state == "ended" and ended.data["reason"] == "camera stopped"


def test_the_motion_gate_passes_motion_skips_a_still_scene_forces_a_look_and_relearns_on_a_flash() -> None:
    gate = MotionGate(force_every_s=2.0)
    still = np.full((720, 1280, 3), 90, dtype=np.uint8)
    assert gate.wants_detection(0.0, still)  # the first frame: nothing known yet
    assert not gate.wants_detection(0.2, still)
    moved = still.copy()
    cv2.rectangle(moved, (500, 300), (640, 400), (255, 255, 255), -1)
    assert gate.wants_detection(0.4, moved)
    for t in (0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2):
        gate.wants_detection(t, moved)  # the box stays: it becomes background
    assert not gate.wants_detection(2.4, moved)
    assert gate.wants_detection(4.3, moved)  # over two seconds without a detection
    flash = np.full_like(still, 250)
    assert gate.wants_detection(4.4, flash)  # the whole frame changed: relearn, and look
    assert not gate.wants_detection(4.6, flash)
    assert gate.skipped >= 3


def test_riders_are_not_counted_as_pedestrians() -> None:
    d = detections(
        [(100, 100, 160, 260), (90, 180, 170, 300), (400, 100, 450, 250)], ["person", "motorcycle", "person"]
    )
    kept = drop_riders(d)
    assert list(kept.data["class_name"]) == ["motorcycle", "person"]
    assert kept.xyxy[1][0] == 400


def test_a_vehicle_dwelling_in_a_no_stopping_zone_is_a_stopped_vehicle_until_it_leaves() -> None:
    config = CameraAnalytics(
        analysis_fps=5, zones=[{"name": "kerb", "points": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]], "max_dwell_s": 3}]
    )
    analyser = Analyser("cam-1", config, 1000, 1000, start_after_s=0.3, clear_after_s=1)
    parked = (400, 600, 560, 720)
    states = []
    for i in range(40):  # 8 s parked, at 5 frames a second
        obs = analyser.update(i / 5, detections([parked], ["car"]))
        states += [(i / 5, tr.state) for tr in obs.transitions]
        assert obs.occupancy["kerb"]["car"] == (1 if i >= 1 else 0)  # a track confirms on its second frame
    assert states == [(3.6, "started")]  # confirmed at 0.2 s, 3 s of dwell, then held for 0.3 s (two frames)
    for i in range(40, 50):  # gone
        obs = analyser.update(i / 5, detections([], []))
        states += [(i / 5, tr.state) for tr in obs.transitions]
    assert [s for _, s in states] == ["started", "ended"]


def test_line_crossings_are_counted_by_class_and_direction() -> None:
    config = CameraAnalytics(analysis_fps=5, lines=[{"name": "stop", "points": [[1, 0.5], [0, 0.5]]}])
    analyser = Analyser("cam-1", config, 1000, 1000)
    for i in range(12):  # a car driving down the frame, a person walking up it
        car, person = (100, 300 + i * 40, 200, 380 + i * 40), (700, 800 - i * 40, 740, 880 - i * 40)
        analyser.update(i / 5, detections([car, person], ["car", "person"]))
    counts = analyser.report(analyser.update(2.6, detections([], [])).occupancy)
    assert counts["stop_car_in"] == 1 and counts["stop_person_out"] == 1
    assert counts["stop_car_out"] == 0 and counts["stop_motorcycle_in"] == 0
    assert analyser.report({})["stop_car_in"] == 0  # a new interval starts at zero


def test_camera_analytics_refuse_what_the_worker_cannot_use() -> None:
    with pytest.raises(ValidationError, match="names must be unique"):
        CameraAnalytics(lines=[{"name": "a", "points": [[0, 0], [1, 1]]}] * 2)
    with pytest.raises(ValidationError):
        CameraAnalytics(zones=[{"name": "z", "points": [[0, 0], [1, 1]]}])  # two points are not a polygon
    with pytest.raises(ValidationError):
        CameraAnalytics(lines=[{"name": "a", "points": [[0, 0], [1.5, 1]]}])  # outside the frame
    with pytest.raises(ValidationError):
        CameraAnalytics(classes=["tank"])


def test_source_urls_and_shards() -> None:
    assert SourceSpec.parse("rtsp://10.0.0.5/stream1") == SourceSpec("rtsp://10.0.0.5/stream1")
    assert SourceSpec.parse("/v/a.mp4?loop=0&realtime=0") == SourceSpec("/v/a.mp4", loop=False, realtime=False)
    assert SourceSpec.parse("file:///v/a.mp4") == SourceSpec("/v/a.mp4")
    ids = [f"cam-{i}" for i in range(100)]
    shards = [[c for c in ids if in_shard(c, (i, 3))] for i in range(3)]
    assert sorted(c for shard in shards for c in shard) == sorted(ids) and all(shards)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of 640x360 at 25 frames/s, each frame numbered by its brightness."""
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (640, 360))
    for i in range(50):
        out.write(np.full((360, 640, 3), i * 5, dtype=np.uint8))
    out.release()
    return path


def test_a_file_read_fast_yields_one_frame_per_analysis_interval_of_video_time(clip: Path) -> None:
    source = FastFileSource(str(clip), analysis_fps=5)
    times = []
    while (frame := source.take()) is not None:
        times.append(round(frame.t, 2))
    assert times == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8]
    assert source.finished and source.stats.frames_read == 50
    looped = FastFileSource(str(clip), analysis_fps=5, loop=True)
    assert [round(looped.take().t, 1) for _ in range(12)][-2:] == [2.0, 2.2]  # on into the second pass
    looped.close()


def test_a_live_source_keeps_only_the_newest_frame_and_counts_the_dropped(clip: Path) -> None:
    source = LiveSource(SourceSpec(str(clip), loop=False, realtime=True), analysis_fps=25)
    try:
        wait_until(lambda: source.stats.frames_dropped >= 15, what="frames that nobody takes")
        frame = source.take()
        assert frame is not None and source.take() is None  # one frame, the newest, and only once
        assert frame.image.mean() > 5 * 10  # a late frame (frame i is 5 * i bright), not the first
        assert source.stats.frames_dropped >= 15
    finally:
        source.close()


def test_a_stream_that_cannot_be_reached_is_retried_with_backoff() -> None:
    source = LiveSource(SourceSpec("http://127.0.0.1:9/none.mjpg"), analysis_fps=5, max_backoff_s=0.5)
    try:
        deadline = time.monotonic() + 30
        while source.stats.reconnects < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert source.stats.reconnects >= 3 and not source.stats.connected and source.take() is None
    finally:
        source.close()
    assert not any(t.name.startswith("source:") and t.is_alive() for t in threading.enumerate())


def test_only_the_camera_s_classes_are_tracked_and_counted() -> None:
    config = CameraAnalytics(
        analysis_fps=5, classes=["car"], zones=[{"name": "all", "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}]
    )
    analyser = Analyser("cam-1", config, 1000, 1000)
    for i in range(3):
        obs = analyser.update(i / 5, detections([(100, 100, 200, 200), (500, 500, 540, 600)], ["car", "person"]))
    assert obs.occupancy["all"] == {"car": 1}


def test_an_mjpeg_camera_that_drops_is_reconnected_and_delivers_again(clip: Path) -> None:
    server = MjpegServer({"cam": clip}, port=free_port()).start()
    source = LiveSource(SourceSpec(server.url("cam")), analysis_fps=10, max_backoff_s=0.5)
    try:
        assert wait_until(source.take, what="a frame from the MJPEG stream").image.shape == (360, 640, 3)
        assert source.stats.connected
        server.stop()  # the camera loses power
        wait_until(lambda: not source.stats.connected and source.stats.reconnects >= 2, what="retries")
        source.take()
        server.start()
        wait_until(source.take, what="frames again after the camera came back")
        assert source.stats.connected
    finally:
        source.close()
        server.stop()


class _Frames:
    """A live source stand-in: a new frame at every take, or an error where a stream would fail."""

    def __init__(self, broken: bool = False) -> None:
        from vision.sources import SourceStats

        self.stats, self.finished, self.broken, self.t = SourceStats(connected=True), False, broken, 0.0

    def take(self):
        from vision.sources import Frame

        if self.broken:
            raise OSError("the decoder died")
        self.t += 0.2
        return Frame(np.zeros((72, 128, 3), np.uint8), self.t, datetime.now(UTC))

    def close(self) -> None:
        pass


class _Link:
    def __init__(self) -> None:
        self.statuses = []

    def counts(self, ts, values) -> None:
        pass

    def event(self, *args) -> None:
        pass

    def status(self, online, health) -> None:
        self.statuses.append(online)

    def close(self) -> None:
        pass


class _Detector:
    """Empty detections, and a failure for the frames of one camera, as a detector bug would."""

    max_batch = 4

    def __init__(self) -> None:
        self.names = {0: "person", 2: "car"}

    def detect(self, frames):
        if any(f[0, 0, 0] == 255 for f in frames):  # the marked camera's frames
            raise ValueError("the detector cannot take this frame")
        return [sv.Detections.empty() for _ in frames]


def test_one_camera_failing_never_stops_another(tmp_path: Path) -> None:
    settings = Settings(snapshot_dir=tmp_path, vision_motion_gate=False)
    detector = _Detector()
    worker = Worker(settings, detector)
    runs = {}
    for camera, broken in (("cam-ok", False), ("cam-stream", True), ("cam-detector", False)):
        runs[camera] = CameraRun(CameraSpec(camera, "x", CameraAnalytics()), _Frames(broken), _Link(), settings)
        worker.add(runs[camera])
    bad_source = runs["cam-detector"].source
    take = bad_source.take

    def poisoned_take():
        frame = take()
        frame.image[0, 0, 0] = 255
        return frame

    bad_source.take = poisoned_take
    for _ in range(5):
        worker.step()
    assert runs["cam-ok"].analysed == 5 and runs["cam-ok"].rounds.failures == 0
    assert runs["cam-stream"].rounds.failures == 5 and runs["cam-detector"].rounds.failures == 5
    assert loops.report()["camera:cam-stream"]["last_error"] == "OSError: the decoder died"
    worker.close()
    assert "camera:cam-ok" not in loops.report()


class _Recorder(_Link):
    def __init__(self) -> None:
        super().__init__()
        self.reports, self.events = [], []

    def counts(self, ts, values) -> None:
        self.reports.append(values)

    def event(self, ts, event, severity, title, data) -> None:
        self.events.append((event, data["state"], data.get("reason")))


class _Crowd:
    """Three cars in the frame, always."""

    max_batch = 4

    def __init__(self) -> None:
        self.names = {2: "car"}

    def detect(self, frames):
        return [detections([(10, 10, 30, 30), (40, 10, 60, 30), (70, 10, 90, 30)], ["car"] * 3) for _ in frames]


def test_a_stream_lost_ends_the_interval_and_the_conditions_and_counting_starts_afresh_after_it(
    tmp_path: Path,
) -> None:
    settings = Settings(snapshot_dir=tmp_path, vision_motion_gate=False, vision_counts_interval_s=60)
    zone = {"name": "all", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "max_vehicles": 2}
    source, link = _Frames(), _Recorder()
    run = CameraRun(CameraSpec("cam", "x", CameraAnalytics(zones=[zone])), source, link, settings)
    worker = Worker(settings, _Crowd())
    worker.add(run)
    for _ in range(25):  # 5 s of congestion, then the stream is lost
        worker.step()
    assert ("congestion", "started", None) in link.events and link.reports == []
    source.stats.connected = False
    run.watch_stream()
    assert link.statuses[-1] is False
    assert link.events[-1] == ("congestion", "ended", "stream lost")
    (before,) = link.reports  # what was counted, up to the last frame: not held for the next interval
    assert before["frames_analysed"] == 25 and before["frames_lost"] == 0 and before["all_car"] == 3

    source.t += 600  # ten minutes later the stream is back
    source.stats.connected = True
    for _ in range(301):  # a minute of frames: one interval, counted from the first frame after
        worker.step()
    assert link.statuses[-1] is True
    after = link.reports[1]
    assert after["frames_lost"] == 0  # the outage is not an interval of lost frames: it is a gap
    assert after["frames_analysed"] == 301  # a minute at 5 frames a second, both ends
    assert ("congestion", "started", None) in link.events[2:]  # watched afresh
