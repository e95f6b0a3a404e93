package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/metrics"
	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store"
)

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveConfig is what a test's dirsync.toml for dirsync serve says.
type serveConfig struct {
	listen, interval, filter string
	leaseTTL                 string
	url, bindDN, pwFile      string
	baseDN                   string
	extra                    string // more lines at the top level
}

// writeServeConfig writes the config twice: dirsync.toml for the CLI the
// test reads the store with, and serve.toml (returned) for dirsync serve,
// which a test may break and reload while the CLI goes on reading.
func (e *env) writeServeConfig(c serveConfig) string {
	e.t.Helper()
	if c.url == "" {
		c.url, c.bindDN, c.pwFile, c.baseDN = e.srv.URL, "cn=reader,dc=example,dc=com", "reader.pw", "dc=example,dc=com"
	}
	if c.leaseTTL == "" {
		c.leaseTTL = "30s"
	}
	text := fmt.Sprintf(`%s
[store]
dsn = "var/dirsync.db"

[plugins]
manifest  = "plugin.toml"
cache_dir = "var/cache"

[serve]
max_concurrent_runs = 2
lease_ttl           = %q

[api]
listen = %q

[[domain]]
name          = "example.com"
sync          = true
policy        = "standard"
alias_domains = ["example.org"]
interval      = %q
  [domain.ldap]
  urls          = [%q]
  bind_dn       = %q
  password_file = %q
  base_dn       = %q
  filter        = %q
  timeout       = "60s"
`, c.extra, c.leaseTTL, c.listen, c.interval, c.url, c.bindDN, c.pwFile, c.baseDN, c.filter)
	e.config = e.write("dirsync.toml", text)
	return e.write("serve.toml", text)
}

// serveProc is a running `dirsync serve`.
type serveProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan struct{}
	err    error
	base   string // http://listen
	notify *notifyListener
}

// notifyListener stands in for systemd: it collects what the process sends
// to $NOTIFY_SOCKET.
type notifyListener struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
}

func newNotifyListener(t *testing.T) *notifyListener {
	t.Helper()
	dir, err := os.MkdirTemp("", "ns") // a short path: a socket's is at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifyListener{path: filepath.Join(dir, "notify")}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := n.conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

// all returns the messages received so far.
func (n *notifyListener) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// count returns how many messages held the line.
func (n *notifyListener) count(line string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		for _, l := range strings.Split(m, "\n") {
			if l == line {
				c++
			}
		}
	}
	return c
}

// startServe starts `dirsync serve` with the config file cfg and waits
// until it says READY=1 on $NOTIFY_SOCKET.
func (e *env) startServe(cfg, listen string, args ...string) *serveProc {
	e.t.Helper()
	p := &serveProc{t: e.t, log: &syncBuffer{}, done: make(chan struct{}), base: "http://" + listen, notify: newNotifyListener(e.t)}
	p.cmd = exec.Command(dirsyncBinary(e.t), append([]string{"--config", cfg, "serve"}, args...)...)
	p.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+p.notify.path)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if e.t.Failed() || os.Getenv("SERVE_LOG") != "" {
			e.t.Logf("dirsync serve's log:\n%s", p.log.String())
		}
	})
	p.eventually(30*time.Second, "READY=1 on $NOTIFY_SOCKET", func() bool { return p.notify.count("READY=1") >= 1 })
	return p
}

