-- Inbound capture (SPEC §3): callback endpoints agents wait on, and the requests they capture.
-- Same tables, columns and meaning as migrations/sqlite/0002_inbound.sql; Postgres spells
-- them BIGINT, BOOLEAN and BYTEA where SQLite has INTEGER and BLOB.

CREATE TABLE callback_endpoints (
    id               TEXT PRIMARY KEY,
    -- The capability in the URL (`/in/{slug}`): 192 random bits, so it cannot be guessed.
    slug             TEXT NOT NULL UNIQUE,
    -- NULL: owned by the platform (admin token only); otherwise visible to that tenant.
    tenant_id        TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    label            TEXT,
    -- JSON `Verification` (src/inbound/verify.rs), secret included. Stored plain for now;
    -- encryption at rest (SPEC §7) wraps this column later without changing its meaning.
    verification     TEXT NOT NULL,
    metadata         TEXT NOT NULL,
    -- Set for an event's reply channel (SPEC §3.5): the endpoint lives and dies with the event.
    event_id         TEXT REFERENCES events (id) ON DELETE CASCADE,
    -- The per-endpoint cursor sequence: ingest increments it in the insert transaction
    -- (`UPDATE … RETURNING`), which row-locks on Postgres and is single-writer on SQLite, so
    -- two callbacks never share a cursor, even in the same millisecond.
    last_cursor      BIGINT NOT NULL DEFAULT 0,
    received_count   BIGINT NOT NULL DEFAULT 0,
    duplicate_count  BIGINT NOT NULL DEFAULT 0,
    rejected_count   BIGINT NOT NULL DEFAULT 0,
    -- NULL: never expires. Past it, `/in/{slug}` answers 410 but stored callbacks stay readable.
    expires_at       BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX callback_endpoints_by_tenant ON callback_endpoints (tenant_id, id);
-- At most one reply channel per event; the delivery claim joins on it to find the reply URL.
CREATE UNIQUE INDEX callback_endpoints_by_event ON callback_endpoints (event_id)
    WHERE event_id IS NOT NULL;

CREATE TABLE callbacks (
    id             TEXT PRIMARY KEY,
    endpoint_id    TEXT NOT NULL REFERENCES callback_endpoints (id) ON DELETE CASCADE,
    -- Copied from the endpoint so polling across endpoints is one indexed, tenant-scoped query.
    tenant_id      TEXT,
    -- NULL for rejected requests: they are kept for debugging but never take a place in the
    -- sequence waiters read, so a forged request can neither wake nor shift anyone.
    cursor         BIGINT,
    method         TEXT NOT NULL,
    path           TEXT NOT NULL,
    query          TEXT,
    headers        TEXT NOT NULL,  -- JSON object, lower-case names (credentials redacted)
    body           BYTEA NOT NULL,  -- raw bytes: signatures cover bytes, and bodies may be binary
    content_type   TEXT,
    remote_addr    TEXT,
    received_at    BIGINT NOT NULL,
    verified       BOOLEAN NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reject_reason  TEXT,
    -- The sender's delivery id (webhook-id, X-GitHub-Delivery, Stripe event id, Idempotency-Key).
    dedupe_key     TEXT,
    a2a_task_id    TEXT,
    a2a_state      TEXT,
    acked_at       BIGINT
);
CREATE UNIQUE INDEX callbacks_by_cursor ON callbacks (endpoint_id, cursor) WHERE cursor IS NOT NULL;
-- A sender's retry is stored once; rejected attempts do not block the genuine one.
CREATE UNIQUE INDEX callbacks_dedupe ON callbacks (endpoint_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status = 'accepted';
CREATE INDEX callbacks_rejected ON callbacks (endpoint_id, id) WHERE status = 'rejected';
-- The poll/ack queue: accepted, not yet acknowledged, oldest first.
CREATE INDEX callbacks_unacked ON callbacks (tenant_id, id) WHERE acked_at IS NULL AND status = 'accepted';
CREATE INDEX callbacks_by_tenant ON callbacks (tenant_id, id);
