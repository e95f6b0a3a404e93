package host_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/store"
)

// TestUnchangedDeltaMovesTheCookie: a write outside the domain's entries
// (here the reader's own entry, which the filter does not match) moves the
// directory's cookie on; the delta that finds nothing changed keeps its
// entries and moves the kept cookie on with it, so that the next delta
// does not read from the older point again.
func TestUnchangedDeltaMovesTheCookie(t *testing.T) {
	e := newLiveEnv(t)
	ctx := context.Background()
	cookie := func() []byte {
		t.Helper()
		st, err := e.st.DirStateHead(ctx, "example.com")
		if err != nil || st == nil {
			t.Fatalf("kept state %v, %v", st, err)
		}
		return st.Cookie
	}
	before := cookie()
	if err := e.srv.Replace("cn=reader,dc=example,dc=com", "description", "a write the domain does not see"); err != nil {
		t.Fatal(err)
	}
	rep, err := e.h.Run(ctx, "example.com", host.RunOptions{})
	if err != nil || rep.Read != store.ReadDelta || !rep.Unchanged {
		t.Fatalf("read %q unchanged %v (%v), want an unchanged delta", rep.Read, rep.Unchanged, err)
	}
	moved := cookie()
	if bytes.Equal(moved, before) {
		t.Errorf("the kept cookie stayed %q after a delta that read past it", before)
	}
	if rep, err = e.h.Run(ctx, "example.com", host.RunOptions{DryRun: true}); err != nil || !rep.Unchanged {
		t.Fatalf("dry run: unchanged %v (%v)", rep.Unchanged, err)
	}
	if rep, err = e.h.Run(ctx, "example.com", host.RunOptions{}); err != nil || !rep.Unchanged {
		t.Fatalf("then: unchanged %v (%v)", rep.Unchanged, err)
	}
	if got := cookie(); !bytes.Equal(got, moved) {
		t.Errorf("the kept cookie moved from %q to %q although nothing was written", moved, got)
	}
	// A change after it is read from the moved cookie.
	if err := e.srv.Replace("cn=Alice Anders,ou=People,dc=example,dc=com", "displayName", "Alice A."); err != nil {
		t.Fatal(err)
	}
	if rep, err = e.h.Run(ctx, "example.com", host.RunOptions{}); err != nil || rep.Read != store.ReadDelta || rep.Counts.Updated != 1 {
		t.Errorf("a change after: read %q, updated %d (%v)", rep.Read, rep.Counts.Updated, err)
	}
}
