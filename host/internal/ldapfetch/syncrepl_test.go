package ldapfetch

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
	"github.com/dirsync/dirsync/sdk"
)

// Tests of RFC 4533 content synchronization against a real slapd with the
// syncprov overlay (the testpeer's default), with and without a session
// log. The check that matters: the state read in full at a cookie, with
// what Sync (or Persist) says changed since applied to it, equals the
// state read in full now.

const peopleDN = "ou=People,dc=example,dc=com"

// dirState is a caller's copy of a directory: entries by SyncKey.
type dirState map[string]sdk.Entry

// readState reads the whole result with Fetch.
func readState(t *testing.T, cfg Config, filter string) dirState {
	t.Helper()
	entries, _, err := FetchAll(context.Background(), cfg, filter, policyAttrs)
	if err != nil {
		t.Fatal(err)
	}
	st := dirState{}
	for _, e := range entries {
		k := SyncKey(e)
		if !isUUID(k) || k != e.ID {
			t.Fatalf("%s: SyncKey %q, ID %q", e.DN, k, e.ID)
		}
		st[k] = e
	}
	return st
}

// apply applies the result of a Sync whose entries were changed.
func (st dirState) apply(res SyncResult, changed []sdk.Entry) dirState {
	next := dirState{}
	if res.PresentPhase {
		for _, k := range res.Present {
			if e, ok := st[k]; ok {
				next[k] = e
			}
		}
	} else {
		maps.Copy(next, st)
	}
	for _, k := range res.Deleted {
		delete(next, k)
	}
	for _, e := range changed {
		next[SyncKey(e)] = e
	}
	return next
}

// checkEqual compares st with want by key, DN and attributes, but for the
// attributes ignored.
func (st dirState) checkEqual(t *testing.T, want dirState, ignored ...string) {
	t.Helper()
	strip := func(e sdk.Entry) sdk.Entry {
		e.Attributes = maps.Clone(e.Attributes)
		for _, a := range ignored {
			delete(e.Attributes, a)
		}
		return e
	}
	for k, w := range want {
		g, ok := st[k]
		g, w = strip(g), strip(w)
		if !ok {
			t.Errorf("missing %s (%s)", k, w.DN)
			continue
		}
		if g.DN != w.DN || g.ID != w.ID || !maps.EqualFunc(g.Attributes, w.Attributes, func(a, b []string) bool {
			return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
		}) {
			t.Errorf("%s differs:\n got %+v\nwant %+v", k, g, w)
		}
	}
	for k, g := range st {
		if _, ok := want[k]; !ok {
			t.Errorf("extra %s (%s)", k, g.DN)
		}
	}
}

// syncAll runs Sync and returns the entries it handed on.
func syncAll(t *testing.T, cfg Config, filter string, cookie []byte) (SyncResult, []sdk.Entry) {
	t.Helper()
	var changed []sdk.Entry
	res, err := Sync(context.Background(), cfg, filter, policyAttrs, cookie, func(e sdk.Entry) error {
		changed = append(changed, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cookie) == 0 || res.Entries != len(changed) {
		t.Fatalf("result %+v after %d entries", res, len(changed))
	}
	return res, changed
}

func dnsOf(entries []sdk.Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.DN)
	}
	slices.Sort(out)
	return out
}

// keysOf returns the keys of the entries of st with the given DNs.
func (st dirState) keysOf(t *testing.T, dnList ...string) []string {
	t.Helper()
	var out []string
	for _, dn := range dnList {
		found := false
		for k, e := range st {
			if strings.EqualFold(e.DN, dn) {
				out, found = append(out, k), true
			}
		}
		if !found {
			t.Fatalf("no entry %s", dn)
		}
	}
	slices.Sort(out)
	return out
}

func modDN(t *testing.T, srv *slapd.Server, dn, newRDN, newSuperior string) {
	t.Helper()
	c, err := srv.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.ModifyDN(ldap.NewModifyDNRequest(dn, newRDN, true, newSuperior)); err != nil {
		t.Fatalf("modrdn %s: %v", dn, err)
	}
}

