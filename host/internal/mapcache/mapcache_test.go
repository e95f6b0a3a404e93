package mapcache

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
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

	c := Open(path, ctx, true)
	if _, ok := c.Get(k); ok {
		t.Fatal("an empty cache has an entry")
	}
	c.Put(k, &in)
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c = Open(path, ctx, true)
	got, ok := c.Get(k)
	if !ok || got.Mailbox == nil || got.Mailbox.Primary != "a@example.com" || got.Mailbox.Aliases[0] != "b@example.com" || c.Hits() != 1 {
		t.Fatalf("Get after Save/Open = %+v, %v", got.Mailbox, ok)
	}

	// Another context: same groups in another order is the same context;
	// another group, config or module is not.
	same, _ := NewContext([]byte("module"), sdk.Info{Name: "p", Version: "1"}, map[string]any{"x": true}, sdk.Domain{Name: "example.com", Groups: []string{"A", "B"}})
	if _, ok := Open(path, same, false).Get(k); !ok {
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
		if _, ok := Open(path, oc, false).Get(k); ok {
			t.Errorf("a cache written under another %s was used", name)
		}
	}

	// A damaged file is an empty cache, never an error.
	b, _ := os.ReadFile(path)
	os.WriteFile(path, b[:len(b)-3], 0o644)
	if _, ok := Open(path, ctx, true).Get(k); ok {
		t.Error("a truncated file gave an entry")
	}
}

// TestWritesOnlyWhatIsSaved: a cache opened without save (a preview)
// writes nothing, whatever it is asked; one whose run ends without Save
// (a failed run) leaves no file behind and the last saved one as it was;
// Save keeps exactly the records the run looked up or put.
func TestWritesOnlyWhatIsSaved(t *testing.T) {
	dir := t.TempDir()
	path, ctx, keys := saved(t, dir, 5000)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	files := func() []string {
		t.Helper()
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
	one := filepath.Base(path)
	mapped := func(c *Cache, k Key, i int) {
		c.Put(k, &sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: fmt.Sprintf("new%d@example.com", i)}})
	}
	fresh := func(i int) Key {
		e := entry()
		e.ID = fmt.Sprint("new-", i)
		return EntryKey(&e)
	}

	c := Open(path, ctx, false)
	for i, k := range keys {
		c.Get(k)
		mapped(c, fresh(i), i)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := files(); len(got) != 1 || got[0] != one {
		t.Errorf("a cache opened without save wrote: %v", got)
	}

	c = Open(path, ctx, true)
	for i, k := range keys {
		c.Get(k)
		mapped(c, fresh(i), i)
	}
	c.Close()
	if got := files(); len(got) != 1 || got[0] != one {
		t.Errorf("a run without Save left: %v", got)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Error("a run without Save changed the saved file")
	}

	// Half the old keys looked up, 100 new ones put: those and only those
	// are kept.
	c = Open(path, ctx, true)
	for _, k := range keys[:len(keys)/2] {
		c.Get(k)
	}
	for i := range 100 {
		mapped(c, fresh(i), i)
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get(keys[0]); ok {
		t.Error("Get found an intent after Save, which lets go of the file read")
	}
	c.Close()
	if got := files(); len(got) != 1 || got[0] != one {
		t.Errorf("after Save: %v", got)
	}
	news := make([]Key, 100)
	for i := range news {
		news[i] = fresh(i)
	}
	if n := hits(path, ctx, keys[:len(keys)/2]); n != len(keys)/2 {
		t.Errorf("%d of the %d looked-up keys kept", n, len(keys)/2)
	}
	if n := hits(path, ctx, keys[len(keys)/2:]); n != 0 {
		t.Errorf("%d keys kept that the run did not look up", n)
	}
	if n := hits(path, ctx, news); n != len(news) {
		t.Errorf("%d of the %d put keys kept", n, len(news))
	}

	// A second Save keeps what the first saved.
	saved1, _ := os.ReadFile(path)
	mapped(c, fresh(1000), 1000)
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, saved1) {
		t.Error("a second Save changed the saved file")
	}
	if got := files(); len(got) != 1 || got[0] != one {
		t.Errorf("after a second Save: %v", got)
	}

	// A killed run's file (unwritten for over an hour) goes when a run
	// that saves opens the cache; a running one's, and another cache's,
	// stay; a preview removes nothing.
	stale := filepath.Join(dir, "."+one+".tmp-111")
	running := filepath.Join(dir, "."+one+".tmp-222")
	other := filepath.Join(dir, ".other.com.bin.tmp-333")
	for _, f := range []string{stale, running, other} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, f := range []string{stale, other} {
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	Open(path, ctx, false).Close()
	if got := files(); len(got) != 4 {
		t.Errorf("a preview's Open removed files: %v", got)
	}
	Open(path, ctx, true).Close()
	if got := files(); len(got) != 3 || slices.Contains(got, filepath.Base(stale)) {
		t.Errorf("after Open: %v, want all but %s", got, filepath.Base(stale))
	}
	os.Remove(running)
	os.Remove(other)

	// A run that looks up nothing saves an empty cache.
	c = Open(path, ctx, true)
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	if n := hits(path, ctx, news); n != 0 {
		t.Errorf("an empty run's Save kept %d keys", n)
	}
}

// saved writes a cache of n mailbox intents under ctx and returns the path
// and the keys.
func saved(t *testing.T, dir string, n int) (string, Context, []Key) {
	t.Helper()
	path := filepath.Join(dir, "example.com.bin")
	ctx := Context{7}
	c := Open(path, ctx, true)
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	keys := make([]Key, n)
	for i := range keys {
		e := entry()
		e.ID = fmt.Sprint("id-", i)
		keys[i] = EntryKey(&e)
		c.Put(keys[i], &sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: fmt.Sprintf("user%d@example.com", i)}})
	}
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	return path, ctx, keys
}

