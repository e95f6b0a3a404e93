package storetest

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/store"
)

// dirState is a directory state with entries of n bytes and a head of 100,
// made from seed (zero bytes and every other value among them).
func dirState(key string, seed uint64, n int) *store.DirState {
	entries := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range entries {
		entries[i] = byte(r.Uint32())
	}
	head := []byte{0, 0xff, '\n'}
	for len(head) < 100 {
		head = append(head, byte(r.Uint32()))
	}
	return &store.DirState{
		Key:    key,
		Cookie: []byte("rid=001,csn=20250301100000.123456Z#000000#000#000000\x00\xff"),
		// Nanoseconds and a zone of its own: a store keeps the instant
		// to the microsecond at least, in any zone.
		FullAt:  time.Date(2025, 3, 1, 11, 0, 0, 123456789, time.FixedZone("CET", 3600)),
		Entries: entries,
		Head:    head,
	}
}

// applyState applies changes to domain in a run that leaves ds.
func applyState(t *testing.T, s store.Store, domain string, ds *store.DirState, changes ...store.Change) {
	t.Helper()
	run := runAt(t, s, domain)
	run.DirState = ds
	if err := s.Apply(t.Context(), domain, changes, run); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// getState reads the directory state of domain.
func getState(t *testing.T, s store.Store, domain string) *store.DirState {
	t.Helper()
	ds, err := s.DirState(t.Context(), domain)
	if err != nil {
		t.Fatalf("DirState(%s): %v", domain, err)
	}
	return ds
}

// wantState checks that got is want: the key, the bytes (an empty cookie,
// entries or head may read back nil or empty) and the instant of FullAt to
// the microsecond.
func wantState(t *testing.T, what string, got, want *store.DirState) {
	t.Helper()
	switch {
	case want == nil && got == nil:
		return
	case want == nil:
		t.Errorf("%s: DirState = key %q, want none", what, got.Key)
		return
	case got == nil:
		t.Errorf("%s: DirState = none, want key %q", what, want.Key)
		return
	}
	if got.Key != want.Key {
		t.Errorf("%s: key %q, want %q", what, got.Key, want.Key)
	}
	if !bytes.Equal(got.Cookie, want.Cookie) {
		t.Errorf("%s: cookie %q, want %q", what, got.Cookie, want.Cookie)
	}
	if !bytes.Equal(got.Head, want.Head) {
		t.Errorf("%s: head %q, want %q", what, got.Head, want.Head)
	}
	if d := got.FullAt.Sub(want.FullAt).Abs(); d >= time.Microsecond {
		t.Errorf("%s: full at %v, want %v (%v apart)", what, got.FullAt, want.FullAt, d)
	}
	if !bytes.Equal(got.Entries, want.Entries) {
		i := 0
		for i < min(len(got.Entries), len(want.Entries)) && got.Entries[i] == want.Entries[i] {
			i++
		}
		t.Errorf("%s: entries of %d bytes, want %d bytes; they differ from byte %d", what, len(got.Entries), len(want.Entries), i)
	}
}

// cloneState copies ds, so that what the test gave the store can be
// changed after.
func cloneState(ds *store.DirState) *store.DirState {
	c := *ds
	c.Cookie, c.Entries, c.Head = bytes.Clone(ds.Cookie), bytes.Clone(ds.Entries), bytes.Clone(ds.Head)
	return &c
}

func testDirStateRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	wantState(t, "a domain the store does not know", getState(t, s, "unknown.example.net"), nil)
	if err := s.EnsureDomain(ctx, domain); err != nil {
		t.Fatal(err)
	}
	wantState(t, "a domain without state", getState(t, s, domain), nil)

	// 5 MB of entries come back byte for byte; the domain's name in any
	// case names it.
	given := dirState("ldap://dc1.example.com|dc=example,dc=com|(objectClass=user)|standard@1", 1, 5<<20)
	want := cloneState(given)
	applyState(t, s, domain, given, create("guid-a", "alice@example.com", nil))
	// The caller may reuse its slices once Apply returns.
	given.Cookie[0], given.Entries[0], given.Entries[len(given.Entries)-1] = 'x', ^given.Entries[0], ^given.Entries[len(given.Entries)-1]
	given.Head[0], given.Head[len(given.Head)-1] = 'h', ^given.Head[len(given.Head)-1]
	got := getState(t, s, "EXAMPLE.Com")
	wantState(t, "after Apply", got, want)
	// Nor does the caller's change of what it read reach the store.
	if got != nil && len(got.Entries) > 0 {
		got.Entries[0] ^= 0xff
		got.Cookie[0] = 'y'
		got.Head[0] = 'z'
		wantState(t, "after changing what DirState returned", getState(t, s, domain), want)
	}

	// Per domain: another domain has none, then its own.
	wantState(t, otherDomain+" before its Apply", getState(t, s, otherDomain), nil)
	other := dirState("other key", 2, 1000)
	other.FullAt = time.Date(2024, 12, 31, 23, 59, 59, 999999000, time.UTC)
	applyState(t, s, otherDomain, other)
	wantState(t, otherDomain, getState(t, s, otherDomain), other)
	wantState(t, domain+" after an Apply to "+otherDomain, getState(t, s, domain), want)

	// The next Apply replaces it: a delta's state, with an empty cookie
	// and head and no entries.
	next := &store.DirState{Key: "next key", Cookie: []byte{}, Head: []byte{}, FullAt: time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)}
	applyState(t, s, domain, next)
	wantState(t, "after a second Apply", getState(t, s, domain), next)
	wantState(t, otherDomain+" after a second Apply to "+domain, getState(t, s, otherDomain), other)

	// A head without entries, and entries without a head.
	headOnly := &store.DirState{Key: "head only", Head: []byte("\x00summary\xff"), FullAt: time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)}
	applyState(t, s, domain, headOnly)
	wantState(t, "a head without entries", getState(t, s, domain), headOnly)
	entriesOnly := dirState("entries only", 8, 3000)
	entriesOnly.Head = nil
	applyState(t, s, domain, entriesOnly)
	wantState(t, "entries without a head", getState(t, s, domain), entriesOnly)
}

