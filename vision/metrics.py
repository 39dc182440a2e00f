"""Prometheus metrics of a vision worker, per camera."""

from prometheus_client import Counter, Gauge, Histogram

ANALYSED = Counter("ioc_vision_frames_analysed_total", "Frames analysed", ["camera"])
DETECTED = Counter(
    "ioc_vision_frames_detected_total", "Frames sent to the detector (the motion gate passed them)", ["camera"]
)
DROPPED = Gauge("ioc_vision_frames_dropped", "Frames replaced by a newer one before analysis, since start", ["camera"])
ANALYSED_FPS = Gauge("ioc_vision_analysed_fps", "Frames analysed per second over the last report", ["camera"])
LAST_FRAME = Gauge("ioc_vision_last_frame_timestamp_seconds", "When the newest frame was read", ["camera"])
CONNECTED = Gauge("ioc_vision_stream_connected", "1 while the camera's stream delivers", ["camera"])
INFERENCE_SECONDS = Histogram(
    "ioc_vision_inference_seconds",
    "Detector time per frame (a batch's time divided by its frames)",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1),
)
EVENTS = Counter("ioc_vision_events_total", "Camera events published", ["camera", "event", "state"])
