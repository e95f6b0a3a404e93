package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/internal/guard"
	"github.com/dirsync/dirsync/host/store"
)

func okReport(domain string) *host.Report {
	return &host.Report{Domain: domain, Mode: "sync", Outcome: store.OutcomeOK, RunID: 1,
		Counts: store.Counts{Created: 3, Updated: 2, Deleted: 1, Adopted: 1, MembersAdded: 5, MembersRemoved: 4, Entries: 40},
		Timings: host.Timings{Fetch: 200 * time.Millisecond, Policy: 30 * time.Millisecond, Diff: 10 * time.Millisecond,
			Apply: 50 * time.Millisecond, Total: 300 * time.Millisecond}}
}

// TestObserve: a run's outcome, changes, entries, stage durations and last
// success land in their series; the in-progress gauge follows the run.
func TestObserve(t *testing.T) {
	m := New("v1.2.3")
	m.Domain("example.com")
	if got := testutil.ToFloat64(m.runs.WithLabelValues("example.com", "ok")); got != 0 {
		t.Errorf("runs ok before any run = %v", got)
	}
	m.Started("example.com")
	if got := testutil.ToFloat64(m.inProgress.WithLabelValues("example.com")); got != 1 {
		t.Errorf("in progress while running = %v, want 1", got)
	}
	before := time.Now()
	m.Observe("example.com", okReport("example.com"), nil)
	m.Observe("example.com", okReport("example.com"), nil)
	if got := testutil.ToFloat64(m.inProgress.WithLabelValues("example.com")); got != 0 {
		t.Errorf("in progress after the run = %v, want 0", got)
	}
	want := `
# HELP dirsync_changes_total Changes sync runs applied to the store, by domain and kind.
# TYPE dirsync_changes_total counter
dirsync_changes_total{domain="example.com",kind="adopted"} 2
dirsync_changes_total{domain="example.com",kind="created"} 6
dirsync_changes_total{domain="example.com",kind="deleted"} 2
dirsync_changes_total{domain="example.com",kind="memberships_added"} 10
dirsync_changes_total{domain="example.com",kind="memberships_removed"} 8
dirsync_changes_total{domain="example.com",kind="updated"} 4
# HELP dirsync_entries_read_total Directory entries sync runs read, by domain (of a delta run, the changed entries it read).
# TYPE dirsync_entries_read_total counter
dirsync_entries_read_total{domain="example.com"} 80
# HELP dirsync_runs_total Sync runs ended, by domain and outcome (ok, failed, stopped, cancelled; busy: the domain was held by another run).
# TYPE dirsync_runs_total counter
dirsync_runs_total{domain="example.com",outcome="cancelled"} 0
dirsync_runs_total{domain="example.com",outcome="failed"} 0
dirsync_runs_total{domain="example.com",outcome="ok"} 2
dirsync_runs_total{domain="example.com",outcome="stopped"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"dirsync_changes_total", "dirsync_entries_read_total", "dirsync_runs_total"); err != nil {
		t.Error(err)
	}
	last := testutil.ToFloat64(m.lastSuccess.WithLabelValues("example.com"))
	if last < float64(before.Unix()) || last > float64(time.Now().Unix()+1) {
		t.Errorf("last success = %v, want about now (%d)", last, before.Unix())
	}
	// Two runs, each with every stage.
	if n := testutil.CollectAndCount(m.duration); n != 5 {
		t.Errorf("%d duration series, want 5 (fetch, policy, diff, apply, total)", n)
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP dirsync_run_duration_seconds Time a sync run spent in each stage (fetch, policy, diff, apply) and in all (total).
# TYPE dirsync_run_duration_seconds histogram
`+histogram("apply", 0.1, 2)+histogram("diff", 0.02, 2)+histogram("fetch", 0.4, 2)+histogram("policy", 0.06, 2)+histogram("total", 0.6, 2)),
		"dirsync_run_duration_seconds"); err != nil {
		t.Error(err)
	}
}

