"""YOLOX (Megvii, Apache-2.0) exported without its decoding: BGR 0..255, letterboxed in the top
left corner on grey 114; output ``[batch, anchors, 5 + classes]``, one row per cell of the
stride 8, 16 and 32 grids in turn: x, y as offsets in the cell, w, h as log sizes (in strides),
objectness and class scores already through a sigmoid. Class names: ``coco80.names`` beside the
model."""

from pathlib import Path

import numpy as np

from vision.detectors import input_of, letterbox, names_beside

_STRIDES = (8, 16, 32)


class Yolox:
    def __init__(self, model: Path, session, imgsz: int) -> None:
        self.names = names_beside(model, "YOLOX")
        self.size, self.batched = input_of(session, imgsz)
        self._grid, self._stride = self._cells(*self.size)

    @staticmethod
    def rows(size: tuple[int, int]) -> int:
        """How many rows the model writes for an input of this size (w, h)."""
        return sum((size[0] // s) * (size[1] // s) for s in _STRIDES)

    @staticmethod
    def _cells(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Each output row's cell (x, y) and stride, in the order the model writes them."""
        grids, strides = [], []
        for s in _STRIDES:
            ys, xs = np.mgrid[0 : h // s, 0 : w // s]
            grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
            strides.append(np.full(xs.size, s))
        return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)[:, None]

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, list[float]]:
        boxed = [letterbox(f, self.size, centred=False) for f in frames]
        blob = np.stack([b[0] for b in boxed]).transpose(0, 3, 1, 2).astype(np.float32)
        return np.ascontiguousarray(blob), [b[1] for b in boxed]

    def decode(self, raw: np.ndarray, r: float, ids: np.ndarray, confidence: float):
        if raw.shape[0] != len(self._grid):
            raise ValueError(f"YOLOX output has {raw.shape[0]} rows, {len(self._grid)} expected at {self.size}")
        scores = raw[:, 4:5] * raw[:, 5 + ids]  # objectness x class, classes of interest
        best = scores.argmax(axis=1)
        conf = scores[np.arange(len(scores)), best]
        keep = conf >= confidence
        pred, stride = raw[keep], self._stride[keep]
        centre = (pred[:, :2] + self._grid[keep]) * stride
        size = np.exp(pred[:, 2:4]) * stride
        xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1) / r
        return xyxy, conf[keep], ids[best[keep]]
