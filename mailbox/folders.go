package mailbox

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/pullmail/pullmail/auth"
	"github.com/pullmail/pullmail/errs"
	"github.com/pullmail/pullmail/meta"
)

// Folder semantics (docs/PROTOCOL.md §8.18). Every write here is one
// transaction of the metadata store, so that it shows in the change feed
// and the events like any other: a move is a deleted change in the old
// folder and a created change in the new.
//
//   - drafts and sent hold only what compose and send put there: nothing
//     moves into them, and a draft moves only to trash (and back).
//   - trash keeps a deleted message with the folder it came from, for
//     meta.TrashRetention; Restore puts it back, Purge (or the sweep)
//     removes it for good, and its resources go to garbage collection
//     when nothing else references them.
//   - inbox, archive, junk and requests take any received or sent message.

//   - a user folder (meta.UserFolderName) is one the user added
//     (CreateFolder); it takes what inbox takes, and DeleteFolder removes
//     it once it is empty. The names are kept in the per-user setting
//     SettingFolders, so that an empty folder lists too.

// FolderInfo is one folder of the user's with its counts.
type FolderInfo struct {
	Name   string `json:"name"`
	Total  int    `json:"total"`
	Unseen int    `json:"unseen"`
	// System is true for the system folders (inbox, drafts, ...), false
	// for the user's own.
	System bool `json:"system"`
}

// NewFolder is the body of POST /api/v1/folders.
type NewFolder struct {
	Name string `json:"name"`
}

// SettingFolders is the per-user setting (meta.Reader.UserSetting) that
// lists the names of the user's own folders, a JSON array in the order
// they list.
const SettingFolders = "folders"

// userFolders is SettingFolders as a typed setting.
var userFolders = meta.JSONKey[[]string](SettingFolders)

// MaxUserFolders is how many folders of their own a user may have.
const MaxUserFolders = 500

// mustHaveFolder is nil for a system folder and for a user folder the user
// has, and 400 bad_folder otherwise.
func mustHaveFolder(ctx context.Context, r meta.UserSettingReader, userID int64, f meta.Folder) error {
	if f.System() {
		return nil
	}
	names, err := userFolders.Get(ctx, r, userID)
	if err != nil {
		return err
	}
	if !slices.Contains(names, string(f)) {
		return errs.E(errs.Invalid, "bad_folder", "no folder %q", f)
	}
	return nil
}

// CreateFolder implements API.
func (s *Service) CreateFolder(ctx context.Context, name string) (FolderInfo, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return FolderInfo{}, err
	}
	if err := meta.UserFolderName(name); err != nil {
		return FolderInfo{}, errs.E(errs.Invalid, "bad_folder_name", "%s", err)
	}
	err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		names, err := userFolders.Get(ctx, tx, p.UserID)
		if err != nil {
			return err
		}
		for _, n := range names {
			if strings.EqualFold(n, name) {
				return errs.E(errs.Conflict, "folder_exists", "you have a folder %q already", n)
			}
		}
		if len(names) >= MaxUserFolders {
			return errs.E(errs.Conflict, "too_many_folders", "you have %d folders of your own, the most there may be", len(names))
		}
		names = append(names, name)
		slices.SortFunc(names, func(a, b string) int {
			return cmp.Or(strings.Compare(strings.ToLower(a), strings.ToLower(b)), strings.Compare(a, b))
		})
		return userFolders.Set(ctx, tx, p.UserID, names)
	})
	if err != nil {
		return FolderInfo{}, storeErr(err, "adding the folder failed")
	}
	return FolderInfo{Name: name}, nil
}

// DeleteFolder implements API.
func (s *Service) DeleteFolder(ctx context.Context, name string) error {
	p, err := auth.Must(ctx)
	if err != nil {
		return err
	}
	if meta.Folder(name).System() {
		return errs.E(errs.Invalid, "bad_folder", "%s is a system folder: it cannot be deleted", name)
	}
	err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		names, err := userFolders.Get(ctx, tx, p.UserID)
		if err != nil {
			return err
		}
		i := slices.Index(names, name)
		if i < 0 {
			return errs.E(errs.NotFound, "not_found", "no folder %q", name)
		}
		counts, err := tx.FolderCounts(ctx, p.UserID)
		if err != nil {
			return err
		}
		if n := counts[meta.Folder(name)].Total; n > 0 {
			return errs.E(errs.Conflict, "folder_not_empty", "the folder %q holds %d messages: move or delete them first", name, n)
		}
		names = slices.Delete(names, i, i+1)
		if len(names) == 0 {
			return userFolders.Clear(ctx, tx, p.UserID)
		}
		return userFolders.Set(ctx, tx, p.UserID, names)
	})
	return storeErr(err, "deleting the folder failed")
}

// FolderList is the answer to GET /api/v1/folders.
type FolderList struct {
	Folders []FolderInfo `json:"folders"`
}

// Move is the body of POST /api/v1/messages/{id}/move.
type Move struct {
	Folder string `json:"folder"`
}

// sweepBatch is how many trashed messages one sweep transaction purges, so
// that a large backlog never holds the single writer long.
const sweepBatch = 100

// Folders implements API.
func (s *Service) Folders(ctx context.Context) (FolderList, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return FolderList{}, err
	}
	counts, err := s.cfg.Meta.FolderCounts(ctx, p.UserID)
	if err != nil {
		return FolderList{}, storeErr(err, "counting folders failed")
	}
	names, err := userFolders.Get(ctx, s.cfg.Meta, p.UserID)
	if err != nil {
		return FolderList{}, internal(err, "reading your folders failed")
	}
	out := FolderList{Folders: make([]FolderInfo, 0, len(meta.Folders)+len(names))}
	for _, f := range meta.Folders {
		c := counts[f]
		out.Folders = append(out.Folders, FolderInfo{Name: string(f), Total: c.Total, Unseen: c.Unseen, System: true})
	}
	for _, n := range names {
		c := counts[meta.Folder(n)]
		out.Folders = append(out.Folders, FolderInfo{Name: n, Total: c.Total, Unseen: c.Unseen})
	}
	return out, nil
}