// histogram writes the text of a histogram series with n observations
// summing to sum, each falling in the buckets at or above sum/n.
func histogram(stage string, sum float64, n int) string {
	var b strings.Builder
	for _, le := range []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800} {
		c := 0
		if sum/float64(n) <= le {
			c = n
		}
		fmt.Fprintf(&b, "dirsync_run_duration_seconds_bucket{stage=%q,le=\"%g\"} %d\n", stage, le, c)
	}
	fmt.Fprintf(&b, "dirsync_run_duration_seconds_bucket{stage=%q,le=\"+Inf\"} %d\n", stage, n)
	fmt.Fprintf(&b, "dirsync_run_duration_seconds_sum{stage=%q} %g\n", stage, sum)
	fmt.Fprintf(&b, "dirsync_run_duration_seconds_count{stage=%q} %d\n", stage, n)
	return b.String()
}

// TestFailedRuns: failed, cancelled, stopped and busy runs count under
// their outcome, count what they read but no change, leave the last
// success alone; a guard stop counts its reason.
func TestFailedRuns(t *testing.T) {
	m := New("dev")
	const D = "example.com"
	notApplied := func(outcome string) *host.Report {
		return &host.Report{Domain: D, Mode: "sync", Outcome: outcome, Counts: store.Counts{Entries: 10},
			Intended: &store.Counts{Deleted: 600}, Timings: host.Timings{Fetch: time.Millisecond, Total: 2 * time.Millisecond}}
	}
	stop := func(e *guard.StopError) error {
		return &host.RunError{Domain: D, Stage: "guard", Err: e}
	}
	m.Observe(D, notApplied(store.OutcomeStopped), stop(&guard.StopError{Deletes: 600, Total: 1000, Limit: guard.LimitMaxDeletes, Reason: "more than max_deletes = 500"}))
	m.Observe(D, notApplied(store.OutcomeStopped), stop(&guard.StopError{Deletes: 20, Total: 100, Limit: guard.LimitMaxDeletePercent, Reason: "more than max_delete_percent = 10% while deleting more than 10"}))
	m.Observe(D, notApplied(store.OutcomeStopped), stop(&guard.StopError{Total: 100, Limit: guard.LimitEmptyRead, Reason: "the directory returned no valid entry", Empty: true}))
	m.Observe(D, notApplied(store.OutcomeFailed), &host.RunError{Domain: D, Stage: "fetch", Err: errors.New("bind: invalid credentials")})
	m.Observe(D, notApplied(store.OutcomeCancelled), &host.RunError{Domain: D, Stage: "fetch", Err: context.Canceled})
	m.Observe(D, &host.Report{Domain: D, Mode: "sync", Outcome: store.OutcomeFailed},
		&host.RunError{Domain: D, Stage: "lease", Err: &store.BusyError{Lease: store.Lease{Domain: D, Holder: "other"}}})
	// A dry run and a domain nobody declared: not counted.
	m.Observe(D, &host.Report{Domain: D, Mode: "dry-run", Outcome: store.OutcomeOK, Counts: store.Counts{Created: 9}}, nil)
	m.Observe("made-up.example", nil, fmt.Errorf("%w %q", host.ErrUnknownDomain, "made-up.example"))

	want := `
# HELP dirsync_guard_stops_total Sync runs the deletion guard stopped before writing, by domain and reason (max_deletes, max_delete_percent, empty_read).
# TYPE dirsync_guard_stops_total counter
dirsync_guard_stops_total{domain="example.com",reason="empty_read"} 1
dirsync_guard_stops_total{domain="example.com",reason="max_delete_percent"} 1
dirsync_guard_stops_total{domain="example.com",reason="max_deletes"} 1
# HELP dirsync_runs_total Sync runs ended, by domain and outcome (ok, failed, stopped, cancelled; busy: the domain was held by another run).
# TYPE dirsync_runs_total counter
dirsync_runs_total{domain="example.com",outcome="busy"} 1
dirsync_runs_total{domain="example.com",outcome="cancelled"} 1
dirsync_runs_total{domain="example.com",outcome="failed"} 1
dirsync_runs_total{domain="example.com",outcome="stopped"} 3
# HELP dirsync_entries_read_total Directory entries sync runs read, by domain (of a delta run, the changed entries it read).
# TYPE dirsync_entries_read_total counter
dirsync_entries_read_total{domain="example.com"} 50
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"dirsync_guard_stops_total", "dirsync_runs_total", "dirsync_entries_read_total"); err != nil {
		t.Error(err)
	}
	for _, k := range changeKinds {
		if v := testutil.ToFloat64(m.changes.WithLabelValues(D, k)); v != 0 {
			t.Errorf("changes %s = %v after runs that applied nothing", k, v)
		}
	}
	if n := testutil.CollectAndCount(m.lastSuccess); n != 0 {
		t.Errorf("%d last-success series after no successful run", n)
	}
	body := scrape(t, m)
	for _, want := range []string{
		`dirsync_run_duration_seconds_count{stage="fetch"} 5`, // the busy run reached no stage
		`dirsync_run_duration_seconds_count{stage="total"} 5`,
		`dirsync_run_duration_seconds_count{stage="apply"} 0`, // none applied
		`dirsync_run_duration_seconds_count{stage="diff"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grep(body, "_count"))
		}
	}
}