func addUser(t *testing.T, srv *slapd.Server, cn, sam string) {
	t.Helper()
	err := srv.Add("cn="+cn+","+peopleDN, map[string][]string{
		"objectClass":    {"top", "person", "organizationalPerson", "inetOrgPerson", "adUser"},
		"cn":             {cn},
		"sn":             {cn},
		"sAMAccountName": {sam},
		"sAMAccountType": {"805306368"},
		"mail":           {sam + "@example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSyncDelta(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		sessionLog int
		present    bool // the server answers with a present phase
	}{
		{"present phase (no session log)", 0, true},
		{"delete phase (session log)", 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startSample(t, 0, slapd.Options{SyncSessionLog: tc.sessionLog})
			cfg := readerConfig(srv)
			cfg.BaseDN = peopleDN
			ctx := context.Background()

			cookie, _, err := Cookie(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("cookie %s", cookie)
			before := readState(t, cfg, defaultFilter)
			if len(before) != 9 {
				t.Fatalf("%d users", len(before))
			}
			gone := before.keysOf(t, "cn=Carol Clark,"+peopleDN, "cn=Dave Dunn,"+peopleDN, "cn=Frank Fischer,"+peopleDN)

			// The writes: an add, a modify, a rename, a move out of the
			// base, a delete, a modify that takes an entry out of the
			// filter, and a group change that changes a user's memberOf
			// (which the memberof overlay writes unreplicated: slapd does
			// not report it).
			addUser(t, srv, "Zed Zimmer", "zed")
			if err := srv.Replace("cn=Alice Anders,"+peopleDN, "displayName", "Alice A."); err != nil {
				t.Fatal(err)
			}
			modDN(t, srv, "cn=Bob Brown,"+peopleDN, "cn=Robert Brown", "")
			modDN(t, srv, "cn=Carol Clark,"+peopleDN, "cn=Carol Clark", "ou=Folders,dc=example,dc=com")
			if err := srv.Delete("cn=Dave Dunn," + peopleDN); err != nil {
				t.Fatal(err)
			}
			if err := srv.Replace("cn=Frank Fischer,"+peopleDN, "sAMAccountType", "805306370"); err != nil {
				t.Fatal(err)
			}
			if err := srv.Modify(&ldap.ModifyRequest{DN: "cn=Sales,ou=Groups,dc=example,dc=com", Changes: []ldap.Change{
				{Operation: ldap.AddAttribute, Modification: ldap.PartialAttribute{Type: "member", Vals: []string{"cn=Heidi Hall," + peopleDN}}},
			}}); err != nil {
				t.Fatal(err)
			}

			res, changed := syncAll(t, cfg, defaultFilter, cookie)
			t.Logf("%v; deleted %v", res, res.Deleted)
			want := []string{"cn=Alice Anders," + peopleDN, "cn=Robert Brown," + peopleDN, "cn=Zed Zimmer," + peopleDN}
			if got := dnsOf(changed); !slices.Equal(got, want) {
				t.Errorf("changed %q, want %q", got, want)
			}
			if res.PresentPhase != tc.present {
				t.Errorf("PresentPhase = %v, want %v", res.PresentPhase, tc.present)
			}
			unchanged := before.keysOf(t, "cn=Erin Evans,"+peopleDN, "cn=Grace Green,"+peopleDN, "cn=Heidi Hall,"+peopleDN, "cn=Ivan Ito,"+peopleDN)
			if tc.present {
				// slapd names every entry that matches now, changed or
				// not, and none of the gone.
				if len(res.Present) != 7 || len(res.Deleted) != 0 {
					t.Errorf("present %v, deleted %v", res.Present, res.Deleted)
				}
				for _, k := range gone {
					if slices.Contains(res.Present, k) {
						t.Errorf("gone %s named present", k)
					}
				}
				for _, k := range unchanged {
					if !slices.Contains(res.Present, k) {
						t.Errorf("unchanged %s not named present", k)
					}
				}
			} else {
				// The gone, and keys the caller never had: slapd names the
				// modified group, outside the base, as gone too.
				for _, k := range res.Deleted {
					if _, known := before[k]; known && !slices.Contains(gone, k) {
						t.Errorf("deleted %s (%s)", k, before[k].DN)
					}
				}
				for _, k := range gone {
					if !slices.Contains(res.Deleted, k) {
						t.Errorf("gone %s not deleted", k)
					}
				}
				if len(res.Present) != 0 {
					t.Errorf("present %v", res.Present)
				}
			}
			after := readState(t, cfg, defaultFilter)
			before.apply(res, changed).checkEqual(t, after, "memberof")
			if e := after[before.keysOf(t, "cn=Alice Anders,"+peopleDN)[0]]; e.Get("displayname") != "Alice A." {
				t.Errorf("alice: %+v", e)
			}

			// Nothing changed since: nothing handed on.
			res2, changed2 := syncAll(t, cfg, defaultFilter, res.Cookie)
			if len(changed2) != 0 || len(res2.Deleted) != 0 || res2.PresentPhase || string(res2.Cookie) != string(res.Cookie) {
				t.Errorf("unchanged directory: %v, %d entries, deleted %v", res2, len(changed2), res2.Deleted)
			}
			after.apply(res2, changed2).checkEqual(t, after)

			// The cookie of Cookie still works too, and so does a cookie
			// from a sync with another filter and base.
			res3, changed3 := syncAll(t, cfg, defaultFilter, cookie)
			before.apply(res3, changed3).checkEqual(t, after, "memberof")
		})
	}
}

// TestSyncNoCookie: Sync without a cookie reads what Fetch reads.
func TestSyncNoCookie(t *testing.T) {
	t.Parallel()
	srv := startSample(t, 50, slapd.Options{})
	cfg := readerConfig(srv)
	res, entries := syncAll(t, cfg, defaultFilter, nil)
	if !res.PresentPhase || len(res.Deleted) != 0 || res.Pages != 1 {
		t.Errorf("result %+v", res)
	}
	st := dirState{}
	for _, e := range entries {
		st[SyncKey(e)] = e
	}
	st.checkEqual(t, readState(t, cfg, defaultFilter))

	// An unchanged cookie from it reads nothing.
	res2, changed := syncAll(t, cfg, defaultFilter, res.Cookie)
	if len(changed) != 0 || len(res2.Deleted) != 0 || len(res2.Present) != 0 || string(res2.Cookie) != string(res.Cookie) {
		t.Errorf("unchanged: %+v", res2)
	}
}

func TestSyncCookies(t *testing.T) {
	t.Parallel()
	srv := startSample(t, 0, slapd.Options{})
	ctx := context.Background()
	cfg := readerConfig(srv)
	now := readState(t, cfg, defaultFilter)

	cookie, server, err := Cookie(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(cookie), "rid=000,csn=") || server != cfg.URLs[0] {
		t.Errorf("cookie %q from %q, want one from %s", cookie, server, cfg.URLs[0])
	}

	refused := func(t *testing.T, cfg Config, cookie string, want ...string) {
		t.Helper()
		n := 0
		_, err := Sync(ctx, cfg, defaultFilter, policyAttrs, []byte(cookie), func(sdk.Entry) error { n++; return nil })
		if !errors.Is(err, ErrRefreshRequired) {
			t.Fatalf("cookie %q: error %v, want ErrRefreshRequired", cookie, err)
		}
		t.Logf("cookie %q: %v (%d entries handed on first)", cookie, err, n)
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
	}
	t.Run("garbled", func(t *testing.T) {
		// slapd would take these as no cookie and answer with every
		// entry in a delete phase that deletes nothing.
		refused(t, cfg, "rid=000,csn=garbage", "not one the server gave")
		refused(t, cfg, string(cookie[:len(cookie)-3]), "not one the server gave")
		refused(t, cfg, "garbage", srv.URL, "empty cookie")
		refused(t, cfg, "", "empty")
	})
	t.Run("newer than the server", func(t *testing.T) {
		refused(t, cfg, "rid=000,csn=29991231235959.999999Z#000000#000#000000", srv.URL, "consumer state is newer than provider")
	})
	t.Run("stale", func(t *testing.T) {
		// Older than every entry: slapd sends them all, in a present
		// phase.
		stale := []byte("rid=000,csn=19700101000000.000000Z#000000#000#000000")
		res, entries := syncAll(t, cfg, defaultFilter, stale)
		if !res.PresentPhase || len(entries) != len(now) {
			t.Errorf("stale cookie: %v", res)
		}
		dirState{"x": {DN: "cn=stale"}}.apply(res, entries).checkEqual(t, now)
	})
}

func TestSyncUnsupported(t *testing.T) {
	t.Parallel()
	srv := startSample(t, 0, slapd.Options{NoSyncProv: true})
	_, _, err := Cookie(context.Background(), readerConfig(srv))
	if !errors.Is(err, ErrSyncUnsupported) || !strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("error %v, want ErrSyncUnsupported", err)
	}
	t.Log(err)
	if strings.Contains(err.Error(), readerPassword) {
		t.Error("password in the error")
	}
}

// persistRun runs Persist in a goroutine and passes its events on.
type persistRun struct {
	events chan SyncEvent
	done   chan error
	cancel context.CancelFunc
}

func startPersist(t *testing.T, cfg Config, filter string, cookie []byte) *persistRun {
	ctx, cancel := context.WithCancel(context.Background())
	p := &persistRun{events: make(chan SyncEvent, 1000), done: make(chan error, 1), cancel: cancel}
	go func() {
		p.done <- Persist(ctx, cfg, filter, policyAttrs, cookie, func(ev SyncEvent) error {
			p.events <- ev
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// next waits up to 2 s for the next event.
func (p *persistRun) next(t *testing.T) SyncEvent {
	t.Helper()
	select {
	case ev := <-p.events:
		return ev
	case err := <-p.done:
		t.Fatalf("Persist returned %v", err)
	case <-time.After(2 * time.Second):
		t.Fatal("no event within 2s")
	}
	return SyncEvent{}
}

// refresh collects the events of the refresh phase into a Sync result.
func (p *persistRun) refresh(t *testing.T) (SyncResult, []sdk.Entry) {
	t.Helper()
	var res SyncResult
	var changed []sdk.Entry
	for {
		ev := p.next(t)
		switch ev.Kind {
		case EventEntry:
			changed = append(changed, ev.Entry)
		case EventDelete:
			res.Deleted = append(res.Deleted, ev.Key)
		case EventPresent:
			res.Present = append(res.Present, ev.Key)
		case EventRefreshDone:
			if len(ev.Cookie) == 0 {
				t.Fatal("refresh done without a cookie")
			}
			res.PresentPhase, res.Cookie = ev.PresentPhase, ev.Cookie
			return res, changed
		default:
			t.Fatalf("event %v during the refresh", ev.Kind)
		}
		if ev.Cookie != nil {
			t.Errorf("%v event with a cookie during the refresh", ev.Kind)
		}
	}
}

func TestPersist(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		sessionLog int
	}{{"no session log", 0}, {"session log", 100}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := startSample(t, 0, slapd.Options{SyncSessionLog: tc.sessionLog})
			cfg := readerConfig(srv)
			cfg.BaseDN = peopleDN
			ctx := context.Background()
			cookie, _, err := Cookie(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			st := readState(t, cfg, defaultFilter)

			p := startPersist(t, cfg, defaultFilter, cookie)
			res, changed := p.refresh(t)
			if len(changed) != 0 || len(res.Deleted) != 0 || res.PresentPhase {
				t.Errorf("refresh of an unchanged directory: %+v %v", res, dnsOf(changed))
			}
			saved := res.Cookie

			// Live changes: each comes as it happens, with a cookie.
			apply := func(ev SyncEvent) {
				switch ev.Kind {
				case EventEntry:
					st[ev.Key] = ev.Entry
				case EventDelete:
					delete(st, ev.Key)
				}
				if ev.Cookie != nil {
					saved = ev.Cookie
				}
			}
			expect := func(kind SyncEventKind, dn string) {
				t.Helper()
				start := time.Now()
				ev := p.next(t)
				for ev.Kind == EventCookie {
					apply(ev)
					ev = p.next(t)
				}
				if ev.Kind != kind || kind == EventEntry && ev.Entry.DN != dn || ev.Cookie == nil {
					t.Fatalf("event %+v, want %v of %s with a cookie", ev, kind, dn)
				}
				if kind == EventDelete && ev.Key != st.keysOf(t, dn)[0] {
					t.Fatalf("deleted %s, want %s", ev.Key, dn)
				}
				apply(ev)
				t.Logf("%v %s after %v", kind, dn, time.Since(start).Round(time.Millisecond))
			}
			addUser(t, srv, "Zed Zimmer", "zed")
			expect(EventEntry, "cn=Zed Zimmer,"+peopleDN)
			if err := srv.Replace("cn=Alice Anders,"+peopleDN, "displayName", "Alice A."); err != nil {
				t.Fatal(err)
			}
			expect(EventEntry, "cn=Alice Anders,"+peopleDN)
			if err := srv.Delete("cn=Dave Dunn," + peopleDN); err != nil {
				t.Fatal(err)
			}
			expect(EventDelete, "cn=Dave Dunn,"+peopleDN)
			modDN(t, srv, "cn=Carol Clark,"+peopleDN, "cn=Carol Clark", "ou=Folders,dc=example,dc=com")
			expect(EventDelete, "cn=Carol Clark,"+peopleDN)
			st.checkEqual(t, readState(t, cfg, defaultFilter))

			// The server goes away: Persist fails. Changes while it is
			// down; then Persist from the last saved cookie catches up.
			if err := srv.Stop(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-p.done:
				t.Logf("server stopped: %v", err)
				if err == nil || !strings.Contains(err.Error(), srv.URL) {
					t.Errorf("error %v", err)
				}
				p.done <- err // for the cleanup
			case <-time.After(5 * time.Second):
				t.Fatal("Persist did not return after the server stopped")
			}
			if err := srv.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			modDN(t, srv, "cn=Bob Brown,"+peopleDN, "cn=Robert Brown", "")
			if err := srv.Delete("cn=Erin Evans," + peopleDN); err != nil {
				t.Fatal(err)
			}
			addUser(t, srv, "Yves Young", "yves")

			p2 := startPersist(t, cfg, defaultFilter, saved)
			res, changed = p2.refresh(t)
			t.Logf("catch-up: %d changed, %d deleted, present phase %v with %d", len(changed), len(res.Deleted), res.PresentPhase, len(res.Present))
			st = st.apply(res, changed)
			st.checkEqual(t, readState(t, cfg, defaultFilter))

			// Cancelling ends it promptly with ctx's error.
			p2.cancel()
			select {
			case err := <-p2.done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("after cancel: %v", err)
				}
				p2.done <- err
			case <-time.After(2 * time.Second):
				t.Fatal("Persist did not return after cancel")
			}
		})
	}
}

// TestSyncNotReplicated records what slapd does not report: the member
// values that memberof-refint fixes when a member is renamed or deleted
// (and the memberOf values the memberof overlay maintains) are written as
// internal operations that are never replicated.
func TestSyncNotReplicated(t *testing.T) {
	t.Parallel()
	srv := startSample(t, 0, slapd.Options{})
	cfg := readerConfig(srv)
	const groups = "(objectClass=groupOfNames)"
	cookie, _, err := Cookie(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := readState(t, cfg, groups)
	modDN(t, srv, "cn=Bob Brown,"+peopleDN, "cn=Robert Brown", "")
	if err := srv.Delete("cn=Dave Dunn," + peopleDN); err != nil {
		t.Fatal(err)
	}
	res, changed := syncAll(t, cfg, groups, cookie)
	after := readState(t, cfg, groups)
	if len(changed) != 0 {
		t.Errorf("slapd now reports refint's changes to %v: update the doc of Sync", dnsOf(changed))
	}
	// The groups did change.
	before.apply(res, changed).checkEqual(t, after, "member")
	n := 0
	for k, e := range after {
		if !slices.Equal(e.Attributes["member"], before[k].Attributes["member"]) {
			n++
		}
	}
	if n == 0 {
		t.Error("no group's member changed")
	}
}
