"""Both engines load what they claim to, batch where the model allows, and put boxes back in frame
pixels. Ultralytics' YOLO11n is built from its YAML (no weights can be downloaded here): its boxes
mean nothing, so the ONNX decoding is checked on a model whose output is known exactly."""

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import supervision as sv
from onnx import TensorProto, helper

from bench.vision import yolo11n
from ioc_core.camera_config import DEFAULT_CLASSES
from ioc_core.settings import Settings
from vision.dequantise import dequantise
from vision.detectors import read_names
from vision.detectors.onnx_engine import OnnxDetector
from vision.detectors.ultralytics_engine import UltralyticsDetector

COCO = list(read_names(Settings().shared_dir / "models" / "coco80.names").values())
CLASSES = list(DEFAULT_CLASSES)


def constant_model(path: Path, images: list, output: str, value: np.ndarray, dims: list) -> Path:
    """An ONNX model that takes ``images`` (its shape) and answers ``value`` as ``output`` (of
    ``dims``, which may name a dynamic batch) for every image: a detector whose output is known."""
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    const = helper.make_tensor("const", TensorProto.FLOAT, value.shape, value.flatten().tolist())
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "const"], [output]),
    ]
    graph = helper.make_graph(
        nodes,
        "known",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, images)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, dims)],
        [zero, const, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def known_export(path: Path, anchors: np.ndarray) -> Path:
    """Shaped like an Ultralytics export (``images`` [N, 3, 320, 320] in, [N, 84, A] out, COCO names
    in its metadata), answering ``anchors`` for every image of the batch."""
    constant_model(path, ["batch", 3, 320, 320], "output0", anchors, ["batch", 84, anchors.shape[2]])
    model = onnx.load(path)
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


def known_yolox(path: Path, rows: np.ndarray) -> Path:
    """Shaped like a YOLOX export at 416 (``images`` [1, 3, 416, 416] in, [1, 3549, 85] out),
    answering ``rows``, with the COCO names beside it."""
    constant_model(path, [1, 3, 416, 416], "output", rows, [1, 3549, 85])
    path.with_name("coco80.names").write_text("\n".join(COCO))
    return path


def test_the_onnx_engine_decodes_yolox_grid_offsets_and_log_sizes_into_frame_pixels(tmp_path: Path) -> None:
    rows = np.zeros((1, 3549, 85), dtype=np.float32)
    # Stride 8 grid is 52x52: row 52 * 10 + 20 = 540 is cell (20, 10). Offsets (0.5, 0.5) put the centre
    # at (164, 84) in the input; log size ln(5), ln(2.5) makes it 40x20. The 1280x720 frame is
    # scaled by 416/1280 = 0.325 into the top left corner: (504.6, 258.5) 123.1x61.5 in the frame.
    rows[0, 540, :5] = [0.5, 0.5, np.log(5), np.log(2.5), 0.9]
    rows[0, 540, 5 + 2] = 1.0  # car: score 0.9 x 1.0
    # stride 32 (13x13, after 2704 + 676 rows): cell (3, 2), a bus 2x1 strides at 0.8 x 0.5
    rows[0, 2704 + 676 + 2 * 13 + 3, :5] = [0.0, 0.0, np.log(2), 0.0, 0.8]
    rows[0, 2704 + 676 + 2 * 13 + 3, 5 + 5] = 0.5
    rows[0, 100, 4], rows[0, 100, 5 + 14] = 0.99, 0.99  # a bird: not a class of interest
    detector = OnnxDetector(
        known_yolox(tmp_path / "yolox.onnx", rows), CLASSES, confidence=0.25, iou=0.45, imgsz=640, threads=1
    )
    assert detector.max_batch == 1 and type(detector.format).__name__ == "Yolox"
    (d,) = detector.detect([np.zeros((720, 1280, 3), dtype=np.uint8)])
    by_class = {name: (box, conf) for name, box, conf in zip(d.data["class_name"], d.xyxy, d.confidence, strict=True)}
    assert set(by_class) == {"car", "bus"}
    r = 416 / 1280
    np.testing.assert_allclose(by_class["car"][0], np.array([144, 74, 184, 94]) / r, atol=0.5)
    assert by_class["car"][1] == pytest.approx(0.9)
    np.testing.assert_allclose(by_class["bus"][0], np.array([64, 48, 128, 80]) / r, atol=0.5)
    assert by_class["bus"][1] == pytest.approx(0.4)


def test_an_int8_export_dequantised_to_float_finds_what_the_int8_model_finds(tmp_path: Path) -> None:
    models = Settings().shared_dir / "models"
    source, video = models / "yolo11n_int8_320.onnx", Settings().shared_dir / "media" / "highway_720p.mp4"
    if not source.is_file() or not video.is_file():
        pytest.skip(f"needs {source} and {video}")
    model, count = dequantise(onnx.load(source))
    assert count == 88
    assert not [n for n in model.graph.node if n.op_type in ("ConvInteger", "DynamicQuantizeLinear")]
    target = tmp_path / "yolo11n_float_320.onnx"
    onnx.save(model, target)
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, frame = capture.read()
    assert ok
    found = {}
    for path in (source, target):
        detector = OnnxDetector(path, CLASSES, confidence=0.25, iou=0.45, imgsz=320, threads=1)
        assert detector.names[2] == "car"  # the export's metadata is kept
        (found[path],) = detector.detect([frame])
    int8, dequantised = found[source], found[target]
    assert len(int8) >= 4 and len(dequantised) == len(int8)
    assert (sv.box_iou_batch(int8.xyxy, dequantised.xyxy).max(axis=1) > 0.9).all()


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
