package api_test

import (
	"bytes"
	"context"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/dirsync/dirsync/host/config"
)

// settings is a domain's settings as the API answers them.
type settings struct {
	Name         string   `json:"name"`
	Sync         bool     `json:"sync"`
	Policy       string   `json:"policy"`
	AliasDomains []string `json:"alias_domains"`
	Interval     string   `json:"interval"`
	LDAP         struct {
		URLs         []string `json:"urls"`
		BindDN       string   `json:"bind_dn"`
		BaseDN       string   `json:"base_dn"`
		Filter       string   `json:"filter"`
		PageSize     int      `json:"page_size"`
		Timeout      string   `json:"timeout"`
		PasswordSet  bool     `json:"password_set"`
		PasswordFile *string  `json:"password_file"`
		PasswordEnv  *string  `json:"password_env"`
	} `json:"ldap"`
	Safety struct {
		MaxDeletes       int     `json:"max_deletes"`
		MaxDeletePercent float64 `json:"max_delete_percent"`
		PercentFloor     int     `json:"percent_floor"`
	} `json:"safety"`
	ManagedBy string     `json:"managed_by"`
	Version   int64      `json:"version"`
	Author    *string    `json:"author"`
	Saved     *time.Time `json:"saved"`
}

// connResult is a connection test's answer.
type connResult struct {
	Server     string   `json:"server"`
	FailedOver []string `json:"failed_over"`
	Entries    int      `json:"entries"`
	Capped     bool     `json:"capped"`
	Filter     string   `json:"filter"`
	TookNS     int64    `json:"took_ns"`
}

// wrongPassword is a bind password the directory refuses.
const wrongPassword = "wrong-6c1f0e9a27d3b8"

// form is the body of example.com's settings as a client sends them,
// with the sample directory at url; more is merged over it (a nested
// map over the nested object).
func form(url string, more map[string]any) map[string]any {
	f := map[string]any{
		"name":          "example.com",
		"sync":          true,
		"policy":        "standard",
		"alias_domains": []string{"example.org"},
		"ldap": map[string]any{
			"urls":    []string{url},
			"bind_dn": "cn=reader,dc=example,dc=com",
			"base_dn": "dc=example,dc=com",
			"timeout": "20s",
		},
	}
	for k, v := range more {
		if sub, ok := v.(map[string]any); ok {
			if cur, ok := f[k].(map[string]any); ok {
				for sk, sv := range sub {
					cur[sk] = sv
				}
				continue
			}
		}
		f[k] = v
	}
	return f
}

