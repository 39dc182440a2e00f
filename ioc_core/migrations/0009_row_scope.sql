-- Row-level scope: the rows of the API's connections are those of the units its request may see,
-- whatever a route's query says, so no route can forget its caller's units.
--
-- The API writes each request's scope into the setting ioc.units of the connection it lends
-- (ioc_api/deps.py), and these policies read it:
--   '*'            every unit, and the rows of no unit (city roles, engineers, open data)
--   '{a,b}'        units a and b only (a ward operator)
--   '' or other    nothing: every API connection between requests (default deny)
-- A connection that never set ioc.units (ingest, the CLI, vision, migrations) sees every row: only
-- there does current_setting() return NULL, since a session that has set it can change or reset
-- it (to '') but never unset it. Every service connects as the tables' owner, which FORCE holds to
-- the policies as well.

-- The units of a list scope ('{}' for any other); whether the scope is every unit; and the lowest
-- unit id it admits: '' for every unit (every id is >= ''), NULL otherwise.
CREATE FUNCTION scope_units() RETURNS text[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN left(current_setting('ioc.units', true), 1) = '{'
                THEN current_setting('ioc.units', true)::text[] ELSE '{}'::text[] END
$$;
CREATE FUNCTION scope_every_unit() RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(current_setting('ioc.units', true), '*') = '*'
$$;
CREATE FUNCTION scope_lowest_unit() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN coalesce(current_setting('ioc.units', true), '*') = '*' THEN '' END
$$;

-- The policy of the registry and alerts. Its shape keeps the plans of the queries it guards:
-- - a ward's units are tested twice: first against the list computed once per query (an
--   InitPlan), which is what a row outside them costs; then as an expression the planner can
--   read, so that it estimates the ward's rows and uses the unit index;
-- - every unit is `unit_id >= ''` (an index range) or a row of no unit, behind a flag computed once
--   per query; for a ward the lowest unit is NULL, which the planner knows matches nothing.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sensors', 'cameras', 'alerts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY unit_scope ON %I USING ('
            ' (unit_id = ANY ((SELECT scope_units())::text[]) AND unit_id = ANY (scope_units()))'
            ' OR ((SELECT scope_every_unit()) AND (unit_id >= scope_lowest_unit() OR unit_id IS NULL)))',
            t);
    END LOOP;
END $$;

-- Events are read by id (newest first, or from a position onwards), on their own indexes, not by
-- unit: their policy uses values computed once per query only. An expression in it would have
-- TimescaleDB check every chunk against it at the start of each query.
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY unit_scope ON events USING (
    (SELECT scope_every_unit()) OR unit_id = ANY ((SELECT scope_units())::text[]));

-- A rule of no unit applies to every unit: every scope sees it, but not a connection between
-- requests. Rules are few: no index to keep.
ALTER TABLE rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE rules FORCE ROW LEVEL SECURITY;
CREATE POLICY unit_scope ON rules USING (
    scope_every_unit()
    OR unit_id = ANY (scope_units())
    OR (unit_id IS NULL AND left(current_setting('ioc.units', true), 1) = '{'));

-- A comment is seen with its alert (the subquery is held to the policy of alerts).
ALTER TABLE alert_comments ENABLE ROW LEVEL SECURITY;
ALTER TABLE alert_comments FORCE ROW LEVEL SECURITY;
CREATE POLICY unit_scope ON alert_comments USING (alert_id IN (SELECT id FROM alerts));
