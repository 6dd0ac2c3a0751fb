-- 0006: per-user settings (meta.Reader.UserSetting), keyed by the user's id
-- (AUTOINCREMENT: never reused) and deleted with the user. Until now a
-- user's forwarding policy, automatic forwarding policy and forwarding rule
-- were settings keyed "NAME:ADDRESS", which outlived a deleted user: a new
-- account at the same address inherited them.

CREATE TABLE user_settings (
	user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	name    TEXT    NOT NULL,
	value   TEXT    NOT NULL,
	PRIMARY KEY (user_id, name)
) STRICT, WITHOUT ROWID;

-- The rows move to the user who holds the address now (they were in effect
-- for that user); those of an address no user holds (left by a deleted user)
-- and empty ones (unset) are dropped. GLOB, unlike LIKE, is case-sensitive
-- and has no '_' wildcard.
INSERT INTO user_settings (user_id, name, value)
	SELECT u.id, p.name, s.value
	FROM settings s
	JOIN (SELECT 'forwarding' AS name UNION ALL SELECT 'autoforwarding' UNION ALL SELECT 'autoforward') p
		ON s.key GLOB p.name || ':*'
	JOIN users u ON u.address = substr(s.key, length(p.name) + 2)
	WHERE s.value <> '';

DELETE FROM settings WHERE key GLOB 'forwarding:*' OR key GLOB 'autoforwarding:*' OR key GLOB 'autoforward:*';
