-- The event-type catalog (docs/event-types.md): platform-wide, written by the admin token and
-- read by every tenant.
--
-- * `schema` and `examples` are JSON text; `schema` is null for "any JSON". They were checked
--   (a valid 2020-12 schema, every example satisfying it) before they were written.
-- * `version` grows by one with every change, so an event can say which definition its payload
--   was checked against (`events.schema_version`, null when it was not checked).
-- * Deleting a type leaves its events as they are: they keep the version they were checked
--   against, and the catalog holds nothing for that topic any more.
CREATE TABLE event_types (
    name         TEXT PRIMARY KEY,
    description  TEXT,
    schema       TEXT,
    examples     TEXT NOT NULL,
    deprecated   INTEGER NOT NULL CHECK (deprecated IN (0, 1)),
    archived     INTEGER NOT NULL CHECK (archived IN (0, 1)),
    version      INTEGER NOT NULL CHECK (version >= 1),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

ALTER TABLE events ADD COLUMN schema_version INTEGER;
