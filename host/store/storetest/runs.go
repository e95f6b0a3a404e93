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
			if r.Changes != nil || r.ChangeCount != 1 {
				t.Errorf("RunsPage gave run %d with changes %+v, change count %d; want none, and 1", r.ID, r.Changes, r.ChangeCount)
			}
			one, err := s.Run(ctx, domain, r.ID)
			if err != nil {
				t.Fatalf("Run(%d): %v", r.ID, err)
			}
			if !reflect.DeepEqual(r, *one) {
				t.Errorf("RunsPage run = %+v\nRun gives    %+v", r, *one)
			}
			if rcs, err := s.RunChanges(ctx, domain, r.ID, 0, 0); err != nil || len(rcs) != 1 {
				t.Errorf("RunChanges(%d) = %+v, %v; want its one change", r.ID, rcs, err)
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
	listed, err := s.RunsPage(ctx, domain, 0, 0)
	if err != nil || len(listed) != 1 || !reflect.DeepEqual(*got, listed[0]) {
		t.Errorf("Run = %+v\nRunsPage gives %+v, %v", *got, listed, err)
	}
	if got.SettingsVersion != 4 || got.Changes != nil || got.ChangeCount != 1 {
		t.Errorf("Run = %+v, want settings version 4, no changes and a change count of 1", *got)
	}
	rcs, err := s.RunChanges(ctx, domain, run.ID, 0, 0)
	if err != nil || len(rcs) != 1 || rcs[0].After == nil || rcs[0].After.Primary != "alice@example.com" {
		t.Errorf("RunChanges = %+v, %v; want the create of alice@example.com", rcs, err)
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

// manyChanges are n changes of every kind a run records, each naming
// user<i> so that their order shows.
func manyChanges(n int) []store.RunChange {
	rcs := make([]store.RunChange, n)
	for i := range rcs {
		addr := fmt.Sprintf("user%05d@%s", i, domain)
		v := &store.MailboxView{Primary: addr, Aliases: []string{fmt.Sprintf("u%d@%s", i, domain)}, Kind: sdk.KindUser,
			DN: fmt.Sprintf("cn=user%d,dc=example,dc=com", i), Groups: []string{"Sales"}}
		switch i % 4 {
		case 0:
			rcs[i] = store.RunChange{Kind: "create", Address: addr, After: v}
		case 1:
			renamed := *v
			renamed.DisplayName = fmt.Sprintf("User %d", i)
			rcs[i] = store.RunChange{Kind: "update", Address: addr, Before: v, After: &renamed}
		case 2:
			rcs[i] = store.RunChange{Kind: "delete", Address: addr, Before: v}
		default:
			rcs[i] = store.RunChange{Kind: "add_member", Address: addr, Group: "Sales"}
		}
	}
	return rcs
}

func testRunChanges(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 1234
	all := manyChanges(n)
	big := newRun(domain, time.Now())
	big.Outcome, big.Stage, big.Intended = store.OutcomeStopped, "guard", &store.Counts{Created: n}
	big.Changes = all
	if err := s.RecordRun(ctx, big); err != nil {
		t.Fatal(err)
	}
	empty := newRun(domain, time.Now())
	empty.Outcome, empty.Stage = store.OutcomeFailed, "fetch"
	if err := s.RecordRun(ctx, empty); err != nil {
		t.Fatal(err)
	}
	other := newRun(otherDomain, time.Now())
	other.Outcome, other.Changes = store.OutcomeFailed, manyChanges(3)
	if err := s.RecordRun(ctx, other); err != nil {
		t.Fatal(err)
	}
	// Apply counts the changes it records of its own (run.Changes nil).
	addGroups(t, s, domain, "Sales")
	applied := runAt(t, s, domain)
	if err := s.Apply(ctx, domain, []store.Change{create("guid-a", "alice@example.com", nil, "Sales"),
		create("guid-b", "bob@example.com", nil)}, applied); err != nil {
		t.Fatal(err)
	}

	// ChangeCount: set by the writers, given by Run, RunsPage and
	// LastRuns, none of which gives the changes.
	if big.ChangeCount != n || empty.ChangeCount != 0 || applied.ChangeCount != 2 {
		t.Errorf("the writers set ChangeCount %d (RecordRun), %d (RecordRun, no changes), %d (Apply); want %d, 0 and 2",
			big.ChangeCount, empty.ChangeCount, applied.ChangeCount, n)
	}
	counts := map[int64]int{big.ID: n, empty.ID: 0, applied.ID: 2}
	page, err := s.RunsPage(ctx, domain, 0, 0)
	if err != nil || len(page) != 3 {
		t.Fatalf("RunsPage = %+v, %v; want 3 runs", page, err)
	}
	for _, r := range page {
		one, err := s.Run(ctx, domain, r.ID)
		if err != nil {
			t.Fatalf("Run(%d): %v", r.ID, err)
		}
		if r.ChangeCount != counts[r.ID] || one.ChangeCount != counts[r.ID] || r.Changes != nil || one.Changes != nil {
			t.Errorf("run %d: RunsPage gives change count %d (%d changes), Run %d (%d changes); want %d and no changes",
				r.ID, r.ChangeCount, len(r.Changes), one.ChangeCount, len(one.Changes), counts[r.ID])
		}
	}
	if last, err := s.LastRuns(ctx); err != nil || last[domain].ChangeCount != 2 || last[otherDomain].ChangeCount != 3 {
		t.Errorf("LastRuns = %+v, %v; want change counts 2 and 3", last, err)
	}

	// Pages of every size read the changes in their recorded order.
	for _, size := range []int{1, 7, 1000, 10000} {
		var got []store.RunChange
		for offset := 0; ; offset += size {
			p, err := s.RunChanges(ctx, domain, big.ID, offset, size)
			if err != nil {
				t.Fatalf("RunChanges(offset %d, limit %d): %v", offset, size, err)
			}
			if len(p) > size {
				t.Fatalf("RunChanges(offset %d, limit %d) gave %d changes", offset, size, len(p))
			}
			got = append(got, p...)
			if len(p) < size {
				break
			}
			if offset > n {
				t.Fatalf("paging with limit %d did not end", size)
			}
		}
		if !reflect.DeepEqual(got, all) {
			t.Errorf("the changes paged by %d are not the run's changes in order (%d of %d)", size, len(got), n)
		}
	}

	tests := []struct {
		name          string
		id            int64
		offset, limit int
		want          []store.RunChange
	}{
		{"ZeroMeans1000", big.ID, 0, 0, all[:1000]},
		{"ZeroMeans1000FromAnOffset", big.ID, 1000, 0, all[1000:]},
		{"Max10000", big.ID, 0, 10000, all},
		{"One", big.ID, 0, 1, all[:1]},
		{"TheLast", big.ID, n - 1, 10, all[n-1:]},
		{"AMiddlePage", big.ID, 500, 3, all[500:503]},
		{"OffsetAtTheEnd", big.ID, n, 10, nil},
		{"OffsetPastTheEnd", big.ID, n + 1000, 10, nil},
		{"RunWithoutChanges", empty.ID, 0, 0, nil},
		{"AppliedRunsOwnList", applied.ID, 0, 0, store.RunChanges([]store.Change{create("guid-a", "alice@example.com", nil, "Sales"),
			create("guid-b", "bob@example.com", nil)})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.RunChanges(ctx, domain, tc.id, tc.offset, tc.limit)
			if err != nil {
				t.Fatalf("RunChanges(%d, %d, %d): %v", tc.id, tc.offset, tc.limit, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("RunChanges(%d, %d, %d) = %d changes, want %d (nil when none): %+v",
					tc.id, tc.offset, tc.limit, len(got), len(tc.want), got)
			}
		})
	}

	notFound := []struct {
		name   string
		domain string
		id     int64
	}{
		{"RunOfAnotherDomain", domain, other.ID},
		{"AskedAsAnotherDomain", otherDomain, big.ID},
		{"NoSuchID", domain, other.ID + 1000},
		{"ZeroID", domain, 0},
		{"UnknownDomain", "unknown.example.com", big.ID},
	}
	for _, tc := range notFound {
		t.Run(tc.name, func(t *testing.T) {
			rcs, err := s.RunChanges(ctx, tc.domain, tc.id, 0, 0)
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("RunChanges(%s, %d) = %d changes, %v; want ErrNotFound", tc.domain, tc.id, len(rcs), err)
			}
		})
	}
	if rcs, err := s.RunChanges(ctx, otherDomain, other.ID, 0, 0); err != nil || !reflect.DeepEqual(rcs, manyChanges(3)) {
		t.Errorf("RunChanges of %s's run = %+v, %v; want its 3 changes", otherDomain, rcs, err)
	}
}

func testRunChangesLimits(t *testing.T, s store.Store) {
	ctx := t.Context()
	run := newRun(domain, time.Now())
	run.Outcome, run.Changes = store.OutcomeFailed, manyChanges(5)
	if err := s.RecordRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name          string
		offset, limit int
	}{
		{"LimitAbove10000", 0, 10001},
		{"NegativeLimit", 0, -1},
		{"NegativeOffset", -1, 10},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			rcs, err := s.RunChanges(ctx, domain, run.ID, tc.offset, tc.limit)
			if err == nil || errors.Is(err, store.ErrNotFound) {
				t.Errorf("RunChanges(offset %d, limit %d) = %d changes, %v; want an error, not ErrNotFound",
					tc.offset, tc.limit, len(rcs), err)
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
