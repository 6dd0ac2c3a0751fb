package mailbox_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// rowWrites are the methods of meta.Tx that write mailbox rows: a message
// (its folder, status, seen flag and refs are fields of the row) and the
// envelope kept with it. meta.Tx.DeleteUser removes a user's rows with the
// user; that is the account's end, not a mailbox write.
var rowWrites = []string{"InsertMessage", "UpdateMessage", "DeleteMessage", "SetEnvelope"}

// rowWriters lists, as "file:line: X.Method", every use of a rowWrites
// method in f: a call or a method value, whatever its receiver is named. It
// reads syntax, not types: a method of another type with one of these
// names is reported too, which is the safe side.
func rowWriters(fset *token.FileSet, f *ast.File) []string {
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok || !slices.Contains(rowWrites, sel.Sel.Name) {
			return true
		}
		recv := "?"
		if id, ok := sel.X.(*ast.Ident); ok {
			recv = id.Name
		}
		pos := fset.Position(sel.Pos())
		out = append(out, pos.Filename+":"+strconv.Itoa(pos.Line)+": "+recv+"."+sel.Sel.Name)
		return true
	})
	return out
}

// TestRowWriters: the check finds a write however it is written, and
// nothing else.
func TestRowWriters(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"a call in a transaction", `st.Update(ctx, func(tx meta.Tx) error { return tx.InsertMessage(ctx, m) })`, 1},
		{"a status change", `m.Status = meta.StatusComplete; err = tx.UpdateMessage(ctx, m)`, 1},
		{"a delete and an envelope", `tx.DeleteMessage(ctx, 1, "m1"); tx.SetEnvelope(ctx, "m1", env)`, 2},
		{"a method value", `write := tx.UpdateMessage; write(ctx, m)`, 1},
		{"through another name", `var w meta.Tx = tx; w.InsertMessage(ctx, m)`, 1},
		{"through the mailbox", `mbx.Receive(ctx, tx, rcpts, m, env); mbx.SetPullOutcome(ctx, tx, 1, "m1", s, "")`, 0},
		{"other rows", `tx.AddJob(ctx, j); tx.UpdateJob(ctx, j); tx.SetUserSetting(ctx, 1, "k", "v")`, 0},
		{"reads", `tx.Message(ctx, 1, "m1"); tx.Envelope(ctx, 1, "m1")`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "package p\n\nfunc f() {\n\t" + tc.body + "\n}\n"
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "p.go", src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			if got := rowWriters(fset, f); len(got) != tc.want {
				t.Errorf("found %q, want %d", got, tc.want)
			}
		})
	}
}

// TestOneRowWriter: no package but mailbox writes a mailbox row. The
// inbound receiver, the MTA and fsck decide writes and make them through
// the mailbox's operations (deliver.go). meta itself (its implementations
// and its conformance suite) is exempt, and so is backup (migrate, backup
// and restore copy whole stores row for row, deciding nothing, with the
// server stopped or into a new store), and so are tests, which build their
// fixtures with the store.
func TestOneRowWriter(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var bad []string
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" ||
				name == "vendor" || rel == "meta" || strings.HasPrefix(rel, "meta/") || rel == "mailbox" ||
				rel == "backup" || strings.HasPrefix(rel, "backup/")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, rel, src, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		bad = append(bad, rowWriters(fset, f)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read %d Go files under %s: not the module", files, root)
	}
	for _, b := range bad {
		t.Errorf("%s: a mailbox row written outside package mailbox; add a mailbox operation (deliver.go)", b)
	}
}
