"""Who sees which entity, for the API's answers and for the notifications of a subscription
(made on behalf of its owner, with the owner's role, units and tenant)."""

from __future__ import annotations

from dataclasses import dataclass

from ioc_core.ngsild.entities import Entity

OPEN_ROLES = frozenset({"public", "hotline_operator"})


@dataclass(frozen=True, slots=True)
class Viewer:
    role: str | None  # None: no token (open data)
    scope: frozenset[str] | None = None  # a ward operator's units; None: every unit
    tenant: str | None = None  # a partner's tenant

    def sees(self, entity: Entity) -> bool:
        """The public sees open data of the city; a partner its tenant too; a ward its units
        (and the units themselves); the city's roles everything."""
        if self.role == "partner":
            return entity.tenant == self.tenant or (entity.public and not entity.tenant)
        if self.role is None or self.role in OPEN_ROLES:
            return entity.public and not entity.tenant
        if self.scope is None:
            return True
        return entity.unit_id in self.scope or entity.type == "AdministrativeUnit"
