package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/internal/secrets"
	"github.com/dirsync/dirsync/host/store/sqlite"
)

// call sends an API request with a bearer token and returns the status and
// body.
func (p *serveProc) call(method, path, token, body string) (int, string) {
	p.t.Helper()
	req, err := http.NewRequest(method, p.base+path, strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeAPI drives dirsync serve as an operator's panel would: it makes
// a store-kept domain through the API, which the schedule then syncs with
// the stored password; "Apply changes" with a new filter is used by the next
// run, recorded with its version; "Sync now" answers 202 with the run's id
// and the run appears; a run-now while another process holds the domain is
// 409; a viewer cannot write; and the password is never in a response or a
// log line.
func TestServeAPI(t *testing.T) {
	e := newEnv(t)
	listen := freeAddr(t)
	const admin, viewer = "admin-token-for-the-test", "viewer-token-for-the-test"
	cfg := e.writeTokenConfig(listen, admin, viewer, "")
	p := e.startServe(cfg, listen)

	settings := func(filter string) map[string]any {
		return map[string]any{"name": "example.com", "sync": true, "policy": "standard", "interval": "2s",
			"alias_domains": []string{"example.org"},
			"ldap": map[string]any{"urls": []string{e.srv.URL}, "bind_dn": "cn=reader,dc=example,dc=com",
				"base_dn": "dc=example,dc=com", "filter": filter, "password": readerPassword}}
	}
	body := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	var seen strings.Builder
	call := func(method, path, token, b string, want int) string {
		t.Helper()
		code, out := p.call(method, path, token, b)
		seen.WriteString(out)
		if code != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, code, out, want)
		}
		return out
	}

	if code, _ := p.call("GET", "/api/v1/domains", "", ""); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	call("POST", "/api/v1/domains", viewer, body(settings("")), 403)
	call("POST", "/api/v1/domains", admin, body(settings("")), 201)
	call("POST", "/api/v1/domains/example.com/groups", admin, `{"name":"Sales"}`, 201)

	// The schedule syncs the new domain by itself, with the stored password.
	p.eventually(30*time.Second, "a scheduled run of the store-kept domain", func() bool {
		runs := e.runs()
		return len(runs) > 0 && runs[len(runs)-1].Outcome == "ok"
	})
	if n := len(e.mailboxes()); n != 9 {
		t.Errorf("%d mailboxes after the first run, want 9", n)
	}

	// "Apply changes": a new filter, over the version read.
	const filter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457))"
	s := settings(filter)
	s["version"] = 0
	call("PUT", "/api/v1/domains/example.com/settings", admin, body(s), 409) // stale version
	s["version"] = 1
	call("PUT", "/api/v1/domains/example.com/settings", admin, body(s), 200)
	p.eventually(30*time.Second, "a run with settings version 2", func() bool {
		runs := e.runs()
		return len(runs) > 0 && runs[0].SettingsVersion == 2 && runs[0].Outcome == "ok"
	})
	if r := e.runs()[0]; !strings.Contains(r.Settings, `"filter":"`+strings.ReplaceAll(filter, "&", `\u0026`)) && !strings.Contains(r.Settings, filter) {
		t.Errorf("the run after Apply changes used settings %s", r.Settings)
	}
	if _, ok := e.mailboxes()["support@example.com"]; ok {
		t.Errorf("the public folder is still there after the filter left it out")
	}

	// "Sync now": 202 with the id, and the run appears.
	out := call("POST", "/api/v1/domains/example.com/runs", admin, `{}`, 202)
	var started struct{ ID int64 }
	json.Unmarshal([]byte(out), &started)
	p.eventually(30*time.Second, "the run started now, finished", func() bool {
		code, out := p.call("GET", fmt.Sprintf("/api/v1/domains/example.com/runs/%d", started.ID), viewer, "")
		return code == 200 && strings.Contains(out, `"outcome":"ok"`)
	})
	call("POST", "/api/v1/domains/example.com/runs", viewer, `{}`, 403)

	// Another process holds the domain: run-now is 409 naming it.
	st, err := sqlite.Open(e.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The schedule runs every 2 s: wait for the lease to be free.
	p.eventually(30*time.Second, "the domain's lease", func() bool {
		_, err := st.AcquireLease(context.Background(), "example.com", "gateway-9 pid 1 #1", time.Minute)
		return err == nil
	})
	if out := call("POST", "/api/v1/domains/example.com/runs", admin, `{}`, 409); !strings.Contains(out, "gateway-9") {
		t.Errorf("the 409 does not name the holder: %s", out)
	}
	st.ReleaseLease(context.Background(), "example.com", "gateway-9 pid 1 #1")

	call("GET", "/api/v1/domains/example.com/settings", viewer, "", 200)
	p.stop(syscall.SIGTERM)
	for what, text := range map[string]string{"a response": seen.String(), "the log": p.log.String()} {
		if strings.Contains(text, readerPassword) {
			t.Errorf("the bind password appears in %s", what)
		}
		for _, tok := range []string{admin, viewer} {
			if bytes.Contains([]byte(text), []byte(tok)) {
				t.Errorf("a token appears in %s", what)
			}
		}
	}
}

// writeTokenConfig writes serve.toml (and makes it the CLI's config too)
// for dirsync serve on listen with an admin token "panel" for every domain,
// a viewer token "auditor" for example.com, a [secrets] key file, and the
// given TOML appended (domains, say).
func (e *env) writeTokenConfig(listen, admin, viewer, more string) string {
	e.t.Helper()
	hash := func(s string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(s))) }
	e.write("secret.key", secrets.NewKey()+"\n")
	e.config = e.write("serve.toml", fmt.Sprintf(`
[store]
dsn = "var/dirsync.db"
[plugins]
manifest = "plugin.toml"
cache_dir = "var/cache"
[api]
listen = %q
[[api.token]]
name = "panel"
sha256 = %q
role = "admin"
domains = ["*"]
[[api.token]]
name = "auditor"
sha256 = %q
role = "viewer"
domains = ["example.com"]
[secrets]
key_file = "secret.key"
`, listen, hash(admin), hash(viewer))+more)
	return e.config
}
