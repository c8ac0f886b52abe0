-- Herald's core schema (Postgres).
--
-- Decisions that apply to every table:
-- * Times are Unix milliseconds in BIGINT columns, supplied by the application's clock rather
--   than now(): the SQLite schema uses the same representation (one row type serves both
--   stores), and tests can move time forward to make a retry due without sleeping.
-- * JSON is stored as TEXT, verbatim: event data reaches receivers byte for byte as the
--   publisher sent it (jsonb would reorder keys), and Herald never queries inside it.
-- * Ids are prefixed UUIDv7 strings (`evt_…`), time-sortable, so `ORDER BY id` is creation
--   order and the id is the pagination cursor.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    metadata    TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- API tokens are stored only as SHA-256 hashes. tenant_id NULL = the platform's admin token.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    tenant_id   TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE destinations (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind             TEXT NOT NULL,
    url              TEXT,
    description      TEXT,
    topics           TEXT NOT NULL,  -- JSON array of patterns
    filter           TEXT,           -- JSON filter, validated on save
    headers          TEXT NOT NULL,  -- JSON object
    options          TEXT NOT NULL,  -- JSON object (DestinationOptions)
    secrets          TEXT NOT NULL,  -- JSON array of {secret, expires_at?}, newest first
    enabled          BOOLEAN NOT NULL,
    disabled_reason  TEXT,
    disabled_at      BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX destinations_by_tenant ON destinations (tenant_id, id);

CREATE TABLE events (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    topic            TEXT NOT NULL,
    data             TEXT NOT NULL,
    metadata         TEXT NOT NULL,
    idempotency_key  TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX events_by_tenant ON events (tenant_id, id);
-- A repeat with the same key returns the original event instead of publishing again.
CREATE UNIQUE INDEX events_idempotency ON events (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One event bound for one destination: the queue itself (see src/domain/state.rs).
-- destination_id has no foreign key on purpose: deleting a destination cancels its pending
-- deliveries but keeps their history.
CREATE TABLE deliveries (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    event_id          TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    destination_id    TEXT NOT NULL,
    topic             TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN
                        ('scheduled', 'delivering', 'retrying', 'succeeded', 'failed', 'skipped', 'cancelled')),
    attempt_count     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT,
    -- While `delivering`: when the claiming worker's lease runs out and another may take over.
    lease_expires_at  BIGINT,
    -- The next attempt was asked for by a person (retry, replay), not by the schedule.
    manual            BOOLEAN NOT NULL DEFAULT FALSE,
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    finalized_at      BIGINT
);
-- The claim query's index: only pending rows, in due order. Partial, so finished deliveries
-- (the vast majority) cost the scheduler nothing.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('scheduled', 'retrying');
-- The rescuer's index: leases that may have expired.
CREATE INDEX deliveries_leased ON deliveries (lease_expires_at) WHERE status = 'delivering';
CREATE INDEX deliveries_by_tenant ON deliveries (tenant_id, id);
CREATE INDEX deliveries_by_event ON deliveries (event_id);
CREATE INDEX deliveries_by_destination ON deliveries (destination_id, id);

-- The attempt log: one row per try, kept for debugging and shown in the portal.
CREATE TABLE attempts (
    id                TEXT PRIMARY KEY,
    delivery_id       TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    tenant_id         TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    trigger           TEXT NOT NULL,
    started_at        BIGINT NOT NULL,
    duration_ms       BIGINT NOT NULL,
    url               TEXT,
    status_code       INTEGER,
    error_kind        TEXT,
    error             TEXT,
    request_headers   TEXT NOT NULL,
    response_headers  TEXT NOT NULL,
    response_body     TEXT
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, attempt);
