package host_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/testpeer/peertest"
	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// TestLiveRunsTakeNoScheduledTurn: a scheduled run skips its turn when
// another run of the domain started within SkipIfStartedWithin, but not
// for a run of a live search's changes, or a domain whose directory changes
// often would never have a scheduled run (nor its full read on
// full_interval).
func TestLiveRunsTakeNoScheduledTurn(t *testing.T) {
	st := openSQLite(t)
	h := unreachableHost(t, st)
	ctx := context.Background()
	record := func(holder string) {
		t.Helper()
		r := &store.Run{Domain: "example.com", Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK, Holder: holder, Read: store.ReadDelta}
		if err := st.RecordRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	scheduled := func() error {
		_, err := h.Run(ctx, "example.com", host.RunOptions{SkipIfStartedWithin: time.Hour})
		return err
	}
	record("vm pid 1 #7 (live)")
	if err := scheduled(); errors.Is(err, host.ErrRecentRun) {
		t.Errorf("a live run took the scheduled turn: %v", err)
	}
	record("vm pid 1 #8")
	if err := scheduled(); !errors.Is(err, host.ErrRecentRun) {
		t.Errorf("after a scheduled run moments ago: %v, want ErrRecentRun", err)
	}
}

// liveEnv is a domain example.com with live = true over a real slapd with
// the sample directory (no session log: a refresh from a cookie is a
// present phase naming every unchanged entry), synced once, with the
// builtin standard policy.
type liveEnv struct {
	srv *slapd.Server
	st  *sqlite.Store
	h   *host.Host
}

func newLiveEnv(t *testing.T) *liveEnv {
	t.Helper()
	srv, dir, d := liveDomain(t)
	h, st := standardHost(t, dir, d)
	if _, err := h.Run(context.Background(), "example.com", host.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	return &liveEnv{srv: srv, st: st, h: h}
}

// liveDomain starts slapd with the sample directory and returns it, a
// folder for the config, and the domain example.com reading it with
// live = true and the standard policy.
func liveDomain(t *testing.T) (*slapd.Server, string, config.Domain) {
	t.Helper()
	sample, _ := filepath.Abs(filepath.Join("..", "examples", "directory", "sample.ldif"))
	srv := peertest.Slapd(t, slapd.Options{LDIF: []string{sample}, LogLevel: "none"})
	dir := t.TempDir()
	pw := filepath.Join(dir, "admin.pw")
	if err := os.WriteFile(pw, []byte(srv.AdminPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	d := config.NewDomain("example.com")
	d.Sync, d.Live, d.Policy, d.AliasDomains = true, true, "standard", []string{"example.org"}
	d.LDAP.URLs, d.LDAP.BaseDN, d.LDAP.BindDN, d.LDAP.PasswordFile = []string{srv.URL}, srv.BaseDN, srv.AdminDN, pw
	return srv, dir, d
}

// mailboxes are the domain's mailboxes by primary address.
func (e *liveEnv) mailboxes(t *testing.T) map[string]store.Mailbox {
	t.Helper()
	ms, err := e.st.Mailboxes(context.Background(), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Mailbox{}
	for _, m := range ms {
		out[m.Primary] = m
	}
	return out
}

// live runs the domain's live search with o until stop is called, and
// counts the runs it applies (applied) and the times it opened (opened).
func (e *liveEnv) live(t *testing.T, o host.LiveOptions) (applied, opened *atomic.Int64, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	applied, opened = &atomic.Int64{}, &atomic.Int64{}
	o.OnRun = func(rep *host.Report, err error) {
		if err != nil {
			t.Logf("live run: %v", err)
		}
		applied.Add(1)
	}
	o.OnOpen = func(open bool) {
		if open {
			opened.Add(1)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.h.Live(ctx, "example.com", o)
	}()
	return applied, opened, func() { cancel(); <-done }
}

// waitFor waits up to 10 s for n.
func waitFor(t *testing.T, what string, n *atomic.Int64, want int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); n.Load() < want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d after 10 s, want %d", what, n.Load(), want)
		}
	}
}

// TestLiveRefreshIsOneBatch: a live search that opens after the directory
// changed gets, in its refresh phase, the changed entry and a present
// phase naming every other. However small MaxBatch and MaxDelay, the
// refresh is applied as one batch: cut, its last part's present phase
// named only the entries after the cut, and the run deleted the others.
func TestLiveRefreshIsOneBatch(t *testing.T) {
	for _, o := range []host.LiveOptions{{MaxBatch: 3}, {Quiet: time.Microsecond, MaxDelay: time.Microsecond}} {
		t.Run(fmt.Sprintf("MaxBatch %d MaxDelay %v", o.MaxBatch, o.MaxDelay), func(t *testing.T) {
			e := newLiveEnv(t)
			before := e.mailboxes(t)
			if err := e.srv.Replace("cn=Alice Anders,ou=People,dc=example,dc=com", "displayName", "Alice A."); err != nil {
				t.Fatal(err)
			}
			applied, _, stop := e.live(t, o)
			waitFor(t, "live runs", applied, 1)
			time.Sleep(300 * time.Millisecond) // a second batch, if the refresh were cut
			stop()
			after := e.mailboxes(t)
			for a := range before {
				if _, ok := after[a]; !ok {
					t.Errorf("%s deleted by the live refresh; its entry is unchanged", a)
				}
			}
			if got := after["alice@example.com"].DisplayName; got != "Alice A." {
				t.Errorf("alice's display name %q, want the change", got)
			}
			if n := applied.Load(); n != 1 {
				t.Errorf("%d live runs for one refresh, want 1", n)
			}
		})
	}
}

// TestLiveAfterAGatewayGroupIsMade: a gateway group made while the live
// search is open changes what the entries map to; the next live change
// makes a sync of the domain (recorded as such, not as a failed run) and
// the live search starts again from it, the change applied.
func TestLiveAfterAGatewayGroupIsMade(t *testing.T) {
	e := newLiveEnv(t)
	ctx := context.Background()
	var slots, released atomic.Int64 // the sync is one of dirsync serve's runs at once
	_, opened, stop := e.live(t, host.LiveOptions{Slot: func(context.Context) (func(), error) {
		slots.Add(1)
		return func() { released.Add(1) }, nil
	}})
	defer stop()
	waitFor(t, "live search opened", opened, 1)
	if err := e.st.AddGroup(ctx, "example.com", "Sales"); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Replace("cn=Alice Anders,ou=People,dc=example,dc=com", "displayName", "Alice A."); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "live search opened again", opened, 2)
	stop()
	if slots.Load() != 1 || released.Load() != 1 {
		t.Errorf("the sync took %d slots and gave back %d, want 1 and 1", slots.Load(), released.Load())
	}
	mb := e.mailboxes(t)
	if got := mb["alice@example.com"].DisplayName; got != "Alice A." {
		t.Errorf("alice's display name %q, want the change", got)
	}
	if !slices.Contains(mb["alice@example.com"].Groups, "Sales") {
		t.Errorf("alice's groups %v: the sync after the new gateway group did not fill it", mb["alice@example.com"].Groups)
	}
	runs, err := e.st.RunsPage(ctx, "example.com", 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.Outcome != store.OutcomeOK {
			t.Errorf("run %d: %s at %s: %s", r.ID, r.Outcome, r.Stage, r.Error)
		}
	}
}

// TestLiveAfterAFullRunThatKeepsTheCookie: the live search keeps the
// entries its last batch left, to patch the next one into. A full run in
// between (the operator made the gateway group Marketing and synced) may
// keep the very cookie (the directory did not change) with other intents:
// the next live batch must patch the kept state, not the entries it had,
// or it takes Grace out of Marketing.
func TestLiveAfterAFullRunThatKeepsTheCookie(t *testing.T) {
	t.Setenv("DIRSYNC_CHECK_REACH", "0") // as in production: the check would fail the run instead
	e := newLiveEnv(t)
	ctx := context.Background()
	applied, opened, stop := e.live(t, host.LiveOptions{})
	defer stop()
	waitFor(t, "live search opened", opened, 1)
	const people = "ou=People,dc=example,dc=com"
	if err := e.srv.Replace("cn=Bob Brown,"+people, "displayName", "Bob B."); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "live runs", applied, 1)
	before, err := e.st.DirStateHead(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.AddGroup(ctx, "example.com", "Marketing"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.h.Run(ctx, "example.com", host.RunOptions{Wait: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	after, err := e.st.DirStateHead(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before.Cookie, after.Cookie) {
		t.Fatalf("the full run moved the cookie (%q, %q): the case is not the one tested", before.Cookie, after.Cookie)
	}
	if g := e.mailboxes(t)["grace@example.com"].Groups; !slices.Contains(g, "Marketing") {
		t.Fatalf("the sync did not put grace in Marketing: %v", g)
	}
	if err := e.srv.Replace("cn=Grace Green,"+people, "displayName", "Grace G."); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "live runs", applied, 2)
	stop()
	g := e.mailboxes(t)["grace@example.com"]
	if g.DisplayName != "Grace G." || !slices.Contains(g.Groups, "Marketing") {
		t.Errorf("grace after the live batch: %q in %v, want Grace G. in Marketing", g.DisplayName, g.Groups)
	}
}

// failingFullReads is the standard policy whose Map, once fail is set,
// takes a while and fails for a batch of more than a few entries (a full
// read's, not a live change's).
type failingFullReads struct {
	sdk.Policy
	fail *atomic.Bool
}

func (p failingFullReads) Map(r sdk.MapRequest) (sdk.MapResponse, error) {
	if p.fail.Load() && len(r.Entries) > 5 {
		time.Sleep(300 * time.Millisecond)
		return sdk.MapResponse{}, errors.New("a full read that fails")
	}
	return p.Policy.Map(r)
}

// backoffs records the backoffs the live search logs as it reconnects.
type backoffs struct {
	mu    sync.Mutex
	after []time.Duration
}

func (b *backoffs) Enabled(context.Context, slog.Level) bool { return true }
func (b *backoffs) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "live search ended; reconnecting" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "after" {
				b.mu.Lock()
				b.after = append(b.after, a.Value.Duration())
				b.mu.Unlock()
			}
			return true
		})
	}
	return nil
}
func (b *backoffs) WithAttrs([]slog.Attr) slog.Handler { return b }
func (b *backoffs) WithGroup(string) slog.Handler      { return b }

