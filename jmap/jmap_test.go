package jmap_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/pullmail/pullmail/testenv"
)

// user is a JMAP client of one user of a real domain (TLS, SQLite).
type user struct {
	t     *testing.T
	http  *http.Client
	base  string
	token string
	acct  string
}

func newUser(t *testing.T, d *testenv.Domain, addr string) *user {
	t.Helper()
	d.AddUser(t, addr)
	pem, err := os.ReadFile(d.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	u := &user{t: t, http: &http.Client{Transport: tr}, base: d.URL, token: d.Token(t, addr, 0)}
	var s map[string]any
	u.do("GET", "/.well-known/jmap", nil, "", 200, &s)
	u.acct = s["primaryAccounts"].(map[string]any)["urn:ietf:params:jmap:mail"].(string)
	return u
}

func (u *user) do(method, path string, body []byte, ct string, want int, out any) http.Header {
	u.t.Helper()
	req, _ := http.NewRequest(method, u.base+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+u.token)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := u.http.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		u.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
	}
	if out != nil {
		if p, ok := out.(*[]byte); ok {
			*p = b
		} else if err := json.Unmarshal(b, out); err != nil {
			u.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.Header
}

var using = []string{"urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission", "urn:ietf:params:jmap:blob"}

// call runs one method and returns its response's name and arguments.
func (u *user) call(name string, args map[string]any) (string, map[string]any) {
	u.t.Helper()
	if _, ok := args["accountId"]; !ok {
		args["accountId"] = u.acct
	}
	res := u.calls([]any{[]any{name, args, "c"}})
	return res[0][0].(string), res[0][1].(map[string]any)
}

func (u *user) calls(calls []any) [][]any {
	u.t.Helper()
	body, _ := json.Marshal(map[string]any{"using": using, "methodCalls": calls})
	var resp struct {
		MethodResponses [][]any `json:"methodResponses"`
	}
	u.do("POST", "/jmap/api", body, "application/json", 200, &resp)
	return resp.MethodResponses
}

func TestMail(t *testing.T) {
	d := testenv.Start(t, "a.test", testenv.Options{})
	alice := newUser(t, d, "alice@a.test")
	bob := newUser(t, d, "bob@a.test")

	// Alice writes a draft with an uploaded attachment and sends it.
	var up map[string]any
	alice.do("POST", "/jmap/upload/"+alice.acct+"/", []byte("attached bytes"), "text/plain", 201, &up)
	blob := up["blobId"].(string)
	name, res := alice.call("Email/set", map[string]any{"create": map[string]any{"d1": map[string]any{
		"mailboxIds": map[string]bool{"drafts": true}, "to": []any{map[string]any{"email": "bob@a.test"}},
		"subject": "Tea party", "bodyValues": map[string]any{"b": map[string]any{"value": "Come to tea on Sunday"}},
		"textBody":    []any{map[string]any{"partId": "b", "type": "text/plain"}},
		"attachments": []any{map[string]any{"blobId": blob, "type": "text/plain", "name": "note.txt"}},
	}}})
	if name != "Email/set" || res["created"] == nil {
		t.Fatalf("Email/set create: %s %v", name, res)
	}
	res2 := alice.calls([]any{
		[]any{"EmailSubmission/set", map[string]any{"accountId": alice.acct, "create": map[string]any{"s1": map[string]any{
			"identityId": "me", "emailId": "#d1"}}, "onSuccessUpdateEmail": map[string]any{"#s1": map[string]any{"keywords/$seen": true}}}, "s"},
	})
	_ = res2
	body, _ := json.Marshal(map[string]any{"using": using, "methodCalls": []any{
		[]any{"Email/set", map[string]any{"accountId": alice.acct, "create": map[string]any{"d2": map[string]any{
			"mailboxIds": map[string]bool{"drafts": true}, "to": []any{map[string]any{"email": "bob@a.test"}},
			"subject": "Tea party", "bodyValues": map[string]any{"b": map[string]any{"value": "Come to tea on Sunday"}},
			"textBody":    []any{map[string]any{"partId": "b", "type": "text/plain"}},
			"attachments": []any{map[string]any{"blobId": blob, "type": "text/plain", "name": "note.txt"}}}}}, "0"},
		[]any{"EmailSubmission/set", map[string]any{"accountId": alice.acct, "create": map[string]any{"s1": map[string]any{
			"identityId": "me", "emailId": "#d2"}}, "onSuccessUpdateEmail": map[string]any{"#s1": map[string]any{"keywords/$flagged": true}}}, "1"},
	}})
	var sent struct {
		MethodResponses [][]any `json:"methodResponses"`
	}
	alice.do("POST", "/jmap/api", body, "application/json", 200, &sent)
	if len(sent.MethodResponses) != 3 || sent.MethodResponses[1][0] != "EmailSubmission/set" || sent.MethodResponses[2][0] != "Email/set" {
		t.Fatalf("send: %v", sent.MethodResponses)
	}
	if c := sent.MethodResponses[1][1].(map[string]any)["created"]; c == nil {
		t.Fatalf("not sent: %v", sent.MethodResponses[1][1])
	}
	if u := sent.MethodResponses[2][1].(map[string]any)["updated"]; u == nil {
		t.Fatalf("onSuccessUpdateEmail: %v", sent.MethodResponses[2][1])
	}

	// Bob finds it in his inbox, reads it with its body, flags and files it.
	_, st := bob.call("Email/get", map[string]any{"ids": []string{}})
	oldState := st["state"].(string)
	_, q := bob.call("Email/query", map[string]any{"filter": map[string]any{"inMailbox": "inbox", "subject": "tea"}, "calculateTotal": true})
	ids := q["ids"].([]any)
	if len(ids) != 1 || q["total"].(float64) != 1 {
		t.Fatalf("Email/query: %v", q)
	}
	id := ids[0].(string)
	_, g := bob.call("Email/get", map[string]any{"ids": []string{id}, "fetchTextBodyValues": true,
		"properties": []string{"subject", "from", "keywords", "mailboxIds", "bodyValues", "textBody", "attachments", "preview", "blobId", "threadId"}})
	e := g["list"].([]any)[0].(map[string]any)
	if e["subject"] != "Tea party" || e["preview"] != "Come to tea on Sunday" {
		t.Fatalf("Email/get: %v", e)
	}
	bv := e["bodyValues"].(map[string]any)
	if len(bv) != 1 {
		t.Fatalf("bodyValues: %v", bv)
	}
	for _, v := range bv {
		if v.(map[string]any)["value"] != "Come to tea on Sunday" {
			t.Fatalf("bodyValue: %v", v)
		}
	}
	att := e["attachments"].([]any)[0].(map[string]any)
	if att["blobId"] != blob || att["name"] != "note.txt" {
		t.Fatalf("attachment: %v", att)
	}
	var got []byte
	bob.do("GET", "/jmap/download/"+bob.acct+"/"+blob+"/note.txt?type=text/plain", nil, "", 200, &got)
	if string(got) != "attached bytes" {
		t.Fatalf("download: %q", got)
	}
	bob.do("GET", "/jmap/download/"+bob.acct+"/"+e["blobId"].(string)+"/m.eml?type=message/rfc822", nil, "", 200, &got)
	if !bytes.Contains(got, []byte("Subject: Tea party")) {
		t.Fatalf("message blob: %q", got)
	}
	_, bg := bob.call("Blob/get", map[string]any{"ids": []string{blob}, "properties": []string{"data:asText", "digest:sha-256", "size"}})
	sum := sha256.Sum256([]byte("attached bytes"))
	b0 := bg["list"].([]any)[0].(map[string]any)
	if b0["digest:sha-256"] != base64.StdEncoding.EncodeToString(sum[:]) || b0["data:asText"] != "attached bytes" || b0["size"].(float64) != 14 {
		t.Fatalf("Blob/get: %v", b0)
	}
	_, set := bob.call("Email/set", map[string]any{"update": map[string]any{id: map[string]any{
		"keywords/$seen": true, "keywords/$flagged": true, "mailboxIds": map[string]bool{"archive": true}}}})
	if set["updated"] == nil {
		t.Fatalf("Email/set update: %v", set)
	}
	_, g = bob.call("Email/get", map[string]any{"ids": []string{id}, "properties": []string{"keywords", "mailboxIds"}})
	e = g["list"].([]any)[0].(map[string]any)
	if kw := e["keywords"].(map[string]any); kw["$seen"] != true || kw["$flagged"] != true {
		t.Fatalf("keywords: %v", e)
	}
	if mb := e["mailboxIds"].(map[string]any); mb["archive"] != true || len(mb) != 1 {
		t.Fatalf("mailboxIds: %v", e)
	}
	_, ch := bob.call("Email/changes", map[string]any{"sinceState": oldState})
	if up := ch["updated"].([]any); len(up) != 1 || up[0] != id {
		t.Fatalf("Email/changes: %v", ch)
	}
	_, mg := bob.call("Mailbox/get", map[string]any{"ids": nil})
	found := false
	for _, m := range mg["list"].([]any) {
		m := m.(map[string]any)
		if m["role"] == "archive" && m["totalEmails"].(float64) == 1 && m["unreadEmails"].(float64) == 0 {
			found = true
		}
	}
	if !found {
		t.Fatalf("Mailbox/get: %v", mg)
	}
	_, th := bob.call("Thread/get", map[string]any{"ids": []string{e["id"].(string)}})
	_ = th

	// Bad input changes nothing and answers the RFC's errors.
	for _, tc := range []struct {
		name, method string
		args         map[string]any
		want         string
	}{
		{"unknown method", "Email/frobnicate", map[string]any{}, "unknownMethod"},
		{"other account", "Email/get", map[string]any{"accountId": "nope", "ids": []string{id}}, "accountNotFound"},
		{"unknown argument", "Email/get", map[string]any{"idz": []string{id}}, "invalidArguments"},
		{"bad sort", "Email/query", map[string]any{"sort": []any{map[string]any{"property": "colour"}}}, "unsupportedSort"},
		{"bad filter", "Email/query", map[string]any{"filter": map[string]any{"colour": "red"}}, "unsupportedFilter"},
		{"old state", "Email/changes", map[string]any{"sinceState": "x"}, "cannotCalculateChanges"},
		{"state mismatch", "Email/set", map[string]any{"ifInState": "0", "destroy": []string{id}}, "stateMismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bob.t = t
			name, res := bob.call(tc.method, tc.args)
			if name != "error" || res["type"] != tc.want {
				t.Fatalf("%s: %s %v, want error %s", tc.method, name, res, tc.want)
			}
		})
	}
	bob.t = t
	_, g = bob.call("Email/get", map[string]any{"ids": []string{id}, "properties": []string{"mailboxIds"}})
	if g["list"].([]any)[0].(map[string]any)["mailboxIds"].(map[string]any)["archive"] != true {
		t.Fatal("a refused call changed the email")
	}
	var prob map[string]any
	bob.do("POST", "/jmap/api", []byte("{nope"), "application/json", 400, &prob)
	if prob["type"] != "urn:ietf:params:jmap:error:notJSON" {
		t.Fatalf("notJSON: %v", prob)
	}
	bob.do("POST", "/jmap/api", []byte(`{"using":["urn:x"],"methodCalls":[]}`), "application/json", 400, &prob)
	if prob["type"] != "urn:ietf:params:jmap:error:unknownCapability" {
		t.Fatalf("unknownCapability: %v", prob)
	}
	many := strings.Repeat(`["Core/echo",{},"e"],`, 40)
	bob.do("POST", "/jmap/api", []byte(`{"using":["urn:ietf:params:jmap:core"],"methodCalls":[`+strings.TrimSuffix(many, ",")+`]}`), "application/json", 400, &prob)
	if prob["type"] != "urn:ietf:params:jmap:error:limit" || prob["limit"] != "maxCallsInRequest" {
		t.Fatalf("limit: %v", prob)
	}
	req, _ := http.NewRequest("POST", d.URL+"/jmap/api", strings.NewReader(`{}`))
	resp, err := bob.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
}
