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

-- On the Apache edition (no continuous aggregates) the rollups are tables kept by the project's
-- job (ingest/maintenance.py); where the license is 'timescale' they are continuous aggregates
-- with refresh and retention policies. Both have the same name and columns.
DO $$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        CREATE MATERIALIZED VIEW readings_1m WITH (timescaledb.continuous) AS
            SELECT time_bucket('1 minute', time) AS bucket, sensor_id, metric,
                   avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS count,
                   last(value, time) AS last, max(time) AS last_time
            FROM readings GROUP BY bucket, sensor_id, metric WITH NO DATA;
        CREATE MATERIALIZED VIEW readings_1h WITH (timescaledb.continuous) AS
            SELECT time_bucket('1 hour', time) AS bucket, sensor_id, metric,
                   avg(value) AS avg, min(value) AS min, max(value) AS max, count(*) AS count,
                   last(value, time) AS last, max(time) AS last_time
            FROM readings GROUP BY bucket, sensor_id, metric WITH NO DATA;
        PERFORM add_continuous_aggregate_policy('readings_1m', start_offset => interval '1 day',
            end_offset => interval '1 minute', schedule_interval => interval '30 seconds');
        PERFORM add_continuous_aggregate_policy('readings_1h', start_offset => interval '3 days',
            end_offset => interval '1 hour', schedule_interval => interval '5 minutes');
    ELSE
        CREATE TABLE readings_1m (
            bucket timestamptz NOT NULL, sensor_id text NOT NULL, metric text NOT NULL,
            avg double precision NOT NULL, min double precision NOT NULL, max double precision NOT NULL,
            count bigint NOT NULL, last double precision NOT NULL, last_time timestamptz NOT NULL,
            PRIMARY KEY (sensor_id, metric, bucket)
        );
        PERFORM create_hypertable('readings_1m', 'bucket', chunk_time_interval => interval '7 days');
        CREATE TABLE readings_1h (LIKE readings_1m INCLUDING ALL);
        PERFORM create_hypertable('readings_1h', 'bucket', chunk_time_interval => interval '90 days');
    END IF;
END $$;