// getHead reads the directory state of domain with DirStateHead.
func getHead(t *testing.T, s store.Store, domain string) *store.DirState {
	t.Helper()
	ds, err := s.DirStateHead(t.Context(), domain)
	if err != nil {
		t.Fatalf("DirStateHead(%s): %v", domain, err)
	}
	return ds
}

// wantHead checks that got, what DirStateHead read, is full, what DirState
// read, field for field, but for Entries, which must be nil.
func wantHead(t *testing.T, what string, got, full *store.DirState) {
	t.Helper()
	switch {
	case full == nil && got == nil:
		return
	case full == nil:
		t.Errorf("%s: DirStateHead = key %q, DirState none", what, got.Key)
		return
	case got == nil:
		t.Errorf("%s: DirStateHead = none, DirState key %q", what, full.Key)
		return
	}
	if got.Key != full.Key {
		t.Errorf("%s: DirStateHead key %q, DirState %q", what, got.Key, full.Key)
	}
	if !bytes.Equal(got.Cookie, full.Cookie) {
		t.Errorf("%s: DirStateHead cookie %q, DirState %q", what, got.Cookie, full.Cookie)
	}
	if !got.FullAt.Equal(full.FullAt) {
		t.Errorf("%s: DirStateHead full at %v, DirState %v", what, got.FullAt, full.FullAt)
	}
	if !bytes.Equal(got.Head, full.Head) {
		t.Errorf("%s: DirStateHead head %q, DirState %q", what, got.Head, full.Head)
	}
	if got.Entries != nil {
		t.Errorf("%s: DirStateHead read %d bytes of entries, want nil", what, len(got.Entries))
	}
	if got.Generation != full.Generation {
		t.Errorf("%s: DirStateHead generation %d, DirState %d", what, got.Generation, full.Generation)
	}
}

