-- 0006: keywords, IMAP UIDs and modseqs (meta.Message.Keywords, UID, ModSeq;
-- meta.FolderState), as SQLite's 0012. keywords is space-separated,
-- normalized. folder_uids holds each folder's next UID, its UIDVALIDITY and
-- highest modseq, and is never emptied while the user lives, so no UID is
-- reused in a folder. changes.uid is the message's UID in the change's
-- folder (for a removal, the one it had).
ALTER TABLE messages ADD COLUMN keywords text NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN uid bigint NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN modseq bigint NOT NULL DEFAULT 0;
ALTER TABLE changes ADD COLUMN uid bigint NOT NULL DEFAULT 0;

CREATE TABLE folder_uids (
	user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	folder         text   NOT NULL,
	uid_validity   bigint NOT NULL,
	uid_next       bigint NOT NULL,
	highest_modseq bigint NOT NULL,
	PRIMARY KEY (user_id, folder)
);

-- The messages already stored are numbered in the order they came, and all
-- count as changed at the newest change so far.
UPDATE messages SET uid = r.n, modseq = (SELECT coalesce(max(seq), 0) FROM changes)
	FROM (SELECT id, row_number() OVER (PARTITION BY user_id, folder ORDER BY created, id) AS n FROM messages) AS r
	WHERE messages.id = r.id;
INSERT INTO folder_uids (user_id, folder, uid_validity, uid_next, highest_modseq)
	SELECT user_id, folder, (SELECT greatest(1, created / 1000000000) FROM users WHERE users.id = messages.user_id), max(uid) + 1,
		(SELECT coalesce(max(seq), 0) FROM changes)
	FROM messages GROUP BY user_id, folder;
CREATE UNIQUE INDEX messages_uid ON messages (user_id, folder, uid);
