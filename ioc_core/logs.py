"""Structured log lines (JSON or key=value) for every service, with a level from settings."""

import logging
import sys

import orjson

from ioc_core.settings import Settings

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def _fields(record: logging.LogRecord) -> dict:
    fields = {
        "time": logging.Formatter().formatTime(record, "%Y-%m-%dT%H:%M:%S"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(_fields(record), default=str).decode()


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={v!r}" if " " in str(v) else f"{k}={v}" for k, v in _fields(record).items())


def setup_logging(settings: Settings, service: str) -> logging.Logger:
    """Configure the root logger once per process; extra= fields become keys of the line."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    return logging.getLogger(service)