// testDirStateHead: DirStateHead reads what DirState does but the entries,
// the generation as it fills it; none for a domain without state or
// unknown; the domain's name in any case.
func testDirStateHead(t *testing.T, s store.Store) {
	ctx := t.Context()
	wantHead(t, "a domain the store does not know", getHead(t, s, "unknown.example.net"), nil)
	if err := s.EnsureDomain(ctx, domain); err != nil {
		t.Fatal(err)
	}
	wantHead(t, "a domain without state", getHead(t, s, domain), nil)

	given := dirState("ldap://dc1.example.com|dc=example,dc=com|(objectClass=user)|standard@1", 11, 2<<20)
	want := cloneState(given)
	applyState(t, s, domain, given, create("guid-a", "alice@example.com", nil))
	full := getState(t, s, domain)
	wantState(t, "DirState after Apply", full, want)
	head := getHead(t, s, "EXAMPLE.Com")
	wantHead(t, "after Apply", head, full)
	if head != nil && full != nil {
		if !bytes.Equal(head.Head, want.Head) || len(head.Head) == 0 {
			t.Errorf("after Apply: DirStateHead head %q, want %q", head.Head, want.Head)
		}
		if head.Generation == 0 || head.Generation != snapshot(t, s, domain).Generation {
			t.Errorf("after Apply: DirStateHead generation %d, Snapshot %d", head.Generation, snapshot(t, s, domain).Generation)
		}
		// The caller's change of what it read does not reach the store.
		head.Head[0] ^= 0xff
		head.Cookie[0] = 'y'
		wantHead(t, "after changing what DirStateHead returned", getHead(t, s, domain), full)
	}

	// A hand-made change moves the generation both read.
	if err := s.AddGroup(ctx, domain, "Sales"); err != nil {
		t.Fatal(err)
	}
	full = getState(t, s, domain)
	head = getHead(t, s, domain)
	wantHead(t, "after a hand-made change", head, full)
	if head != nil && head.Generation != snapshot(t, s, domain).Generation {
		t.Errorf("after a hand-made change: DirStateHead generation %d, Snapshot %d", head.Generation, snapshot(t, s, domain).Generation)
	}

	// Per domain: another domain has none, then its own.
	wantHead(t, otherDomain+" before its Apply", getHead(t, s, otherDomain), nil)
	other := dirState("other key", 12, 1000)
	applyState(t, s, otherDomain, other)
	wantHead(t, otherDomain, getHead(t, s, otherDomain), getState(t, s, otherDomain))
	wantState(t, otherDomain+" by DirStateHead", getHead(t, s, otherDomain), &store.DirState{Key: other.Key, Cookie: other.Cookie, FullAt: other.FullAt, Head: other.Head})

	// An empty cookie and head, no entries: nil or empty, as DirState.
	next := &store.DirState{Key: "next key", Cookie: []byte{}, Head: []byte{}, FullAt: time.Date(2025, 3, 2, 0, 0, 0, 0, time.UTC)}
	applyState(t, s, domain, next)
	head = getHead(t, s, domain)
	wantHead(t, "an empty state", head, getState(t, s, domain))
	wantState(t, "an empty state by DirStateHead", head, next)

	// An Apply without state deletes it.
	applyState(t, s, domain, nil)
	wantHead(t, "after an Apply without state", getHead(t, s, domain), nil)
	wantHead(t, otherDomain+" after an Apply without state to "+domain, getHead(t, s, otherDomain), getState(t, s, otherDomain))
}

func testDirStateApplyNilDeletes(t *testing.T, s store.Store) {
	state := dirState("key", 3, 4096)
	applyState(t, s, domain, state)
	applyState(t, s, otherDomain, state)
	wantState(t, "after Apply", getState(t, s, domain), state)

	// A run that leaves no state (a read that cannot be continued) deletes
	// the domain's, and only the domain's.
	applyState(t, s, domain, nil, create("guid-a", "alice@example.com", nil))
	wantState(t, "after an Apply without state", getState(t, s, domain), nil)
	wantState(t, otherDomain, getState(t, s, otherDomain), state)

	// Deleting none is no error.
	applyState(t, s, domain, nil)
	wantState(t, "after a second Apply without state", getState(t, s, domain), nil)
}

func testDirStateFailedApplyKeeps(t *testing.T, s store.Store) {
	ctx := t.Context()
	old := dirState("old key", 4, 64<<10)
	applyState(t, s, domain, old, create("guid-a", "alice@example.com", nil))
	applyState(t, s, otherDomain, nil, create("guid-o", "olga@other.com", []string{"o@example.com"}))
	newState := dirState("new key", 5, 1000)

	tests := []struct {
		name   string
		target error
		apply  func() error
	}{
		{"StaleGeneration", store.ErrStoreChanged, func() error {
			run := runAt(t, s, domain)
			run.Generation--
			run.DirState = newState
			return s.Apply(ctx, domain, []store.Change{create("guid-b", "bob@example.com", nil)}, run)
		}},
		{"NilOnStaleGeneration", store.ErrStoreChanged, func() error {
			run := runAt(t, s, domain)
			run.Generation++
			return s.Apply(ctx, domain, nil, run)
		}},
		{"AddressTaken", store.ErrExists, func() error {
			run := runAt(t, s, domain)
			run.DirState = newState
			return s.Apply(ctx, domain, []store.Change{
				create("guid-b", "bob@example.com", nil),
				create("guid-c", "carol@example.com", []string{"o@example.com"}), // olga's
			}, run)
		}},
		{"NilOnAddressTaken", store.ErrExists, func() error {
			run := runAt(t, s, domain)
			return s.Apply(ctx, domain, []store.Change{create("guid-c", "o@example.com", nil)}, run)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, tc.apply(), tc.target)
			wantState(t, "after a failed Apply", getState(t, s, domain), old)
		})
	}
	if ms := mailboxes(t, s, domain); len(ms) != 1 {
		t.Errorf("the failed Applies left %d mailboxes, want alice's only", len(ms))
	}
}