// hits opens the cache at path and looks every key up.
func hits(path string, ctx Context, keys []Key) int {
	c := Open(path, ctx, false)
	for _, k := range keys {
		c.Get(k)
	}
	return c.Hits()
}

// TestDamagedFile checks that a cache file is used only when its checksum
// holds: a flipped byte, a truncation, an edit or a file of the former
// format is an empty cache, and no panic.
func TestDamagedFile(t *testing.T) {
	path, ctx, keys := saved(t, t.TempDir(), 1000)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := hits(path, ctx, keys); n != len(keys) {
		t.Fatalf("the intact file gives %d hits, want %d", n, len(keys))
	}
	damaged := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if n := hits(path, ctx, keys); n != 0 {
			t.Errorf("%s: %d hits, want none", name, n)
		}
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	damaged("a bit flipped in the middle", flip(len(good)/2))
	damaged("a byte changed in the middle", func() []byte { b := bytes.Clone(good); b[len(b)/2] = ^b[len(b)/2]; return b }())
	damaged("the last byte flipped", flip(len(good)-1))
	damaged("truncated by one byte", good[:len(good)-1])
	damaged("truncated in the middle", good[:len(good)/2])
	damaged("truncated in the header", good[:headerSize-1])
	damaged("a byte appended", append(bytes.Clone(good), 0))
	damaged("empty", nil)
	// An edited record with a length that still parses.
	edited := bytes.Replace(good, []byte("user500@"), []byte("admin00@"), 1)
	if bytes.Equal(edited, good) {
		t.Fatal("no user500@ in the file")
	}
	damaged("a record's value edited", edited)
	// The same records under the format before the checksum.
	v1 := append([]byte("dirsync-mapcache-1\n"), ctx[:]...)
	damaged("format 1", append(v1, good[headerSize:]...))

	// Every single byte of a small file matters.
	path, ctx, keys = saved(t, t.TempDir(), 3)
	good, _ = os.ReadFile(path)
	for i := range good {
		damaged(fmt.Sprintf("byte %d of %d flipped", i, len(good)), flip(i))
	}
	for i := range good {
		damaged(fmt.Sprintf("truncated to %d of %d bytes", i, len(good)), good[:i])
	}
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if n := hits(path, ctx, keys); n != len(keys) {
		t.Errorf("the restored file gives %d hits, want %d", n, len(keys))
	}
}

