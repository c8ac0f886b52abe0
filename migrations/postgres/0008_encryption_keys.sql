-- Encryption at rest (SPEC §7, src/store/seal.rs): the credential columns
-- (destinations.secrets, destinations.headers, callback_endpoints.verification) hold values
-- sealed with XChaCha20-Poly1305, each naming the id of the key that sealed it.
--
-- Sealing cannot happen in SQL (the key never reaches the database), so this migration only
-- adds the bookkeeping; existing clear rows are sealed by `Store::seal_at_rest` when Herald
-- starts, right after the migrations run, and are readable as clear text until then.
--
-- The ids (never the keys) of the keys values in this database may be sealed with. A node
-- records its current key here at start and refuses to run when it finds an id it does not
-- have: with several nodes on one Postgres, a node that generated its own key (instead of
-- sharing `encryption_key`) stops at once rather than writing secrets the others cannot read.
-- Once every value is re-sealed under the current key, the other ids are deleted, which is
-- what lets an old key be retired after a rotation.
CREATE TABLE encryption_keys (
    key_id         TEXT PRIMARY KEY,
    first_used_at  BIGINT NOT NULL
);
