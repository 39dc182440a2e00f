"""Object detectors behind one call: frames in, ``supervision.Detections`` out (frame pixels).

Two engines:
- ``ultralytics``: any weights Ultralytics loads (``.pt``, and its ONNX and OpenVINO exports),
  on PyTorch or the export's own runtime.
- ``onnx``: ONNX Runtime alone, no PyTorch, for small edge boxes. It runs Ultralytics' ONNX exports
  (``[batch, 4 + classes, anchors]``) and the small YOLO-FastestV2 model (``[605, 95]``), and tells
  them apart by their output's shape.

Both keep only the classes of interest and batch frames of several cameras into one inference
where the model allows it (``max_batch``).
"""

from __future__ import annotations

import ast
import os
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
        return OnnxDetector(model, classes, confidence=confidence, iou=iou, imgsz=imgsz, threads=threads)
    return UltralyticsDetector(model, classes, confidence=confidence, iou=iou, imgsz=imgsz, threads=threads)


def _class_ids(names: dict[int, str], classes: list[str]) -> np.ndarray:
    unknown = set(classes) - set(names.values())
    if unknown:
        raise ValueError(f"the model does not detect {sorted(unknown)}")
    return np.array(sorted(i for i, n in names.items() if n in classes), dtype=np.int64)


def read_names(path: Path) -> dict[int, str]:
    """A class-names file, one name a line in the model's class order: {class id: name}."""
    return dict(enumerate(n.strip() for n in path.read_text().splitlines() if n.strip()))


def _named(detections: sv.Detections, names: dict[int, str]) -> sv.Detections:
    detections.data["class_name"] = np.array([names[int(c)] for c in detections.class_id], dtype=object)
    return detections


class UltralyticsDetector:
    """Ultralytics YOLO: the default engine."""

    def __init__(
        self, model: Path, classes: list[str], *, confidence: float, iou: float, imgsz: int, threads: int
    ) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")  # never reach for the hub or GitHub at run time
        import torch
        from ultralytics import YOLO

        torch.set_num_threads(threads)
        self._model = YOLO(str(model), task="detect")
        self.names = dict(self._model.names)
        self._ids = _class_ids(self.names, classes).tolist()
        self._conf, self._iou, self._imgsz = confidence, iou, imgsz
        self.max_batch = 1 if Path(model).suffix == ".onnx" else 8

    def detect(self, frames: list[np.ndarray]) -> list[sv.Detections]:
        results = self._model.predict(
            frames, imgsz=self._imgsz, conf=self._conf, iou=self._iou, classes=self._ids, verbose=False
        )
        return [_named(sv.Detections.from_ultralytics(r), self.names) for r in results]