// TestFolder checks the map cache's folder: made with mode 0700 when
// missing, refused when others may write to it or another user owns it.
// A refused folder is no cache: nothing read, nothing written, and the
// error (from Err and Save) names the folder and the fix.
func TestFolder(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	t.Run("created 0700", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "cache", "mapcache")
		path, ctx, keys := saved(t, dir, 10)
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("%s: %v, %v; want mode 0700", d, st.Mode(), err)
			}
		}
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", path, st.Mode(), err)
		}
		if n := hits(path, ctx, keys); n != len(keys) {
			t.Errorf("%d hits, want %d", n, len(keys))
		}
	})
	refused := func(t *testing.T, dir string, says ...string) {
		t.Helper()
		path := filepath.Join(dir, "example.com.bin")
		before, _ := os.ReadFile(path)
		c := Open(path, Context{7}, true)
		err := c.Err()
		if err == nil {
			t.Fatal("the folder is used")
		}
		for _, s := range says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Err() = %v\nwant it to say %q", err, s)
			}
		}
		k := EntryKey(ptr(entry()))
		if _, ok := c.Get(k); ok || c.Hits() != 0 {
			t.Error("a refused folder's file was read")
		}
		c.Put(k, &sdk.Intent{Kind: sdk.IntentSkip, Reason: "x"})
		if serr := c.Save(); serr == nil || serr.Error() != err.Error() {
			t.Errorf("Save() = %v, want %v", serr, err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Error("Save wrote to a refused folder")
		}
	}
	t.Run("writable by others", func(t *testing.T) {
		dir := t.TempDir()
		saved(t, dir, 10) // a valid file: refused all the same
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, "map cache not used: cache directory "+dir+" is writable by group and others (mode 0777)", "chmod go-w "+dir)
	})
	t.Run("writable by group", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o770); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, "cache directory "+dir+" is writable by its group", "chmod go-w "+dir)
	})
	t.Run("another owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("only root can give a directory away")
		}
		dir := t.TempDir()
		saved(t, dir, 10)
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		refused(t, dir, "cache directory "+dir+" is owned by uid 65534", "chown 0 "+dir)
	})
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
	c := Open(filepath.Join(b.TempDir(), "cache"), Context{}, true)
	defer c.Close()
	in := sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: "user1@example.com",
		Aliases: []string{"u1@example.org"}, DisplayName: "User 1", MemberOf: []string{"CN=Sales,DC=example,DC=com", "CN=All,DC=example,DC=com"}}}
	k := EntryKey(ptr(entry()))
	enc, err := abi.AppendIntent(nil, &in)
	if err != nil {
		b.Fatal(err)
	}
	c.old[k] = enc
	for b.Loop() {
		c.Put(k, &in)
		if _, ok := c.Get(k); !ok {
			b.Fatal("no intent")
		}
	}
}

// benchCache saves a cache of n mailbox intents, as a run over n entries
// leaves it, and returns its path and context.
func benchCache(b *testing.B, n int) (string, Context, []Key) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "mapcache", "example.com.bin")
	ctx := Context{1}
	c := Open(path, ctx, true)
	keys := make([]Key, n)
	for i := range keys {
		e := entry()
		e.ID = fmt.Sprintf("id-%d", i)
		keys[i] = EntryKey(&e)
		in := sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Kind: sdk.KindUser, Primary: fmt.Sprintf("user%d@example.com", i),
			Aliases: []string{fmt.Sprintf("u%d@example.org", i)}, DisplayName: fmt.Sprintf("User %d", i), MemberOf: []string{"CN=Sales,DC=example,DC=com", "CN=All,DC=example,DC=com"}}}
		c.Put(keys[i], &in)
	}
	if err := c.Save(); err != nil {
		b.Fatal(err)
	}
	return path, ctx, keys
}

// BenchmarkOpen reads a cache file of 100,000 intents, as a run starts.
//
//	go test -run '^$' -bench Open ./host/internal/mapcache
func BenchmarkOpen(b *testing.B) {
	path, ctx, keys := benchCache(b, 100_000)
	if st, err := os.Stat(path); err == nil {
		b.SetBytes(st.Size())
	}
	for b.Loop() {
		c := Open(path, ctx, true)
		if _, ok := c.Get(keys[len(keys)/2]); !ok {
			b.Fatal("no intent")
		}
	}
}

// BenchmarkSave reads a cache file of 100,000 intents, looks every one up
// and writes them to the new file, as a run of unchanged entries does.
//
//	go test -run '^$' -bench Save ./host/internal/mapcache
func BenchmarkSave(b *testing.B) {
	path, ctx, keys := benchCache(b, 100_000)
	for b.Loop() {
		c := Open(path, ctx, true)
		for _, k := range keys {
			c.Get(k)
		}
		if err := c.Save(); err != nil {
			b.Fatal(err)
		}
	}
}
