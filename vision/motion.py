"""A motion gate: skip detection on frames where nothing moved.

The frame's luminance is scaled to about 100 pixels high, blurred, and compared with a running
average of the background; changed pixels above a threshold, in contours big enough to matter,
are motion. When most of the frame changes at once (lightning, auto-exposure, a camera moved) the
background is relearned instead of reporting motion everywhere. A detection is still forced at a
minimum interval, so what stopped moving is seen again.
"""

from __future__ import annotations

import cv2
import numpy as np


class MotionGate:
    def __init__(
        self,
        *,
        height: int = 100,
        threshold: int = 30,
        min_area: float = 0.001,
        relearn_above: float = 0.6,
        force_every_s: float = 2.0,
        alpha: float = 0.2,
    ) -> None:
        self._height, self._threshold, self._alpha = height, threshold, alpha
        self._min_area, self._relearn_above, self._force_every = min_area, relearn_above, force_every_s
        self._background: np.ndarray | None = None
        self._last_detection = float("-inf")
        self.skipped = 0

    def wants_detection(self, t: float, frame: np.ndarray) -> bool:
        """True when this frame should go to the detector: it moved, or it is time to look again."""
        moved = self._moved(frame)
        if moved or t - self._last_detection >= self._force_every:
            self._last_detection = t
            return True
        self.skipped += 1
        return False

    def _moved(self, frame: np.ndarray) -> bool:
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (max(1, round(w * self._height / h)), self._height), interpolation=cv2.INTER_LINEAR)
        gray = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0).astype(np.float32)
        if self._background is None:
            self._background = gray
            return True
        diff = cv2.absdiff(gray, self._background)
        cv2.accumulateWeighted(gray, self._background, self._alpha)
        changed = (diff > self._threshold).astype(np.uint8)
        if changed.mean() > self._relearn_above:
            self._background = gray
            return True
        changed = cv2.dilate(changed, None, iterations=1)
        contours, _ = cv2.findContours(changed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_area = self._min_area * changed.size
        return any(cv2.contourArea(c) >= min_area for c in contours)
