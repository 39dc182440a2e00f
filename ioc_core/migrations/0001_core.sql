-- Core schema: units, the registry, readings, events, dead letters.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE units (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('city', 'ward', 'commune', 'special_zone')),
    parent_id   text REFERENCES units (id),
    population  integer,
    area_km2    double precision,
    boundary    jsonb,              -- GeoJSON geometry (lon, lat)
    centroid    point,              -- (lon, lat)
    committee   point,              -- the people's committee, (lon, lat)
    address     text,
    former_units text
);

-- Each polygon of a unit's boundary, for point-in-unit lookups in the database itself.
CREATE TABLE unit_parts (
    unit_id text NOT NULL REFERENCES units (id) ON DELETE CASCADE,
    part    polygon NOT NULL
);
CREATE INDEX unit_parts_part_idx ON unit_parts USING gist (part);

-- The unit that holds a point, or the nearest one when it lies outside every boundary.
CREATE FUNCTION unit_at(lon double precision, lat double precision) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT unit_id FROM unit_parts WHERE part @> point(lon, lat) LIMIT 1),
        (SELECT id FROM units WHERE kind <> 'city' AND centroid IS NOT NULL
          ORDER BY centroid <-> point(lon, lat) LIMIT 1))
$$;

CREATE TABLE sensors (
    id          text PRIMARY KEY,
    kind        text NOT NULL DEFAULT 'unknown',
    name        text,
    unit_id     text REFERENCES units (id),
    lat         double precision,
    lon         double precision,
    metrics     jsonb NOT NULL DEFAULT '{}',  -- {"pm25": {"unit": "µg/m³", "min": 0, "max": 1000}}
    registered  boolean NOT NULL DEFAULT true, -- false: seen on the bus, not yet registered
    status      text NOT NULL DEFAULT 'unknown',
    last_seen   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sensors_unit_idx ON sensors (unit_id);

CREATE TABLE cameras (
    id          text PRIMARY KEY,
    name        text,
    unit_id     text REFERENCES units (id),
    lat         double precision,
    lon         double precision,
    stream_url  text,
    analytics   jsonb NOT NULL DEFAULT '{}',  -- lines, zones, classes (normalized coordinates)
    status      text NOT NULL DEFAULT 'unknown',
    last_seen   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A device placed by coordinates is assigned its unit, whoever writes it.
CREATE FUNCTION assign_unit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.unit_id IS NULL AND NEW.lat IS NOT NULL AND NEW.lon IS NOT NULL THEN
        NEW.unit_id := unit_at(NEW.lon, NEW.lat);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sensors_assign_unit BEFORE INSERT OR UPDATE OF lat, lon, unit_id ON sensors
    FOR EACH ROW EXECUTE FUNCTION assign_unit();
CREATE TRIGGER cameras_assign_unit BEFORE INSERT OR UPDATE OF lat, lon, unit_id ON cameras
    FOR EACH ROW EXECUTE FUNCTION assign_unit();

CREATE TABLE readings (
    time      timestamptz NOT NULL,
    sensor_id text NOT NULL,
    metric    text NOT NULL,
    value     double precision NOT NULL
);
SELECT create_hypertable('readings', 'time', chunk_time_interval => interval '1 day');
-- Redelivered messages are written once.
CREATE UNIQUE INDEX readings_sensor_metric_time_idx ON readings (sensor_id, metric, time DESC);

CREATE SEQUENCE events_id_seq;
CREATE TABLE events (
    id          bigint NOT NULL DEFAULT nextval('events_id_seq'),
    time        timestamptz NOT NULL,
    kind        text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'minor', 'major', 'critical')),
    unit_id     text,
    source_type text NOT NULL,
    source_id   text NOT NULL,
    lat         double precision,
    lon         double precision,
    title       text NOT NULL,
    data        jsonb NOT NULL DEFAULT '{}'
);
SELECT create_hypertable('events', 'time', chunk_time_interval => interval '7 days');
CREATE INDEX events_id_idx ON events (id);
CREATE INDEX events_unit_id_idx ON events (unit_id, id);

CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    payload     bytea NOT NULL,
    reason      text NOT NULL
);
CREATE INDEX dead_letters_received_idx ON dead_letters (received_at DESC);