// TestStoreKeptDomain makes example.com through the API, with its bind
// password, and follows it: shown, tested, previewed as a form, changed
// (with a stale version, a bad filter, bad keys), synced with the stored
// password, and removed. No response and no log line holds the password.
func TestStoreKeptDomain(t *testing.T) {
	e := newEnvWith(t, envSetup{noExample: true})
	ctx := context.Background()
	domains := func() []map[string]any {
		var out []map[string]any
		e.want(e.do("GET", "/api/v1/domains", adminToken, nil), 200).json(t, &out)
		return out
	}
	if d := domains(); len(d) != 1 || d[0]["name"] != "other.test" {
		t.Fatalf("domains before: %v", d)
	}

	// Made: version 1, defaults for the keys left out, the password kept
	// sealed and shown only as password_set.
	var made settings
	body := form(e.ldapURL, map[string]any{"name": "Example.COM", "ldap": map[string]any{"password": readerPassword}})
	e.want(e.do("POST", "/api/v1/domains", adminToken, body), 201).json(t, &made)
	if made.Name != "example.com" || made.ManagedBy != "store" || made.Version != 1 || !made.Sync ||
		made.Author == nil || *made.Author != "admin" || made.Saved == nil || !made.LDAP.PasswordSet ||
		made.LDAP.PasswordFile != nil || made.LDAP.PasswordEnv != nil ||
		made.Interval != "1h0m0s" || made.LDAP.PageSize != config.DefaultPageSize || made.LDAP.Timeout != "20s" ||
		made.Safety.MaxDeletes != config.DefaultMaxDeletes || made.Safety.PercentFloor != config.DefaultPercentFloor ||
		!slices.Equal(made.AliasDomains, []string{"example.org"}) {
		t.Errorf("made: %+v", made)
	}
	if d := domains(); len(d) != 2 || d[0]["name"] != "example.com" || d[0]["managed_by"] != "store" {
		t.Errorf("domains after: %v", d)
	}
	var got settings
	r := e.want(e.do("GET", ex+"/settings", adminToken, nil), 200)
	r.json(t, &got)
	if !reflect.DeepEqual(got, made) {
		t.Errorf("GET settings = %+v, want what POST answered: %+v", got, made)
	}
	if bytes.Contains(r.body, []byte(`"password"`)) || bytes.Contains(r.body, []byte("password_file")) {
		t.Errorf("the settings show a password key: %s", r.body)
	}

	// Made again: refused, whatever the case.
	p := e.problemOf(e.want(e.do("POST", "/api/v1/domains", adminToken, form(e.ldapURL, map[string]any{"name": "EXAMPLE.com"})), 409))
	if p.Type != "urn:dirsync:problem:domain-exists" || !strings.Contains(p.Detail, "example.com") {
		t.Errorf("POST of an existing domain: %+v", p)
	}
	// Refused bodies of a new domain.
	for _, c := range []struct {
		body any
		key  string
	}{
		{form(e.ldapURL, map[string]any{"name": ""}), "name"},
		{form(e.ldapURL, map[string]any{"name": "not a domain"}), "name"},
		{form(e.ldapURL, map[string]any{"name": "a@b.test"}), "name"},
		{form(e.ldapURL, map[string]any{"name": "new.test", "policy": "nope"}), "policy"},
		{form(e.ldapURL, map[string]any{"name": "new.test", "ldap": map[string]any{"urls": []string{}}}), "ldap.urls"},
		{form(e.ldapURL, map[string]any{"name": "new.test", "ldap": map[string]any{"password_file": "reader.pw"}}), "ldap.password_file"},
		{form(e.ldapURL, map[string]any{"name": "new.test", "colour": "blue"}), "colour"},
	} {
		p := e.problemOf(e.want(e.do("POST", "/api/v1/domains", adminToken, c.body), 422))
		if p.Key != c.key || p.Type != "urn:dirsync:problem:invalid-settings" {
			t.Errorf("POST %v: key %q (%+v), want %q", c.body, p.Key, p, c.key)
		}
	}
	e.want(e.do("POST", "/api/v1/domains", adminToken, "[1, 2]"), 400)
	e.want(e.do("POST", "/api/v1/domains", adminToken, nil), 400)

	// The connection test: of the saved settings, then of forms.
	var conn connResult
	e.want(e.do("POST", ex+"/connection-test", adminToken, nil), 200).json(t, &conn)
	if conn.Server != e.ldapURL || conn.Entries != 14 || conn.Capped || conn.Filter == "" || conn.TookNS <= 0 {
		t.Errorf("connection test of the saved settings: %+v", conn)
	}
	e.want(e.do("POST", ex+"/connection-test", adminToken, "null"), 200)
	dead := "ldap://127.0.0.1:1"
	e.want(e.do("POST", ex+"/connection-test", adminToken,
		form(e.ldapURL, map[string]any{"ldap": map[string]any{"urls": []string{dead, e.ldapURL}}})), 200).json(t, &conn)
	if conn.Server != e.ldapURL || !slices.Equal(conn.FailedOver, []string{dead}) {
		t.Errorf("connection test failing over, with the stored password: %+v", conn)
	}
	p = e.problemOf(e.want(e.do("POST", ex+"/connection-test", adminToken,
		form(e.ldapURL, map[string]any{"ldap": map[string]any{"password": wrongPassword}})), 502))
	if p.Type != "urn:dirsync:problem:from-directory" || !strings.Contains(p.Detail, e.ldapURL) ||
		!strings.Contains(p.Detail, "Invalid Credentials") {
		t.Errorf("connection test with a wrong password: %+v", p)
	}
	p = e.problemOf(e.want(e.do("POST", ex+"/connection-test", adminToken,
		form(dead, map[string]any{"ldap": map[string]any{"password": readerPassword}})), 502))
	if !strings.Contains(p.Detail, dead) {
		t.Errorf("connection test of an unreachable server: %+v", p)
	}
	p = e.problemOf(e.want(e.do("POST", ex+"/connection-test", adminToken,
		form(e.ldapURL, map[string]any{"ldap": map[string]any{"filter": "(|(cn=a)"}})), 422))
	if p.Key != "ldap.filter" || p.Position == nil || p.Reason == "" {
		t.Errorf("connection test of a bad filter: %+v", p)
	}
	p = e.problemOf(e.want(e.do("POST", ex+"/connection-test", adminToken,
		form(e.ldapURL, map[string]any{"name": "other.test"})), 422))
	if p.Key != "name" {
		t.Errorf("connection test of another domain's form: %+v", p)
	}
	p = e.problemOf(e.want(e.do("POST", ex+"/connection-test", adminToken,
		form(e.ldapURL, map[string]any{"ldap": map[string]any{"password_env": "HOME"}})), 422))
	if p.Key != "ldap.password_env" {
		t.Errorf("connection test with a password variable: %+v", p)
	}

	// The preview: of the saved settings, and of a form.
	var prev report
	e.want(e.do("POST", ex+"/preview", adminToken, nil), 200).json(t, &prev)
	if prev.Mode != "preview" || prev.Outcome != "ok" || len(prev.Users) == 0 {
		t.Errorf("preview of the saved settings: %+v", prev)
	}
	narrow := "(&(objectClass=inetOrgPerson)(cn=Alice*))"
	e.want(e.do("POST", ex+"/preview", adminToken, form(e.ldapURL, map[string]any{"ldap": map[string]any{"filter": narrow}})), 200).json(t, &prev)
	if prev.Outcome != "ok" || len(prev.Users) != 1 || prev.Users[0].Address != "alice@example.com" {
		t.Errorf("preview of a form with a narrow filter: %+v", prev)
	}
	p = e.problemOf(e.want(e.do("POST", ex+"/preview", adminToken, form(e.ldapURL, map[string]any{"ldap": map[string]any{"filter": "(|(cn=a)"}})), 422))
	if p.Key != "ldap.filter" || p.Position == nil {
		t.Errorf("preview of a form with a bad filter: %+v", p)
	}

	// Apply changes: a new version, the password kept.
	var changed settings
	body = form(e.ldapURL, map[string]any{"version": 1, "safety": map[string]any{"max_deletes": 100}, "interval": "30m"})
	e.want(e.do("PUT", ex+"/settings", adminToken, body), 200).json(t, &changed)
	if changed.Version != 2 || changed.Safety.MaxDeletes != 100 || changed.Interval != "30m0s" || !changed.LDAP.PasswordSet {
		t.Errorf("PUT: %+v", changed)
	}
	// What a GET answered can be sent back, changed.
	var echo map[string]any
	e.want(e.do("GET", ex+"/settings", adminToken, nil), 200).json(t, &echo)
	echo["sync"] = false
	e.want(e.do("PUT", ex+"/settings", adminToken, echo), 200).json(t, &changed)
	if changed.Version != 3 || changed.Sync || changed.Safety.MaxDeletes != 100 || !changed.LDAP.PasswordSet {
		t.Errorf("PUT of a GET's answer: %+v", changed)
	}

	// A stale version: 409 naming the current one; nothing saved.
	p = e.problemOf(e.want(e.do("PUT", ex+"/settings", adminToken, form(e.ldapURL, map[string]any{"version": 1})), 409))
	if p.Type != "urn:dirsync:problem:stale-version" || p.CurrentVersion == nil || *p.CurrentVersion != 3 ||
		!strings.Contains(p.Detail, "version 3") {
		t.Errorf("PUT of a stale version: %+v", p)
	}
	// Refused settings: 422 naming the key; a bad filter with its position.
	p = e.problemOf(e.want(e.do("PUT", ex+"/settings", adminToken,
		form(e.ldapURL, map[string]any{"version": 3, "ldap": map[string]any{"filter": "(|(cn=a)(cn=b)"}})), 422))
	if p.Type != "urn:dirsync:problem:invalid-filter" || p.Key != "ldap.filter" || p.Position == nil || *p.Position != 14 || p.Reason == "" {
		t.Errorf("PUT of a bad filter: %+v", p)
	}
	for _, c := range []struct {
		more map[string]any
		key  string
	}{
		{map[string]any{"ldap": map[string]any{"urls": []string{"http://example.com"}}}, "ldap.urls"},
		{map[string]any{"ldap": map[string]any{"urlz": []string{e.ldapURL}}}, "ldap.urlz"},
		{map[string]any{"ldap": map[string]any{"page_size": "many"}}, "ldap.page_size"},
		{map[string]any{"ldap": map[string]any{"timeout": 20}}, "ldap.timeout"},
		{map[string]any{"ldap": map[string]any{"password": 12345}}, "ldap.password"},
		{map[string]any{"ldap": "ldap://x"}, "ldap"},
		{map[string]any{"interval": "soon"}, "interval"},
		{map[string]any{"safety": map[string]any{"max_delete_percent": 250}}, "safety.max_delete_percent"},
		{map[string]any{"name": "other.test"}, "name"},
		{map[string]any{"version": -1}, "version"},
		{map[string]any{"version": nil}, "version"},
	} {
		more := c.more
		if _, ok := more["version"]; !ok {
			more["version"] = 3
		}
		p := e.problemOf(e.want(e.do("PUT", ex+"/settings", adminToken, form(e.ldapURL, more)), 422))
		if p.Key != c.key {
			t.Errorf("PUT %v: key %q (%+v), want %q", c.more, p.Key, p, c.key)
		}
	}
	e.want(e.do("PUT", ex+"/settings", adminToken, "{not json"), 400)
	e.want(e.do("PUT", ex+"/settings", adminToken, nil), 400)
	if got := e.settings("example.com"); got.Version != 3 {
		t.Fatalf("refused changes were saved: version %d", got.Version)
	}

	// The password: cleared, then set again.
	e.want(e.do("PUT", ex+"/settings", adminToken, form(e.ldapURL, map[string]any{"version": 3, "ldap": map[string]any{"password": ""}})), 200).json(t, &changed)
	if changed.Version != 4 || changed.LDAP.PasswordSet {
		t.Errorf("PUT clearing the password: %+v", changed)
	}
	e.want(e.do("PUT", ex+"/settings", adminToken, form(e.ldapURL, map[string]any{"version": 4, "ldap": map[string]any{"password": readerPassword}})), 200).json(t, &changed)
	if changed.Version != 5 || !changed.LDAP.PasswordSet || !changed.Sync {
		t.Errorf("PUT setting the password: %+v", changed)
	}

	// A sync started through the API binds with the stored password and
	// records the settings version it ran with.
	var started struct {
		ID int64 `json:"id"`
	}
	e.want(e.do("POST", ex+"/runs", adminToken, nil), 202).json(t, &started)
	run := e.waitRun("example.com", started.ID)
	if run["outcome"] != "ok" || run["settings_version"] != float64(5) || run["server"] != e.ldapURL {
		t.Errorf("run %d of the store-kept domain: %v", started.ID, run)
	}
	mbs, err := e.st.Mailboxes(ctx, "example.com")
	if err != nil || len(mbs) == 0 {
		t.Fatalf("mailboxes after the sync: %d, %v", len(mbs), err)
	}

	// Removed: the settings go, the mailboxes stay.
	e.want(e.do("DELETE", ex, adminToken, nil), 204)
	e.want(e.do("GET", ex+"/settings", adminToken, nil), 404)
	e.want(e.do("DELETE", ex, adminToken, nil), 404)
	if d := domains(); len(d) != 1 {
		t.Errorf("domains after the removal: %v", d)
	}
	if after, err := e.st.Mailboxes(ctx, "example.com"); err != nil || len(after) != len(mbs) {
		t.Errorf("mailboxes after the removal: %d, %v; want %d", len(after), err, len(mbs))
	}
	// And made again: the numbers go on.
	e.want(e.do("POST", "/api/v1/domains", adminToken, form(e.ldapURL, nil)), 201).json(t, &made)
	if made.Version <= 5 || made.LDAP.PasswordSet {
		t.Errorf("made again: %+v", made)
	}

	logs := e.logs.String()
	for _, want := range []string{
		`msg="api: domain created" principal=admin domain=example.com version=1 password=changed set.alias_domains=[example.org] ` +
			`set.ldap.base_dn="dc=example,dc=com" set.ldap.bind_dn="cn=reader,dc=example,dc=com" set.ldap.timeout=20s ` +
			`set.ldap.urls=[` + e.ldapURL + `] set.policy=standard set.sync=true` + "\n",
		`msg="api: settings changed" principal=admin domain=example.com version=2 set.interval=30m0s set.safety.max_deletes=100` + "\n",
		`msg="api: settings changed" principal=admin domain=example.com version=3 set.sync=false` + "\n",
		// A PUT replaces the settings: the keys it leaves out take their
		// defaults.
		`msg="api: settings changed" principal=admin domain=example.com version=4 password=cleared ` +
			`set.interval=1h0m0s set.safety.max_deletes=500 set.sync=true` + "\n",
		`msg="api: settings changed" principal=admin domain=example.com version=5 password=changed` + "\n",
		`msg="api: domain removed" principal=admin domain=example.com version=5`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log has no %s", want)
		}
	}
	noSecrets(t, logs)
	noSecrets(t, e.bodies.String())
	for _, text := range []string{logs, e.bodies.String()} {
		if strings.Contains(text, wrongPassword) {
			t.Errorf("a password given in a form is in the output")
		}
	}
}

