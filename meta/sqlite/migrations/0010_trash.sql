-- 0010: Trash (meta.Trash). A deleted message moves to the trash folder and
-- keeps the folder it came from (a restore puts it back there) and when it
-- was trashed (the server purges it meta.TrashRetention later). '' and 0
-- outside the trash. The other new system folders need no schema: folder is
-- free text checked by meta.Folder.Valid.
ALTER TABLE messages ADD COLUMN trashed_from TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN trashed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX messages_trashed ON messages (trashed) WHERE trashed <> 0;
