-- Rules that turn readings and camera events into alerts, and what escalation needs.
-- Parameters by type (validated by ioc_core/rules.py before they are stored):
--   threshold: {"op": "above"|"below", "value", "clear" (hysteresis; default value), "for_s"}
--   rate:      {"direction": "up"|"down", "delta", "window_s", "clear_delta" (default delta / 2)}
--   no_data:   {"factor", "default_interval_s"}  silent longer than factor x the sensor's interval_s
--   camera:    {"event", "min_duration_s"}      camera.<event> lasting at least min_duration_s
CREATE TABLE rules (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL,
    type        text NOT NULL CHECK (type IN ('threshold', 'rate', 'no_data', 'camera')),
    sensor_kind text,                          -- NULL: every kind
    metric      text,                          -- threshold and rate: required; no_data: NULL = any metric
    unit_id     text REFERENCES units (id),    -- NULL: every unit
    severity    text NOT NULL CHECK (severity IN ('info', 'minor', 'major', 'critical')),
    params      jsonb NOT NULL,
    public      boolean NOT NULL DEFAULT false, -- published in the CAP feed while active
    reference   text,                          -- where a limit comes from
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (type IN ('no_data', 'camera') OR metric IS NOT NULL)
);

ALTER TABLE sensors ADD COLUMN interval_s double precision CHECK (interval_s > 0);  -- expected reporting interval
ALTER TABLE alerts ADD COLUMN escalated_at timestamptz;
ALTER TABLE alerts ADD COLUMN data jsonb NOT NULL DEFAULT '{}';  -- the rule's condition, for people and CAP
CREATE INDEX alerts_opened_idx ON alerts (opened_at);

INSERT INTO rules (name, type, sensor_kind, metric, severity, params, public, reference) VALUES
  ('PM2.5 above the national 24-hour limit for 10 minutes', 'threshold', 'air_quality', 'pm25', 'major',
   '{"op": "above", "value": 45, "clear": 35, "for_s": 600}', true,
   'QCVN 05:2023/BTNMT: PM2.5 24-hour limit 45 µg/m³ from 1 January 2026 (50 before)'),
  ('PM2.5 very bad (VN_AQI above 200) for 10 minutes', 'threshold', 'air_quality', 'pm25', 'critical',
   '{"op": "above", "value": 150, "clear": 120, "for_s": 600}', true,
   'Decision 1459/QĐ-TCMT (VN_AQI): PM2.5 150 µg/m³ is the breakpoint of AQI 200'),
  ('PM10 above the national 24-hour limit for 10 minutes', 'threshold', 'air_quality', 'pm10', 'minor',
   '{"op": "above", "value": 100, "clear": 80, "for_s": 600}', true,
   'QCVN 05:2023/BTNMT: PM10 24-hour limit 100 µg/m³'),
  ('Water level at alarm level III', 'threshold', 'water_level', 'level_m', 'critical',
   '{"op": "above", "value": 2.5, "clear": 2.3, "for_s": 300}', true,
   'Flood alarm level III of the Hàn river at Cẩm Lệ, 2.5 m (flood bulletins); set per station'),
  ('Water level up more than 20 cm in 15 minutes', 'rate', 'water_level', 'level_m', 'major',
   '{"direction": "up", "delta": 0.2, "window_s": 900, "clear_delta": 0.05}', true, NULL),
  ('Heavy rain: above 50 mm per hour for 15 minutes', 'threshold', 'rainfall', 'rain_mm_h', 'major',
   '{"op": "above", "value": 50, "clear": 30, "for_s": 900}', true, NULL),
  ('Noise above the daytime residential limit for 15 minutes', 'threshold', 'noise', 'laeq_db', 'minor',
   '{"op": "above", "value": 70, "clear": 65, "for_s": 900}', false,
   'QCVN 26:2010/BTNMT: ordinary areas 70 dBA from 6:00 to 21:00 (55 at night)'),
  ('Parking full for 30 minutes', 'threshold', 'parking', 'occupancy', 'info',
   '{"op": "above", "value": 0.95, "clear": 0.85, "for_s": 1800}', false, NULL),
  ('Air quality sensor silent', 'no_data', 'air_quality', NULL, 'minor', '{"factor": 3, "default_interval_s": 60}', false, NULL),
  ('Water level sensor silent', 'no_data', 'water_level', NULL, 'major', '{"factor": 3, "default_interval_s": 60}', false, NULL),
  ('Rain gauge silent', 'no_data', 'rainfall', NULL, 'minor', '{"factor": 3, "default_interval_s": 60}', false, NULL),
  ('Traffic counter silent', 'no_data', 'traffic', NULL, 'minor', '{"factor": 3, "default_interval_s": 60}', false, NULL),
  ('Stopped vehicle for a minute', 'camera', NULL, NULL, 'major', '{"event": "stopped_vehicle", "min_duration_s": 60}', false, NULL),
  ('Crowd for two minutes', 'camera', NULL, NULL, 'minor', '{"event": "crowding", "min_duration_s": 120}', false, NULL),
  ('Congestion for five minutes', 'camera', NULL, NULL, 'minor', '{"event": "congestion", "min_duration_s": 300}', true, NULL);
