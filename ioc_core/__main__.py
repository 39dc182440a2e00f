"""``python -m ioc_core migrate``: apply the schema migrations, seed the reference units and the
shipped SOPs."""

import argparse

from ioc_core.db import connect, migrate
from ioc_core.logs import setup_logging
from ioc_core.settings import get_settings
from ioc_core.sops import seed_sops
from ioc_core.units import seed_units


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ioc_core", description=__doc__)
    parser.add_argument("command", choices=["migrate"])
    parser.parse_args()
    settings = get_settings()
    log = setup_logging(settings, "ioc_core")
    applied = migrate(settings.database_url)
    with connect(settings.database_url, autocommit=True) as conn:
        seeded = seed_units(conn, settings.shared_dir)
        sops = seed_sops(conn)
    log.info("database ready", extra={"migrations_applied": len(applied), "units_seeded": seeded, "sops_seeded": sops})


if __name__ == "__main__":
    main()
