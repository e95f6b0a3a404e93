package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/store"
)

// Settings JSON as the host might write it; the store does not read it.
const (
	settingsA = `{"sync":true,"policy":"standard","ldap":{"urls":["ldap://dc1.example.com"],"base_dn":"dc=example,dc=com"}}`
	settingsB = `{"sync":false,"policy":"standard","ldap":{"urls":["ldap://dc2.example.com"],"base_dn":"dc=example,dc=com"}}`
	settingsC = `{"sync":true,"policy":"custom","interval":"15m"}`
)

// Sealed passwords as the host might hand them over: bytes the store keeps
// as they are, zero bytes included.
var (
	secretA = []byte{0x9c, 0x00, 0x4f, 0xe1, 0x00, 0x7a, 0x33, 0x10, 0xff}
	secretB = []byte{0x01, 0x02, 0x00, 0x03}
)

func testSettingsVersions(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := time.Now()
	v1 := &store.SettingsVersion{Domain: domain, Settings: []byte(settingsA), Secret: bytes.Clone(secretA), Author: "alice"}
	if err := s.PutSettings(ctx, v1, 0); err != nil {
		t.Fatalf("PutSettings of new settings: %v", err)
	}
	after := time.Now()
	if v1.Version != 1 || v1.Domain != domain {
		t.Errorf("first version = %d of %q, want 1 of %s", v1.Version, v1.Domain, domain)
	}
	if v1.Created.Before(before.Add(-time.Second)) || v1.Created.After(after.Add(time.Second)) {
		t.Errorf("Created = %v, want between %v and %v", v1.Created, before, after)
	}
	// The store keeps its own copy of what it was given.
	v1.Settings[0], v1.Secret[0] = 'X', 'X'
	want1 := *v1
	want1.Settings, want1.Secret = []byte(settingsA), secretA
	wantSettings(t, getSettings(t, s, domain, 0), want1)

	v2 := putSettings(t, s, domain, settingsB, nil, "api-token-ops", 1)
	if v2.Version != 2 {
		t.Errorf("second version = %d, want 2", v2.Version)
	}
	if v2.Created.Before(v1.Created) {
		t.Errorf("version 2 created %v, before version 1 (%v)", v2.Created, v1.Created)
	}
	wantSettings(t, getSettings(t, s, domain, 0), *v2)
	wantSettings(t, getSettings(t, s, domain, 2), *v2)
	wantSettings(t, getSettings(t, s, domain, 1), want1)

	// Versions are numbered per domain.
	o := putSettings(t, s, otherDomain, settingsC, secretB, "cli", 0)
	if o.Version != 1 {
		t.Errorf("first version of %s = %d, want 1", otherDomain, o.Version)
	}
	wantSettings(t, getSettings(t, s, otherDomain, 0), *o)
	wantSettings(t, getSettings(t, s, domain, 0), *v2)
}

func testSettingsConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	const (
		live    = "live.example.com"    // versions 1 and 2
		removed = "removed.example.com" // version 1, removed by version 2
		fresh   = "fresh.example.com"   // no settings
	)
	putSettings(t, s, live, settingsA, nil, "alice", 0)
	putSettings(t, s, live, settingsB, nil, "alice", 1)
	putSettings(t, s, removed, settingsA, nil, "alice", 0)
	if err := s.RemoveSettings(ctx, removed, "alice"); err != nil {
		t.Fatal(err)
	}

	// The cases run in order; each successful one moves its domain on.
	tests := []struct {
		name   string
		domain string
		expect int64
		want   int64 // the version saved; 0: ErrConflict
	}{
		{"NewSettingsForADomainThatHasSome", live, 0, 0},
		{"StaleVersion", live, 1, 0},
		{"VersionNotSavedYet", live, 3, 0},
		{"ExistingVersionForADomainWithout", fresh, 1, 0},
		{"TheVersionThatRemovedIt", removed, 2, 0},
		{"TheVersionBeforeTheRemoval", removed, 1, 0},
		{"LatestVersion", live, 2, 3},
		{"NewSettingsAfterRemovalTakeTheNextNumber", removed, 0, 3},
		{"NewSettingsForANewDomain", fresh, 0, 1},
		{"TheSameExpectTwice", fresh, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			history := settingsHistory(t, s, tc.domain)
			v := &store.SettingsVersion{Domain: tc.domain, Settings: []byte(settingsC), Author: "bob"}
			err := s.PutSettings(ctx, v, tc.expect)
			if tc.want == 0 {
				wantErr(t, err, store.ErrConflict)
				if v.Version != 0 || !v.Created.IsZero() {
					t.Errorf("a refused PutSettings filled version %d, created %v", v.Version, v.Created)
				}
				if now := settingsHistory(t, s, tc.domain); !reflect.DeepEqual(now, history) {
					t.Errorf("a refused PutSettings changed the history:\nbefore %+v\nafter  %+v", history, now)
				}
				return
			}
			if err != nil {
				t.Fatalf("PutSettings with expect %d: %v", tc.expect, err)
			}
			if v.Version != tc.want {
				t.Errorf("saved version %d, want %d", v.Version, tc.want)
			}
			wantSettings(t, getSettings(t, s, tc.domain, 0), *v)
		})
	}
}

