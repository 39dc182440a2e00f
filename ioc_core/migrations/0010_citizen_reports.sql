-- Citizens' reports: the city's categories, tickets handled by a unit, the people who reported each
-- (a second report of the same thing joins the first one's ticket), their photos, every step, the
-- city's own working days, and the keys of the apps that file reports through Open311.

ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'engineer', 'city_operator', 'ward_operator', 'hotline_operator', 'public'));

CREATE TABLE report_categories (
    code            text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{0,39}$'),
    name_vi         text NOT NULL CHECK (length(name_vi) BETWEEN 1 AND 120),
    name_en         text NOT NULL CHECK (length(name_en) BETWEEN 1 AND 120),
    description_vi  text NOT NULL DEFAULT '',
    description_en  text NOT NULL DEFAULT '',
    deadline_days   numeric(4, 1) NOT NULL CHECK (deadline_days > 0 AND deadline_days <= 60),
    emergency       boolean NOT NULL DEFAULT false,
    keywords        text[] NOT NULL DEFAULT '{}',
    active          boolean NOT NULL DEFAULT true,
    sort_order      integer NOT NULL DEFAULT 100,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Apps that file reports (the city's app, a Zalo bridge, partners): Open311's api_key, stored as
-- its SHA-256 digest.
CREATE TABLE api_clients (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 80),
    channel             text NOT NULL CHECK (channel IN ('app', 'zalo', 'partner', 'web', 'simulated')),
    digest              bytea NOT NULL UNIQUE,
    requests_per_minute integer NOT NULL DEFAULT 120 CHECK (requests_per_minute > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at          timestamptz
);

CREATE TABLE tickets (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    category         text NOT NULL REFERENCES report_categories (code),
    unit_id          text NOT NULL REFERENCES units (id),   -- who handles it: a unit, or the city
    department       text,                                   -- a city department it was sent up to
    state            text NOT NULL DEFAULT 'received'
                     CHECK (state IN ('received', 'accepted', 'in_progress', 'resolved', 'closed', 'rejected')),
    emergency        boolean NOT NULL,
    lat              double precision NOT NULL,
    lon              double precision NOT NULL,
    address          text,
    description      text NOT NULL,
    received_at      timestamptz NOT NULL,
    deadline_at      timestamptz NOT NULL,
    accepted_at      timestamptz,
    resolved_at      timestamptz,
    closed_at        timestamptz,
    resolution_note  text,
    reject_reason    text,
    working_s        double precision,  -- working time from received to resolved (or rejected)
    on_time          boolean,           -- resolved (or rejected) by its deadline
    reporters        integer NOT NULL DEFAULT 1,
    escalation_level integer NOT NULL DEFAULT 0,
    escalated_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_unit_state_idx ON tickets (unit_id, state);
CREATE INDEX tickets_received_idx ON tickets (received_at);
-- Duplicates are looked for among the open tickets of a category, near a place.
CREATE INDEX tickets_open_category_idx ON tickets (category, received_at)
    WHERE state IN ('received', 'accepted', 'in_progress');
-- Deadlines are watched among the open tickets.
CREATE INDEX tickets_open_deadline_idx ON tickets (deadline_at)
    WHERE state IN ('received', 'accepted', 'in_progress');

-- Each person's report, and the code they follow it by (Open311's service_request_id). Contacts
-- are for the handling unit's staff only.
CREATE TABLE ticket_reports (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id     bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    code          text NOT NULL UNIQUE,
    channel       text NOT NULL CHECK (channel IN ('web', 'app', 'zalo', 'partner', 'hotline', 'simulated')),
    client_id     bigint REFERENCES api_clients (id),
    entered_by    text,               -- the hotline operator who took the call
    received_at   timestamptz NOT NULL,
    description   text NOT NULL,
    lat           double precision NOT NULL,
    lon           double precision NOT NULL,
    address       text,
    contact_name  text,
    contact_phone text,
    contact_email text,
    device_id     text,
    account_id    text,
    media_urls    text[] NOT NULL DEFAULT '{}'   -- Open311's media_url: kept for staff, never fetched
);
CREATE INDEX ticket_reports_ticket_idx ON ticket_reports (ticket_id);

CREATE TABLE ticket_photos (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id   bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    report_id   bigint REFERENCES ticket_reports (id) ON DELETE CASCADE,
    stage       text NOT NULL CHECK (stage IN ('report', 'resolution')),
    unit_id     text NOT NULL REFERENCES units (id),   -- whose storage quota it counts against
    name        text NOT NULL UNIQUE,                  -- its file (and its thumbnail's) under the photo store
    bytes       integer NOT NULL,
    width       integer NOT NULL,
    height      integer NOT NULL,
    public      boolean NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ticket_photos_ticket_idx ON ticket_photos (ticket_id);
CREATE INDEX ticket_photos_unit_idx ON ticket_photos (unit_id);

-- Every step of a ticket, with who took it; a public step's note is what the citizen reads.
CREATE TABLE ticket_steps (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id  bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL,
    step       text NOT NULL,
    state      text NOT NULL,
    unit_id    text NOT NULL,
    by_whom    text,
    note       text,
    public     boolean NOT NULL DEFAULT true
);
CREATE INDEX ticket_steps_ticket_idx ON ticket_steps (ticket_id, id);

-- The city's own days: a Saturday worked to make up for a bridge day (true), or an extra day off.
CREATE TABLE calendar_days (
    day      date PRIMARY KEY,
    working  boolean NOT NULL,
    note     text NOT NULL DEFAULT ''
);

-- Scope: a ward sees the tickets it handles, and their reports, photos and steps through them;
-- every unit's scope is a flag computed once per query, not a look through every ticket (a
-- tracking page read one report's steps through a million tickets in 0.8 s without it).
ALTER TABLE tickets ENABLE ROW LEVEL SECURITY;
ALTER TABLE tickets FORCE ROW LEVEL SECURITY;
CREATE POLICY unit_scope ON tickets USING (
    (unit_id = ANY ((SELECT scope_units())::text[]) AND unit_id = ANY (scope_units()))
    OR ((SELECT scope_every_unit()) AND unit_id >= scope_lowest_unit()));
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ticket_reports', 'ticket_photos', 'ticket_steps'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY unit_scope ON %I USING ((SELECT scope_every_unit()) OR ticket_id IN (SELECT id FROM tickets))',
            t);
    END LOOP;
END $$;

-- The city's categories (Decision 960/QĐ-UBND: an emergency is handled within 1 working day, what
-- can be checked on the spot within 3); admins change them through the API and the CLI.
INSERT INTO report_categories (code, name_vi, name_en, description_vi, description_en, deadline_days, emergency,
                               keywords, sort_order) VALUES
    ('urban_infrastructure', 'Hạ tầng đô thị', 'Urban infrastructure',
     'Đường, vỉa hè, cống, công trình công cộng hư hỏng', 'Damaged roads, pavements, drains, public works',
     3, false, '{road,pothole,pavement,drain,đường,ổ gà,vỉa hè,cống}', 10),
    ('environment_sanitation', 'Môi trường, vệ sinh', 'Environment and sanitation',
     'Rác thải, ô nhiễm, nước thải, vệ sinh công cộng', 'Waste, pollution, sewage, public hygiene',
     3, false, '{waste,garbage,pollution,smell,rác,ô nhiễm,mùi}', 20),
    ('security_order', 'An ninh, trật tự', 'Security and order',
     'An ninh, trật tự đô thị, lấn chiếm lòng đường', 'Security, urban order, encroachment on streets',
     3, false, '{security,encroachment,an ninh,trật tự,lấn chiếm}', 30),
    ('traffic', 'Giao thông', 'Traffic',
     'Ùn tắc, đèn tín hiệu, biển báo, phương tiện đỗ sai', 'Congestion, signals, signs, badly parked vehicles',
     3, false, '{traffic,congestion,signal,giao thông,ùn tắc,đèn tín hiệu}', 40),
    ('flooding', 'Ngập lụt', 'Flooding',
     'Ngập nước, triều cường, sạt lở', 'Flooded streets, high tide, landslides',
     1, true, '{flood,flooding,water,ngập,lụt,sạt lở}', 50),
    ('lighting', 'Chiếu sáng', 'Lighting',
     'Đèn đường hỏng, tắt, sáng ban ngày', 'Street lights broken, off, or on by day',
     3, false, '{light,lamp,đèn,chiếu sáng}', 60),
    ('trees', 'Cây xanh', 'Trees',
     'Cây gãy đổ, nguy hiểm, cần cắt tỉa', 'Fallen, dangerous or overgrown trees',
     3, false, '{tree,branch,cây,cành}', 70),
    ('noise', 'Tiếng ồn', 'Noise',
     'Tiếng ồn từ công trình, karaoke, cơ sở kinh doanh', 'Noise from works, karaoke, businesses',
     3, false, '{noise,karaoke,ồn}', 80),
    ('other', 'Khác', 'Other', 'Phản ánh khác', 'Anything else', 10, false, '{}', 90);