// settings reads a domain's settings through the API.
func (e *env) settings(domain string) settings {
	e.t.Helper()
	var s settings
	e.want(e.do("GET", "/api/v1/domains/"+domain+"/settings", adminToken, nil), 200).json(e.t, &s)
	return s
}

// TestConfigDomainSettings checks a domain of dirsync.toml: shown with its
// password source, tested and previewed as a form, never changed here.
func TestConfigDomainSettings(t *testing.T) {
	e := newEnv(t, nil)
	s := e.settings("example.com")
	if s.ManagedBy != "config" || s.Version != 0 || s.Author != nil || s.Saved != nil || !s.LDAP.PasswordSet ||
		s.LDAP.PasswordFile == nil || *s.LDAP.PasswordFile != "reader.pw" || s.LDAP.PasswordEnv != nil ||
		s.LDAP.Timeout != "20s" || s.Interval != "1h0m0s" {
		t.Errorf("settings of example.com: %+v", s)
	}
	if o := e.settings("other.test"); o.LDAP.Filter != badFilter || o.Sync {
		t.Errorf("settings of other.test: %+v", o)
	}

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"PUT", ex + "/settings", form(e.ldapURL, map[string]any{"version": 0})},
		{"PUT", ex + "/settings", "{}"},
		{"DELETE", ex, nil},
	} {
		p := e.problemOf(e.want(e.do(c.method, c.path, adminToken, c.body), 409))
		if p.Type != "urn:dirsync:problem:managed-by-config" || !strings.Contains(p.Detail, "set in dirsync.toml") {
			t.Errorf("%s %s: %+v", c.method, c.path, p)
		}
	}
	p := e.problemOf(e.want(e.do("POST", "/api/v1/domains", adminToken, form(e.ldapURL, nil)), 409))
	if p.Type != "urn:dirsync:problem:domain-exists" || !strings.Contains(p.Detail, "dirsync.toml") {
		t.Errorf("POST of a domain of dirsync.toml: %+v", p)
	}

	// Tested and previewed with the file's password, saved or as a form.
	var conn connResult
	e.want(e.do("POST", ex+"/connection-test", adminToken, nil), 200).json(t, &conn)
	if conn.Entries != 14 || conn.Server != e.ldapURL {
		t.Errorf("connection test: %+v", conn)
	}
	f := form(e.ldapURL, map[string]any{"ldap": map[string]any{"filter": "(&(objectClass=inetOrgPerson)(cn=Bob*))"}})
	e.want(e.do("POST", ex+"/connection-test", adminToken, f), 200).json(t, &conn)
	if conn.Entries != 1 {
		t.Errorf("connection test of a form: %+v", conn)
	}
	var prev report
	e.want(e.do("POST", ex+"/preview", adminToken, f), 200).json(t, &prev)
	if len(prev.Users) != 1 || prev.Users[0].Address != "bob@example.com" {
		t.Errorf("preview of a form: %+v", prev)
	}
	// other.test's saved filter is invalid: a form with a good one works.
	fixed := form(e.ldapURL, map[string]any{"name": "other.test", "sync": false, "ldap": map[string]any{"filter": ""}})
	e.want(e.do("POST", "/api/v1/domains/other.test/connection-test", adminToken, fixed), 200)
	p = e.problemOf(e.want(e.do("POST", "/api/v1/domains/other.test/connection-test", adminToken, nil), 422))
	if p.Position == nil || p.Key != "ldap.filter" {
		t.Errorf("connection test of an invalid saved filter: %+v", p)
	}
	noSecrets(t, e.logs.String())
	noSecrets(t, e.bodies.String())
}