func testPutSettingsInvalid(t *testing.T, s store.Store) {
	ctx := t.Context()
	tests := []struct {
		name   string
		v      store.SettingsVersion
		expect int64
	}{
		{"EmptySettings", store.SettingsVersion{Domain: domain, Author: "alice"}, 0},
		{"NoAuthor", store.SettingsVersion{Domain: domain, Settings: []byte(settingsA)}, 0},
		{"RemovedSet", store.SettingsVersion{Domain: domain, Settings: []byte(settingsA), Author: "alice", Removed: true}, 0},
		{"NegativeExpect", store.SettingsVersion{Domain: domain, Settings: []byte(settingsA), Author: "alice"}, -1},
		{"NoDomain", store.SettingsVersion{Settings: []byte(settingsA), Author: "alice"}, 0},
		{"AddressForDomain", store.SettingsVersion{Domain: "alice@example.com", Settings: []byte(settingsA), Author: "alice"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			err := s.PutSettings(ctx, &v, tc.expect)
			if err == nil {
				t.Fatalf("PutSettings(%+v, %d) succeeded", tc.v, tc.expect)
			}
			if errors.Is(err, store.ErrConflict) {
				t.Errorf("PutSettings of invalid input = %v, want an error other than a conflict", err)
			}
			if ds := storedDomains(t, s); len(ds) != 0 {
				t.Errorf("a refused PutSettings saved %+v", ds)
			}
		})
	}
	if err := s.RemoveSettings(ctx, domain, ""); err == nil {
		t.Error("RemoveSettings without an author succeeded")
	}
}

func testSettingsRace(t *testing.T, s store.Store) {
	putSettings(t, s, domain, settingsA, nil, "alice", 0)
	const racers = 6
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := &store.SettingsVersion{Domain: domain, Settings: []byte(settingsB), Author: fmt.Sprintf("racer-%d", i)}
			<-start
			errs[i] = s.PutSettings(t.Context(), v, 1)
		}()
	}
	close(start)
	wg.Wait()
	winners := 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("racer %d: %v", i, err)
		}
	}
	if winners != 1 {
		t.Errorf("%d of %d changes made to version 1 were saved, want exactly 1", winners, racers)
	}
	if h := settingsHistory(t, s, domain); len(h) != 2 || h[0].Version != 2 {
		t.Errorf("history = %+v, want versions 2 and 1", h)
	}
}

func testSettingsNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	putSettings(t, s, domain, settingsA, nil, "alice", 0)
	putSettings(t, s, otherDomain, settingsA, nil, "alice", 0)
	if err := s.RemoveSettings(ctx, otherDomain, "alice"); err != nil {
		t.Fatal(err)
	}
	// A domain with mailboxes but no settings (one of the config file).
	addMailbox(t, s, "config.example.com", store.Mailbox{Primary: "carol@config.example.com"})

	tests := []struct {
		name    string
		domain  string
		version int64
	}{
		{"UnknownDomainLatest", "unknown.example.com", 0},
		{"UnknownDomainVersion", "unknown.example.com", 1},
		{"DomainWithoutSettings", "config.example.com", 0},
		{"VersionNotSavedYet", domain, 2},
		{"NegativeVersion", domain, -1},
		{"LatestOfARemovedDomain", otherDomain, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := s.Settings(ctx, tc.domain, tc.version)
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Settings(%s, %d) = %+v, %v; want ErrNotFound", tc.domain, tc.version, v, err)
			}
		})
	}
}

