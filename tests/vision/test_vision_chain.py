"""The vision worker on real footage with the small detector: counts and events that match the
ground truth labelled by eye (``tests/data/vision_labels.md``), carried over the real broker into
the database by ingest, snapshots served by the API."""

import json
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest
from psycopg.types.json import Jsonb

from ioc_core.camera_config import DEFAULT_CLASSES, CameraAnalytics
from ioc_core.settings import Settings
from simulators.mjpeg import MjpegServer
from tests.support import Broker, Collector, Service, as_, free_port, wait_until
from vision.analytics import Analyser
from vision.detectors.onnx_engine import OnnxDetector
from vision.link import CameraLink
from vision.service import VisionService, registered_cameras
from vision.sources import FastFileSource
from vision.worker import CameraRun, CameraSpec, Worker

TRUTH = json.loads((Path(__file__).parents[1] / "data" / "vision_ground_truth.json").read_text())
SHARED = Settings().shared_dir
MODEL = SHARED / "models" / "yolo-fastestv2-coco.onnx"
CLASSES = list(DEFAULT_CLASSES)

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"needs the shared footage and model in {SHARED}")


@pytest.fixture(scope="module")
def detector() -> OnnxDetector:
    return OnnxDetector(MODEL, CLASSES, confidence=0.2, iou=0.4, imgsz=352, threads=2)


def test_highway_crossings_by_direction_reach_the_database_and_congestion_raises_events(
    broker: Broker,
    ingest: Service,
    api: Service,
    database_url: str,
    db: psycopg.Connection,
    http: httpx.Client,
    tokens: dict[str, str],
    snapshot_dir: Path,
    detector: OnnxDetector,
) -> None:
    truth = TRUTH["highway_720p.mp4"]
    video = str(SHARED / "media" / "highway_720p.mp4")
    analytics = CameraAnalytics(
        lines=[truth["line"]],
        zones=[{"name": "near", "points": [[0.2, 0.55], [0.75, 0.55], [0.95, 1], [0, 1]], "max_vehicles": 2}],
    )
    db.execute(
        "INSERT INTO cameras (id, name, unit_id, stream_url, analytics)"
        " VALUES ('cam-hw', 'Highway', 'hai-chau', %s, %s)",
        (video + "?realtime=0&loop=0", Jsonb(analytics.model_dump(mode="json"))),
    )
    settings = Settings(
        mqtt_url=broker.url_for("vision"), snapshot_dir=snapshot_dir, vision_counts_interval_s=5, vision_confidence=0.2
    )
    spec = registered_cameras(Settings(database_url=database_url, vision_shard=(0, 1)))["cam-hw"]
    assert spec == CameraSpec("cam-hw", video + "?realtime=0&loop=0", analytics)

    worker = Worker(settings, detector)
    worker.add(
        CameraRun(
            spec, FastFileSource(video, 5), CameraLink(broker.url_for("vision"), "cam-hw", "vision-test"), settings
        )
    )
    while worker.cameras:  # the file read once, as fast as it goes; its last counts are sent as it ends
        worker.step()

    def crossed(direction: str) -> float:
        row = db.execute(
            "SELECT coalesce(sum(value), 0), count(DISTINCT time) FROM readings"
            " WHERE sensor_id = 'cam-hw' AND metric LIKE %s",
            (f"near\\_%\\_{direction}",),
        ).fetchone()
        return row[0] if row[1] == 3 else -1  # 15 s of video, reported at 5 s, 10 s and its end

    wait_until(lambda: crossed("in") >= 0, what="the camera's counts stored")
    assert abs(crossed("in") - truth["in"]) <= 2, crossed("in")
    assert crossed("out") <= truth["out"] + 1

    # Congestion (more than two vehicles in the near zone): stored as events that start and end,
    # each with a snapshot the API serves to the camera's unit.
    def events() -> list[tuple[str, dict]]:
        return db.execute(
            "SELECT data->>'state', data FROM events WHERE kind = 'camera.congestion' AND source_id = 'cam-hw'"
            " ORDER BY time, id"
        ).fetchall()

    wait_until(lambda: [s for s, _ in events()][-1:] == ["ended"], what="a congestion that started and ended")
    states = [s for s, _ in events()]
    assert states[0] == "started" and states.count("started") == states.count("ended")
    started = events()[0][1]
    assert started["zones"][0]["zone"] == "near" and started["zones"][0]["vehicles"] > 2
    image = http.get(f"/cameras/cam-hw/snapshots/{started['snapshot']}", headers=as_(tokens["hai_chau"]))
    assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"
    assert http.get("/cameras/cam-hw/snapshots/latest.jpg", headers=as_(tokens["hai_chau"])).status_code == 200
    assert http.get("/cameras/cam-hw/snapshots/latest.jpg", headers=as_(tokens["hoa_cuong"])).status_code == 404


