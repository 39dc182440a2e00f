"""Camera analytics: detection, tracking, line and zone counts, camera events over MQTT."""