// TestLastSuccessAndForget: a last success known from the store sets the
// gauge unless a later one is known; a forgotten domain has no series left.
func TestLastSuccessAndForget(t *testing.T) {
	m := New("dev")
	t1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m.SetLastSuccess("a.example", t1)
	m.SetLastSuccess("a.example", t1.Add(-time.Hour))
	if got := testutil.ToFloat64(m.lastSuccess.WithLabelValues("a.example")); got != float64(t1.Unix()) {
		t.Errorf("last success = %v, want %d (an older one does not replace it)", got, t1.Unix())
	}
	m.Domain("a.example")
	m.Domain("b.example")
	m.Forget("a.example")
	body := scrape(t, m)
	if strings.Contains(body, `domain="a.example"`) {
		t.Errorf("a forgotten domain still has series:\n%s", grep(body, "a.example"))
	}
	if !strings.Contains(body, `dirsync_runs_total{domain="b.example",outcome="ok"} 0`) {
		t.Error("the other domain lost its series")
	}
}

// TestHandler: /metrics serves the build info and the Go and process
// collectors, from the registry of its own (not the global one).
func TestHandler(t *testing.T) {
	m := New("v9.9.9")
	body := scrape(t, m)
	for _, want := range []string{
		`dirsync_build_info{goversion="go`, `version="v9.9.9"} 1`,
		"go_goroutines ", "process_cpu_seconds_total ",
		`dirsync_run_duration_seconds_count{stage="total"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "dirsync_build_info"); err != nil || n != 1 {
		t.Errorf("build info series = %d, %v", n, err)
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s\n%s", resp.Status, b)
	}
	return string(b)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestGuardReason names the reasons of the stops the guard itself makes,
// so that a change of its wording cannot turn them into "other".
func TestGuardReason(t *testing.T) {
	l := guard.Limits{MaxDeletes: 500, MaxDeletePercent: 10, PercentFloor: 10}
	for _, c := range []struct {
		deletes, total, kept int
		want                 string
	}{
		{600, 10000, 9400, ReasonMaxDeletes},
		{50, 100, 50, ReasonMaxDeletePercent},
		{100, 100, 0, ReasonEmptyRead},
	} {
		err := guard.Deletes(c.deletes, c.total, c.kept, l, false)
		got, ok := GuardReason(&host.RunError{Domain: "d", Stage: "guard", Err: err})
		if !ok || got != c.want {
			t.Errorf("guard.Deletes(%d of %d, %d kept) = %v: reason %q, %v; want %q", c.deletes, c.total, c.kept, err, got, ok, c.want)
		}
	}
	if _, ok := GuardReason(errors.New("bind failed")); ok {
		t.Error("an error that is no guard stop has a reason")
	}
}
