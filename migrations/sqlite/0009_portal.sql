-- The tenant portal (SPEC §5): login links and browser sessions.
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
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX portal_links_by_expiry ON portal_links (expires_at);

CREATE TABLE portal_sessions (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX portal_sessions_by_expiry ON portal_sessions (expires_at);

-- Destination health (success rate over 24 h, latest outcome) needs no index of its own: it
-- reads the newest deliveries of a destination, at most 1,000 of them, by id range on the
-- existing (destination_id, id) index (ids are time-sortable). A covering index with the status
-- was tried and left out: with the walk bounded it bought under a millisecond, and it would
-- cost one more index write per status change on the delivery hot path. Render times for a
-- tenant with 100,000 deliveries: `examples/portal_render.rs`.