// TestSettingsAuth checks who may read and change settings.
func TestSettingsAuth(t *testing.T) {
	e := newEnvWith(t, envSetup{noExample: true})
	e.want(e.do("POST", "/api/v1/domains", adminToken, form(e.ldapURL, map[string]any{"ldap": map[string]any{"password": readerPassword}})), 201)
	paths := []struct {
		method, path string
		body         any
	}{
		{"GET", ex + "/settings", nil},
		{"PUT", ex + "/settings", form(e.ldapURL, map[string]any{"version": 1})},
		{"DELETE", ex, nil},
		{"POST", ex + "/connection-test", nil},
		{"POST", ex + "/preview", form(e.ldapURL, nil)},
		{"POST", "/api/v1/domains", form(e.ldapURL, map[string]any{"name": "new.test"})},
	}

	t.Run("no token", func(t *testing.T) {
		for _, c := range paths {
			e.want(e.do(c.method, c.path, "", c.body), 401)
			e.want(e.do(c.method, c.path, "not-a-token", c.body), 401)
		}
	})
	t.Run("another domain's token", func(t *testing.T) {
		for _, c := range paths[:5] {
			hidden := e.want(e.do(c.method, c.path, otherToken, c.body), 404)
			absent := e.want(e.do(c.method, strings.Replace(c.path, "example.com", "missing.test", 1), otherToken, c.body), 404)
			if !bytes.Equal(bytes.Replace(hidden.body, []byte("example.com"), []byte("missing.test"), 1), absent.body) {
				t.Errorf("%s %s: a hidden domain is answered\n%s\nand a missing one\n%s", c.method, c.path, hidden.body, absent.body)
			}
		}
		// A domain outside its list cannot be made either.
		p := e.problemOf(e.want(e.do("POST", "/api/v1/domains", otherToken, form(e.ldapURL, map[string]any{"name": "new.test"})), 403))
		if !strings.Contains(p.Detail, "new.test") {
			t.Errorf("POST of a domain outside the token's list: %+v", p)
		}
		// One inside it exists already (in dirsync.toml).
		e.want(e.do("POST", "/api/v1/domains", otherToken, form(e.ldapURL, map[string]any{"name": "other.test"})), 409)
	})
	t.Run("viewer", func(t *testing.T) {
		s := e.settings("example.com")
		var vs settings
		e.want(e.do("GET", ex+"/settings", viewerToken, nil), 200).json(t, &vs)
		if !reflect.DeepEqual(vs, s) {
			t.Errorf("a viewer reads %+v, an admin %+v", vs, s)
		}
		// Tests and previews, of the saved settings and of forms that keep
		// the saved connection.
		e.want(e.do("POST", ex+"/connection-test", viewerToken, nil), 200)
		e.want(e.do("POST", ex+"/preview", viewerToken, nil), 200)
		narrow := form(e.ldapURL, map[string]any{"ldap": map[string]any{"filter": "(cn=Alice*)"}})
		e.want(e.do("POST", ex+"/connection-test", viewerToken, narrow), 200)
		e.want(e.do("POST", ex+"/preview", viewerToken, narrow), 200)
		// A form that would send the stored password elsewhere is refused;
		// with a password of its own it may go anywhere.
		elsewhere := "ldap://127.0.0.1:1"
		for _, more := range []map[string]any{
			{"ldap": map[string]any{"urls": []string{elsewhere}}},
			{"ldap": map[string]any{"bind_dn": "cn=admin,dc=example,dc=com"}},
			{"ldap": map[string]any{"allow_cleartext_bind": true}},
		} {
			for _, path := range []string{ex + "/connection-test", ex + "/preview"} {
				p := e.problemOf(e.want(e.do("POST", path, viewerToken, form(e.ldapURL, more)), 403))
				if !strings.Contains(p.Detail, "ldap.password") {
					t.Errorf("POST %s %v: %+v", path, more, p)
				}
			}
		}
		e.want(e.do("POST", ex+"/connection-test", viewerToken,
			form(elsewhere, map[string]any{"ldap": map[string]any{"password": wrongPassword}})), 502)
		e.want(e.do("POST", ex+"/connection-test", viewerToken,
			form(e.ldapURL, map[string]any{"ldap": map[string]any{"password": wrongPassword, "bind_dn": "cn=admin,dc=example,dc=com"}})), 502)
		// No changes.
		for _, c := range []int{1, 2, 5} {
			e.want(e.do(paths[c].method, paths[c].path, viewerToken, paths[c].body), 403)
		}
		if after := e.settings("example.com"); after.Version != s.Version {
			t.Errorf("a viewer changed the settings: version %d, was %d", after.Version, s.Version)
		}
	})
	logs := e.logs.String()
	for _, want := range []string{
		`msg="api: request refused: the principal may only read" principal=viewer method=PUT`,
		`msg="api: request refused: the principal may not send the domain's password elsewhere" principal=viewer domain=example.com key=ldap.urls`,
		`msg="api: request refused: the principal's domains do not include the name" principal=other`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log has no %s", want)
		}
	}
	noSecrets(t, logs)
	noSecrets(t, e.bodies.String())
	for _, text := range []string{logs, e.bodies.String()} {
		if strings.Contains(text, wrongPassword) {
			t.Errorf("a password given in a form is in the output")
		}
	}
}

