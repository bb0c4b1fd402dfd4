-- The role slo-canary connects to SLO-Scout's database as: it may read the
-- table its observers and query probes read (telemetry_events) and nothing
-- else. Run as an administrator, connected to the slo_scout database, after
-- the schema exists; then give the role a password
-- (ALTER ROLE slo_canary PASSWORD '...') or your usual authentication.
-- On TimescaleDB the grant on the hypertable covers its chunks.
-- PostgreSQL 14 and older let every role create tables in schema public;
-- there, also run REVOKE CREATE ON SCHEMA public FROM PUBLIC.
CREATE ROLE slo_canary LOGIN;
GRANT CONNECT ON DATABASE slo_scout TO slo_canary;
GRANT USAGE ON SCHEMA public TO slo_canary;
GRANT SELECT ON TABLE public.telemetry_events TO slo_canary;
-- Belt and braces: even a mistaken grant cannot let the canary write.
ALTER ROLE slo_canary SET default_transaction_read_only = on;
