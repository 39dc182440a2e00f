-- The transaction that stored each event. A screen's position in the stream of events is a
-- database snapshot (pg_snapshot): the events it has not seen are exactly those whose transaction
-- that snapshot does not show, whatever order their ids were committed in (ioc_api/feed.py).
-- Events stored before this migration have none: every position already shows them.
ALTER TABLE events ADD COLUMN xid xid8;
ALTER TABLE events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX events_xid_idx ON events (xid);