// TestSettingsNoSecretsKey checks that without [secrets] key_file no
// password is stored: a domain without one can still be made.
func TestSettingsNoSecretsKey(t *testing.T) {
	e := newEnvWith(t, envSetup{noExample: true, noSecretsKey: true})
	p := e.problemOf(e.want(e.do("POST", "/api/v1/domains", adminToken,
		form(e.ldapURL, map[string]any{"ldap": map[string]any{"password": readerPassword}})), 422))
	if p.Key != "ldap.password" || !strings.Contains(p.Detail, "key_file") {
		t.Errorf("POST with a password and no key: %+v", p)
	}
	var made settings
	e.want(e.do("POST", "/api/v1/domains", adminToken, form(e.ldapURL, nil)), 201).json(t, &made)
	if made.LDAP.PasswordSet {
		t.Errorf("made without a password: %+v", made)
	}
	p = e.problemOf(e.want(e.do("PUT", ex+"/settings", adminToken,
		form(e.ldapURL, map[string]any{"version": made.Version, "ldap": map[string]any{"password": readerPassword}})), 422))
	if p.Key != "ldap.password" {
		t.Errorf("PUT with a password and no key: %+v", p)
	}
	// A form's own password needs no key: it is not stored.
	var conn connResult
	e.want(e.do("POST", ex+"/connection-test", adminToken,
		form(e.ldapURL, map[string]any{"ldap": map[string]any{"password": readerPassword}})), 200).json(t, &conn)
	if conn.Entries != 14 {
		t.Errorf("connection test with a form's password: %+v", conn)
	}
	noSecrets(t, e.logs.String())
	noSecrets(t, e.bodies.String())
}

