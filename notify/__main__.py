"""``python -m notify``: the notifier of incidents and, beside it, of NGSI-LD subscriptions,
until SIGTERM; ``/metrics`` and ``/ready`` on ``IOC_NOTIFY_METRICS_PORT``."""

import signal
import threading

from ioc_core.health_http import database_answers, serve
from ioc_core.logs import setup_logging
from ioc_core.settings import get_settings
from notify.service import Notifier
from notify.subscriptions import SubscriptionNotifier


def main() -> None:
    settings = get_settings()
    log = setup_logging(settings, "notify")
    notifier = Notifier(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: notifier.stop.set())
    serve(settings.notify_metrics_port, {"database": lambda: database_answers(settings.database_url)})
    log.info("notifier started", extra={"smtp": bool(settings.smtp_url)})
    subscriptions = threading.Thread(
        target=SubscriptionNotifier(settings).run, args=(notifier.stop,), name="ngsild-notify", daemon=True
    )
    subscriptions.start()
    notifier.run()
    subscriptions.join(timeout=10)


if __name__ == "__main__":
    main()
