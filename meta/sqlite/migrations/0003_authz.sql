-- 0003: the authorization server's state (package authz): registered
-- clients, the grants it issued (by the SHA-256 of their secret), and
-- revoked grant families.

CREATE TABLE clients (
	id            TEXT PRIMARY KEY,
	name          TEXT NOT NULL,
	public        INTEGER NOT NULL,
	redirect_uris TEXT NOT NULL, -- JSON array of strings
	jwks          BLOB,
	created       INTEGER NOT NULL
) STRICT;

CREATE TABLE grants (
	hash         BLOB PRIMARY KEY,
	kind         TEXT NOT NULL,
	family       TEXT NOT NULL,
	client_id    TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
	user_id      INTEGER REFERENCES users (id) ON DELETE CASCADE, -- NULL: a device code not approved yet
	scope        TEXT NOT NULL,
	redirect_uri TEXT NOT NULL,
	challenge    TEXT NOT NULL,
	jkt          TEXT NOT NULL,
	user_code    TEXT NOT NULL,
	created      INTEGER NOT NULL,
	expires      INTEGER NOT NULL,
	used         INTEGER NOT NULL,
	revoked      INTEGER NOT NULL
) STRICT;

CREATE INDEX grants_family ON grants (family);
CREATE INDEX grants_expires ON grants (expires);
CREATE UNIQUE INDEX grants_user_code ON grants (user_code) WHERE user_code <> '';

CREATE TABLE revoked_families (
	family TEXT PRIMARY KEY,
	until  INTEGER NOT NULL
) STRICT;
