-- 0012: keywords, IMAP UIDs and modseqs (meta.Message.Keywords, UID, ModSeq;
-- meta.FolderState). keywords is space-separated, normalized. A message's
-- uid numbers it in its folder; folder_uids holds each folder's next UID,
-- its UIDVALIDITY and highest modseq, and is never emptied while the user
-- lives, so no UID is reused in a folder. changes.uid is the message's UID
-- in the change's folder (for a removal, the one it had).
ALTER TABLE messages ADD COLUMN keywords TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN uid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN modseq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE changes ADD COLUMN uid INTEGER NOT NULL DEFAULT 0;

CREATE TABLE folder_uids (
	user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	folder         TEXT    NOT NULL,
	uid_validity   INTEGER NOT NULL,
	uid_next       INTEGER NOT NULL,
	highest_modseq INTEGER NOT NULL,
	PRIMARY KEY (user_id, folder)
) STRICT, WITHOUT ROWID;

-- The messages already stored are numbered in the order they came, and all
-- count as changed at the newest change so far (a client that asks what
-- changed since an older modseq gets them all, which is safe).
UPDATE messages SET uid = r.n, modseq = (SELECT COALESCE(MAX(seq), 0) FROM changes)
	FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY user_id, folder ORDER BY created, id) AS n FROM messages) AS r
	WHERE messages.id = r.id;
INSERT INTO folder_uids (user_id, folder, uid_validity, uid_next, highest_modseq)
	SELECT user_id, folder, (SELECT max(1, created / 1000000000) FROM users WHERE users.id = messages.user_id), MAX(uid) + 1,
		(SELECT COALESCE(MAX(seq), 0) FROM changes)
	FROM messages GROUP BY user_id, folder;
CREATE UNIQUE INDEX messages_uid ON messages (user_id, folder, uid);
