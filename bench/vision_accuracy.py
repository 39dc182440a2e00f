"""``python -m bench.vision_accuracy``: each detector's counts against the labelled footage, and its
time a frame, side by side.

For every detector in ``../shared/models`` (the two int8 Ultralytics exports as they are and
dequantised to float by ``python -m vision.dequantise``, YOLOX-Nano, YOLO-FastestV2), through the
worker as it runs in production (5 analysed frames a second, motion gate, ByteTrack, lines on the
box's bottom centre):
- ``highway_720p.mp4``: vehicles crossing the near line, in and out (labels: 24 in, 0 out);
- ``bridge_traffic_720p.mp4``: two lines, in and out, by class (labels: upper 1 in and 5 out,
  lower 1 in (the bus) and 4 out);
- ``crosswalk_720p.mp4``: people whose feet are in the near quarter at frames 200 to 500, against
  the clear and edge counts labelled by eye;
- the time of one detection on a 720p frame, one thread (median of 20).

Labels and how they were made: ``tests/data/vision_labels.md``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import cv2

from bench.vision import CLASSES, CONFIDENCE, SHARED, TRUTH, NullLink, frames_per_second, shared_detectors
from ioc_core.camera_config import CameraAnalytics
from ioc_core.settings import Settings
from vision.detectors import Detector, load_detector
from vision.sources import FastFileSource
from vision.worker import CameraRun, CameraSpec, Worker

MEDIA = SHARED / "media"


def line_counts(detector: Detector, settings: Settings, video: str, lines: list[dict]) -> Counter[str]:
    """The worker on the file at 5 analysed frames a second: crossings by line, class and direction."""
    path = str(MEDIA / video)
    worker, link = Worker(settings, detector), NullLink()
    analytics = CameraAnalytics(analysis_fps=5, lines=lines)
    worker.add(CameraRun(CameraSpec("accuracy", path, analytics), FastFileSource(path, 5), link, settings))
    while worker.cameras:
        worker.step()
    return Counter({k: int(v) for k, v in link.crossings.items() if v and not k.startswith("frames_")})


def crossed(counts: Counter[str], line: str, direction: str) -> int:
    return sum(v for k, v in counts.items() if k.startswith(f"{line}_") and k.endswith(f"_{direction}"))


def people_in_crossing(detector: Detector) -> dict[int, int]:
    """People whose box's bottom is in the near quarter of the frame, at the labelled frames."""
    wanted = {int(f) for f in TRUTH["crosswalk_720p.mp4"]["frames"]}
    capture, found, n = cv2.VideoCapture(str(MEDIA / "crosswalk_720p.mp4")), {}, 0
    while n <= max(wanted):
        ok, frame = capture.read()
        if not ok:
            break
        if n in wanted:
            (d,) = detector.detect([frame])
            people = d[d.data["class_name"] == "person"]
            found[n] = int((people.xyxy[:, 3] >= 0.75 * frame.shape[0]).sum())
        n += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="detectors whose label contains this")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-vision-accuracy-"))
    settings = Settings(snapshot_dir=workdir / "snapshots", vision_counts_interval_s=3600)
    highway, bridge = TRUTH["highway_720p.mp4"], TRUTH["bridge_traffic_720p.mp4"]
    crossing = TRUTH["crosswalk_720p.mp4"]["frames"]
    bridge_total = sum(bridge[line][d] for line in ("upper", "lower") for d in ("in", "out"))
    print(
        f"labels: highway {highway['in']} in, {highway['out']} out; bridge upper {bridge['upper']['in']} in,"
        f" {bridge['upper']['out']} out, lower {bridge['lower']['in']} in (bus), {bridge['lower']['out']} out;"
        f" crossing (clear/edge) " + ", ".join(f"{f}: {v['clear']}/{v['edge']}" for f, v in crossing.items())
    )
    for c in shared_detectors(workdir):
        if args.only and args.only not in c.label:
            continue
        detector = load_detector("onnx", c.model, CLASSES, confidence=CONFIDENCE, iou=0.45, imgsz=c.imgsz, threads=1)
        ms = 1000 / frames_per_second(detector)
        hw = line_counts(detector, settings, "highway_720p.mp4", [highway["line"]])
        br = line_counts(detector, settings, "bridge_traffic_720p.mp4", bridge["lines"])
        people = people_in_crossing(detector)
        bus = sum(v for k, v in br.items() if "_bus_" in k)
        hw_in, hw_out = crossed(hw, "near", "in"), crossed(hw, "near", "out")
        br_total = sum(crossed(br, line, d) for line in ("upper", "lower") for d in ("in", "out"))
        print(f"{c.label} ({c.licence}): {ms:.1f} ms a frame")
        print(f"  highway: {hw_in} in, {hw_out} out ({100 * (hw_in + hw_out - highway['in']) / highway['in']:+.0f}%)")
        print(
            f"  bridge: upper {crossed(br, 'upper', 'in')} in, {crossed(br, 'upper', 'out')} out;"
            f" lower {crossed(br, 'lower', 'in')} in, {crossed(br, 'lower', 'out')} out; {bus} bus;"
            f" {br_total} crossings against {bridge_total} ({100 * (br_total - bridge_total) / bridge_total:+.0f}%)"
        )
        print("  crossing people: " + ", ".join(f"{f}: {n}" for f, n in people.items()))
        print(f"  by class: highway {dict(hw)}; bridge {dict(br)}")
        del detector


if __name__ == "__main__":
    main()
