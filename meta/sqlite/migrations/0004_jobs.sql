-- 0004: the durable job queue (meta.Job): outbound pushes, inbound pulls.
-- AUTOINCREMENT: a pruned job's id is never given to a new job, so a worker
-- that lost its lease cannot update someone else's job by id.

CREATE TABLE jobs (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	kind       TEXT    NOT NULL,
	key        TEXT    NOT NULL UNIQUE,
	payload    BLOB,
	state      TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
	attempts   INTEGER NOT NULL,
	next_try   INTEGER NOT NULL,
	last_error TEXT    NOT NULL,
	created    INTEGER NOT NULL,
	updated    INTEGER NOT NULL,
	expires    INTEGER NOT NULL
) STRICT;

-- ClaimJobs: the due jobs of a kind, by next_try.
CREATE INDEX jobs_claim ON jobs (kind, state, next_try);
-- Jobs: a kind's listing, newest first.
CREATE INDEX jobs_list ON jobs (kind, created);
-- PruneJobs: finished jobs by age (partial: claims, which update running
-- jobs, do not maintain it).
CREATE INDEX jobs_finished ON jobs (updated) WHERE state IN ('done', 'failed');
