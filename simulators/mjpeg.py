"""Video files served as live IP cameras: HTTP MJPEG at the video's own pace, looped.

``GET /{name}.mjpg`` streams ``multipart/x-mixed-replace`` JPEG frames as most IP cameras do, so
the vision worker reads a simulated camera exactly as it would a real one. Each video is encoded
once, on its own thread, whatever the number of viewers; a viewer that reads slowly misses frames
instead of delaying the others, as with a real camera.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

BOUNDARY = b"ioc-frame"


class _Feed:
    """The newest JPEG of one looped video, renewed at the video's frame rate."""

    def __init__(self, path: Path, quality: int) -> None:
        self.path = path
        self._quality = quality
        self._jpeg: bytes | None = None
        self._seq = 0
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mjpeg:{path.name}", daemon=True)
        self._thread.start()

    def next_after(self, seq: int, timeout: float = 2.0) -> tuple[int, bytes | None]:
        with self._changed:
            self._changed.wait_for(lambda: self._seq != seq or self._stop.is_set(), timeout=timeout)
            return self._seq, self._jpeg

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        cap = cv2.VideoCapture(str(self.path))
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        started, n = time.monotonic(), 0
        while not self._stop.is_set():
            ok, frame = cap.read()
            if not ok:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = cap.read()
                if not ok:
                    break
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
            with self._changed:
                self._jpeg, self._seq = jpeg.tobytes(), self._seq + 1
                self._changed.notify_all()
            n += 1
            self._stop.wait(max(0.0, started + n / fps - time.monotonic()))
        cap.release()


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # a camera restarted at once gets its port back
    daemon_threads = True


class MjpegServer:
    """``cameras``: stream name -> video file. ``start()`` and ``stop()`` may be repeated."""

    def __init__(self, cameras: dict[str, Path], *, host: str = "127.0.0.1", port: int = 8554, quality: int = 80):
        self.cameras, self.host, self.port, self.quality = cameras, host, port, quality
        self._feeds: dict[str, _Feed] = {}
        self._httpd: ThreadingHTTPServer | None = None

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name}.mjpg"

    def start(self) -> MjpegServer:
        self._feeds = {name: _Feed(path, self.quality) for name, path in self.cameras.items()}
        feeds = self._feeds

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                feed = feeds.get(self.path.lstrip("/").removesuffix(".mjpg"))
                if feed is None:
                    self.send_error(404, "no such camera")
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                seq = 0
                try:
                    while True:
                        seq, jpeg = feed.next_after(seq)
                        if jpeg is None or feed.stopped:
                            return
                        head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                        self.wfile.write(b"--" + BOUNDARY + b"\r\n" + head + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return

            def log_message(self, format, *args) -> None:
                pass

        self._httpd = _Server((self.host, self.port), Handler)
        threading.Thread(target=self._httpd.serve_forever, name="mjpeg-server", daemon=True).start()
        return self

    def stop(self) -> None:
        """Like a camera losing power: every viewer's connection ends."""
        for feed in self._feeds.values():
            feed.stop()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
