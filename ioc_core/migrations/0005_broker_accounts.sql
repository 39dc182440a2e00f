-- The broker's accounts: the password file and the gateways' ACL blocks are written from here
-- (python -m ioc_api.cli mqtt ...). Only Mosquitto's own hash of each password is kept.
CREATE TABLE broker_accounts (
    username      text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('device', 'gateway', 'service')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rotated_at    timestamptz NOT NULL DEFAULT now()
);