// Move implements API.
func (s *Service) Move(ctx context.Context, id, folder string) (Message, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Message{}, err
	}
	to := meta.Folder(folder)
	if !to.Valid() {
		return Message{}, errs.E(errs.Invalid, "bad_folder", "no folder %q", folder)
	}
	if to == meta.Drafts || to == meta.Sent {
		return Message{}, errs.E(errs.Invalid, "bad_folder", "nothing moves into %s: it holds what compose and send put there", to)
	}
	row, err := s.moveIn(ctx, p.UserID, id, func(tx meta.Tx, row *meta.Message) error {
		if err := mustHaveFolder(ctx, tx, p.UserID, to); err != nil {
			return err
		}
		if row.Folder == meta.Drafts && to != meta.Trash {
			return errs.E(errs.Conflict, "not_movable", "a draft moves only to trash; send it first")
		}
		if row.Folder == meta.Trash && row.TrashedFrom == meta.Drafts {
			return errs.E(errs.Conflict, "not_movable", "a deleted draft goes back to drafts: restore it")
		}
		s.place(row, to)
		return nil
	})
	if err != nil {
		return Message{}, err
	}
	return s.view(row, false), nil
}

// Delete implements API: the message moves to trash (Restore puts it back).
func (s *Service) Delete(ctx context.Context, id string) error {
	p, err := auth.Must(ctx)
	if err != nil {
		return err
	}
	_, err = s.moveIn(ctx, p.UserID, id, func(_ meta.Tx, row *meta.Message) error {
		s.place(row, meta.Trash)
		return nil
	})
	return err
}

// Restore implements API.
func (s *Service) Restore(ctx context.Context, id string) (Message, error) {
	p, err := auth.Must(ctx)
	if err != nil {
		return Message{}, err
	}
	row, err := s.moveIn(ctx, p.UserID, id, func(tx meta.Tx, row *meta.Message) error {
		if row.Folder != meta.Trash {
			return errs.E(errs.Conflict, "not_in_trash", "the message is in %s, not in trash", row.Folder)
		}
		to := row.TrashedFrom
		if !to.Valid() || to == meta.Trash {
			to = meta.Inbox // trashed before folders kept their origin
		} else if err := mustHaveFolder(ctx, tx, p.UserID, to); errs.Is(err, errs.Invalid) {
			to = meta.Inbox // the user folder it came from was deleted since
		} else if err != nil {
			return err
		}
		s.place(row, to)
		return nil
	})
	if err != nil {
		return Message{}, err
	}
	return s.view(row, false), nil
}

// Purge implements API.
func (s *Service) Purge(ctx context.Context, id string) error {
	p, err := auth.Must(ctx)
	if err != nil {
		return err
	}
	err = s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		row, err := tx.Message(ctx, p.UserID, id)
		if err != nil {
			return err
		}
		if row.Folder != meta.Trash && row.Folder != meta.Drafts {
			return errs.E(errs.Conflict, "not_in_trash", "only a message in trash (or a draft) can be purged; delete it first")
		}
		return tx.DeleteMessage(ctx, p.UserID, id)
	})
	return storeErr(err, "purging the message failed")
}

// SweepTrash purges, for every user, the messages trashed more than
// meta.TrashRetention ago by the service's clock, in batches of
// sweepBatch transactions; their resources are then garbage as soon as
// nothing else references them (CollectGarbage). It returns how many it
// purged. The server runs it with garbage collection.
func (s *Service) SweepTrash(ctx context.Context) (purged int, err error) {
	before := s.now().Add(-meta.TrashRetention)
	for {
		var n int
		err := s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
			n = 0
			rows, err := tx.TrashedBefore(ctx, before, sweepBatch)
			if err != nil {
				return err
			}
			for _, row := range rows {
				if err := tx.DeleteMessage(ctx, row.UserID, row.ID); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return purged, internal(err, "sweeping the trash failed")
		}
		purged += n
		if n < sweepBatch {
			return purged, nil
		}
	}
}

// place sets row's folder to f, keeping the origin and time of a move into
// trash and clearing them on the way out.
func (s *Service) place(row *meta.Message, f meta.Folder) {
	now := s.now()
	switch {
	case f == meta.Trash && row.Folder != meta.Trash:
		row.TrashedFrom, row.Trashed = row.Folder, now
	case f != meta.Trash:
		row.TrashedFrom, row.Trashed = "", time.Time{}
	}
	row.Folder, row.Updated = f, now
}

// moveIn reads the user's message, lets fn change it, and writes it back in
// one transaction; fn returning an *errs.Error aborts with it. A change
// that leaves the folder as it was writes nothing.
func (s *Service) moveIn(ctx context.Context, userID int64, id string, fn func(meta.Tx, *meta.Message) error) (meta.Message, error) {
	var row meta.Message
	err := s.cfg.Meta.Update(ctx, func(tx meta.Tx) error {
		var err error
		if row, err = tx.Message(ctx, userID, id); err != nil {
			return err
		}
		before := row.Folder
		if err := fn(tx, &row); err != nil {
			return err
		}
		if row.Folder == before {
			return nil
		}
		return tx.UpdateMessage(ctx, row)
	})
	return row, storeErr(err, "moving the message failed")
}