func testDirStateRunWritersIgnore(t *testing.T, s store.Store) {
	ctx := t.Context()
	old := dirState("old key", 6, 2048)
	applyState(t, s, domain, old)
	other := dirState("other key", 7, 10)

	// StartRun with a state, RecordRun finishing it without one.
	acquire(t, s, domain, "host-a", leaseTTL)
	run := &store.Run{Domain: domain, Started: time.Now(), Holder: "host-a", Read: store.ReadDelta, DirState: other}
	if err := s.StartRun(ctx, run); err != nil {
		t.Fatalf("StartRun: %v", err)
	}
	wantState(t, "after StartRun", getState(t, s, domain), old)
	run.Ended, run.Outcome, run.Stage, run.Error, run.DirState = time.Now(), store.OutcomeFailed, "policy", "policy failed", nil
	if err := s.RecordRun(ctx, run); err != nil {
		t.Fatalf("RecordRun: %v", err)
	}
	wantState(t, "after RecordRun without state", getState(t, s, domain), old)

	// RecordRun of a new row, with a state; of another domain too.
	stopped := newRun(domain, time.Now())
	stopped.Outcome, stopped.Stage, stopped.Intended, stopped.DirState = store.OutcomeStopped, "guard", &store.Counts{Deleted: 9}, other
	if err := s.RecordRun(ctx, stopped); err != nil {
		t.Fatalf("RecordRun: %v", err)
	}
	fresh := newRun(otherDomain, time.Now())
	fresh.Outcome, fresh.DirState = store.OutcomeFailed, other
	if err := s.RecordRun(ctx, fresh); err != nil {
		t.Fatalf("RecordRun: %v", err)
	}
	wantState(t, "after RecordRun with state", getState(t, s, domain), old)
	wantState(t, otherDomain+" after RecordRun with state", getState(t, s, otherDomain), nil)

	// No reader fills Run.DirState.
	for _, r := range runsOf(t, s, domain) {
		if r.DirState != nil {
			t.Errorf("run %d read back with a DirState", r.ID)
		}
	}
}

func testRunRead(t *testing.T, s store.Store) {
	ctx := t.Context()
	// A run started, then applied: "" while it runs, then what it read.
	acquire(t, s, domain, "host-a", leaseTTL)
	applied := &store.Run{Domain: domain, Started: time.Now(), Holder: "host-a"}
	if err := s.StartRun(ctx, applied); err != nil {
		t.Fatalf("StartRun: %v", err)
	}
	wantRead(t, s, domain, applied.ID, "")
	applied.Ended, applied.Outcome, applied.Read = time.Now(), store.OutcomeOK, store.ReadDelta
	applied.Generation = snapshot(t, s, domain).Generation
	if err := s.Apply(ctx, domain, []store.Change{create("guid-a", "alice@example.com", nil)}, applied); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantRead(t, s, domain, applied.ID, store.ReadDelta)

	// A run started with its read known, finished by RecordRun.
	started := &store.Run{Domain: domain, Started: time.Now(), Holder: "host-a", Read: store.ReadFull}
	if err := s.StartRun(ctx, started); err != nil {
		t.Fatalf("StartRun: %v", err)
	}
	wantRead(t, s, domain, started.ID, store.ReadFull)
	started.Ended, started.Outcome, started.Stage, started.Error = time.Now(), store.OutcomeFailed, "fetch", "cookie refused"
	if err := s.RecordRun(ctx, started); err != nil {
		t.Fatalf("RecordRun: %v", err)
	}
	wantRead(t, s, domain, started.ID, store.ReadFull)

	// New rows: RecordRun and Apply without StartRun, in another domain.
	recorded := newRun(otherDomain, time.Now())
	recorded.Outcome, recorded.Read = store.OutcomeStopped, store.ReadDelta
	if err := s.RecordRun(ctx, recorded); err != nil {
		t.Fatalf("RecordRun: %v", err)
	}
	wantRead(t, s, otherDomain, recorded.ID, store.ReadDelta)
	full := runAt(t, s, otherDomain)
	full.Read = store.ReadFull
	if err := s.Apply(ctx, otherDomain, nil, full); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantRead(t, s, otherDomain, full.ID, store.ReadFull)
	wantRead(t, s, otherDomain, recorded.ID, store.ReadDelta)
	wantRead(t, s, domain, applied.ID, store.ReadDelta)
}

