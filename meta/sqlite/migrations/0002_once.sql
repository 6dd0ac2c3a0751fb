-- 0002: the replay cache (meta.Once): keys remembered until they expire.

CREATE TABLE once (
	key     TEXT PRIMARY KEY,
	expires INTEGER NOT NULL
) STRICT;

CREATE INDEX once_expires ON once (expires);