class OnnxDetector:
    """ONNX Runtime only: Ultralytics exports and YOLO-FastestV2."""

    def __init__(
        self, model: Path, classes: list[str], *, confidence: float, iou: float, imgsz: int, threads: int
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0]
        output = self._session.get_outputs()[0]
        self._fastest = list(output.shape) == [605, 95]
        self.names = self._fastest_names(model) if self._fastest else self._export_names()
        self._ids = _class_ids(self.names, classes)
        self._conf, self._iou = confidence, iou
        batch, _, h, w = self._input.shape
        self._size = (w, h) if isinstance(w, int) and isinstance(h, int) else (imgsz, imgsz)
        self.max_batch = 1 if isinstance(batch, int) else 8

    @staticmethod
    def _fastest_names(model: Path) -> dict[int, str]:
        names = model.with_name("coco80.names")
        if not names.is_file():
            raise FileNotFoundError(f"YOLO-FastestV2 needs its class names beside it: {names}")
        return read_names(names)

    def _export_names(self) -> dict[int, str]:
        meta = self._session.get_modelmeta().custom_metadata_map
        if "names" not in meta:
            raise ValueError("not an Ultralytics export: no 'names' in the model's metadata")
        return {int(k): v for k, v in ast.literal_eval(meta["names"]).items()}

    def detect(self, frames: list[np.ndarray]) -> list[sv.Detections]:
        if self._fastest:
            return [self._detect_fastest(f) for f in frames]
        out: list[sv.Detections] = []
        for start in range(0, len(frames), self.max_batch):
            out += self._detect_export(frames[start : start + self.max_batch])
        return out

    # --- YOLO-FastestV2: 352x352 BGR without letterbox; outputs already through a sigmoid

    _STRIDES = ((16, 22, ((12.64, 19.39), (37.88, 51.48), (55.71, 138.31))),
                (32, 11, ((126.91, 78.23), (131.57, 214.55), (279.92, 258.87))))  # fmt: skip
    _GRID: tuple[np.ndarray, ...] | None = None

    @classmethod
    def _fastest_grid(cls) -> tuple[np.ndarray, ...]:
        """Per output row and anchor: cell x, cell y, stride, anchor w and h (computed once)."""
        if cls._GRID is None:
            gx, gy, stride, aw, ah = [], [], [], [], []
            for s, n, anchors in cls._STRIDES:
                ys, xs = np.mgrid[0:n, 0:n]
                for g, a in ((gx, xs), (gy, ys)):
                    g.append(np.repeat(a.reshape(-1, 1), 3, axis=1))
                stride.append(np.full((n * n, 3), s, dtype=np.float32))
                aw.append(np.tile([a[0] for a in anchors], (n * n, 1)))
                ah.append(np.tile([a[1] for a in anchors], (n * n, 1)))
            cls._GRID = tuple(np.concatenate(v).astype(np.float32) for v in (gx, gy, stride, aw, ah))
        return cls._GRID

    def _detect_fastest(self, frame: np.ndarray) -> sv.Detections:
        h, w = frame.shape[:2]
        blob = cv2.dnn.blobFromImage(frame, 1 / 255, self._size)
        (raw,) = self._session.run(None, {self._input.name: blob})
        gx, gy, stride, aw, ah = self._fastest_grid()
        box = raw[:, :12].reshape(-1, 3, 4)
        scores = raw[:, 12:15, None] * raw[:, None, 15 + self._ids]  # rows x anchors x classes of interest
        best = scores.argmax(axis=2)
        conf = np.take_along_axis(scores, best[..., None], axis=2)[..., 0]
        keep = conf >= self._conf
        if not keep.any():
            return _named(sv.Detections.empty(), self.names)
        t = box[keep]
        cx = (t[:, 0] * 2 - 0.5 + gx[keep]) * stride[keep]
        cy = (t[:, 1] * 2 - 0.5 + gy[keep]) * stride[keep]
        bw = (t[:, 2] * 2) ** 2 * aw[keep]
        bh = (t[:, 3] * 2) ** 2 * ah[keep]
        sx, sy = w / self._size[0], h / self._size[1]
        xyxy = np.stack([(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy], axis=1)
        return self._nms(xyxy, conf[keep], self._ids[best[keep]], w, h)

    # --- Ultralytics ONNX export: RGB, letterboxed, [batch, 4 + classes, anchors]

    def _detect_export(self, frames: list[np.ndarray]) -> list[sv.Detections]:
        w, h = self._size
        blobs, scales = [], []
        for frame in frames:
            fh, fw = frame.shape[:2]
            r = min(w / fw, h / fh)
            nw, nh = round(fw * r), round(fh * r)
            px, py = (w - nw) // 2, (h - nh) // 2
            canvas = np.full((h, w, 3), 114, dtype=np.uint8)
            canvas[py : py + nh, px : px + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
            blobs.append(canvas)
            scales.append((r, px, py, fw, fh))
        batch = cv2.dnn.blobFromImages(blobs, 1 / 255, swapRB=True)
        (raw,) = self._session.run(None, {self._input.name: batch})
        out = []
        for pred, (r, px, py, fw, fh) in zip(raw, scales, strict=True):
            scores = pred[4 + self._ids]  # classes of interest x anchors
            best = scores.argmax(axis=0)
            conf = scores[best, np.arange(scores.shape[1])]
            keep = conf >= self._conf
            cx, cy, bw, bh = pred[:4, keep]
            xyxy = np.stack([cx - bw / 2 - px, cy - bh / 2 - py, cx + bw / 2 - px, cy + bh / 2 - py], axis=1) / r
            out.append(self._nms(xyxy, conf[keep], self._ids[best[keep]], fw, fh))
        return out

    def _nms(self, xyxy: np.ndarray, conf: np.ndarray, class_id: np.ndarray, w: int, h: int) -> sv.Detections:
        xyxy = np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)
        boxes = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
        kept = cv2.dnn.NMSBoxesBatched(boxes.tolist(), conf.tolist(), class_id.tolist(), self._conf, self._iou)
        kept = np.asarray(kept, dtype=np.int64).reshape(-1)
        d = sv.Detections(xyxy=xyxy[kept], confidence=conf[kept].astype(np.float32), class_id=class_id[kept])
        return _named(d, self.names)
