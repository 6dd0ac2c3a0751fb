-- 0009: several nodes on one store. A job names the node that claimed it
-- (meta.Job.Holder), so that a node starting up hands back its own running
-- jobs only (ReleaseJobs); locks are named leases (meta.Locks: the MTA's
-- per-digest pull lock).

ALTER TABLE jobs ADD COLUMN holder TEXT NOT NULL DEFAULT '';
-- ReleaseJobs: a holder's running jobs.
CREATE INDEX jobs_holder ON jobs (holder) WHERE state = 'running';

CREATE TABLE locks (
	name   TEXT    PRIMARY KEY,
	holder TEXT    NOT NULL,
	until  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX locks_holder ON locks (holder);
