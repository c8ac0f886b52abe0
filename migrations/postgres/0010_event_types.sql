-- The event-type catalog (docs/event-types.md). Postgres; same table and meaning as
-- migrations/sqlite.
--
-- * `schema` and `examples` are JSON text; `schema` is null for "any JSON". They were checked
--   (a valid 2020-12 schema, every example satisfying it) before they were written.
-- * `version` grows by one with every change, so an event can say which definition its payload
--   was checked against (`events.schema_version`, null when it was not checked).
-- * Deleting a type leaves its events as they are: they keep the version they were checked
--   against, and the catalog holds nothing for that topic any more.
-- * Every change is announced on the `herald_event_types` channel, so each node drops its
--   compiled schemas and reads the catalog again.
CREATE TABLE event_types (
    name         TEXT PRIMARY KEY,
    description  TEXT,
    schema       TEXT,
    examples     TEXT NOT NULL,
    deprecated   BOOLEAN NOT NULL,
    archived     BOOLEAN NOT NULL,
    version      BIGINT NOT NULL CHECK (version >= 1),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- A nullable column with no default: a catalogue change, not a table rewrite.
ALTER TABLE events ADD COLUMN schema_version BIGINT;
