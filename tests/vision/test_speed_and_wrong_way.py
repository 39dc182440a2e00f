"""Speeds in a calibrated zone and wrong-way driving, first on boxes whose answer is exact, then on
the shared highway footage with answers constructed from it: as filmed, slowed to half speed (the
same frames stamped twice as far apart: every speed halves), and played backwards (every vehicle
drives the wrong way, at its own speed).

The highway's zone is calibrated on its lane markings (a dash and its gap are 40 ft, 12.19 m, on
US highways; a lane is 12 ft): three dash cycles along, three lanes across."""

import cv2
import numpy as np
import pytest
import supervision as sv

from ioc_core.camera_config import CameraAnalytics, SpeedZone
from ioc_core.settings import Settings
from vision.analytics import Analyser
from vision.detectors.onnx_engine import OnnxDetector
from vision.speed import SpeedMeter

SHARED = Settings().shared_dir
VIDEO, MODEL = SHARED / "media" / "highway_720p.mp4", SHARED / "models" / "yolo-fastestv2-coco.onnx"
HIGHWAY = {
    "lines": [{"name": "near", "points": [[0.7, 0.7], [0.25, 0.7]], "allowed": "in"}],
    "speed_zones": [
        {
            "name": "near",
            "points": [[0.298, 0.55], [0.577, 0.55], [0.735, 0.982], [0.1375, 0.982]],
            "length_m": 36.58,
            "width_m": 10.97,
            "limit_kmh": 70,
        }
    ],
}


def car(track: int, x: float, y: float) -> sv.Detections:
    d = sv.Detections(
        xyxy=np.array([[x - 20, y - 30, x + 20, y]], dtype=np.float32),
        confidence=np.array([0.9], dtype=np.float32),
        class_id=np.array([2]),
        tracker_id=np.array([track]),
    )
    d.data["class_name"] = np.array(["car"], dtype=object)
    return d


def test_a_vehicle_moving_a_known_distance_has_its_speed_measured_and_is_over_the_limit() -> None:
    # A straight view: the zone is a 400x500 pixel rectangle standing for 20 m by 100 m of road.
    zone = SpeedZone(
        name="z", points=((0.1, 0.1), (0.5, 0.1), (0.5, 0.6), (0.1, 0.6)), length_m=100, width_m=20, limit_kmh=50
    )
    meter = SpeedMeter(zone, 1000, 1000)
    over = []
    for k in range(8):  # 10 px (2 m) every 0.2 s: 10 m/s, 36 km/h
        over += meter.update(k * 0.2, car(7, 300, 200 + 10 * k))
    assert over == []
    assert meter.measured[7] == ("car", pytest.approx(36.0))
    assert meter.report() == {"z_speed_kmh_car": 36.0}
    assert meter.report() == {}  # nothing measured since: no value, not zero
    for k in range(8):  # twice as fast: 72 km/h, over the limit of 50
        over = meter.update(2 + k * 0.2, car(8, 300, 200 + 20 * k))
    assert over == [{"track": 8, "class": "car", "speed_kmh": 72.0}]
    assert meter.update(4.0, car(8, 300, 700)) == []  # left the zone


def test_a_vehicle_crossing_a_line_against_its_allowed_direction_is_driving_the_wrong_way() -> None:
    config = CameraAnalytics(lines=[{"name": "l", "points": [[1, 0.5], [0, 0.5]], "allowed": "in"}])
    analyser = Analyser("cam", config, 1000, 1000, start_after_s=0)
    transitions = []
    for k, y in enumerate(range(600, 400, -10)):  # up the frame: "out"
        d = car(0, 500, y)
        d.tracker_id = None
        transitions += analyser.update(k * 0.2, d).transitions
    (started,) = [t for t in transitions if t.event == "wrong_way"]
    assert started.state == "started" and started.data["lines"][0]["line"] == "l"
    assert started.data["lines"][0]["tracks"][0]["class"] == "car"
    assert analyser.report({})["l_car_out"] == 1


@pytest.fixture(scope="module")
def highway() -> list[np.ndarray]:
    """Every sixth frame of the highway footage: 5 analysed frames a second."""
    if not VIDEO.is_file() or not MODEL.is_file():
        pytest.skip(f"needs {VIDEO} and {MODEL}")
    capture, frames, n = cv2.VideoCapture(str(VIDEO)), [], 0
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        if n % 6 == 0:
            frames.append(image)
        n += 1


def watch(frames: list[np.ndarray], seconds_apart: float) -> tuple[dict[str, float], list[str]]:
    """The frames through detection and the analyser, ``seconds_apart`` apart: (report, events started)."""
    detector = OnnxDetector(MODEL, ["car", "truck", "bus"], confidence=0.2, iou=0.45, imgsz=352, threads=1)
    analyser = Analyser("highway", CameraAnalytics.model_validate(HIGHWAY), 1280, 720)
    started = []
    for k, image in enumerate(frames):
        observation = analyser.update(k * seconds_apart, detector.detect([image])[0])
        started += [t.event for t in observation.transitions if t.state == "started"]
    return analyser.report({}), started


def test_highway_speeds_halve_when_the_footage_is_slowed_and_hold_when_it_is_played_backwards(
    highway: list[np.ndarray],
) -> None:
    filmed, filmed_events = watch(highway, 0.2)
    slowed, slowed_events = watch(highway, 0.4)
    backwards, backwards_events = watch(highway[::-1], 0.2)

    speed = filmed["near_speed_kmh_car"]
    assert 80 <= speed <= 115  # a US highway posted at 65 to 70 mph (105 to 113 km/h)
    assert slowed["near_speed_kmh_car"] == pytest.approx(speed / 2, rel=0.1)
    assert backwards["near_speed_kmh_car"] == pytest.approx(speed, rel=0.1)

    assert "speeding" in filmed_events and "speeding" not in slowed_events  # the limit is 70 km/h
    assert "wrong_way" not in filmed_events and "wrong_way" not in slowed_events
    assert "wrong_way" in backwards_events
    crossed_in = sum(v for k, v in filmed.items() if k.endswith("_in"))
    crossed_out = sum(v for k, v in backwards.items() if k.endswith("_out"))
    assert crossed_in >= 20 and crossed_out == pytest.approx(crossed_in, abs=3)
    assert sum(v for k, v in backwards.items() if k.endswith("_in")) == 0
