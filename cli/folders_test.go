package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/testenv"
)

// TestMoveDelete runs move, list --folder, delete, restore, folder
// add/list/del and delete --purge as a user would, against a real server:
// the message goes to archive, to trash and back, into a folder of the
// user's, to trash, and away; a bad folder is a clear error with exit 1.
func TestMoveDelete(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := d.AddUser(t, "alice@a.test")
	bob := d.AddUser(t, "bob@a.test")
	vars := map[string]string{"PULLMAIL_SERVER": d.URL, "PULLMAIL_TOKEN": alice.Token, "PULLMAIL_CA": d.CA}
	run := func(want int, args ...string) string {
		t.Helper()
		env, out, errb := testEnv(vars, false)
		if code := Main(context.Background(), env, args); code != want {
			t.Fatalf("%s: exit %d, want %d: %s%s", args, code, want, out.String(), errb.String())
		}
		return out.String() + errb.String()
	}
	msgid := strings.TrimSpace(run(0, "send", "--to", "bob@a.test", "--subject", "file me", "--text", "hi"))
	vars["PULLMAIL_TOKEN"] = bob.Token
	listed := func(folder string) []string {
		t.Helper()
		var ms []struct {
			MessageID string `json:"message_id"`
			Folder    string `json:"folder"`
		}
		if err := json.Unmarshal([]byte(run(0, "list", "--folder", folder, "--json")), &ms); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range ms {
			if m.Folder != folder {
				t.Errorf("list --folder %s shows a message in %s", folder, m.Folder)
			}
			ids = append(ids, m.MessageID)
		}
		return ids
	}

	var moved struct {
		MessageID string `json:"message_id"`
		Folder    string `json:"folder"`
	}
	if err := json.Unmarshal([]byte(run(0, "move", msgid, "archive", "--json")), &moved); err != nil || moved.Folder != "archive" || moved.MessageID != msgid {
		t.Fatalf("move --json: %+v %v", moved, err)
	}
	if got := listed("archive"); len(got) != 1 || got[0] != msgid {
		t.Fatalf("archive = %v", got)
	}
	if out := run(1, "move", msgid, "spam"); !strings.Contains(out, "bad_folder") && !strings.Contains(out, "no folder") {
		t.Fatalf("move to a bad folder: %q", out)
	}
	if out := run(1, "delete", msgid, "--purge"); !strings.Contains(out, "trash") {
		t.Fatalf("purge outside trash: %q", out)
	}
	if out := run(0, "delete", msgid); !strings.Contains(out, "trash") {
		t.Fatalf("delete: %q", out)
	}
	if out := run(0, "restore", msgid); !strings.Contains(out, "restored") || !strings.Contains(out, "archive") {
		t.Fatalf("restore: %q", out)
	}
	// A folder of one's own: added, listed, moved into, not removed while
	// it holds the message.
	run(0, "folder", "add", "Re: trips")
	if out := run(1, "folder", "add", "re: TRIPS"); !strings.Contains(out, "already") {
		t.Fatalf("folder add of a duplicate: %q", out)
	}
	run(0, "move", msgid, "Re: trips")
	if got := listed("Re: trips"); len(got) != 1 || got[0] != msgid {
		t.Fatalf("Re: trips = %v", got)
	}
	var fl struct {
		Folders []struct {
			Name   string `json:"name"`
			Total  int    `json:"total"`
			System bool   `json:"system"`
		} `json:"folders"`
	}
	if err := json.Unmarshal([]byte(run(0, "folder", "list", "--json")), &fl); err != nil || len(fl.Folders) != 8 {
		t.Fatalf("folder list --json: %+v %v", fl, err)
	}
	if f := fl.Folders[7]; f.Name != "Re: trips" || f.Total != 1 || f.System {
		t.Fatalf("the user folder lists as %+v", f)
	}
	if out := run(1, "folder", "del", "Re: trips"); !strings.Contains(out, "move or delete") {
		t.Fatalf("folder del of a full folder: %q", out)
	}
	if out := run(0, "delete", msgid); !strings.Contains(out, "trash") {
		t.Fatalf("delete: %q", out)
	}
	run(0, "folder", "del", "Re: trips")
	if out := run(0, "folder", "list"); strings.Contains(out, "trips") {
		t.Fatalf("folder list after del: %q", out)
	}
	if got := listed("trash"); len(got) != 1 || got[0] != msgid {
		t.Fatalf("trash = %v", got)
	}
	if got := listed("archive"); len(got) != 0 {
		t.Fatalf("archive after delete = %v", got)
	}
	var purged struct {
		MessageID string `json:"message_id"`
		Folder    string `json:"folder"`
		Purged    bool   `json:"purged"`
	}
	if err := json.Unmarshal([]byte(run(0, "delete", msgid, "--purge", "--json")), &purged); err != nil || !purged.Purged || purged.MessageID != msgid {
		t.Fatalf("delete --purge --json: %+v %v", purged, err)
	}
	if got := listed("trash"); len(got) != 0 {
		t.Fatalf("trash after purge = %v", got)
	}
	run(2, "move", msgid)
	run(2, "delete")
	run(2, "restore")
	run(2, "folder", "add")
}
