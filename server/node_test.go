package server_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/server"
)

// TestNode: a server names its node (--node, default the host name) in
// /healthz and in /metrics, and writes its temporary files in a directory
// of its own; a name that cannot name a directory is refused.
func TestNode(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name:", err)
	}
	for _, tc := range []struct {
		name, node, want string
		bad              bool
	}{
		{name: "given", node: "node-1.example", want: "node-1.example"},
		{name: "default", node: "", want: host},
		{name: "path", node: "../elsewhere", bad: true},
		{name: "dot", node: ".hidden", bad: true},
		{name: "space", node: "a b", bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			srv, err := server.Open(context.Background(), server.Config{DataDir: dir, Domain: "a.test", Node: tc.node})
			if tc.bad {
				if err == nil {
					srv.Close()
					t.Fatalf("node %q accepted", tc.node)
				}
				if !strings.Contains(err.Error(), "--node") {
					t.Errorf("the refusal does not name --node: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if srv.Node() != tc.want {
				t.Errorf("Node() = %q, want %q", srv.Node(), tc.want)
			}
			get := func(path string) string {
				req := httptest.NewRequest("GET", path, nil)
				req.RemoteAddr = "127.0.0.1:5555"
				rec := httptest.NewRecorder()
				srv.Handler().ServeHTTP(rec, req)
				if rec.Code != 200 {
					t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
				}
				return rec.Body.String()
			}
			var h struct{ Status, Node string }
			if err := json.Unmarshal([]byte(get("/healthz")), &h); err != nil || h.Status != "ok" || h.Node != tc.want {
				t.Errorf("healthz: %+v, %v; want ok from node %q", h, err, tc.want)
			}
			if m, want := get("/metrics"), `pullmail_node_info{node="`+tc.want+`"} 1`; !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
			if fi, err := os.Stat(filepath.Join(dir, "resources", "tmp", tc.want)); err != nil || !fi.IsDir() {
				t.Errorf("the node's temporary directory: %v", err)
			}
		})
	}
}
