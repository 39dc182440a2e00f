"""JPEG snapshots with boxes, labels, lines and zones drawn, saved where the API serves them.

``{snapshot_dir}/{camera}/{name}.jpg``: ``latest.jpg`` for the screen, and one per camera event.
Files are written whole (a temporary name, then a rename), so the API never serves half an image,
and only the newest ``keep`` event snapshots of a camera are kept.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from vision.analytics import Analyser

_BOXES = sv.BoxAnnotator(thickness=2)
_LABELS = sv.LabelAnnotator(text_scale=0.5, text_padding=3)


def annotate(image: np.ndarray, detections: sv.Detections, analyser: Analyser) -> np.ndarray:
    out = image.copy()
    for line in analyser.lines.values():
        cv2.line(out, line.vector.start.as_xy_int_tuple(), line.vector.end.as_xy_int_tuple(), (0, 215, 255), 2)
    for _, polygon in analyser.zones.values():
        cv2.polylines(out, [polygon.polygon.astype(np.int32)], True, (255, 160, 0), 2)
    if len(detections):
        names = detections.data.get("class_name", [])
        ids = detections.tracker_id if detections.tracker_id is not None else [None] * len(detections)
        labels = [f"{n} #{i}" if i is not None else str(n) for n, i in zip(names, ids, strict=False)]
        out = _BOXES.annotate(out, detections)
        out = _LABELS.annotate(out, detections, labels)
    return out


class SnapshotStore:
    def __init__(self, root: Path, camera_id: str, *, keep: int = 200, quality: int = 80) -> None:
        self.dir = root / camera_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self._quality = quality
        self._kept: deque[Path] = deque(sorted(p for p in self.dir.glob("*.jpg") if p.name != "latest.jpg"))
        self._keep = keep

    def save(self, name: str, image: np.ndarray) -> str:
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            raise ValueError("the frame could not be encoded as JPEG")
        path = self.dir / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(jpeg.tobytes())
        os.replace(tmp, path)
        if name != "latest.jpg":
            self._kept.append(path)
            while len(self._kept) > self._keep:
                self._kept.popleft().unlink(missing_ok=True)
        return name
