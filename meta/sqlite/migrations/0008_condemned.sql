-- 0008: resources condemned by garbage collection (meta.CollectorWriter):
-- a row from the transaction that found the resource unreferenced until
-- the one after its blob's removal. While it stands, no upload or message
-- may reference the digest (meta.CondemnedError), so that a concurrent
-- upload of the same bytes cannot lose them to the removal.

CREATE TABLE condemned (
	digest TEXT    PRIMARY KEY,
	at     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- The collector's epoch: advanced by every condemnation and release
-- (meta.CollectorReader.CollectorEpoch), one row.
CREATE TABLE collector (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	epoch INTEGER NOT NULL
) STRICT;
INSERT INTO collector (id, epoch) VALUES (1, 0);
