"""The default detector of ``make run`` (YOLOX-Nano, ``ops/run.sh``) through the worker as it runs
in production, against the labelled footage (``tests/data/vision_labels.md``): within 10% of the
vehicles crossing the highway's line and the bridge's two lines, the bus among them. The other
detectors' figures: ``python -m bench.vision_accuracy``."""

import pytest

from bench.vision import CLASSES, CONFIDENCE, SHARED, TRUTH
from bench.vision_accuracy import crossed, line_counts
from ioc_core.settings import Settings
from vision.detectors import load_detector

DEFAULT_MODEL = SHARED / "models" / "yolox_nano_416.onnx"


@pytest.fixture(scope="module")
def detector():
    if not DEFAULT_MODEL.is_file() or not (SHARED / "media" / "bridge_traffic_720p.mp4").is_file():
        pytest.skip(f"needs {DEFAULT_MODEL} and the shared footage")
    return load_detector("onnx", DEFAULT_MODEL, CLASSES, confidence=CONFIDENCE, iou=0.45, imgsz=416, threads=1)


def test_the_default_detector_counts_the_highway_within_a_tenth(detector, tmp_path) -> None:
    truth = TRUTH["highway_720p.mp4"]
    counts = line_counts(detector, Settings(snapshot_dir=tmp_path), "highway_720p.mp4", [truth["line"]])
    assert crossed(counts, "near", "in") == pytest.approx(truth["in"], rel=0.1)
    assert crossed(counts, "near", "out") <= 1


def test_the_default_detector_counts_the_bridge_within_a_tenth_the_bus_included(detector, tmp_path) -> None:
    truth = TRUTH["bridge_traffic_720p.mp4"]
    counts = line_counts(detector, Settings(snapshot_dir=tmp_path), "bridge_traffic_720p.mp4", truth["lines"])
    labelled = sum(truth[line][d] for line in ("upper", "lower") for d in ("in", "out"))
    found = sum(crossed(counts, line, d) for line in ("upper", "lower") for d in ("in", "out"))
    assert found == pytest.approx(labelled, rel=0.1)
    assert counts["lower_bus_in"] == 1
    assert crossed(counts, "upper", "out") + crossed(counts, "lower", "out") >= 8  # the two lanes going away
