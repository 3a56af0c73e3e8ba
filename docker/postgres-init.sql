-- The database of docker/compose.yaml's postgres-only profile (the kurrentdb profile uses `platform`).
-- Runs once, when the PostgreSQL volume is first initialised.
CREATE DATABASE platform_pg;
