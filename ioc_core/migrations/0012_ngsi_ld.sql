-- NGSI-LD: partners' entities, each partner in its own tenant, and the subscriptions of consumers.
--
-- A partner's entity is a sensor of the registry (its numeric properties are readings that ingest
-- validates, stores and runs the rules on, like any other) and a row here that keeps its id, type
-- and the attributes that are not readings.

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'engineer', 'city_operator', 'ward_operator', 'hotline_operator', 'public', 'partner'));
ALTER TABLE users ADD COLUMN tenant text;  -- a partner's NGSI-LD tenant
ALTER TABLE users ADD CONSTRAINT users_partner_tenant CHECK ((role = 'partner') = (tenant IS NOT NULL));

ALTER TABLE sensors ADD COLUMN tenant text;  -- a partner's entity, provided through NGSI-LD

CREATE TABLE ngsi_entities (
    tenant      text NOT NULL,
    id          text NOT NULL,                 -- the entity's URI, as the partner gave it
    type        text NOT NULL,                 -- in the IOC's terms (an IRI where it has none)
    sensor_id   text NOT NULL UNIQUE REFERENCES sensors (id) ON DELETE CASCADE,
    attrs       jsonb NOT NULL DEFAULT '{}',   -- the attributes that are not readings (normalized)
    created_at  timestamptz NOT NULL DEFAULT now(),
    modified_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);

CREATE TABLE ngsi_subscriptions (
    id                text PRIMARY KEY,           -- urn:ngsi-ld:Subscription:...
    tenant            text NOT NULL DEFAULT '',
    owner             text NOT NULL REFERENCES users (username) ON DELETE CASCADE,  -- its notifications
                                                  -- show what the owner's role and units show now
    body              jsonb NOT NULL,             -- as given, in the owner's terms
    context           jsonb,                      -- the owner's @context: its terms
    active            boolean NOT NULL DEFAULT true,
    expires_at        timestamptz,
    times_sent        bigint NOT NULL DEFAULT 0,
    times_failed      bigint NOT NULL DEFAULT 0,
    last_notification timestamptz,
    last_success      timestamptz,
    last_failure      timestamptz,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    modified_at       timestamptz NOT NULL DEFAULT now()
);
