"""Object detectors behind one call: frames in, ``supervision.Detections`` out (frame pixels).

Two engines, one file each:
- ``ultralytics`` (``ultralytics_engine.py``): any weights Ultralytics loads (``.pt``, and its ONNX
  and OpenVINO exports), on PyTorch or the export's own runtime.
- ``onnx`` (``onnx_engine.py``): ONNX Runtime alone, no PyTorch, for small edge boxes. It runs
  three model formats, each with its own preparation and decoding in a file of its own, and tells
  them apart by their output's shape: Ultralytics' exports (``ultralytics_export.py``, their int8
  exports too, or dequantised to float by ``python -m vision.dequantise``), YOLOX
  (``yolox.py``) and YOLO-FastestV2 (``yolo_fastest.py``).

Both keep only the classes of interest and batch frames of several cameras into one inference
where the model allows it (``max_batch``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import supervision as sv


class Detector(Protocol):
    names: dict[int, str]
    max_batch: int

    def detect(self, frames: list[np.ndarray]) -> list[sv.Detections]: ...


def load_detector(
    engine: str, model: Path, classes: list[str], *, confidence: float, iou: float, imgsz: int, threads: int
) -> Detector:
    if engine == "onnx":
        from vision.detectors.onnx_engine import OnnxDetector

        return OnnxDetector(model, classes, confidence=confidence, iou=iou, imgsz=imgsz, threads=threads)
    from vision.detectors.ultralytics_engine import UltralyticsDetector

    return UltralyticsDetector(model, classes, confidence=confidence, iou=iou, imgsz=imgsz, threads=threads)


def class_ids(names: dict[int, str], classes: list[str]) -> np.ndarray:
    unknown = set(classes) - set(names.values())
    if unknown:
        raise ValueError(f"the model does not detect {sorted(unknown)}")
    return np.array(sorted(i for i, n in names.items() if n in classes), dtype=np.int64)


def read_names(path: Path) -> dict[int, str]:
    """A class-names file, one name a line in the model's class order: {class id: name}."""
    return dict(enumerate(n.strip() for n in path.read_text().splitlines() if n.strip()))


def names_beside(model: Path, family: str) -> dict[int, str]:
    """The COCO names of a model that does not carry them: ``coco80.names`` in its folder."""
    names = model.with_name("coco80.names")
    if not names.is_file():
        raise FileNotFoundError(f"a {family} model needs its class names beside it: {names}")
    return read_names(names)


def input_of(session, imgsz: int) -> tuple[tuple[int, int], bool]:
    """An ONNX model's input (w, h), or ``imgsz`` square where the model leaves it open, and
    whether its batch is open (several frames at once)."""
    batch, _, h, w = session.get_inputs()[0].shape
    size = (w, h) if isinstance(w, int) and isinstance(h, int) else (imgsz, imgsz)
    return size, not isinstance(batch, int)


def named(detections: sv.Detections, names: dict[int, str]) -> sv.Detections:
    detections.data["class_name"] = np.array([names[int(c)] for c in detections.class_id], dtype=object)
    return detections


def letterbox(frame: np.ndarray, size: tuple[int, int], *, centred: bool) -> tuple[np.ndarray, float, int, int]:
    """The frame scaled to fit ``size`` (w, h), its aspect kept, on grey (114): (image, scale, pad
    x, pad y). Ultralytics centres it; YOLOX puts it in the top left corner."""
    w, h = size
    fh, fw = frame.shape[:2]
    r = min(w / fw, h / fh)
    nw, nh = round(fw * r), round(fh * r)
    px, py = ((w - nw) // 2, (h - nh) // 2) if centred else (0, 0)
    canvas = np.full((h, w, 3), 114, dtype=np.uint8)
    canvas[py : py + nh, px : px + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, r, px, py


def nms(
    xyxy: np.ndarray,
    conf: np.ndarray,
    class_id: np.ndarray,
    frame_size: tuple[int, int],
    *,
    confidence: float,
    iou: float,
) -> sv.Detections:
    """Boxes in frame pixels, clipped to the frame, overlaps of one class suppressed."""
    w, h = frame_size
    xyxy = np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)
    boxes = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
    kept = cv2.dnn.NMSBoxesBatched(boxes.tolist(), conf.tolist(), class_id.tolist(), confidence, iou)
    kept = np.asarray(kept, dtype=np.int64).reshape(-1)
    return sv.Detections(xyxy=xyxy[kept], confidence=conf[kept].astype(np.float32), class_id=class_id[kept])
