package mapcache

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dirsync/dirsync/sdk"
)

func entry() sdk.Entry {
	return sdk.Entry{ID: "id-1", DN: "cn=a,dc=example,dc=com", Attributes: map[string][]string{
		"mail": {"a@example.com", "b@example.com"}, "cn": {"a"}}}
}

func TestEntryKey(t *testing.T) {
	base := EntryKey(ptr(entry()))
	if base != EntryKey(ptr(entry())) {
		t.Fatal("the same entry gives two keys")
	}
	for _, tc := range []struct {
		name   string
		change func(*sdk.Entry)
	}{
		{"id", func(e *sdk.Entry) { e.ID = "id-2" }},
		{"dn", func(e *sdk.Entry) { e.DN = "cn=b,dc=example,dc=com" }},
		{"value", func(e *sdk.Entry) { e.Attributes["cn"] = []string{"b"} }},
		{"value order", func(e *sdk.Entry) { e.Attributes["mail"] = []string{"b@example.com", "a@example.com"} }},
		{"value moved between attributes", func(e *sdk.Entry) {
			e.Attributes["mail"] = []string{"a@example.com"}
			e.Attributes["cn"] = []string{"a", "b@example.com"}
		}},
		{"values run together", func(e *sdk.Entry) { e.Attributes["mail"] = []string{"a@example.comb@example.com"} }},
		{"new attribute", func(e *sdk.Entry) { e.Attributes["sn"] = []string{"x"} }},
		{"empty attribute", func(e *sdk.Entry) { e.Attributes["sn"] = nil }},
	} {
		e := entry()
		tc.change(&e)
		if EntryKey(&e) == base {
			t.Errorf("%s: a changed entry keeps its key", tc.name)
		}
	}
}

func ptr(e sdk.Entry) *sdk.Entry { return &e }

func TestSaveOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "example.com.bin")
	ctx, err := NewContext([]byte("module"), sdk.Info{Name: "p", Version: "1"}, map[string]any{"x": true}, sdk.Domain{Name: "example.com", Groups: []string{"B", "A"}})
	if err != nil {
		t.Fatal(err)
	}
	in := sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "a@example.com", Aliases: []string{"b@example.com"}}}
	k := EntryKey(ptr(entry()))

	c := Open(path, ctx)
	if _, ok := c.Get(k); ok {
		t.Fatal("an empty cache has an entry")
	}
	c.Put(k, &in)
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c = Open(path, ctx)
	got, ok := c.Get(k)
	if !ok || got.Mailbox == nil || got.Mailbox.Primary != "a@example.com" || got.Mailbox.Aliases[0] != "b@example.com" || c.Hits() != 1 {
		t.Fatalf("Get after Save/Open = %+v, %v", got.Mailbox, ok)
	}

	// Another context: same groups in another order is the same context;
	// another group, config or module is not.
	same, _ := NewContext([]byte("module"), sdk.Info{Name: "p", Version: "1"}, map[string]any{"x": true}, sdk.Domain{Name: "example.com", Groups: []string{"A", "B"}})
	if _, ok := Open(path, same).Get(k); !ok {
		t.Error("group order changed the context")
	}
	for name, other := range map[string]func() (Context, error){
		"group": func() (Context, error) {
			return NewContext([]byte("module"), sdk.Info{Name: "p", Version: "1"}, map[string]any{"x": true}, sdk.Domain{Name: "example.com", Groups: []string{"A"}})
		},
		"config": func() (Context, error) {
			return NewContext([]byte("module"), sdk.Info{Name: "p", Version: "1"}, map[string]any{"x": false}, sdk.Domain{Name: "example.com", Groups: []string{"A", "B"}})
		},
		"module": func() (Context, error) {
			return NewContext([]byte("module2"), sdk.Info{Name: "p", Version: "1"}, map[string]any{"x": true}, sdk.Domain{Name: "example.com", Groups: []string{"A", "B"}})
		},
		"version": func() (Context, error) {
			return NewContext([]byte("module"), sdk.Info{Name: "p", Version: "2"}, map[string]any{"x": true}, sdk.Domain{Name: "example.com", Groups: []string{"A", "B"}})
		},
	} {
		oc, err := other()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := Open(path, oc).Get(k); ok {
			t.Errorf("a cache written under another %s was used", name)
		}
	}

	// A damaged file is an empty cache, never an error.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, b[:len(b)-3], 0o644)
	if _, ok := Open(path, ctx).Get(k); ok {
		t.Error("a truncated file gave an entry")
	}
}

// BenchmarkEntryKey hashes an entry of 10 attributes, as the test
// directories have them.
//
//	go test -run '^$' -bench EntryKey ./host/internal/mapcache
func BenchmarkEntryKey(b *testing.B) {
	e := entry()
	for _, n := range []string{"sn", "givenName", "displayName", "userAccountControl", "objectGUID", "sAMAccountType", "memberOf", "proxyAddresses"} {
		e.Attributes[n] = []string{n + " value of some length", "CN=Group 1,OU=Groups,DC=example,DC=com"}
	}
	for b.Loop() {
		EntryKey(&e)
	}
}

// BenchmarkPutGet records and reads back a mailbox intent.
//
//	go test -run '^$' -bench PutGet ./host/internal/mapcache
func BenchmarkPutGet(b *testing.B) {
	c := Open(filepath.Join(b.TempDir(), "cache"), Context{})
	in := sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "user1@example.com",
		Aliases: []string{"u1@example.org"}, DisplayName: "User 1", MemberOf: []string{"CN=Sales,DC=example,DC=com", "CN=All,DC=example,DC=com"}}}
	k := EntryKey(ptr(entry()))
	for b.Loop() {
		c.Put(k, &in)
		c.old[k] = c.seen[k]
		if _, ok := c.Get(k); !ok {
			b.Fatal("no intent")
		}
	}
}