def test_crosswalk_zone_occupancy_matches_labelled_frames(detector: OnnxDetector) -> None:
    truth = TRUTH["crosswalk_720p.mp4"]
    source = FastFileSource(str(SHARED / "media" / "crosswalk_720p.mp4"), 5)
    analyser, people = None, {}
    while (frame := source.take()) is not None:
        if analyser is None:
            h, w = frame.image.shape[:2]
            analyser = Analyser("cam-cw", CameraAnalytics(zones=[truth["zone"]]), w, h)
        observation = analyser.update(frame.t, detector.detect([frame.image])[0])
        people[round(frame.t * source.stats.fps)] = observation.occupancy["crossing"]["person"]
    counted = 0
    for index, label in truth["frames"].items():
        nearest = min(people, key=lambda i: abs(i - int(index)))
        assert abs(nearest - int(index)) <= 3
        count = people[nearest]
        counted += count
        assert count <= label["clear"] + label["edge"], (index, count)
        if label["dense"]:
            assert count >= label["clear"] / 3, (index, count)
        else:
            assert abs(count - label["clear"]) <= 1, (index, count)
    assert counted >= 0.6 * sum(label["clear"] for label in truth["frames"].values())


def test_the_service_follows_the_registry_and_cameras_report_their_status(
    broker: Broker, database_url: str, db: psycopg.Connection, snapshot_dir: Path
) -> None:
    video = SHARED / "media" / "crosswalk_720p.mp4"
    server = MjpegServer({"cw": video}, port=free_port()).start()
    settings = Settings(
        database_url=database_url,
        mqtt_url=broker.url_for("vision"),
        snapshot_dir=snapshot_dir,
        vision_engine="onnx",
        vision_model=MODEL,
        vision_counts_interval_s=0.5,
        vision_worker_id="vision-sync",
    )
    status = Collector(broker.port, "ioc/v1/devices/cam-sync/status")
    service = VisionService(settings)
    try:
        db.execute(
            "INSERT INTO cameras (id, unit_id, stream_url) VALUES ('cam-sync', 'hai-chau', %s)", (server.url("cw"),)
        )
        service.sync()
        first = service.worker.cameras["cam-sync"]

        def analysed() -> bool:
            service.worker.step()
            return first.analysed >= 5

        wait_until(analysed, what="frames analysed from the MJPEG camera")

        def healths() -> list[dict]:
            return [orjson.loads(p) for _, p in status.messages if p.startswith(b"{")]

        # A health report goes with the counts, every counts interval of analysed frames: keep analysing.
        wait_until(
            lambda: service.worker.step() >= 0 and any(h["frames_analysed"] for h in healths()),
            what="its health on the status topic",
        )
        health = healths()[-1]
        assert health["status"] == "online" and health["stream_fps"] > 0 and "frames_dropped" in health

        server.stop()  # the camera's stream drops: the camera is offline until it is back
        wait_until(lambda: service.worker.step() == 0 and b'"offline"' in status.messages[-1][1], what="offline")
        server.start()
        wait_until(lambda: service.worker.step() >= 0 and b'"online"' in status.messages[-1][1], what="online again")

        db.execute("UPDATE cameras SET analytics = %s WHERE id = 'cam-sync'", (Jsonb({"analysis_fps": 2}),))
        service.sync()
        assert service.worker.cameras["cam-sync"] is not first  # restarted with its new analytics
        assert service.worker.cameras["cam-sync"].spec.analytics.analysis_fps == 2

        db.execute("DELETE FROM cameras WHERE id = 'cam-sync'")
        service.sync()
        assert "cam-sync" not in service.worker.cameras
        wait_until(lambda: status.messages[-1][1] == b"offline", what="offline once removed")
    finally:
        service.worker.close()
        status.close()
        server.stop()