// wantRead checks the Read of run id of domain as RunsPage, Run and, for the
// domain's newest run, LastRuns give it.
func wantRead(t *testing.T, s store.Store, domain string, id int64, want string) {
	t.Helper()
	ctx := t.Context()
	var seen []string
	page, err := s.RunsPage(ctx, domain, 0, 0)
	if err != nil {
		t.Fatalf("RunsPage: %v", err)
	}
	for _, r := range page {
		if r.ID == id {
			seen = append(seen, "RunsPage "+r.Read)
		}
	}
	r, err := s.Run(ctx, domain, id)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	seen = append(seen, "Run "+r.Read)
	last, err := s.LastRuns(ctx)
	if err != nil {
		t.Fatalf("LastRuns: %v", err)
	}
	if l, ok := last[domain]; ok && l.ID == id {
		seen = append(seen, "LastRuns "+l.Read)
	}
	wantSeen := []string{"RunsPage " + want, "Run " + want}
	if len(page) > 0 && page[0].ID == id {
		wantSeen = append(wantSeen, "LastRuns "+want)
	}
	if strings.Join(seen, ", ") != strings.Join(wantSeen, ", ") {
		t.Errorf("read of run %d of %s: %q, want %q", id, domain, seen, wantSeen)
	}
}

// testDirStateGeneration: DirState gives the domain's write generation as
// it stands, the Snapshot's, after the Apply that wrote the state and after
// a hand-made change since; a given Generation is not stored.
func testDirStateGeneration(t *testing.T, s store.Store) {
	ctx := t.Context()
	st := dirState("key", 5, 100)
	st.Generation = 9999
	applyState(t, s, domain, st, create("guid-a", "alice@example.com", nil))
	gen := func() int64 {
		snap, err := s.Snapshot(ctx, domain, nil)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Generation
	}
	if got, want := getState(t, s, domain).Generation, gen(); got != want || want == 0 {
		t.Errorf("after Apply: DirState.Generation = %d, Snapshot.Generation = %d", got, want)
	}
	before := gen()
	if err := s.AddGroup(ctx, domain, "Sales"); err != nil {
		t.Fatal(err)
	}
	if got, want := getState(t, s, domain).Generation, gen(); got != want || want == before {
		t.Errorf("after a hand-made change: DirState.Generation = %d, Snapshot.Generation = %d (was %d)", got, want, before)
	}
}

// testMoveCookie checks store.CookieMover: the cookie moves when it is
// still the one named, and nothing else of the state does (entries, head,
// key, full read's time, the domain's generation); a stale cookie, a
// domain without state or another domain's state do not move.
func testMoveCookie(t *testing.T, s store.Store) {
	m, ok := s.(store.CookieMover)
	if !ok {
		t.Skip("the store is not a store.CookieMover (optional)")
	}
	ctx := t.Context()
	move := func(domain string, from, to string) bool {
		t.Helper()
		moved, err := m.MoveCookie(ctx, domain, []byte(from), []byte(to))
		if err != nil {
			t.Fatal(err)
		}
		return moved
	}
	if err := s.EnsureDomain(ctx, domain); err != nil {
		t.Fatal(err)
	}
	if move(domain, "c", "d") {
		t.Error("moved the cookie of a domain without state")
	}
	given := dirState("k", 21, 5000)
	applyState(t, s, domain, given, create("guid-a", "alice@example.com", nil))
	other := dirState("k", 22, 100)
	other.Cookie = given.Cookie
	applyState(t, s, otherDomain, other)
	before := getState(t, s, domain)
	if move(domain, "not the cookie", "d") {
		t.Error("moved a cookie that is not the kept one")
	}
	if !move("EXAMPLE.com", string(given.Cookie), "the next cookie") {
		t.Fatal("did not move the kept cookie")
	}
	after := getState(t, s, domain)
	want := cloneState(before)
	want.Cookie = []byte("the next cookie")
	wantState(t, "after MoveCookie", after, want)
	if after != nil && before != nil && after.Generation != before.Generation {
		t.Errorf("MoveCookie moved the generation: %d, was %d", after.Generation, before.Generation)
	}
	if got := getHead(t, s, otherDomain); got == nil || !bytes.Equal(got.Cookie, given.Cookie) {
		t.Errorf("another domain's cookie moved: %+v", got)
	}
	if move(domain, string(given.Cookie), "again") {
		t.Error("moved from the cookie it had before")
	}
}
