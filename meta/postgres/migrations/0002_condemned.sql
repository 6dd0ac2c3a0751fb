-- 0002: resources condemned by garbage collection (meta.CollectorWriter),
-- as meta/sqlite's 0008: a row from the transaction that found the resource
-- unreferenced until the one after its blob's removal, read by every write
-- that adds a reference.

CREATE TABLE condemned (
	digest text COLLATE "C" PRIMARY KEY,
	at     bigint NOT NULL
);

-- The collector's epoch: advanced by every condemnation and release
-- (meta.CollectorReader.CollectorEpoch), one row.
CREATE TABLE collector (
	id    int PRIMARY KEY CHECK (id = 1),
	epoch bigint NOT NULL
);
INSERT INTO collector (id, epoch) VALUES (1, 0);