func testSettingsHistory(t *testing.T, s store.Store) {
	ctx := t.Context()
	if h, err := s.SettingsHistory(ctx, domain); err != nil || len(h) != 0 {
		t.Errorf("SettingsHistory of a domain without settings = %+v, %v; want none", h, err)
	}
	v1 := putSettings(t, s, domain, settingsA, secretA, "alice", 0)
	v2 := putSettings(t, s, domain, settingsB, secretB, "api-token-ops", 1)
	putSettings(t, s, otherDomain, settingsC, nil, "cli", 0)
	if err := s.RemoveSettings(ctx, domain, "bob"); err != nil {
		t.Fatal(err)
	}
	v3 := getSettings(t, s, domain, 3)
	v4 := putSettings(t, s, domain, settingsC, secretA, "carol", 0)

	h := settingsHistory(t, s, domain)
	want := []store.SettingsVersion{*v4, *v3, *v2, *v1}
	for i := range want {
		want[i].Secret = nil // the history leaves secrets out
	}
	if len(h) != len(want) {
		t.Fatalf("history has %d versions, want %d: %+v", len(h), len(want), h)
	}
	for i := range want {
		wantSettings(t, &h[i], want[i])
	}
	if !v3.Removed || v3.Author != "bob" || !bytes.Equal(v3.Settings, v2.Settings) || v3.Secret != nil {
		t.Errorf("the removing version = %+v, want removed by bob, with the settings of version 2 and no secret", v3)
	}
	// Settings still has the secrets the history leaves out.
	if got := getSettings(t, s, domain, 2); !bytes.Equal(got.Secret, secretB) {
		t.Errorf("secret of version 2 = %x, want %x", got.Secret, secretB)
	}
}

func testStoredDomains(t *testing.T, s store.Store) {
	ctx := t.Context()
	if ds := storedDomains(t, s); len(ds) != 0 {
		t.Errorf("StoredDomains of an empty store = %+v, want none", ds)
	}
	putSettings(t, s, "b.example.com", settingsA, nil, "alice", 0)
	b2 := putSettings(t, s, "b.example.com", settingsB, secretB, "alice", 1)
	a1 := putSettings(t, s, "a.example.com", settingsA, secretA, "bob", 0)
	putSettings(t, s, "c.example.com", settingsA, nil, "bob", 0)
	putSettings(t, s, "d.example.com", settingsA, nil, "bob", 0)
	for _, d := range []string{"c.example.com", "d.example.com"} {
		if err := s.RemoveSettings(ctx, d, "carol"); err != nil {
			t.Fatal(err)
		}
	}
	d3 := putSettings(t, s, "d.example.com", settingsC, nil, "carol", 0)
	// Domains with mailboxes and runs but no settings are not store-kept.
	addMailbox(t, s, domain, store.Mailbox{Primary: "carol@example.com"})
	apply(t, s, otherDomain, create("guid-o", "olga@other.com", nil))

	ds := storedDomains(t, s)
	want := []store.SettingsVersion{*a1, *b2, *d3}
	if len(ds) != len(want) {
		t.Fatalf("StoredDomains = %+v\nwant %+v", ds, want)
	}
	for i := range want {
		wantSettings(t, &ds[i], want[i])
	}
}

