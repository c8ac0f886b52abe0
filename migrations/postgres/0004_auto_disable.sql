-- Auto-disable: each destination keeps its current failure streak, updated in the same
-- transaction as every attempt's outcome, so the decision needs no scan of the attempt log.
-- consecutive_failures counts failed attempts since the last success; failing_since is when
-- the streak began (NULL while healthy).
ALTER TABLE destinations ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE destinations ADD COLUMN failing_since BIGINT;
