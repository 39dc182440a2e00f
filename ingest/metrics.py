"""Prometheus metrics of the ingest process."""

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("ioc_ingest_messages_total", "MQTT messages received", ["route"])
# Children looked up once: labels() takes a lock, and this is counted per message.
MESSAGES_BY_ROUTE = {
    route: MESSAGES.labels(route) for route in ("readings", "gateway", "counts", "camera_event", "status", "unknown")
}
ROWS_WRITTEN = Counter("ioc_ingest_rows_written_total", "Readings stored (new rows)")
DUPLICATES = Counter("ioc_ingest_duplicate_rows_total", "Readings already stored (redeliveries)")
DEAD_LETTERS = Counter("ioc_ingest_dead_letters_total", "Rejected message parts", ["reason"])
BATCH_SIZE = Histogram(
    "ioc_ingest_batch_messages", "Messages per committed batch", buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000)
)
COMMIT_SECONDS = Histogram(
    "ioc_ingest_commit_seconds",
    "Time to write and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
STALE = Counter(
    "ioc_ingest_stale_messages_total", "Messages of an earlier connection, dropped unread: the broker sends them again"
)
BACKLOG = Gauge("ioc_ingest_backlog_messages", "Messages received and not yet committed")
UNPUBLISHED = Counter(
    "ioc_ingest_unpublished_events_total",
    "Stored events not published because the outgoing queue was full (screens read them from the database)",
)
INBOX_FULL = Counter("ioc_ingest_inbox_full_total", "Times the inbox was full and reading from the broker paused")
INBOX_WAIT_SECONDS = Counter("ioc_ingest_inbox_wait_seconds_total", "Time reading from the broker was paused")
NARROWED = Counter(
    "ioc_ingest_narrowed_batches_total", "Batches that failed for a reason other than the database being away"
)
DATABASE_UP = Gauge("ioc_ingest_database_up", "1 while the last write succeeded")
BROKER_UP = Gauge("ioc_ingest_broker_connected", "1 while connected and subscribed to the broker")
RULES_SECONDS = Histogram(
    "ioc_ingest_rules_seconds",
    "Time to judge one batch against the rules and write its alerts",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
