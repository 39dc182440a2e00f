-- The gateway that reports for a sensor. A gateway's message may carry readings only for the
-- sensors bound to it (ingest binds a sensor it first hears of through a gateway to that gateway).
ALTER TABLE sensors ADD COLUMN gateway_id text;
