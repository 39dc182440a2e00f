"""ONNX Runtime alone, no PyTorch: the engine for small edge boxes.

The model's output shape tells its format, and the format's own file prepares its input and
decodes its output; this file runs the session, batches, and suppresses overlaps.
"""

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import supervision as sv

from vision.detectors import class_ids, input_of, named, nms
from vision.detectors.ultralytics_export import UltralyticsExport
from vision.detectors.yolo_fastest import YoloFastest
from vision.detectors.yolox import Yolox


class Format(Protocol):
    """How one family of models wants its frames and says what it found."""

    names: dict[int, str]
    size: tuple[int, int]  # input (w, h)
    batched: bool  # whether the model takes several frames at once

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, list[Any]]:
        """The input tensor, and what each frame's decoding needs to return to frame pixels."""
        ...

    def decode(
        self, raw: np.ndarray, meta: Any, ids: np.ndarray, confidence: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One frame's output: boxes (xyxy, frame pixels), scores, class ids at or above the
        confidence, classes of interest (``ids``) only."""
        ...


def _format_of(model: Path, session, imgsz: int) -> Format:
    shape = list(session.get_outputs()[0].shape)
    if shape == [605, 95]:
        return YoloFastest(model, session)
    if len(shape) == 3 and shape[1] == Yolox.rows(input_of(session, imgsz)[0]):
        return Yolox(model, session, imgsz)  # [batch, one row per grid cell, 5 + classes]
    return UltralyticsExport(model, session, imgsz)  # [batch, 4 + classes, anchors]


class OnnxDetector:
    def __init__(
        self, model: Path, classes: list[str], *, confidence: float, iou: float, imgsz: int, threads: int
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.format = _format_of(model, self._session, imgsz)
        self.names = self.format.names
        self._ids = class_ids(self.names, classes)
        self._conf, self._iou = confidence, iou
        self.max_batch = 8 if self.format.batched else 1

    def detect(self, frames: list[np.ndarray]) -> list[sv.Detections]:
        out: list[sv.Detections] = []
        for start in range(0, len(frames), self.max_batch):
            chunk = frames[start : start + self.max_batch]
            blob, metas = self.format.prepare(chunk)
            (raw,) = self._session.run(None, {self._input: blob})
            if not self.format.batched:
                raw = raw[None] if raw.ndim == 2 else raw
            for frame, pred, meta in zip(chunk, raw, metas, strict=True):
                xyxy, conf, class_id = self.format.decode(pred, meta, self._ids, self._conf)
                h, w = frame.shape[:2]
                found = nms(xyxy, conf, class_id, (w, h), confidence=self._conf, iou=self._iou)
                out.append(named(found, self.names))
        return out
