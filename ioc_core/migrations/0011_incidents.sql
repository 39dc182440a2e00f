-- Incidents: the alerts, camera events and citizens' reports of one situation, worked through the
-- checklist of its standard operating procedure (SOP); who is on duty, who is told, and what each
-- notification became; exercises (drills) marked as such wherever they show.

CREATE TABLE sops (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type        text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_]{0,39}$'),
    version     integer NOT NULL CHECK (version > 0),
    name_vi     text NOT NULL,
    name_en     text NOT NULL,
    source      text,
    match       jsonb NOT NULL,   -- what belongs to it: sensor kinds, camera events, report categories
    steps       jsonb NOT NULL,   -- [{key, action_vi, action_en, role, tier, due_minutes, approval}]
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text,
    UNIQUE (type, version)
);

CREATE TABLE incidents (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id          text NOT NULL REFERENCES units (id),   -- its owner: a ward, or the city
    department       text,                                   -- a city department that owns it
    type             text NOT NULL,
    sop_id           bigint REFERENCES sops (id),
    title            text NOT NULL,
    severity         text NOT NULL CHECK (severity IN ('info', 'minor', 'major', 'critical')),
    state            text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'responding', 'stabilised', 'closed')),
    exercise         boolean NOT NULL DEFAULT false,
    lat              double precision,
    lon              double precision,
    opened_at        timestamptz NOT NULL,
    last_member_at   timestamptz NOT NULL,
    members          integer NOT NULL DEFAULT 0,
    acknowledged_at  timestamptz,                            -- stops its notifications' chains
    acknowledged_by  text,
    closed_at        timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX incidents_open_idx ON incidents (unit_id, type, last_member_at) WHERE state <> 'closed';
CREATE INDEX incidents_opened_idx ON incidents (opened_at);

CREATE TABLE incident_members (
    incident_id  bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    member_type  text NOT NULL CHECK (member_type IN ('alert', 'event', 'ticket')),
    member_id    bigint NOT NULL,
    kind         text NOT NULL,
    severity     text NOT NULL,
    unit_id      text NOT NULL,
    at           timestamptz NOT NULL,
    title        text NOT NULL,
    lat          double precision,
    lon          double precision,
    PRIMARY KEY (member_type, member_id)                     -- one incident a member
);
CREATE INDEX incident_members_incident_idx ON incident_members (incident_id, at);

-- The checklist as worked: a step done (by whom, when, a note, a photo), and approved where the
-- city must approve it.
CREATE TABLE incident_steps (
    incident_id  bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    step_key     text NOT NULL,
    done_at      timestamptz NOT NULL,
    done_by      text NOT NULL,
    note         text,
    photo        text,
    approved_at  timestamptz,
    approved_by  text,
    PRIMARY KEY (incident_id, step_key)
);

-- Who is on duty: a shift of a user in a role for a unit.
CREATE TABLE duty_shifts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    unit_id    text NOT NULL REFERENCES units (id),
    role       text NOT NULL,
    username   text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL CHECK (ends_at > starts_at)
);
CREATE INDEX duty_shifts_now_idx ON duty_shifts (unit_id, role, starts_at, ends_at);
ALTER TABLE users ADD COLUMN email text CHECK (email IS NULL OR email ~ '^[^@\s]+@[^@\s]+$');

-- Who is told of which incidents, by which channel, and whom next when nobody acknowledges.
CREATE TABLE notification_rules (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL,
    unit_id         text REFERENCES units (id),               -- NULL: every unit
    incident_types  text[] NOT NULL DEFAULT '{}',             -- empty: every type
    min_severity    text NOT NULL DEFAULT 'major' CHECK (min_severity IN ('info', 'minor', 'major', 'critical')),
    channel         text NOT NULL CHECK (channel IN ('email', 'webhook')),
    chain           jsonb NOT NULL,   -- [{after_minutes, to}]: to is on_duty:ROLE, user:NAME, email:ADDRESS, url:URL
    remind_minutes  double precision CHECK (remind_minutes IS NULL OR remind_minutes > 0),
    secret          text,             -- webhooks: the key their signature is made with
    exercises       boolean NOT NULL DEFAULT false,           -- also for drills
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Each notification planned, and what became of it.
CREATE TABLE notifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    incident_id      bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    rule_id          bigint NOT NULL REFERENCES notification_rules (id) ON DELETE CASCADE,
    level            integer NOT NULL,          -- the chain's step
    round            integer NOT NULL,          -- 0 at first; each reminder one more
    channel          text NOT NULL,
    recipient        text NOT NULL,             -- an email address or a URL
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sent', 'failed', 'digested', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    created_at       timestamptz NOT NULL,
    sent_at          timestamptz,
    sent_with        bigint,                    -- the notification whose message carried it (a digest)
    UNIQUE (incident_id, rule_id, level, round, recipient)
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notifications_recipient_idx ON notifications (recipient, sent_at);

-- Drills: what an exercise causes is marked so, shown so, and left out of published figures.
ALTER TABLE sensors ADD COLUMN exercise boolean NOT NULL DEFAULT false;
ALTER TABLE cameras ADD COLUMN exercise boolean NOT NULL DEFAULT false;
ALTER TABLE alerts ADD COLUMN exercise boolean NOT NULL DEFAULT false;
ALTER TABLE tickets ADD COLUMN exercise boolean NOT NULL DEFAULT false;

-- Scope: a ward sees its own incidents, and their members and steps through them.
ALTER TABLE incidents ENABLE ROW LEVEL SECURITY;
ALTER TABLE incidents FORCE ROW LEVEL SECURITY;
CREATE POLICY unit_scope ON incidents USING (
    (unit_id = ANY ((SELECT scope_units())::text[]) AND unit_id = ANY (scope_units()))
    OR ((SELECT scope_every_unit()) AND unit_id >= scope_lowest_unit()));
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['incident_members', 'incident_steps', 'notifications'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY unit_scope ON %I USING ((SELECT scope_every_unit()) OR incident_id IN (SELECT id FROM incidents))',
            t);
    END LOOP;
END $$;