// eventually polls cond until it holds, and fails the test after within or
// when the process exits.
func (p *serveProc) eventually(within time.Duration, what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		select {
		case <-p.done:
			p.t.Fatalf("dirsync serve exited (%v) before %s", p.err, what)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %s after %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *serveProc) get(path string) (int, string) {
	p.t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(p.base + path)
	if err != nil {
		p.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// signal sends sig; stop sends it and waits for the exit, returning how long
// that took.
func (p *serveProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func (p *serveProc) stop(sig syscall.Signal) time.Duration {
	p.t.Helper()
	t0 := time.Now()
	p.signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("dirsync serve did not exit within 20s of %v", sig)
	}
	if p.err != nil {
		p.t.Errorf("dirsync serve exited with %v after %v, want status 0", p.err, sig)
	}
	return time.Since(t0)
}

// metric reads one sample's value from /metrics (-1 if absent).
func (p *serveProc) metric(series string) float64 {
	p.t.Helper()
	code, body := p.get("/metrics")
	if code != 200 {
		p.t.Fatalf("/metrics: %d", code)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				p.t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	return -1
}

// filter is the LDAP filter in the settings a run used.
func (r runRecord) filter(t *testing.T) string {
	var s struct {
		LDAP struct {
			Filter string `json:"filter"`
		} `json:"ldap"`
	}
	if err := json.Unmarshal([]byte(r.Settings), &s); err != nil {
		t.Fatalf("run %d's settings: %v", r.ID, err)
	}
	return s.LDAP.Filter
}

func countOutcome(runs []runRecord, outcome string) int {
	n := 0
	for _, r := range runs {
		if r.Outcome == outcome {
			n++
		}
	}
	return n
}

// TestServe runs `dirsync serve` as systemd would, against a real slapd:
// it says READY=1, answers /healthz and /readyz, syncs the domain every
// interval by itself, counts the runs in /metrics exactly as the run
// records do, keeps serving with its old config through a SIGHUP with a
// broken dirsync.toml (naming the file, line and key), uses a good changed
// one from the next run on, and exits 0 on SIGTERM.
func TestServe(t *testing.T) {
	e := newEnv(t)
	listen := freeAddr(t)
	cfg := e.writeServeConfig(serveConfig{listen: listen, interval: "2s"})
	e.ok("group", "add", "--domain", "example.com", "Sales")
	p := e.startServe(cfg, listen)

	if code, body := p.get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := p.get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q, want 200", code, body)
	}

	// Runs happen on their own: the domain never ran, so it catches up at
	// once, then runs every 2s.
	p.eventually(30*time.Second, "two ok runs", func() bool { return countOutcome(e.runs(), "ok") >= 2 })
	if m := e.mailboxes(); m["alice@example.com"].Source != "ldap" {
		t.Errorf("the scheduled runs did not sync alice: %+v", m["alice@example.com"])
	}

	// /metrics counts the ok runs as the records do. A run may end between
	// two reads: the count holds when a scrape before and one after the
	// records agree with them.
	const okRuns = `dirsync_runs_total{domain="example.com",outcome="ok"}`
	p.eventually(30*time.Second, "a scrape that matches the run records", func() bool {
		before := p.metric(okRuns)
		n := countOutcome(e.runs(), "ok")
		after := p.metric(okRuns)
		return before >= 2 && before == after && int(before) == n
	})
	if v := p.metric(`dirsync_runs_total{domain="example.com",outcome="failed"}`); v != 0 {
		t.Errorf("failed runs = %v, want 0", v)
	}
	if v := p.metric(`dirsync_last_success_timestamp_seconds{domain="example.com"}`); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last success = %v, want within the last minute", v)
	}
	if v := p.metric(`dirsync_entries_read_total{domain="example.com"}`); v <= 0 {
		t.Errorf("entries read = %v", v)
	}
	if v := p.metric(`dirsync_changes_total{domain="example.com",kind="created"}`); v < 1 {
		t.Errorf("created = %v, want the first run's mailboxes", v)
	}
	if v := p.metric(`dirsync_run_duration_seconds_count{stage="total"}`); v < 2 {
		t.Errorf("run durations observed %v times", v)
	}
	if p.metric(`dirsync_run_in_progress{domain="example.com"}`) < 0 {
		t.Error("no dirsync_run_in_progress series")
	}
	if _, body := p.get("/metrics"); !strings.Contains(body, "dirsync_build_info{") || !strings.Contains(body, "process_resident_memory_bytes") {
		t.Error("/metrics lacks the build info or the process collector")
	}
	if !regexp.MustCompile(`msg="run ended" domain=example.com run=\d+ outcome=ok entries=\d+ created=\d+`).MatchString(p.log.String()) {
		t.Error("no log line for a run's end with its outcome and counts")
	}

	// SIGHUP with a broken file: logged with its line and key, the old
	// config kept, the service and its runs go on.
	good, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(good), "[serve]\n", "[serve]\nmax_concurent_runs = 3\n", 1)
	line := strings.Count(broken[:strings.Index(broken, "max_concurent_runs")], "\n") + 1
	e.write("serve.toml", broken)
	n := len(e.runs())
	p.signal(syscall.SIGHUP)
	p.eventually(10*time.Second, "the failed reload in the log", func() bool { return strings.Contains(p.log.String(), "reload failed") })
	logs := p.log.String()
	for _, want := range []string{"key=serve.max_concurent_runs", fmt.Sprintf("line=%d", line), "unknown key", "file=" + cfg} {
		if !strings.Contains(logs, want) {
			t.Errorf("the failed reload's log lacks %q", want)
		}
	}
	if code, _ := p.get("/healthz"); code != 200 {
		t.Errorf("/healthz after a broken reload = %d", code)
	}
	p.eventually(15*time.Second, "a run after the broken reload", func() bool { return len(e.runs()) > n })
	if p.notify.count("RELOADING=1") != 1 || p.notify.count("READY=1") != 2 {
		t.Errorf("notify messages %q: want RELOADING=1 and READY=1 again", p.notify.all())
	}

	// SIGHUP with a good changed file: users only. The next run uses it.
	const usersOnly = "(sAMAccountType=805306368)"
	e.write("serve.toml", strings.Replace(string(good), `filter        = ""`, fmt.Sprintf(`filter        = %q`, usersOnly), 1))
	p.signal(syscall.SIGHUP)
	p.eventually(10*time.Second, "the reload in the log", func() bool { return strings.Contains(p.log.String(), "config reloaded") })
	old := e.runs()[0]
	p.eventually(20*time.Second, "a run with the new filter", func() bool {
		r := e.runs()
		return r[0].Outcome == "ok" && r[0].filter(t) == usersOnly
	})
	newest := e.runs()[0]
	if newest.Counts.Entries >= old.Counts.Entries {
		t.Errorf("a run with the users-only filter read %d entries, the one before %d: the groups are still read", newest.Counts.Entries, old.Counts.Entries)
	}
	if code, _ := p.get("/readyz"); code != 200 {
		t.Errorf("/readyz after the reload = %d", code)
	}

	took := p.stop(syscall.SIGTERM)
	if took > 10*time.Second {
		t.Errorf("SIGTERM took %v, want at most 10s", took)
	}
	if p.notify.count("STOPPING=1") != 1 {
		t.Errorf("no STOPPING=1 sent: %q", p.notify.all())
	}
	if !strings.Contains(p.log.String(), "dirsync serve stopped") {
		t.Error("no log line for the stop")
	}

	// Started again, logging JSON: the last success comes from the store
	// before any run of this process, and SIGINT stops it as SIGTERM does.
	p = e.startServe(cfg, listen, "--log-format", "json")
	const lastSuccess = `dirsync_last_success_timestamp_seconds{domain="example.com"}`
	p.eventually(10*time.Second, "the last success read from the store", func() bool { return p.metric(lastSuccess) > 0 })
	p.stop(syscall.SIGINT)
	first, _, _ := strings.Cut(p.log.String(), "\n")
	var rec struct{ Level, Msg string }
	if err := json.Unmarshal([]byte(first), &rec); err != nil || rec.Level != "INFO" || rec.Msg == "" {
		t.Errorf("--log-format json: the first line %q is no JSON log record (%v)", first, err)
	}
}

// TestServeSIGTERMCancelsARun: SIGTERM while a long first sync (20,000
// users) is running ends the process within 10s with status 0; the run is
// rolled back and recorded as cancelled, and the store holds what it held.
func TestServeSIGTERMCancelsARun(t *testing.T) {
	dir := t.TempDir()
	ldif := filepath.Join(dir, "dir.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		t.Fatal(err)
	}
	if err := slapd.GenerateDirectory(f, slapd.GenOptions{Users: 20000, WithBase: true}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{ldif}, LogLevel: "none", StartTimeout: 2 * time.Minute})
	e := &env{t: t, srv: srv, dir: t.TempDir()}
	e.write("admin.pw", srv.AdminPassword)
	e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
	listen := freeAddr(t)
	cfg := e.writeServeConfig(serveConfig{listen: listen, interval: "2s", leaseTTL: "1s",
		url: srv.URL, bindDN: srv.AdminDN, pwFile: "admin.pw", baseDN: srv.BaseDN})
	e.ok("group", "add", "--domain", "example.com", "Group00001")
	before := e.state()

	p := e.startServe(cfg, listen)
	// The first run reads 20,200 entries: SIGTERM once it says it has read
	// 10,000 of them, with half the read, the diff and the write of 20,000
	// new mailboxes still before it.
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(p.log.String(), "reading the directory") {
		select {
		case <-p.done:
			t.Fatalf("dirsync serve exited (%v) before the run read 10,000 entries", p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the run never said it was reading the directory")
		}
		time.Sleep(time.Millisecond)
	}
	took := p.stop(syscall.SIGTERM)
	if took > 10*time.Second {
		t.Errorf("SIGTERM during a run took %v, want at most 10s", took)
	}
	if strings.Contains(p.log.String(), "sync done") {
		t.Fatalf("the run finished before SIGTERM reached it:\n%s", p.log.String())
	}
	runs := e.runs()
	if len(runs) != 1 || runs[0].Outcome != "cancelled" {
		t.Errorf("runs after SIGTERM = %+v, want one, cancelled", runs)
	}
	if after := e.state(); after != before {
		t.Errorf("the cancelled run changed the store:\nbefore %s\nafter  %s", before, after)
	}
	if !strings.Contains(p.log.String(), "outcome=cancelled") {
		t.Error("no log line says the run was cancelled")
	}
}

// TestServeUsage: serve refuses a bad flag and a broken config (exit 2)
// before it listens or runs anything.
func TestServeUsage(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dirsync.toml")
	os.WriteFile(filepath.Join(dir, "plugin.toml"), []byte("[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n"), 0o600)
	os.WriteFile(cfg, []byte("[store]\ndsn = \"var/dirsync.db\"\n[plugins]\nmanifest = \"plugin.toml\"\n[api]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n"), 0o600)
	run := func(args ...string) (int, string) {
		var out, errb strings.Builder
		code := Main(append([]string{"--config", cfg}, args...), &out, &errb)
		return code, errb.String()
	}
	if code, errs := run("serve", "--log-format", "xml"); code != exitUsage || !strings.Contains(errs, "--log-format must be text or json") {
		t.Errorf("serve --log-format xml: exit %d, %s", code, errs)
	}
	if code, errs := run("serve", "extra"); code != exitUsage {
		t.Errorf("serve extra: exit %d, %s", code, errs)
	}
	if code, errs := run("serve"); code != exitUsage || !strings.Contains(errs, `dirsync.toml:7: key "api.bogus": unknown key`) {
		t.Errorf("serve with an unknown key: exit %d, %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "var")); err == nil {
		t.Error("serve with a broken config made the store")
	}
}

// TestServeTLS: with [api] cert_file and key_file, dirsync serve answers
// over HTTPS only, with that certificate.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	e := &env{t: t, dir: dir}
	certPEM, keyPEM := selfSigned(t)
	e.write("api.crt", string(certPEM))
	e.write("api.key", string(keyPEM))
	e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
	listen := freeAddr(t)
	cfg := e.write("serve.toml", fmt.Sprintf(`
[store]
dsn = "var/dirsync.db"
[plugins]
manifest = "plugin.toml"
[api]
listen    = %q
cert_file = "api.crt"
key_file  = "api.key"
`, listen))
	p := e.startServe(cfg, listen)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := c.Get("https://" + listen + path)
		if err != nil {
			t.Fatalf("GET https://%s%s: %v", listen, path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s over TLS = %d", path, resp.StatusCode)
		}
	}
	if resp, err := http.Get("http://" + listen + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("/healthz answered over plain HTTP with TLS on")
		}
	}
	p.stop(syscall.SIGTERM)
}

