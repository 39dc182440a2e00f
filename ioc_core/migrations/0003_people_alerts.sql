-- People and what they do: users, tokens, alerts and their comments, the audit log.

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text,                 -- argon2; NULL for service accounts (tokens only)
    role          text NOT NULL CHECK (role IN ('admin', 'engineer', 'city_operator', 'ward_operator', 'public')),
    units         text[] NOT NULL DEFAULT '{}',  -- ward operators: the units they may see
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Bearer tokens, stored as SHA-256 digests: login sessions and long-lived service tokens.
CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    digest      bytea NOT NULL UNIQUE,
    kind        text NOT NULL CHECK (kind IN ('session', 'service')),
    name        text,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id          bigint,
    unit_id          text REFERENCES units (id),
    source_type      text NOT NULL,
    source_id        text NOT NULL,
    metric           text,
    severity         text NOT NULL CHECK (severity IN ('info', 'minor', 'major', 'critical')),
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
    title            text NOT NULL,
    lat              double precision,
    lon              double precision,
    opened_at        timestamptz NOT NULL DEFAULT now(),
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    resolved_at      timestamptz,
    resolved_by      text,             -- a username, or 'auto' when the condition cleared
    escalation_level integer NOT NULL DEFAULT 0,
    last_value       double precision,
    peak_value       double precision,
    count            integer NOT NULL DEFAULT 1,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_unit_state_idx ON alerts (unit_id, state);
-- One open alert per rule and source at a time.
CREATE UNIQUE INDEX alerts_one_open_idx ON alerts (rule_id, source_type, source_id) WHERE state <> 'resolved';

CREATE TABLE alert_comments (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id   bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    author     text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time     timestamptz NOT NULL DEFAULT now(),
    actor    text NOT NULL,
    action   text NOT NULL,
    target   text,
    details  jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX events_kind_idx ON events (kind, id);