// TestSettingsSchema checks that the document's settings schemas have
// every key of a [[domain]] table, so that the API shows and takes them
// all.
func TestSettingsSchema(t *testing.T) {
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	schemas := doc.Components.Schemas
	for _, c := range []struct {
		typ             reflect.Type
		answer, request string
	}{
		{reflect.TypeFor[config.Domain](), "DomainSettings", "DomainSettingsInput"},
		{reflect.TypeFor[config.LDAP](), "LDAPSettings", "LDAPSettingsInput"},
		{reflect.TypeFor[config.Safety](), "SafetySettings", "SafetySettingsInput"},
	} {
		for i := range c.typ.NumField() {
			key, _, _ := strings.Cut(c.typ.Field(i).Tag.Get("json"), ",")
			for _, name := range []string{c.answer, c.request} {
				if schemas[name].Value.Properties[key] == nil {
					t.Errorf("schema %s has no %q (%s.%s)", name, key, c.typ, c.typ.Field(i).Name)
				}
			}
		}
	}
	pw := schemas["LDAPSettingsInput"].Value.Properties["password"]
	if pw == nil || !pw.Value.WriteOnly {
		t.Errorf("LDAPSettingsInput has no write-only password")
	}
	if schemas["LDAPSettings"].Value.Properties["password"] != nil {
		t.Errorf("LDAPSettings, an answer, has a password")
	}
}
