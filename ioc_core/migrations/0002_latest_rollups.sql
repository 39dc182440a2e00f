-- Latest value per sensor metric (for the map), 1-minute and 1-hour rollups, and their upkeep.

CREATE TABLE latest (
    sensor_id text NOT NULL,
    metric    text NOT NULL,
    time      timestamptz NOT NULL,
    value     double precision NOT NULL,
    PRIMARY KEY (sensor_id, metric)
);

-- Minutes that received readings since the rollups last looked: ingest appends, the rollup job
-- consumes. Append-only, so writers never wait on the job.
CREATE TABLE rollup_dirty (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    minute timestamptz NOT NULL
);

-- The rollups are tables kept by the project's job (ingest/maintenance.py) on every edition of
-- TimescaleDB, so the one path that is tested is the one that runs.
CREATE TABLE readings_1m (
    bucket timestamptz NOT NULL, sensor_id text NOT NULL, metric text NOT NULL,
    avg double precision NOT NULL, min double precision NOT NULL, max double precision NOT NULL,
    count bigint NOT NULL, last double precision NOT NULL, last_time timestamptz NOT NULL,
    PRIMARY KEY (sensor_id, metric, bucket)
);
SELECT create_hypertable('readings_1m', 'bucket', chunk_time_interval => interval '7 days');
CREATE TABLE readings_1h (LIKE readings_1m INCLUDING ALL);
SELECT create_hypertable('readings_1h', 'bucket', chunk_time_interval => interval '90 days');
