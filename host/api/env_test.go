package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/api"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/secrets"
	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// The tokens of the test config: admin sees every domain, viewer only
// example.com, other only other.test.
const (
	adminToken  = "admin-3f9c2b7d41e8a6"
	viewerToken = "viewer-8d21c7e5b09f4a"
	otherToken  = "other-5a7e9c1d3b2f60"
	// readerPassword is the sample directory's reader password.
	readerPassword = "reader-secret"
	// badFilter is other.test's saved filter: an AND of nothing.
	badFilter = "(&)"
)

// nextRun is the next run the fake scheduler reports for example.com.
var nextRun = time.Date(2031, 5, 4, 3, 2, 1, 0, time.UTC)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func sum(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

// syncBuffer is a log buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// env is one test's directory, config, store, host and API server.
type env struct {
	t      *testing.T
	cfg    *config.Config
	st     *sqlite.Store
	h      *host.Host
	srv    *httptest.Server
	router routers.Router
	logs   *syncBuffer
	runs   sync.WaitGroup
	// ldapURL is the sample directory's server.
	ldapURL string
	// bodies holds every response body the test received.
	bodies syncBuffer
}

// envSetup varies the environment of newEnvWith.
type envSetup struct {
	// api changes the handler's options.
	api func(*api.Options)
	// noExample leaves example.com out of dirsync.toml, so that a test can
	// make it a store-kept domain.
	noExample bool
	// noSecretsKey leaves [secrets] key_file out: no bind password can be
	// stored.
	noSecretsKey bool
}

// newEnv starts slapd with the sample directory and serves the API over a
// real SQLite store and host. Domains: example.com (the sample directory,
// sync on) and other.test (sync off, an invalid saved filter), both set in
// dirsync.toml; [secrets] key_file is set.
func newEnv(t *testing.T, tweak func(*api.Options)) *env {
	t.Helper()
	return newEnvWith(t, envSetup{api: tweak})
}

// newEnvWith is newEnv with the changes of setup.
func newEnvWith(t *testing.T, setup envSetup) *env {
	t.Helper()
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{filepath.Join(repoRoot(), "examples", "directory", "sample.ldif")}, LogLevel: "none"})
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("reader.pw", readerPassword+"\n")
	write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
	secretsTable := ""
	if !setup.noSecretsKey {
		write("secret.key", secrets.NewKey()+"\n")
		secretsTable = "[secrets]\nkey_file = \"secret.key\"\n"
	}
	example := fmt.Sprintf(`
[[domain]]
name          = "example.com"
sync          = true
policy        = "standard"
alias_domains = ["example.org"]
  [domain.ldap]
  urls          = [%q]
  bind_dn       = "cn=reader,dc=example,dc=com"
  password_file = "reader.pw"
  base_dn       = "dc=example,dc=com"
  timeout       = "20s"
`, srv.URL)
	if setup.noExample {
		example = ""
	}
	write("dirsync.toml", secretsTable+example+fmt.Sprintf(`
[store]
driver = "sqlite"
dsn    = "var/dirsync.db"

[plugins]
manifest  = "plugin.toml"
cache_dir = "var/cache"

[[api.token]]
name    = "admin"
sha256  = %q
role    = "admin"
domains = ["*"]

[[api.token]]
name    = "viewer"
sha256  = %q
role    = "viewer"
domains = ["example.com"]

[[api.token]]
name    = "other"
sha256  = %q
role    = "admin"
domains = ["other.test"]

[[domain]]
name   = "other.test"
sync   = false
policy = "standard"
  [domain.ldap]
  urls          = [%q]
  bind_dn       = "cn=reader,dc=example,dc=com"
  password_file = "reader.pw"
  base_dn       = "dc=example,dc=com"
  filter        = %q
`, sum(adminToken), sum(viewerToken), sum(otherToken), srv.URL, badFilter))
	if err := os.MkdirAll(filepath.Join(dir, "var"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "dirsync.toml"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(cfg.Store.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := host.New(host.Options{Config: cfg, Store: st, Logger: log,
		Builtins: map[string]func() sdk.Policy{"standard": standard.New}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	e := &env{t: t, cfg: cfg, st: st, h: h, logs: logs, ldapURL: srv.URL}
	// Runs started through the API end before the store closes.
	t.Cleanup(e.runs.Wait)
	o := api.Options{Host: h, Store: st, Config: cfg, RunNow: e.runNow, Logger: log,
		NextRun: func(domain string) (time.Time, bool) { return nextRun, domain == "example.com" }}
	if setup.api != nil {
		setup.api(&o)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", api.New(o))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.router = e.loadRouter()
	return e
}

// runNow starts a sync in the background, as a scheduler does, and returns
// its id once it is recorded.
func (e *env) runNow(ctx context.Context, domain string, o host.RunOptions) (int64, error) {
	started := make(chan int64, 1)
	done := make(chan error, 1)
	o.OnStart = func(id int64) { started <- id }
	e.runs.Add(1)
	go func() {
		defer e.runs.Done()
		_, err := e.h.Run(context.WithoutCancel(ctx), domain, o)
		done <- err
	}()
	select {
	case id := <-started:
		return id, nil
	case err := <-done:
		select {
		case id := <-started: // started, then failed
			return id, nil
		default:
			return 0, err
		}
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// loadRouter reads the document the server serves and makes the router
// the responses are checked with.
func (e *env) loadRouter() routers.Router {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/api/v1/openapi.json", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		e.t.Fatalf("GET openapi.json: %s %s\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		e.t.Fatalf("the served document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		e.t.Fatalf("the served document is not valid: %v", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		e.t.Fatal(err)
	}
	return router
}

// response is an answer of the API.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("%v\n%s", err, r.body)
	}
}

// problem is an RFC 9457 problem detail as the tests read it.
type problem struct {
	Type           string `json:"type"`
	Title          string `json:"title"`
	Status         int    `json:"status"`
	Detail         string `json:"detail"`
	Position       *int   `json:"position"`
	Reason         string `json:"reason"`
	Key            string `json:"key"`
	CurrentVersion *int64 `json:"current_version"`
}

// do sends a request with token ("" for none) and a JSON body (nil for
// none; a string or []byte is sent as it is) and checks the response
// against the OpenAPI document.
func (e *env) do(method, path, token string, body any) *response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.send(req)
}

// send sends req and checks the response against the document.
func (e *env) send(req *http.Request) *response {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := &response{status: resp.StatusCode, header: resp.Header, body: b}
	e.bodies.Write(append(b, '\n'))
	e.validate(req, r)
	return r
}

// validate checks a response against the OpenAPI document: its status is
// one the operation declares, its body matches the declared schema. A
// path the document does not have must be answered with a problem detail.
func (e *env) validate(req *http.Request, r *response) {
	e.t.Helper()
	what := req.Method + " " + req.URL.RequestURI()
	if r.status >= 400 {
		var p problem
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			e.t.Errorf("%s: %d with Content-Type %q, want application/problem+json\n%s", what, r.status, ct, r.body)
		} else if err := json.Unmarshal(r.body, &p); err != nil || p.Status != r.status || p.Type == "" || p.Title == "" {
			e.t.Errorf("%s: %d: not a problem detail of that status (%v)\n%s", what, r.status, err, r.body)
		}
	}
	route, params, err := e.router.FindRoute(req)
	if err == nil && slices.Contains(slices.Collect(maps.Values(params)), "") {
		// The router matches /api/v1/domains to /api/v1/domains/{domain}
		// with an empty domain; the server never does.
		err = errors.New("an empty path parameter")
	}
	if err != nil {
		switch r.status {
		case http.StatusUnauthorized, http.StatusNotFound, http.StatusMethodNotAllowed:
		default:
			e.t.Errorf("%s: not in the document, but answered %d", what, r.status)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 r.status,
		Header:                 r.header,
		Body:                   io.NopCloser(bytes.NewReader(r.body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		e.t.Errorf("%s: the response does not match the document: %v\n%d %s", what, err, r.status, r.body)
	}
}

// want checks the status of a response.
func (e *env) want(r *response, status int) *response {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d\n%s", r.status, status, r.body)
	}
	return r
}

// problemOf reads a problem detail.
func (e *env) problemOf(r *response) problem {
	e.t.Helper()
	var p problem
	r.json(e.t, &p)
	return p
}

// waitRun waits until run id of domain has ended and returns it.
func (e *env) waitRun(domain string, id int64) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var run map[string]any
		e.want(e.do("GET", fmt.Sprintf("/api/v1/domains/%s/runs/%d", domain, id), adminToken, nil), 200).json(e.t, &run)
		if run["outcome"] != "running" {
			return run
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("run %d still running after 60s", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