// selfSigned makes a certificate for 127.0.0.1 and its key, as PEM.
func selfSigned(t *testing.T) ([]byte, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dirsync test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// brokenStore is a store whose reads fail; only Resolve is called.
type brokenStore struct {
	store.Store
	err error
}

func (b brokenStore) Resolve(context.Context, string) (string, error) { return "", b.err }

// TestServeMux: /healthz, /readyz and /metrics need no token; /readyz says
// in one line why the process is not ready (a store that does not answer,
// a shutdown); an API handler is mounted at /api/.
func TestServeMux(t *testing.T) {
	s := &server{metrics: metrics.New("test"), cur: &hostRef{cfg: &config.Config{}},
		st: brokenStore{err: fmt.Errorf("address %q: %w", "readyz@readyz.invalid", store.ErrNotFound)}}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { text(w, http.StatusTeapot, "api "+r.URL.Path) })
	srv := httptest.NewServer(serveMux(s, api))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	check := func(path string, code int, body string) {
		t.Helper()
		if c, b := get(path); c != code || !strings.Contains(b, body) {
			t.Errorf("GET %s = %d %q, want %d %q", path, c, b, code, body)
		}
	}
	check("/healthz", 200, "ok")
	check("/readyz", 200, "ready")
	check("/metrics", 200, "dirsync_build_info")
	check("/api/v1/domains", http.StatusTeapot, "api /api/v1/domains")
	check("/nothing", 404, "")

	s.st = brokenStore{err: errors.New("sqlite: database disk image is\nmalformed")}
	check("/readyz", 503, "store: sqlite: database disk image is malformed")
	check("/healthz", 200, "ok")
	s.stopping.Store(true)
	check("/readyz", 503, "shutting down")
}
