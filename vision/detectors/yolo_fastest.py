"""YOLO-FastestV2 (the small shared COCO model): 352x352 BGR 0..1, stretched (no letterbox), one
frame at a time; output ``[605, 95]``: the 22x22 cells of stride 16 then the 11x11 of stride 32,
each with 3 anchors' boxes, 3 objectness values and 80 class scores, all through a sigmoid
(decoding in ``../shared/README.md``). Class names: ``coco80.names`` beside the model."""

from pathlib import Path

import cv2
import numpy as np

from vision.detectors import names_beside

_STRIDES = ((16, 22, ((12.64, 19.39), (37.88, 51.48), (55.71, 138.31))),
            (32, 11, ((126.91, 78.23), (131.57, 214.55), (279.92, 258.87))))  # fmt: skip


def _cells() -> tuple[np.ndarray, ...]:
    """Per output row and anchor: cell x, cell y, stride, anchor w and h."""
    gx, gy, stride, aw, ah = [], [], [], [], []
    for s, n, anchors in _STRIDES:
        ys, xs = np.mgrid[0:n, 0:n]
        for g, a in ((gx, xs), (gy, ys)):
            g.append(np.repeat(a.reshape(-1, 1), 3, axis=1))
        stride.append(np.full((n * n, 3), s, dtype=np.float32))
        aw.append(np.tile([a[0] for a in anchors], (n * n, 1)))
        ah.append(np.tile([a[1] for a in anchors], (n * n, 1)))
    return tuple(np.concatenate(v).astype(np.float32) for v in (gx, gy, stride, aw, ah))


class YoloFastest:
    size = (352, 352)
    batched = False

    def __init__(self, model: Path, session) -> None:
        self.names = names_beside(model, "YOLO-FastestV2")
        self._cells = _cells()

    def prepare(self, frames: list[np.ndarray]) -> tuple[np.ndarray, list[tuple[float, float]]]:
        (frame,) = frames
        h, w = frame.shape[:2]
        return cv2.dnn.blobFromImage(frame, 1 / 255, self.size), [(w / self.size[0], h / self.size[1])]

    def decode(self, raw: np.ndarray, meta: tuple[float, float], ids: np.ndarray, confidence: float):
        sx, sy = meta
        gx, gy, stride, aw, ah = self._cells
        box = raw[:, :12].reshape(-1, 3, 4)
        scores = raw[:, 12:15, None] * raw[:, None, 15 + ids]  # rows x anchors x classes of interest
        best = scores.argmax(axis=2)
        conf = np.take_along_axis(scores, best[..., None], axis=2)[..., 0]
        keep = conf >= confidence
        t = box[keep]
        cx = (t[:, 0] * 2 - 0.5 + gx[keep]) * stride[keep]
        cy = (t[:, 1] * 2 - 0.5 + gy[keep]) * stride[keep]
        bw = (t[:, 2] * 2) ** 2 * aw[keep]
        bh = (t[:, 3] * 2) ** 2 * ah[keep]
        xyxy = np.stack([(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy], axis=1)
        return xyxy, conf[keep], ids[best[keep]]
