package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// recordRuns records n failed runs of domain, each with one change and
// settings version i+1, and returns their ids in the order recorded.
// started gives the start of run i.
func recordRuns(t *testing.T, s store.Store, domain string, n int, started func(i int) time.Time) []int64 {
	t.Helper()
	ids := make([]int64, n)
	for i := range ids {
		run := newRun(domain, started(i))
		run.Outcome, run.Stage, run.Error = store.OutcomeStopped, "guard", fmt.Sprintf("stop %d", i)
		run.SettingsVersion = int64(i + 1)
		run.Intended = &store.Counts{Deleted: 1}
		run.Changes = []store.RunChange{{Kind: "delete", Address: fmt.Sprintf("user%d@%s", i, domain),
			Before: &store.MailboxView{Primary: fmt.Sprintf("user%d@%s", i, domain), Kind: sdk.KindUser}}}
		if err := s.RecordRun(t.Context(), run); err != nil {
			t.Fatalf("RecordRun %d: %v", i, err)
		}
		ids[i] = run.ID
	}
	return ids
}

func testRunsPage(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	// Start times out of id order: pages go by id, not by start.
	ids := recordRuns(t, s, domain, 7, func(i int) time.Time { return t0.Add(time.Duration((i*5)%7) * time.Hour) })
	recordRuns(t, s, otherDomain, 2, func(int) time.Time { return t0 })
	ids = append(ids, recordRuns(t, s, domain, 1, func(int) time.Time { return t0.Add(-time.Hour) })...)

	var got []int64
	before := int64(0)
	for pages := 0; ; pages++ {
		if pages > len(ids) {
			t.Fatalf("paging did not end: %v", got)
		}
		page, err := s.RunsPage(ctx, domain, 3, before)
		if err != nil {
			t.Fatalf("RunsPage(limit 3, before %d): %v", before, err)
		}
		if len(page) > 3 {
			t.Fatalf("RunsPage(limit 3) gave %d runs", len(page))
		}
		for _, r := range page {
			got = append(got, r.ID)
			if r.Domain != domain {
				t.Errorf("RunsPage of %s gave run %d of %s", domain, r.ID, r.Domain)
			}
			if r.Changes != nil {
				t.Errorf("RunsPage gave run %d with its changes", r.ID)
			}
			full, err := s.Run(ctx, domain, r.ID)
			if err != nil {
				t.Fatalf("Run(%d): %v", r.ID, err)
			}
			if len(full.Changes) != 1 {
				t.Errorf("Run(%d) has %d changes, want 1", r.ID, len(full.Changes))
			}
			full.Changes = nil
			if !reflect.DeepEqual(r, *full) {
				t.Errorf("RunsPage run = %+v\nRun gives    %+v", r, *full)
			}
		}
		if len(page) < 3 {
			break
		}
		before = page[len(page)-1].ID
	}
	want := make([]int64, len(ids))
	for i, id := range ids {
		want[len(ids)-1-i] = id
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("paged run ids = %v, want %v (newest first by id)", got, want)
	}

	// LastRuns: the newest run of each domain, as RunsPage gives it.
	last, err := s.LastRuns(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{domain, otherDomain} {
		page, err := s.RunsPage(ctx, d, 1, 0)
		if err != nil || len(page) != 1 {
			t.Fatalf("RunsPage(%s, 1): %v", d, err)
		}
		if got, ok := last[d]; !ok || !reflect.DeepEqual(got, page[0]) {
			t.Errorf("LastRuns()[%s] = %+v, want %+v", d, got, page[0])
		}
	}
	if len(last) != 2 {
		t.Errorf("LastRuns has %d domains, want 2", len(last))
	}
}

func testRunsPageLimits(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now()
	ids := recordRuns(t, s, domain, 60, func(i int) time.Time { return now.Add(time.Duration(i) * time.Second) })
	newest := ids[len(ids)-1]

	tests := []struct {
		name     string
		limit    int
		beforeID int64
		want     int   // runs in the page
		first    int64 // id of its first run
	}{
		{"ZeroMeans50", 0, 0, 50, newest},
		{"One", 1, 0, 1, newest},
		{"Max1000", 1000, 0, 60, newest},
		{"BeforeAnIDPastTheNewest", 10, newest + 1000, 10, newest},
		{"BeforeTheNewest", 10, newest, 10, ids[len(ids)-2]},
		{"BeforeTheOldest", 10, ids[0], 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page, err := s.RunsPage(ctx, domain, tc.limit, tc.beforeID)
			if err != nil {
				t.Fatalf("RunsPage(%d, %d): %v", tc.limit, tc.beforeID, err)
			}
			if len(page) != tc.want || (len(page) > 0 && page[0].ID != tc.first) {
				var first int64
				if len(page) > 0 {
					first = page[0].ID
				}
				t.Errorf("RunsPage(%d, %d) = %d runs from id %d, want %d from id %d",
					tc.limit, tc.beforeID, len(page), first, tc.want, tc.first)
			}
		})
	}

	bad := []struct {
		name     string
		limit    int
		beforeID int64
	}{
		{"LimitAbove1000", 1001, 0},
		{"NegativeLimit", -1, 0},
		{"NegativeBeforeID", 10, -1},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if page, err := s.RunsPage(ctx, domain, tc.limit, tc.beforeID); err == nil {
				t.Errorf("RunsPage(%d, %d) = %d runs, want an error", tc.limit, tc.beforeID, len(page))
			}
		})
	}

	if page, err := s.RunsPage(ctx, "unknown.example.com", 0, 0); err != nil || len(page) != 0 {
		t.Errorf("RunsPage of a domain without runs = %+v, %v; want none", page, err)
	}
}

