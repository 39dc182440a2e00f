"""NGSI-LD with the Smart Data Models: contexts, the IOC's data as entities, queries and forms,
shared by the API (``ioc_api/routes/ngsild*.py``) and the notifier of subscriptions."""

import re

# A partner's tenant (NGSILD-Tenant): it also prefixes the ids of its sensors.
TENANT = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
