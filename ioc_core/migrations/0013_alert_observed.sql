-- The data time of the newest observation that opened, repeated or resolved an alert. Several
-- ingest workers (or a redelivery after a fault) may judge one source's readings out of order; an
-- observation older than this one changes nothing: a late reading below a threshold does not
-- resolve an alert a newer one keeps open, and a late one above it does not reopen a resolved one.
ALTER TABLE alerts ADD COLUMN observed_at timestamptz;
UPDATE alerts SET observed_at = (data->>'observed_at')::timestamptz WHERE data ? 'observed_at';
CREATE INDEX alerts_resolved_observed_idx ON alerts (rule_id, source_type, source_id, observed_at DESC)
  WHERE state = 'resolved';
