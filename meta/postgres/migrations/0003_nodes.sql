-- 0003: several nodes on one database. A job names the node that claimed
-- it (meta.Job.Holder), so that a node starting up hands back its own
-- running jobs only (ReleaseJobs); locks are named leases (meta.Locks: the
-- MTA's per-digest pull lock).

ALTER TABLE jobs ADD COLUMN holder text COLLATE "C" NOT NULL DEFAULT '';
-- ReleaseJobs: a holder's running jobs.
CREATE INDEX jobs_holder ON jobs (holder) WHERE state = 'running';

CREATE TABLE locks (
	name   text COLLATE "C" PRIMARY KEY,
	holder text COLLATE "C" NOT NULL,
	until  bigint NOT NULL
);
CREATE INDEX locks_holder ON locks (holder);
