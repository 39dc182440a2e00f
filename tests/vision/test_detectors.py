"""Both engines load what they claim to, batch where the model allows, and put boxes back in frame
pixels. Ultralytics' YOLO11n is built from its YAML (no weights can be downloaded here): its boxes
mean nothing, so the ONNX decoding is checked on a model whose output is known exactly."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bench.vision import yolo11n
from ioc_core.camera_config import DEFAULT_CLASSES
from ioc_core.settings import Settings
from vision.detectors import OnnxDetector, UltralyticsDetector, read_names

COCO = list(read_names(Settings().shared_dir / "models" / "coco80.names").values())
CLASSES = list(DEFAULT_CLASSES)


def known_export(path: Path, anchors: np.ndarray) -> Path:
    """An ONNX model shaped like an Ultralytics export (``images`` [N, 3, 320, 320] in, [N, 84, A]
    out, COCO names in its metadata) whose output is ``anchors`` for every image of the batch."""
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    const = helper.make_tensor("const", TensorProto.FLOAT, anchors.shape, anchors.flatten().tolist())
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "const"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "known",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 320, 320])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 84, anchors.shape[2]])],
        [zero, const, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"names": repr(dict(enumerate(COCO)))})
    onnx.save(model, path)
    return path


def test_the_onnx_engine_decodes_ultralytics_exports_into_frame_pixels_in_batches(tmp_path: Path) -> None:
    anchors = np.zeros((1, 84, 4), dtype=np.float32)
    # Letterboxed 1280x720 -> 320x180, padded 70 px above and below. A car at (160, 160) 40x20 in
    # the model's input is (640, 360) 160x80 in the frame.
    anchors[0, :4, 0] = [160, 160, 40, 20]
    anchors[0, 4 + 2, 0] = 0.9  # car
    anchors[0, :4, 1] = [162, 161, 40, 20]
    anchors[0, 4 + 2, 1] = 0.6  # the same car, less sure: NMS drops it
    anchors[0, :4, 2] = [50, 100, 10, 20]
    anchors[0, 4 + 14, 2] = 0.95  # a bird: not a class of interest
    anchors[0, :4, 3] = [250, 120, 10, 20]
    anchors[0, 4 + 0, 3] = 0.1  # a person below the confidence threshold
    detector = OnnxDetector(
        known_export(tmp_path / "known.onnx", anchors), CLASSES, confidence=0.25, iou=0.45, imgsz=640, threads=1
    )
    assert detector.max_batch == 8  # the batch dimension is dynamic
    frames = [np.zeros((720, 1280, 3), dtype=np.uint8)] * 3
    results = detector.detect(frames)
    assert len(results) == 3
    for d in results:
        assert list(d.data["class_name"]) == ["car"]
        np.testing.assert_allclose(d.xyxy[0], [560, 320, 720, 400], atol=0.5)
        assert d.confidence[0] == pytest.approx(0.9)


def test_the_onnx_engine_runs_yolo_fastestv2_one_frame_at_a_time() -> None:
    model = Settings().shared_dir / "models" / "yolo-fastestv2-coco.onnx"
    if not model.is_file():
        pytest.skip(f"needs {model}")
    detector = OnnxDetector(model, ["car"], confidence=0.25, iou=0.4, imgsz=352, threads=1)
    assert detector.max_batch == 1 and detector.names[2] == "car"
    (d,) = detector.detect([np.zeros((720, 1280, 3), dtype=np.uint8)])
    assert len(d) == 0  # nothing in a black frame


def test_a_model_without_a_wanted_class_is_refused(tmp_path: Path) -> None:
    model = known_export(tmp_path / "k.onnx", np.zeros((1, 84, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="does not detect"):
        OnnxDetector(model, ["tank"], confidence=0.25, iou=0.45, imgsz=640, threads=1)


def test_the_ultralytics_engine_runs_yolo11n_in_batches_and_exports_to_onnx(tmp_path: Path) -> None:
    pt, exported = yolo11n(tmp_path, 320)
    detector = UltralyticsDetector(pt, CLASSES, confidence=0.25, iou=0.45, imgsz=320, threads=1)
    frames = [np.zeros((720, 1280, 3), dtype=np.uint8), np.full((480, 640, 3), 128, dtype=np.uint8)]
    results = detector.detect(frames)
    assert len(results) == 2 and detector.max_batch == 8
    assert all(d.xyxy.shape[1] == 4 and "class_name" in d.data for d in results)
    onnx_engine = OnnxDetector(exported, CLASSES, confidence=0.25, iou=0.45, imgsz=320, threads=1)
    assert onnx_engine.max_batch == 8 and onnx_engine.names == detector.names
    assert len(onnx_engine.detect(frames)) == 2