// TestLiveBackoffAfterFailedSyncs: a gateway group made while live makes
// the live search sync the domain first; when that sync keeps failing
// (here after 300 ms; in life a full read that fails after minutes), the
// search backs off, doubling, as after any failure: the time a failing
// sync took is not a search that stayed open (it reset the backoff, and
// a failing full read ran again and again).
func TestLiveBackoffAfterFailedSyncs(t *testing.T) {
	defer host.SetLiveBackoff(100*time.Millisecond, 200*time.Millisecond)()
	srv, dir, d := liveDomain(t)
	fail := &atomic.Bool{}
	logged := &backoffs{}
	st := openSQLite(t)
	h, err := host.New(host.Options{Logger: slog.New(logged), Store: st,
		Config: &config.Config{Path: filepath.Join(dir, "dirsync.toml"), Domains: []config.Domain{d},
			Manifest: &config.Manifest{Policies: []config.Policy{{Name: "standard", Runtime: "builtin"}}}},
		Builtins: map[string]func() sdk.Policy{"standard": func() sdk.Policy { return failingFullReads{standard.New(), fail} }}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	ctx := context.Background()
	if _, err := h.Run(ctx, "example.com", host.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	e := &liveEnv{srv: srv, h: h}
	_, opened, stop := e.live(t, host.LiveOptions{})
	defer stop()
	waitFor(t, "live search opened", opened, 1)
	time.Sleep(300 * time.Millisecond) // open longer than "healthy"
	fail.Store(true)
	if err := st.AddGroup(ctx, "example.com", "Sales"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Replace("cn=Alice Anders,ou=People,dc=example,dc=com", "displayName", "Alice A."); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		logged.mu.Lock()
		n := len(logged.after)
		logged.mu.Unlock()
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reconnects logged in 10 s, want 4", n)
		}
	}
	stop()
	logged.mu.Lock()
	defer logged.mu.Unlock()
	for i := 1; i < 4; i++ {
		if logged.after[i] != 2*logged.after[i-1] {
			t.Errorf("backoffs %v: want each twice the one before", logged.after[:4])
			break
		}
	}
}

// TestFullRunIfTheCookieIsStillTheRefusedOne: the full run a live search
// makes after the directory refused its cookie takes place only while the
// kept cookie is still that one (checked under the lease): another
// replica's live search may have replaced it a moment before, and a
// second full read would only load the directory.
func TestFullRunIfTheCookieIsStillTheRefusedOne(t *testing.T) {
	st := openSQLite(t)
	h := unreachableHost(t, st)
	ctx := context.Background()
	snap, err := st.Snapshot(ctx, "example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	kept := &store.DirState{Key: "k", Cookie: []byte("scookie after the refused one"), FullAt: time.Now()}
	if err := st.Apply(ctx, "example.com", nil, &store.Run{Domain: "example.com", Generation: snap.Generation, DirState: kept}); err != nil {
		t.Fatal(err)
	}
	runs := func() int {
		t.Helper()
		rs, err := st.RunsPage(ctx, "example.com", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}
	before := runs()
	if _, err := host.RunIfCookie(ctx, h, "example.com", []byte("sthe refused cookie")); !errors.Is(err, host.ErrLiveStale) {
		t.Errorf("with the cookie replaced: %v, want the run not to take place", err)
	}
	if n := runs(); n != before {
		t.Errorf("%d runs recorded, want %d: a run that did not take place is not one", n, before)
	}
	// Still the kept one: the run takes place (and fails at its read here).
	if _, err := host.RunIfCookie(ctx, h, "example.com", kept.Cookie); err == nil || errors.Is(err, host.ErrLiveStale) {
		t.Errorf("with the cookie kept: %v, want the run to take place and fail at its read", err)
	}
	if n := runs(); n != before+1 {
		t.Errorf("%d runs recorded, want %d", n, before+1)
	}
}

// TestLiveCatchesUpAfterItsConnectionIsCut: the network drops the live
// search's connection and refuses new ones while the directory changes
// (an add, a modify, a delete). Nothing is applied meanwhile; once the
// server is reachable again the search reopens from its cookie, and its
// refresh brings the three changes in one run, each applied once: a full
// run afterwards finds nothing to change.
func TestLiveCatchesUpAfterItsConnectionIsCut(t *testing.T) {
	defer host.SetLiveBackoff(50*time.Millisecond, time.Minute)()
	srv, dir, d := liveDomain(t)
	p := newFlakyProxy(t, strings.TrimPrefix(srv.URL, "ldap://"))
	d.LDAP.URLs = []string{"ldap://" + p.addr}
	h, st := standardHost(t, dir, d)
	e := &liveEnv{srv: srv, st: st, h: h}
	ctx := context.Background()
	if _, err := h.Run(ctx, "example.com", host.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	applied, opened, stop := e.live(t, host.LiveOptions{})
	defer stop()
	waitFor(t, "live search opened", opened, 1)

	p.down()
	p.cut()
	const people = "ou=People,dc=example,dc=com"
	if err := srv.Add("cn=Judy Jones,"+people, map[string][]string{
		"objectClass": {"top", "person", "organizationalPerson", "inetOrgPerson", "adUser"},
		"cn":          {"Judy Jones"}, "sn": {"Jones"}, "sAMAccountType": {"805306368"},
		"mail": {"judy@example.com"}, "proxyAddresses": {"SMTP:judy@example.com"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Replace("cn=Bob Brown,"+people, "displayName", "Bob B."); err != nil {
		t.Fatal(err)
	}
	if err := srv.Delete("cn=Carol Clark," + people); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // reconnects refused meanwhile
	if n := applied.Load(); n != 0 {
		t.Fatalf("%d live runs while the directory was unreachable, want 0", n)
	}
	if _, ok := e.mailboxes(t)["judy@example.com"]; ok {
		t.Fatal("judy's mailbox is there before the live search could read her entry: the case is not the one tested")
	}
	p.up()
	waitFor(t, "live search opened again", opened, 2)
	waitFor(t, "live runs", applied, 1)
	time.Sleep(300 * time.Millisecond) // a second run, if the catch-up were applied twice
	stop()

	mb := e.mailboxes(t)
	if _, ok := mb["judy@example.com"]; !ok {
		t.Error("judy's mailbox is not there after the catch-up")
	}
	if _, ok := mb["carol@example.com"]; ok {
		t.Error("carol's mailbox is still there after the catch-up")
	}
	if got := mb["bob@example.com"].DisplayName; got != "Bob B." {
		t.Errorf("bob's display name %q, want the change", got)
	}
	runs, err := st.RunsPage(ctx, "example.com", 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var k store.Counts
	for _, r := range runs[:len(runs)-1] { // newest first; the last is the first sync
		if r.Outcome != store.OutcomeOK || r.Read != store.ReadDelta {
			t.Errorf("run %d: %s, read %q (%s %s), want ok, delta", r.ID, r.Outcome, r.Read, r.Stage, r.Error)
		}
		k.Created, k.Updated, k.Deleted = k.Created+r.Counts.Created, k.Updated+r.Counts.Updated, k.Deleted+r.Counts.Deleted
	}
	if len(runs) != 2 || k.Created != 1 || k.Updated != 1 || k.Deleted != 1 {
		t.Errorf("%d runs after the first sync created %d, updated %d, deleted %d; want one run: 1, 1, 1", len(runs)-1, k.Created, k.Updated, k.Deleted)
	}
	rep, err := h.Run(ctx, "example.com", host.RunOptions{Full: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Counts; c.Created+c.Updated+c.Deleted+c.MembersAdded+c.MembersRemoved != 0 {
		t.Errorf("a full run after the catch-up changes %+v, want nothing", c)
	}
}