func testRunOne(t *testing.T, s store.Store) {
	ctx := t.Context()
	addGroups(t, s, domain, "Sales")
	run := runAt(t, s, domain)
	run.SettingsVersion = 4
	run.Settings = `{"sync":true}`
	if err := s.Apply(ctx, domain, []store.Change{create("guid-a", "alice@example.com", []string{"al@example.com"}, "Sales")}, run); err != nil {
		t.Fatal(err)
	}
	other := newRun(otherDomain, time.Now())
	if err := s.RecordRun(ctx, other); err != nil {
		t.Fatal(err)
	}

	got, err := s.Run(ctx, domain, run.ID)
	if err != nil {
		t.Fatalf("Run(%s, %d): %v", domain, run.ID, err)
	}
	listed := runsOf(t, s, domain)
	if len(listed) != 1 || !reflect.DeepEqual(*got, listed[0]) {
		t.Errorf("Run = %+v\nRuns gives %+v", *got, listed)
	}
	if got.SettingsVersion != 4 || len(got.Changes) != 1 || got.Changes[0].After == nil ||
		got.Changes[0].After.Primary != "alice@example.com" {
		t.Errorf("Run = %+v, want settings version 4 and the create of alice@example.com", *got)
	}

	tests := []struct {
		name   string
		domain string
		id     int64
	}{
		{"RunOfAnotherDomain", domain, other.ID},
		{"AskedAsAnotherDomain", otherDomain, run.ID},
		{"NoSuchID", domain, other.ID + 1000},
		{"ZeroID", domain, 0},
		{"UnknownDomain", "unknown.example.com", run.ID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := s.Run(ctx, tc.domain, tc.id)
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Run(%s, %d) = %+v, %v; want ErrNotFound", tc.domain, tc.id, r, err)
			}
		})
	}
}

func testPruneRuns(t *testing.T, s store.Store) {
	ctx := t.Context()
	cut := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	record := func(d string, started, ended time.Time, outcome string) int64 {
		t.Helper()
		run := &store.Run{Domain: d, Started: started, Ended: ended, Outcome: outcome, Error: "x"}
		if err := s.RecordRun(ctx, run); err != nil {
			t.Fatal(err)
		}
		return run.ID
	}

	// A run that its holder left running long ago: only StartRun of the
	// next run of its domain may end it.
	acquire(t, s, domain, "host-a", leaseTTL)
	running := &store.Run{Domain: domain, Started: cut.Add(-48 * time.Hour), Holder: "host-a"}
	if err := s.StartRun(ctx, running); err != nil {
		t.Fatal(err)
	}
	keep := map[int64]string{
		running.ID: "running",
		record(domain, cut.Add(-time.Hour), cut.Add(time.Hour), store.OutcomeOK):                 "started before the cut, ended after",
		record(domain, cut.Add(-time.Minute), cut, store.OutcomeFailed):                          "ended at the cut",
		record(otherDomain, cut.Add(time.Hour), cut.Add(time.Hour+time.Second), store.OutcomeOK): "recent",
		record(domain, cut.Add(time.Hour), time.Time{}, store.OutcomeFailed):                     "recorded without an end, started after the cut",
	}
	prune := map[int64]string{
		record(domain, cut.Add(-2*time.Hour), cut.Add(-time.Hour), store.OutcomeOK):                       "ok, old",
		record(otherDomain, cut.Add(-72*time.Hour), cut.Add(-72*time.Hour), store.OutcomeStopped):         "stopped, old, another domain",
		record(domain, cut.Add(-2*time.Hour), time.Time{}, store.OutcomeFailed):                           "recorded without an end, started before the cut",
		record(domain, cut.Add(-2*time.Second), cut.Add(-time.Second), store.OutcomeCancelled):            "cancelled, just before the cut",
		record("third.example.com", cut.Add(-3*time.Hour), cut.Add(-2*time.Hour), store.OutcomeAbandoned): "abandoned, the newest id",
	}

	n, err := s.PruneRuns(ctx, cut)
	if err != nil {
		t.Fatalf("PruneRuns: %v", err)
	}
	if n != int64(len(prune)) {
		t.Errorf("PruneRuns = %d, want %d", n, len(prune))
	}
	left := map[int64]bool{}
	for _, d := range []string{domain, otherDomain, "third.example.com"} {
		for _, r := range runsOf(t, s, d) {
			left[r.ID] = true
		}
	}
	for id, what := range keep {
		if !left[id] {
			t.Errorf("PruneRuns deleted run %d (%s)", id, what)
		}
	}
	for id, what := range prune {
		if left[id] {
			t.Errorf("PruneRuns kept run %d (%s)", id, what)
		}
	}
	if n, err := s.PruneRuns(ctx, cut); err != nil || n != 0 {
		t.Errorf("PruneRuns again = %d, %v; want 0", n, err)
	}

	// Ids are not reused, not even the highest one pruned.
	var highest int64
	for id := range prune {
		highest = max(highest, id)
	}
	if id := record("third.example.com", time.Now(), time.Now(), store.OutcomeOK); id <= highest {
		t.Errorf("a run recorded after pruning run %d got id %d", highest, id)
	}
}
