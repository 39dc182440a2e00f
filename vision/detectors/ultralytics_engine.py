"""Ultralytics YOLO: any weights it loads (``.pt`` on PyTorch, its ONNX and OpenVINO exports)."""

import os
from pathlib import Path

import numpy as np
import supervision as sv

from vision.detectors import class_ids, named


class UltralyticsDetector:
    def __init__(
        self, model: Path, classes: list[str], *, confidence: float, iou: float, imgsz: int, threads: int
    ) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach for the hub or GitHub at run time
        import torch
        from ultralytics import YOLO

        torch.set_num_threads(threads)
        self._model = YOLO(str(model), task="detect")
        self.names = dict(self._model.names)
        self._ids = class_ids(self.names, classes).tolist()
        self._conf, self._iou, self._imgsz = confidence, iou, imgsz
        self.max_batch = 1 if Path(model).suffix == ".onnx" else 8

    def detect(self, frames: list[np.ndarray]) -> list[sv.Detections]:
        results = self._model.predict(
            frames, imgsz=self._imgsz, conf=self._conf, iou=self._iou, classes=self._ids, verbose=False
        )
        return [named(sv.Detections.from_ultralytics(r), self.names) for r in results]
