package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/storetest"
	"github.com/dirsync/dirsync/sdk"
)

// afters returns the Afters of changes, as a prewrite's Create takes them.
func afters(changes []store.Change) []*sdk.Mailbox {
	ms := make([]*sdk.Mailbox, len(changes))
	for i := range changes {
		ms[i] = changes[i].After
	}
	return ms
}

// openPrewrite opens a prewrite of example.com at its current generation,
// closed when the test ends.
func openPrewrite(tb testing.TB, s *Store) (store.Prewrite, *store.Run) {
	tb.Helper()
	run := newRun(tb, s)
	p, err := s.Prewrite(tb.Context(), "example.com", run.Generation)
	if err != nil {
		tb.Fatalf("Prewrite: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return p, run
}

// An open prewrite with rows written blocks the writes to its domain's
// mailboxes, groups and memberships only: the domain's lease, runs and
// settings, its readers and every other domain go on.
func TestPrewriteBlocksOnlyItsDomainsWrites(t *testing.T) {
	ctx := t.Context()
	s := storeWithGroups(t)
	if _, err := s.AcquireLease(ctx, "example.com", "runner", time.Minute); err != nil {
		t.Fatal(err)
	}
	p, _ := openPrewrite(t, s)
	if err := p.Create(ctx, afters(createChanges(1000))); err != nil {
		t.Fatal(err)
	}

	quick := func(name string, fn func(context.Context) error) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := fn(c); err != nil {
			t.Errorf("%s during a prewrite: %v", name, err)
		}
	}
	quick("AcquireLease by another holder", func(c context.Context) error {
		_, err := s.AcquireLease(c, "example.com", "other", time.Minute)
		if errors.As(err, new(*store.BusyError)) {
			return nil
		}
		return fmt.Errorf("%v, want a *store.BusyError", err)
	})
	quick("RenewLease", func(c context.Context) error { return s.RenewLease(c, "example.com", "runner", time.Minute) })
	quick("StartRun", func(c context.Context) error {
		return s.StartRun(c, &store.Run{Domain: "example.com", Holder: "runner"})
	})
	quick("RecordRun", func(c context.Context) error {
		return s.RecordRun(c, &store.Run{Domain: "example.com", Outcome: store.OutcomeFailed})
	})
	quick("PutSettings", func(c context.Context) error {
		return s.PutSettings(c, &store.SettingsVersion{Domain: "example.com", Settings: []byte(`{}`), Author: "cli"}, 0)
	})
	quick("Snapshot", func(c context.Context) error {
		snap, err := s.Snapshot(c, "example.com", nil)
		if err == nil && len(snap.Mailboxes) != 0 {
			err = fmt.Errorf("it sees %d uncommitted mailboxes", len(snap.Mailboxes))
		}
		return err
	})
	quick("AddGroup in another domain", func(c context.Context) error { return s.AddGroup(c, "other.com", "Sales") })
	quick("AddMailbox in another domain", func(c context.Context) error {
		_, err := s.AddMailbox(c, "other.com", store.Mailbox{Primary: "olga@other.com"})
		return err
	})
	quick("Apply to another domain", func(c context.Context) error {
		return s.Apply(c, "other.com", []store.Change{{Kind: sdk.ChangeCreate,
			After: &store.Mailbox{DirID: "o1", Primary: "otto@other.com", Kind: sdk.KindUser, Source: sdk.SourceLDAP}}},
			&store.Run{Outcome: store.OutcomeOK, Generation: 2})
	})

	// A hand-made change to the domain waits for the run.
	c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := s.AddGroup(c, "example.com", "Later"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("AddGroup to the domain during a prewrite = %v, want it to wait", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AddGroup(ctx, "example.com", "Later"); err != nil {
		t.Errorf("AddGroup after Close: %v", err)
	}
}

// A cancelled Create, or Apply, rolls everything back and frees the
// domain.
func TestPrewriteCancelled(t *testing.T) {
	for _, at := range []string{"Create", "Apply"} {
		t.Run(at, func(t *testing.T) {
			s := storeWithGroups(t)
			changes := createChanges(100_000)
			p, run := openPrewrite(t, s)
			ctx, cancel := context.WithCancel(t.Context())
			var err error
			if at == "Create" {
				time.AfterFunc(50*time.Millisecond, cancel)
				err = p.Create(ctx, afters(changes))
			} else {
				if err := p.Create(ctx, afters(changes[:50_000])); err != nil {
					t.Fatal(err)
				}
				time.AfterFunc(50*time.Millisecond, cancel)
				err = p.Apply(ctx, changes, run)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%s = %v, want context.Canceled", at, err)
			}
			p.Close()
			if ms, err := s.Mailboxes(t.Context(), "example.com"); err != nil || len(ms) != 0 {
				t.Errorf("a cancelled prewrite left %d mailboxes (%v)", len(ms), err)
			}
			if runs, err := storetest.AllRuns(t.Context(), s, "example.com"); err != nil || len(runs) != 0 {
				t.Errorf("a cancelled prewrite recorded %d runs (%v)", len(runs), err)
			}
			if err := s.AddGroup(t.Context(), "example.com", "Later"); err != nil {
				t.Errorf("AddGroup after the cancelled prewrite: %v", err)
			}
		})
	}
}

// When another domain takes mailbox ids between two Creates, the undo
// hands the prewrite's ids out again, ascending, and then new ones: every
// id is distinct.
func TestPrewriteUndoWithIDsTakenBetween(t *testing.T) {
	ctx := t.Context()
	s := storeWithGroups(t)
	changes := createChanges(40)
	p, run := openPrewrite(t, s)
	if err := p.Create(ctx, afters(changes[:10])); err != nil {
		t.Fatal(err)
	}
	other := []store.Change{{Kind: sdk.ChangeCreate,
		After: &store.Mailbox{DirID: "o1", Primary: "otto@other.com", Kind: sdk.KindUser, Source: sdk.SourceLDAP}}}
	if err := s.Apply(ctx, "other.com", other, &store.Run{Outcome: store.OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	if err := p.Create(ctx, afters(changes[10:20])); err != nil {
		t.Fatal(err)
	}
	changes[15].After.DisplayName = "Changed" // undoes all
	if err := p.Apply(ctx, changes, run); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(ctx, "example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	otto, err := s.Mailboxes(ctx, "other.com")
	if err != nil || len(otto) != 1 {
		t.Fatalf("other.com: %v, %v", otto, err)
	}
	var ids []int64
	for _, c := range changes {
		i := slices.IndexFunc(snap.Mailboxes, func(m store.Mailbox) bool { return m.Primary == c.After.Primary })
		if i < 0 {
			t.Fatalf("%s not created", c.After.Primary)
		}
		ids = append(ids, snap.Mailboxes[i].ID)
	}
	if !slices.IsSorted(ids) || slices.Contains(ids, otto[0].ID) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Errorf("ids %v (otto has %d): want them rising, distinct, not otto's", ids, otto[0].ID)
	}
	if ids[0] != 1 || ids[9] != 10 || ids[10] != otto[0].ID+1 {
		t.Errorf("ids %v: want the prewrite's 1…10 and %d… given out again first", ids, otto[0].ID+1)
	}
}

// BenchmarkFirstSync20k compares the two ways of writing a first sync of
// 20,000 users: one Apply after the read, or Prewrite and a Create of
// each 500 while the directory is read, then the Apply. apply-ms is what
// the run spends writing after the read: with a prewrite, the rest
// overlaps the read.
func BenchmarkFirstSync20k(b *testing.B) {
	changes := createChanges(20_000)
	b.Run("Apply", func(b *testing.B) {
		var after time.Duration
		for b.Loop() {
			b.StopTimer()
			s := storeWithGroups(b)
			run := newRun(b, s)
			b.StartTimer()
			t0 := time.Now()
			if err := s.Apply(b.Context(), "example.com", changes, run); err != nil {
				b.Fatal(err)
			}
			after += time.Since(t0)
		}
		b.ReportMetric(float64(after.Milliseconds())/float64(b.N), "apply-ms/op")
	})
	b.Run("Prewrite", func(b *testing.B) {
		var after time.Duration
		ms := afters(changes)
		for b.Loop() {
			b.StopTimer()
			s := storeWithGroups(b)
			run := newRun(b, s)
			b.StartTimer()
			p, err := s.Prewrite(b.Context(), "example.com", run.Generation)
			if err != nil {
				b.Fatal(err)
			}
			for batch := range slices.Chunk(ms, 500) {
				if err := p.Create(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			t0 := time.Now()
			if err := p.Apply(b.Context(), changes, run); err != nil {
				b.Fatal(err)
			}
			after += time.Since(t0)
			p.Close()
		}
		b.ReportMetric(float64(after.Milliseconds())/float64(b.N), "apply-ms/op")
	})
}

// TestPrewriteConnectionLost: the prewrite's connection goes during the
// read (the server ends it, or its idle_in_transaction_session_timeout
// does), and its transaction with it. Nothing was committed, and Apply
// writes as Store.Apply would, in a transaction of its own: the run's
// 3,000 creates.
func TestPrewriteConnectionLost(t *testing.T) {
	for _, when := range []string{"between creates", "before apply", "idle timeout"} {
		t.Run(when, func(t *testing.T) {
			ctx := t.Context()
			s := storeWithGroups(t)
			changes := createChanges(3000)
			p, run := openPrewrite(t, s)
			pw := p.(*prewrite)
			if err := p.Create(ctx, afters(changes[:1000])); err != nil {
				t.Fatal(err)
			}
			if when == "idle timeout" {
				if _, err := pw.tx.Exec(ctx, `SET idle_in_transaction_session_timeout = 300`); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Second)
			} else {
				if _, err := s.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pw.tx.Conn().PgConn().PID()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if when != "before apply" {
				if err := p.Create(ctx, afters(changes[1000:2000])); err == nil {
					t.Fatal("a Create on a connection that went succeeded")
				}
			}
			if err := p.Apply(ctx, changes, run); err != nil {
				t.Fatalf("Apply after the connection went: %v", err)
			}
			ms, err := s.Mailboxes(ctx, "example.com")
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 3000 {
				t.Errorf("%d mailboxes, want the run's 3000", len(ms))
			}
		})
	}
}
