package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pullmail/pullmail/authz"
	"github.com/pullmail/pullmail/sandbox"
	"github.com/pullmail/pullmail/testenv"
)

// syncBuffer is a buffer safe to read while a command writes to it.
type syncBuffer = sandbox.Buffer

var hiddenCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// approveDevice plays the person at a browser: open the device page, sign
// in, enter the code.
func approveDevice(t *testing.T, d *testenv.Domain, hc *http.Client, code, user, password string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: hc.Transport, Jar: jar}
	resp, err := browser.Get(d.URL + authz.PathDevice)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := hiddenCSRF.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the device page: %s", page)
	}
	resp, err = browser.PostForm(d.URL+authz.PathDevice, url.Values{"csrf": {string(m[1])}, "user_code": {strings.ToLower(code)},
		"username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Device signed in") {
		t.Fatalf("approval: %d %s", resp.StatusCode, body)
	}
}

func TestLoginLogout(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{DeviceInterval: time.Second})
	alice := d.AddUser(t, "alice@a.test")
	conf := t.TempDir()
	vars := map[string]string{"PULLMAIL_SERVER": d.URL, "PULLMAIL_CA": d.CA, "PULLMAIL_CONFIG": conf}
	stderr := &syncBuffer{}
	env, out, _ := testEnv(vars, false)
	env.Stderr = stderr
	done := make(chan int, 1)
	go func() { done <- Main(context.Background(), env, []string{"login"}) }()
	codeRE := regexp.MustCompile(`enter the code ([B-Z]{4}-[B-Z]{4})`)
	var code string
	for deadline := time.Now().Add(20 * time.Second); code == ""; time.Sleep(10 * time.Millisecond) {
		if m := codeRE.FindStringSubmatch(stderr.String()); m != nil {
			code = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no user code printed: %q", stderr.String())
		}
	}
	approveDevice(t, d, alice.HTTP, code, "alice@a.test", "correct horse battery staple")
	if c := <-done; c != 0 || !strings.Contains(out.String(), "signed in as alice@a.test") {
		t.Fatalf("login: exit %d, %q %q", c, out.String(), stderr.String())
	}
	path := filepath.Join(conf, "credentials.json")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", err, st)
	}
	read := func() credential {
		var c credentials
		b, _ := os.ReadFile(path)
		json.Unmarshal(b, &c)
		return c.Servers[d.URL]
	}
	first := read()
	if first.RefreshToken == "" || first.Address != "alice@a.test" {
		t.Fatalf("stored %+v", first)
	}
	// Client commands use the login when PULLMAIL_TOKEN is unset.
	env, out, errb := testEnv(vars, false)
	if c := Main(context.Background(), env, []string{"list", "--json"}); c != 0 || !strings.HasPrefix(out.String(), "[") {
		t.Fatalf("list with the login: exit %d %q", c, errb.String())
	}
	// An expired access token is refreshed, and the rotated refresh token saved.
	var c credentials
	b, _ := os.ReadFile(path)
	json.Unmarshal(b, &c)
	cr := c.Servers[d.URL]
	cr.Expiry = time.Now().Add(-time.Hour)
	c.Servers[d.URL] = cr
	b, _ = json.Marshal(c)
	os.WriteFile(path, b, 0o600)
	env, _, errb = testEnv(vars, false)
	if c := Main(context.Background(), env, []string{"list"}); c != 0 {
		t.Fatalf("list after expiry: exit %d %q", c, errb.String())
	}
	second := read()
	if second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatal("the refresh token did not rotate, or the new one was not saved")
	}
	// Logout revokes: the saved refresh token no longer works anywhere.
	env, out, errb = testEnv(vars, false)
	if c := Main(context.Background(), env, []string{"logout"}); c != 0 || !strings.Contains(out.String(), "signed out") {
		t.Fatalf("logout: exit %d %q", c, errb.String())
	}
	resp, err := alice.HTTP.PostForm(d.URL+authz.PathToken, url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {second.RefreshToken}, "client_id": {"pullmail-cli"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("a revoked refresh token still works: %d", resp.StatusCode)
	}
	env, _, errb = testEnv(vars, false)
	if c := Main(context.Background(), env, []string{"list"}); c != 1 || !strings.Contains(errb.String(), "pullmail login") {
		t.Fatalf("list after logout: exit %d %q", c, errb.String())
	}
}
