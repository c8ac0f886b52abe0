-- Bulk recovery: "schedule again every failed or skipped delivery of destination D since T".
-- A recovery row remembers the request; each delivery it touched points back to it, so the
-- job's progress is a GROUP BY over its deliveries rather than state kept up to date by hand.
CREATE TABLE recoveries (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    destination_id  TEXT NOT NULL,
    since           BIGINT NOT NULL,
    count           BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

ALTER TABLE deliveries ADD COLUMN recovery_id TEXT;
CREATE INDEX deliveries_by_recovery ON deliveries (recovery_id) WHERE recovery_id IS NOT NULL;
