"""Ultralytics' ONNX exports (YOLOv8, YOLO11, int8 or float): RGB 0..1, letterboxed in the
centre; output ``[batch, 4 + classes, anchors]``, centre x, y, width, height in input pixels, then
each class's score; class names in the export's metadata."""

import ast
from pathlib import Path

import cv2
import numpy as np

from vision.detectors import input_of, letterbox


class UltralyticsExport:
    def __init__(self, model: Path, session, imgsz: int) -> None:
        meta = session.get_modelmeta().custom_metadata_map
        if "names" not in meta:
            raise ValueError(f"{model}: not an Ultralytics export (no 'names' in its metadata)")
        self.names = {int(k): v for k, v in ast.literal_eval(meta["names"]).items()}
        self.size, self.batched = input_of(session, imgsz)

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, list[tuple]]:
        boxed = [letterbox(f, self.size, centred=True) for f in frames]
        return cv2.dnn.blobFromImages([b[0] for b in boxed], 1 / 255, swapRB=True), [b[1:] for b in boxed]

    def decode(self, raw: np.ndarray, meta: tuple, ids: np.ndarray, confidence: float):
        r, px, py = meta
        scores = raw[4 + ids]  # classes of interest x anchors
        best = scores.argmax(axis=0)
        conf = scores[best, np.arange(scores.shape[1])]
        keep = conf >= confidence
        cx, cy, bw, bh = raw[:4, keep]
        xyxy = np.stack([cx - bw / 2 - px, cy - bh / 2 - py, cx + bw / 2 - px, cy + bh / 2 - py], axis=1) / r
        return xyxy, conf[keep], ids[best[keep]]
