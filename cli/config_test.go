package cli

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/config"
)

var updateExample = flag.Bool("update", false, "rewrite docs/config.example from pullmail config example")

const examplePath = "../docs/config.example"

// TestConfigExampleFile keeps docs/config.example equal to what
// pullmail config example prints (go test ./cli -run ConfigExample -update
// rewrites it).
func TestConfigExampleFile(t *testing.T) {
	env, out, _ := testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"config", "example"}); code != 0 {
		t.Fatalf("config example: exit %d", code)
	}
	if *updateExample {
		if err := os.WriteFile(examplePath, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	file, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if string(file) != out.String() {
		t.Fatalf("docs/config.example differs from pullmail config example: run go test ./cli -run ConfigExample -update")
	}
}

// TestServeConfigExampleIsDefaults: the example parses, passes config
// check, and applied to serve's flags leaves every one at its default.
func TestServeConfigExampleIsDefaults(t *testing.T) {
	env, out, errb := testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"config", "check", examplePath}); code != 0 || out.String() != examplePath+": ok\n" {
		t.Fatalf("config check of the example: exit %d %q %q", code, out, errb)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs)
	if err := loadServeConfig(fs, examplePath); err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Value.String() != f.DefValue {
			t.Errorf("%s = %q after the example, serve's default is %q", f.Name, f.Value, f.DefValue)
		}
	})
}

// TestServeFlagsAreKeys fails when serve gains a flag that is not a key of
// its config file, or that the example leaves out.
func TestServeFlagsAreKeys(t *testing.T) {
	example, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		n++
		if !strings.Contains("\n"+string(example), "\n"+f.Name+" =") && !strings.Contains(string(example), "\n# "+f.Name+" = ") {
			t.Errorf("docs/config.example has no key %q", f.Name)
		}
		value := f.DefValue
		if f.Name == "host" {
			value = "mail.example.com"
		}
		entries, err := config.Parse("f", []byte(f.Name+" = "+value))
		if err == nil {
			scratch := flag.NewFlagSet("serve", flag.ContinueOnError)
			serveFlags(scratch)
			err = config.Apply(scratch, "f", entries, serveConfigOptions)
		}
		if err != nil {
			t.Errorf("flag --%s is not a key: %v", f.Name, err)
		}
	})
	if n < 19 {
		t.Fatalf("only %d serve flags", n)
	}
}

// TestServeConfigOverride: the file sets what the command line does not;
// a flag given wins, a list included; a mistake under an overridden key is
// still refused.
func TestServeConfigOverride(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pullmail.conf")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("data = /srv/pm\ndomain = a.test\nlisten = :443\nhost = a.example\nhost = b.example\nacme = true\nretry-horizon = 48h\n")
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs)
	if err := fs.Parse([]string{"--listen", "127.0.0.1:0", "--host", "c.example", "--config", path}); err != nil {
		t.Fatal(err)
	}
	if err := loadServeConfig(fs, path); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"data": "/srv/pm", "domain": "a.test", "listen": "127.0.0.1:0", "host": "c.example", "acme": "true", "retry-horizon": "48h0m0s", "log-level": "info"} {
		if got := fs.Lookup(k).Value.String(); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	write("listen = nowhere\nretry-horizon = forever\n")
	fs = flag.NewFlagSet("serve", flag.ContinueOnError)
	serveFlags(fs)
	if err := fs.Parse([]string{"--retry-horizon", "1h"}); err != nil {
		t.Fatal(err)
	}
	if err := loadServeConfig(fs, path); err == nil || !strings.Contains(err.Error(), `pullmail.conf:2: bad value for "retry-horizon"`) {
		t.Fatalf("bad overridden value: %v", err)
	}
}

// TestConfigCheck: every problem on its own line with FILE:LINE, exit 1;
// serve refuses the same file before touching its data directory.
func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.conf")
	src := "# serve\ndata = " + dir + "\nlisten\nbogus = 1\ndata = again\nacme = yes\nlog-level = loud\nlog-format = xml\nconfig = other.conf\nmax-upload = 1G\nretry-horizon = 5d\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	env, _, errb := testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"config", "check", path}); code != 1 {
		t.Fatalf("config check: exit %d", code)
	}
	// A syntax error stops before the keys are checked.
	if want := path + ":3: missing \"=\": want key = value\npullmail config check: " + path + ": 1 problem(s)\n"; errb.String() != want {
		t.Fatalf("config check:\n%s\nwant:\n%s", errb, want)
	}
	src = strings.Replace(src, "\nlisten\n", "\nlisten = 127.0.0.1:0\n", 1)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	env, _, errb = testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"config", "check", path}); code != 1 {
		t.Fatalf("config check: exit %d", code)
	}
	want := strings.Join([]string{
		path + `:4: unknown key "bogus"`,
		path + `:5: duplicate key "data" (first on line 2)`,
		path + `:6: bad value for "acme": want true or false`,
		path + `:7: bad value for "log-level": want debug, info, warn or error`,
		path + `:8: bad value for "log-format": want text or json`,
		path + `:9: key "config" is not allowed in a file`,
		path + `:10: bad value for "max-upload": want a whole number`,
		path + `:11: bad value for "retry-horizon": want a duration such as 90s, 15m or 120h`,
		"pullmail config check: " + path + ": 8 problem(s)", ""}, "\n")
	if errb.String() != want {
		t.Fatalf("config check:\n%s\nwant:\n%s", errb, want)
	}
	env, _, errb = testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"serve", "--config", path}); code != 1 || !strings.Contains(errb.String(), path+`:4: unknown key "bogus"; `) {
		t.Fatalf("serve with a bad file: exit %d %q", code, errb)
	}
	if _, err := os.Stat(filepath.Join(dir, "lock")); err == nil {
		t.Fatal("serve opened the data directory of a bad config")
	}
	for _, args := range [][]string{{"config", "check"}, {"config", "check", "a", "b"}, {"config", "example", "x"}} {
		env, _, _ := testEnv(nil, false)
		if code := Main(context.Background(), env, args); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	env, _, _ = testEnv(nil, false)
	if code := Main(context.Background(), env, []string{"config", "check", filepath.Join(dir, "missing.conf")}); code != 1 {
		t.Errorf("missing file: exit %d", code)
	}
}

// TestServeFromConfig runs serve from a file: the domain and data come
// from it, the listen address from the command line over the file's.
func TestServeFromConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pullmail.conf")
	conf := "data = " + filepath.Join(dir, "data") + "\ndomain = a.test\nlisten = 127.0.0.1:1\nlog-level = warn\n"
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, IsTerminal: func(any) bool { return false }}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, env, []string{"serve", "--config", path, "--listen", "127.0.0.1:0"}) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "pullmail serving a.test at https://127.0.0.1:") {
		select {
		case code := <-done:
			t.Fatalf("serve ended: exit %d %q %q", code, out.String(), errb.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %q %q", out.String(), errb.String())
		}
	}
	if strings.Contains(out.String(), ":1\n") {
		t.Fatalf("the file's listen address won over the flag: %q", out.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve: exit %d %q", code, errb.String())
	}
}