func testRemoveSettings(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales")
	apply(t, s, domain, create("guid-a", "alice@example.com", nil, "Sales"))
	v1 := putSettings(t, s, domain, settingsA, secretA, "alice", 0)
	mailboxesBefore, runsBefore := mailboxes(t, s, domain), runsOf(t, s, domain)

	if err := s.RemoveSettings(ctx, domain, "bob"); err != nil {
		t.Fatalf("RemoveSettings: %v", err)
	}
	if v, err := s.Settings(ctx, domain, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Settings of a removed domain = %+v, %v; want ErrNotFound", v, err)
	}
	removal := getSettings(t, s, domain, 2)
	if !removal.Removed || removal.Author != "bob" || !bytes.Equal(removal.Settings, v1.Settings) || removal.Secret != nil {
		t.Errorf("version 2 = %+v, want the removal by bob, with the settings of version 1 and no secret", removal)
	}
	wantSettings(t, getSettings(t, s, domain, 1), *v1)
	if ds := storedDomains(t, s); len(ds) != 0 {
		t.Errorf("StoredDomains after the removal = %+v, want none", ds)
	}
	if got := mailboxes(t, s, domain); !reflect.DeepEqual(got, mailboxesBefore) {
		t.Errorf("mailboxes after the removal = %+v\nwant %+v", got, mailboxesBefore)
	}
	if gs, err := s.Groups(ctx, domain); err != nil || len(gs) != 1 {
		t.Errorf("Groups after the removal = %+v, %v; want Sales kept", gs, err)
	}
	if got := runsOf(t, s, domain); len(got) != len(runsBefore) {
		t.Errorf("%d runs after the removal, want the %d there were", len(got), len(runsBefore))
	}

	tests := []struct{ name, domain string }{
		{"AlreadyRemoved", domain},
		{"NeverHadSettings", otherDomain},
		{"UnknownDomain", "unknown.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			history := settingsHistory(t, s, tc.domain)
			wantErr(t, s.RemoveSettings(ctx, tc.domain, "bob"), store.ErrNotFound)
			if now := settingsHistory(t, s, tc.domain); !reflect.DeepEqual(now, history) {
				t.Errorf("a refused RemoveSettings changed the history: %+v, was %+v", now, history)
			}
		})
	}

	// Made again, the domain goes on numbering: version 2 stays the removal.
	if v := putSettings(t, s, domain, settingsB, nil, "carol", 0); v.Version != 3 {
		t.Errorf("settings saved after the removal are version %d, want 3", v.Version)
	}
}

// putSettings saves settings as the next version of domain's settings and
// returns what was saved.
func putSettings(t *testing.T, s store.Store, domain, settings string, secret []byte, author string, expect int64) *store.SettingsVersion {
	t.Helper()
	v := &store.SettingsVersion{Domain: domain, Settings: []byte(settings), Secret: secret, Author: author}
	if err := s.PutSettings(t.Context(), v, expect); err != nil {
		t.Fatalf("PutSettings(%s, expect %d): %v", domain, expect, err)
	}
	if v.Version == 0 || v.Created.IsZero() {
		t.Errorf("PutSettings(%s) did not fill version and created: %+v", domain, v)
	}
	return v
}

func getSettings(t *testing.T, s store.Store, domain string, version int64) *store.SettingsVersion {
	t.Helper()
	v, err := s.Settings(t.Context(), domain, version)
	if err != nil {
		t.Fatalf("Settings(%s, %d): %v", domain, version, err)
	}
	return v
}

func settingsHistory(t *testing.T, s store.Store, domain string) []store.SettingsVersion {
	t.Helper()
	h, err := s.SettingsHistory(t.Context(), domain)
	if err != nil {
		t.Fatalf("SettingsHistory(%s): %v", domain, err)
	}
	return h
}

func storedDomains(t *testing.T, s store.Store) []store.SettingsVersion {
	t.Helper()
	ds, err := s.StoredDomains(t.Context())
	if err != nil {
		t.Fatalf("StoredDomains: %v", err)
	}
	return ds
}

// wantSettings compares a settings version read back with the one saved;
// Created may be rounded as the store keeps times, and a nil or empty
// Secret is the same.
func wantSettings(t *testing.T, got *store.SettingsVersion, want store.SettingsVersion) {
	t.Helper()
	if !sameTime(got.Created, want.Created) {
		t.Errorf("version %d of %s: created %v, want %v", want.Version, want.Domain, got.Created, want.Created)
	}
	g := *got
	g.Created = want.Created
	if len(g.Secret) == 0 && len(want.Secret) == 0 {
		g.Secret = want.Secret
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("settings version = %+v\nwant               %+v", g, want)
	}
}
