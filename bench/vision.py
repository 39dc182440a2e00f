"""``python -m bench.vision``: the vision worker against a naive loop, and cameras per worker, per detector.

For each detector in ``../shared/models`` (YOLO-FastestV2; YOLOX-Nano; YOLO11n and YOLOv8n as their
int8 exports and dequantised to float by ``python -m vision.dequantise``), on the ONNX engine, and
YOLO11n built from Ultralytics' YAML on PyTorch (timings only: no weights can be downloaded here,
so it detects nothing), in the same run:
1. **Detection alone**: analysed frames a second on one core (one inference thread, 720p frames).
2. **Naive loop**: every frame of ``highway_720p.mp4`` read (decoded and converted) on one thread,
   and one in six (5 analysed frames/s of video time, the worker's rate) detected, tracked and
   counted.
3. **Worker**: the same file through the worker (5 analysed frames/s of video time, motion gate),
   read as fast as it goes. Useful throughput is seconds of video analysed per second of wall time;
   the ratio to the naive loop is the figure, with both runs' line counts beside the labels.
4. **Cameras sustained**: N cameras, each a shared 720p video played at its real pace and looped
   (as a camera delivers it), on one worker; N grows until a camera falls below 95% of its
   5 analysed frames/s. The figure is the largest N that held.

Accuracy against the labels of all three videos: ``python -m bench.vision_accuracy``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import onnx

from ioc_core.camera_config import DEFAULT_CLASSES, CameraAnalytics
from ioc_core.settings import Settings
from vision.analytics import Analyser
from vision.dequantise import dequantise
from vision.detectors import Detector, load_detector, read_names
from vision.sources import FastFileSource, LiveSource, SourceSpec
from vision.worker import CameraRun, CameraSpec, Worker

SHARED = Settings().shared_dir
TRUTH = json.loads((Path(__file__).parents[1] / "tests" / "data" / "vision_ground_truth.json").read_text())
HIGHWAY = SHARED / "media" / "highway_720p.mp4"
VIDEOS = [SHARED / "media" / f"{name}_720p.mp4" for name in ("highway", "crosswalk", "bridge_traffic")]
CLASSES = list(DEFAULT_CLASSES)
CONFIDENCE = 0.25  # the worker's default (IOC_VISION_CONFIDENCE), for every detector
ANALYSIS_FPS = 5.0  # the worker's analysis rate of a camera, and the naive loop's


class NullLink:
    """Results kept in memory: the benchmark measures analysis, not the broker."""

    def __init__(self) -> None:
        self.crossings: dict[str, float] = {}

    def counts(self, ts, values) -> None:
        for k, v in values.items():
            self.crossings[k] = self.crossings.get(k, 0) + v

    def event(self, *args) -> None:
        pass

    def status(self, *args) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class Engine:
    label: str
    engine: str
    model: Path
    imgsz: int
    licence: str
    counts_mean: bool = True  # False for weights that detect nothing


def shared_detectors(workdir: Path) -> list[Engine]:
    """The shared detectors on the ONNX engine, the int8 exports also dequantised to float here."""
    models = SHARED / "models"
    found = [
        Engine("YOLO-FastestV2 352", "onnx", models / "yolo-fastestv2-coco.onnx", 352, "see ../shared/README.md"),
        Engine("YOLOX-Nano 416", "onnx", models / "yolox_nano_416.onnx", 416, "Apache-2.0"),
    ]
    for name, label, size in (("yolo11n_int8_320", "YOLO11n 320", 320), ("yolov8n_int8_640", "YOLOv8n 640", 640)):
        source = models / f"{name}.onnx"
        target = workdir / f"{name.replace('int8', 'float')}.onnx"
        onnx.save(dequantise(onnx.load(source))[0], target)
        found += [
            Engine(f"{label} int8", "onnx", source, size, "AGPL-3.0"),
            Engine(f"{label} int8, dequantised", "onnx", target, size, "AGPL-3.0"),
        ]
    return found


def frames_per_second(detector: Detector) -> float:
    """Detection alone on 720p highway frames: frames a second (median of 20)."""
    capture = cv2.VideoCapture(str(HIGHWAY))
    frames = [capture.read()[1] for _ in range(21)]
    detector.detect(frames[:1])
    times = []
    for frame in frames[1:]:
        started = time.perf_counter()
        detector.detect([frame])
        times.append(time.perf_counter() - started)
    return 1 / statistics.median(times)


def highway_config(analysis_fps: float) -> CameraAnalytics:
    return CameraAnalytics(analysis_fps=analysis_fps, lines=[TRUTH["highway_720p.mp4"]["line"]])


def crossed_in(values: dict[str, float]) -> int:
    return int(sum(v for k, v in values.items() if k.endswith("_in")))


def naive(detector: Detector, analysis_fps: float = ANALYSIS_FPS) -> tuple[float, int, int]:
    """The straightforward loop at the worker's analysis rate: read (decode and convert) every
    frame, detect, track and count on one in ``fps / analysis_fps``, all on one thread:
    (seconds of video per wall second, vehicles in, frames analysed)."""
    cap = cv2.VideoCapture(str(HIGHWAY))
    fps = cap.get(cv2.CAP_PROP_FPS)
    analyser, n, analysed, due = None, 0, 0, 0.0
    started = time.perf_counter()
    while True:
        ok, image = cap.read()
        if not ok:
            break
        t = n / fps
        if t >= due:
            if analyser is None:
                analyser = Analyser("naive", highway_config(analysis_fps), image.shape[1], image.shape[0])
            analyser.update(t, detector.detect([image])[0])
            analysed += 1
            due += 1 / analysis_fps
        n += 1
    elapsed = time.perf_counter() - started
    return n / fps / elapsed, crossed_in(analyser.report({})), analysed


def worker_on_file(detector: Detector, settings: Settings) -> tuple[float, int, int, int]:
    """The worker on the same file: (video s per wall s, vehicles in, frames analysed, frames detected)."""
    worker = Worker(settings, detector)
    link = NullLink()
    source = FastFileSource(str(HIGHWAY), ANALYSIS_FPS)
    run = CameraRun(CameraSpec("bench", str(HIGHWAY), highway_config(ANALYSIS_FPS)), source, link, settings)
    worker.add(run)
    started = time.perf_counter()
    while worker.cameras:
        worker.step()
    elapsed = time.perf_counter() - started
    video_s = source.stats.frames_read / source.stats.fps
    return video_s / elapsed, crossed_in(link.crossings), run.analysed, run.detected


def sustains(detector: Detector, settings: Settings, cameras: int, seconds: float, warmup: float = 3.0) -> bool:
    worker = Worker(settings, detector)
    runs = []
    for i in range(cameras):
        video = VIDEOS[i % len(VIDEOS)]
        spec = CameraSpec(f"cam-{i}", str(video), highway_config(ANALYSIS_FPS))
        runs.append(CameraRun(spec, LiveSource(SourceSpec(str(video)), ANALYSIS_FPS), NullLink(), settings))
        worker.add(runs[-1])
    try:
        deadline = time.monotonic() + warmup
        while time.monotonic() < deadline:
            if worker.step() == 0:
                time.sleep(0.002)
        before = [r.analysed for r in runs]
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if worker.step() == 0:
                time.sleep(0.002)
        elapsed = time.monotonic() - started
    finally:
        worker.close()
    rates = [(r.analysed - b) / elapsed for r, b in zip(runs, before, strict=True)]
    print(f"    {cameras:3d} cameras: slowest {min(rates):.2f} analysed frames/s, mean {sum(rates) / len(rates):.2f}")
    return min(rates) >= 0.95 * ANALYSIS_FPS


def most_cameras(detector: Detector, settings: Settings, seconds: float, start: int) -> int:
    """Grow N until a camera falls behind, then narrow down between the last that held and the first that failed."""
    held, failed, n = 0, None, start
    while failed is None:
        if sustains(detector, settings, n, seconds):
            held, n = n, n * 2
        else:
            failed = n
    while failed - held > 1:
        mid = (held + failed) // 2
        if sustains(detector, settings, mid, seconds):
            held = mid
        else:
            failed = mid
    return held


def yolo11n(workdir: Path, imgsz: int) -> tuple[Path, Path]:
    """YOLO11n from its YAML with COCO's names, and its ONNX export (dynamic batch)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    model = YOLO("yolo11n.yaml")  # architecture only: random weights
    model.model.names = read_names(SHARED / "models" / "coco80.names")
    pt = workdir / "yolo11n.pt"
    model.save(pt)
    exported = YOLO(pt).export(format="onnx", dynamic=True, imgsz=imgsz, simplify=False, verbose=False)
    return pt, Path(exported)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12, help="measured seconds of each cameras-sustained trial")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of one inference")
    parser.add_argument("--only", help="detectors whose label contains this")
    args = parser.parse_args()
    if not (SHARED / "models" / "yolox_nano_416.onnx").is_file():
        raise SystemExit(f"the shared footage and models are needed: {SHARED / 'models'} has not got them")
    workdir = Path(tempfile.mkdtemp(prefix="bench-vision-"))
    engines = shared_detectors(workdir)
    pt, _ = yolo11n(workdir, 320)
    engines.append(Engine("YOLO11n (YAML) 320, Ultralytics on PyTorch", "ultralytics", pt, 320, "AGPL-3.0", False))
    engines = [e for e in engines if not args.only or args.only in e.label]
    truth = TRUTH["highway_720p.mp4"]["in"]
    print(f"cores: {os.cpu_count()}, inference threads: {args.threads}; labels: {truth} vehicles in")
    for e in engines:
        settings = Settings(
            snapshot_dir=workdir / "snapshots", vision_counts_interval_s=60, vision_confidence=CONFIDENCE
        )
        detector = load_detector(
            e.engine, e.model, CLASSES, confidence=CONFIDENCE, iou=0.45, imgsz=e.imgsz, threads=args.threads
        )
        alone = frames_per_second(detector)
        naive_rate, naive_in, naive_analysed = naive(detector)
        rate, worker_in, analysed, detected = worker_on_file(detector, settings)
        counts = f"; vehicles in: naive {naive_in}, worker {worker_in} (labels {truth})" if e.counts_mean else ""
        print(f"{e.label} ({e.licence}): detection alone {alone:.1f} frames/s on {args.threads} thread(s)")
        print(
            f"  naive loop {naive_rate:.2f} video s/s ({naive_analysed} frames analysed);"
            f" worker {rate:.2f} video s/s ({analysed} frames analysed, {detected} detected):"
            f" ratio {rate / naive_rate:.2f}{counts}"
        )
        start = max(1, int(alone / 5 / 2))  # about half what detection alone would allow
        n = most_cameras(detector, settings, args.seconds, start=start)
        print(f"  cameras sustained at 5 analysed frames/s: {n}")


if __name__ == "__main__":
    main()
