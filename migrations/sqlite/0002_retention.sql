-- Retention deletes events by age in bounded batches (oldest first); this index makes each
-- batch a short range scan instead of a sequential scan of the whole table.
CREATE INDEX events_by_age ON events (created_at);
