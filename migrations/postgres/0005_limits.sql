-- Per-destination delivery limits (options.max_in_flight, options.rate_limit,
-- options.ordering = "fifo"), enforced by the claim query across every node.
--
-- The limits also live in the options JSON; these columns copy them (written together on every
-- save) because the claim must find limited destinations in SQL, and every claim of a limited
-- destination's deliveries is serialized under one advisory lock (Postgres) or the single
-- writer (SQLite), so in-flight counts and rate windows are never raced.
ALTER TABLE destinations ADD COLUMN max_in_flight INTEGER;
ALTER TABLE destinations ADD COLUMN rate_limit INTEGER;
ALTER TABLE destinations ADD COLUMN fifo BOOLEAN NOT NULL DEFAULT FALSE;
-- The current one-second rate window: its start (Unix seconds) and deliveries claimed in it.
ALTER TABLE destinations ADD COLUMN rate_window_start BIGINT;
ALTER TABLE destinations ADD COLUMN rate_window_count INTEGER NOT NULL DEFAULT 0;

CREATE INDEX destinations_limited ON destinations (id)
    WHERE max_in_flight IS NOT NULL OR rate_limit IS NOT NULL OR fifo;
-- A destination's pending work in due order, and what it has in flight.
CREATE INDEX deliveries_pending_by_destination ON deliveries (destination_id, next_attempt_at)
    WHERE status IN ('scheduled', 'retrying');
CREATE INDEX deliveries_in_flight_by_destination ON deliveries (destination_id)
    WHERE status = 'delivering';
