-- The tenant portal (SPEC §5): login links and browser sessions. Postgres; same tables and
-- meaning as migrations/sqlite.
--
-- * Both hold only the SHA-256 of their token (like api_tokens): a copy of the database lets
--   no one into anyone's portal. The CSRF token is derived from the session token, so it needs
--   no column.
-- * A login link is single-use: `used_at` is set in the same statement that checks it, so two
--   browsers racing on one link cannot both get a session. Used and expired rows are kept for
--   a day (purged when new ones are written) so the portal can say *why* a link did not work.
-- * Both cascade with their tenant: deleting a tenant ends its portal sessions at once.
CREATE TABLE portal_links (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX portal_links_by_expiry ON portal_links (expires_at);

CREATE TABLE portal_sessions (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX portal_sessions_by_expiry ON portal_sessions (expires_at);

-- Destination health (success rate over 24 h, latest attempt) reads a destination's recent
-- deliveries by id range (ids are time-sortable) on the existing (destination_id, id) index.
-- This covering index adds the one column the health query reads (status), so counting a
-- day of deliveries never touches the table: the overview stays fast for a tenant with
-- 100,000 deliveries. The price is one more index entry per status change, on the hot path
-- (see `examples/portal_render.rs` for the render times it buys).
CREATE INDEX deliveries_health ON deliveries (destination_id, id, status);
