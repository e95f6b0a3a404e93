// Package metrics holds the Prometheus metrics of dirsync serve, on a
// registry of their own:
//
//	dirsync_runs_total{domain,outcome}              runs ended, by outcome
//	dirsync_run_duration_seconds{stage}             histogram: fetch, policy, diff, apply, total
//	dirsync_changes_total{domain,kind}              changes applied: created, updated, deleted,
//	                                                adopted, memberships_added, memberships_removed
//	dirsync_entries_read_total{domain}              directory entries read
//	dirsync_guard_stops_total{domain,reason}        runs the deletion guard stopped:
//	                                                max_deletes, max_delete_percent, empty_read
//	dirsync_last_success_timestamp_seconds{domain}  end of the domain's last run with outcome ok
//	dirsync_run_in_progress{domain}                 1 while a run of the domain goes on
//	dirsync_build_info{version,goversion}           1
//
// plus the Go and process collectors.
//
// The outcome of a run is the one its record has (ok, failed, stopped,
// cancelled), except a run that did not start because another run held the
// domain: it counts as "busy", so that an alert on failed runs does not fire
// because two schedules met.
package metrics

import (
	"errors"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/internal/guard"
	"github.com/dirsync/dirsync/host/store"
)

// OutcomeBusy is the outcome of a run that found its domain held by another
// run and did nothing.
const OutcomeBusy = "busy"

// OutcomeSkipped is the outcome of a scheduled run that found its turn
// taken by another process sharing the store (a replica) and did nothing.
const OutcomeSkipped = "skipped"

// Guard stop reasons.
const (
	ReasonMaxDeletes       = guard.LimitMaxDeletes
	ReasonMaxDeletePercent = guard.LimitMaxDeletePercent
	ReasonEmptyRead        = guard.LimitEmptyRead
	ReasonOther            = "other"
)

// Change kinds, as the run counts name them.
var changeKinds = []string{"created", "updated", "deleted", "adopted", "memberships_added", "memberships_removed"}

// Stages of dirsync_run_duration_seconds.
var stages = []string{"fetch", "policy", "diff", "apply", "total"}

// Metrics are the metrics of one dirsync serve process.
type Metrics struct {
	reg         *prometheus.Registry
	runs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	changes     *prometheus.CounterVec
	entries     *prometheus.CounterVec
	guardStops  *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	inProgress  *prometheus.GaugeVec
	live        *prometheus.GaugeVec

	mu   sync.Mutex
	last map[string]time.Time // the value of lastSuccess, per domain
}

// New makes the metrics on a new registry; version is the program's
// version for dirsync_build_info.
func New(version string) *Metrics {
	m := &Metrics{
		reg:  prometheus.NewRegistry(),
		last: map[string]time.Time{},
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dirsync_runs_total",
			Help: "Sync runs ended, by domain and outcome (ok, failed, stopped, cancelled; busy: the domain was held by another run).",
		}, []string{"domain", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dirsync_run_duration_seconds",
			Help:    "Time a sync run spent in each stage (fetch, policy, diff, apply) and in all (total).",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"stage"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dirsync_changes_total",
			Help: "Changes sync runs applied to the store, by domain and kind.",
		}, []string{"domain", "kind"}),
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dirsync_entries_read_total",
			Help: "Directory entries sync runs read, by domain (of a delta run, the changed entries it read).",
		}, []string{"domain"}),
		guardStops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dirsync_guard_stops_total",
			Help: "Sync runs the deletion guard stopped before writing, by domain and reason (max_deletes, max_delete_percent, empty_read).",
		}, []string{"domain", "reason"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dirsync_last_success_timestamp_seconds",
			Help: "When the domain's last sync run with outcome ok ended (Unix time).",
		}, []string{"domain"}),
		inProgress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dirsync_run_in_progress",
			Help: "1 while a sync run of the domain goes on in this process, else 0.",
		}, []string{"domain"}),
		live: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dirsync_live_connected",
			Help: "For a domain with live = true: 1 while this process's live search on its directory is open, else 0.",
		}, []string{"domain"}),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dirsync_build_info",
		Help: "The dirsync build: always 1, with the version and the Go version as labels.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(m.runs, m.duration, m.changes, m.entries, m.guardStops, m.lastSuccess, m.inProgress, m.live, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range stages {
		m.duration.WithLabelValues(s)
	}
	return m
}

// Registry is the registry the metrics are on.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format (/metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Domain makes a domain's series at zero (runs ok and failed, every change
// kind, every guard reason, entries read, in progress), so that a rate or
// an increase over them works from the first run on.
func (m *Metrics) Domain(domain string) {
	for _, o := range []string{store.OutcomeOK, store.OutcomeFailed, store.OutcomeStopped, store.OutcomeCancelled} {
		m.runs.WithLabelValues(domain, o)
	}
	for _, k := range changeKinds {
		m.changes.WithLabelValues(domain, k)
	}
	for _, r := range []string{ReasonMaxDeletes, ReasonMaxDeletePercent, ReasonEmptyRead} {
		m.guardStops.WithLabelValues(domain, r)
	}
	m.entries.WithLabelValues(domain)
	m.inProgress.WithLabelValues(domain)
}

// Forget drops every series of a domain that is no longer run (removed from
// the config), so that its last success does not age into an alert.
func (m *Metrics) Forget(domain string) {
	l := prometheus.Labels{"domain": domain}
	m.runs.DeletePartialMatch(l)
	m.changes.DeletePartialMatch(l)
	m.entries.DeletePartialMatch(l)
	m.guardStops.DeletePartialMatch(l)
	m.lastSuccess.DeletePartialMatch(l)
	m.inProgress.DeletePartialMatch(l)
	m.live.DeletePartialMatch(l)
	m.mu.Lock()
	delete(m.last, domain)
	m.mu.Unlock()
}

// Started marks a run of the domain as going on.
func (m *Metrics) Started(domain string) {
	m.inProgress.WithLabelValues(domain).Set(1)
}

// Live marks the domain's live search as open or not.
func (m *Metrics) Live(domain string, open bool) {
	v := 0.0
	if open {
		v = 1
	}
	m.live.WithLabelValues(domain).Set(v)
}

// SetLastSuccess sets when the domain's last successful run ended (from the
// store's run records at start, before this process ran the domain), unless
// a later one is known.
func (m *Metrics) SetLastSuccess(domain string, t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.After(m.last[domain]) {
		m.last[domain] = t
		m.lastSuccess.WithLabelValues(domain).Set(float64(t.UnixNano()) / 1e9)
	}
}

// Observe counts a sync that ended: rep and err as host.Host.Run returned
// them. It clears the domain's in-progress mark; a dry run is not counted. A run of a domain the host
// does not know (no report, host.ErrUnknownDomain) is not counted, so that
// no name made up by a caller becomes a series.
func (m *Metrics) Observe(domain string, rep *host.Report, err error) {
	if rep != nil && rep.Domain != "" {
		domain = rep.Domain
	}
	if rep == nil && errors.Is(err, host.ErrUnknownDomain) {
		m.inProgress.DeleteLabelValues(domain)
		return
	}
	m.inProgress.WithLabelValues(domain).Set(0)
	if rep != nil && rep.Mode != "sync" {
		return // a dry run or a preview: no sync, nothing applied
	}
	outcome := store.OutcomeFailed
	if rep != nil && rep.Outcome != "" {
		outcome = rep.Outcome
	}
	if errors.Is(err, host.ErrDomainBusy) {
		m.runs.WithLabelValues(domain, OutcomeBusy).Inc()
		return // it read and did nothing
	}
	if errors.Is(err, host.ErrRecentRun) {
		m.runs.WithLabelValues(domain, OutcomeSkipped).Inc()
		return
	}
	m.runs.WithLabelValues(domain, outcome).Inc()
	if reason, ok := GuardReason(err); ok {
		m.guardStops.WithLabelValues(domain, reason).Inc()
	}
	if rep == nil {
		return
	}
	t := rep.Timings
	for _, s := range []struct {
		stage string
		d     time.Duration
	}{{"fetch", t.Fetch}, {"policy", t.Policy}, {"diff", t.Diff}, {"apply", t.Apply}} {
		if s.d > 0 { // a stage the run did not reach is not a stage that took no time
			m.duration.WithLabelValues(s.stage).Observe(s.d.Seconds())
		}
	}
	if t.Total > 0 {
		m.duration.WithLabelValues("total").Observe(t.Total.Seconds())
	}
	k := rep.Counts // what the run applied: zero for a run that did not
	for i, n := range []int{k.Created, k.Updated, k.Deleted, k.Adopted, k.MembersAdded, k.MembersRemoved} {
		m.changes.WithLabelValues(domain, changeKinds[i]).Add(float64(n))
	}
	read := k.Entries
	if rep.Read == store.ReadDelta {
		read = k.Changed // a delta read the changed entries only
	}
	m.entries.WithLabelValues(domain).Add(float64(read))
	if err == nil && outcome == store.OutcomeOK {
		m.SetLastSuccess(domain, time.Now())
	}
}

// GuardReason returns the reason of a run the deletion guard stopped:
// "empty_read", "max_deletes" or "max_delete_percent" ("other" for a stop
// it does not recognize); false if err is no guard stop.
func GuardReason(err error) (string, bool) {
	var stop *guard.StopError
	if !errors.As(err, &stop) {
		return "", false
	}
	switch stop.Limit {
	case guard.LimitEmptyRead, guard.LimitMaxDeletes, guard.LimitMaxDeletePercent:
		return stop.Limit, true
	}
	return ReasonOther, true
}
