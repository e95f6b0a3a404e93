// Package schedule runs the syncs of dirsync serve by themselves: every
// domain whose sync switch is on, every interval of its own, spread over the
// interval so that many domains do not start together, never more than a
// set number at once and never two runs of one domain at once in this
// process (across processes the store lease of host.Run keeps a domain to
// one run).
//
// When a domain runs is fixed by its name: its runs fall on the instants
// where the time since the Unix epoch, modulo the interval, equals a phase
// taken from a hash of the name. A thousand domains with interval 1m start
// spread across the minute, and each keeps its second after a restart.
//
// At start, and when a domain first appears, a domain whose last run began
// more than an interval ago (or that never ran) catches up: it runs within a
// short spread (a second hash of its name over CatchUpSpread), not at its
// next slot and not all at once.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dirsync/dirsync/host"
)

// Domain is what the scheduler knows of a domain.
type Domain struct {
	Name string
	// Sync is the domain's sync switch: a domain with Sync off is not run.
	Sync bool
	// Interval is the time between two runs of the domain (must be > 0;
	// a domain with none is not run).
	Interval time.Duration
}

// Source lists the domains. It is called on every tick, so the domains may
// change while the scheduler runs (a config reload, domains kept in the
// store); an error keeps the previous list.
type Source func(ctx context.Context) ([]Domain, error)

// LastStart returns when the newest run of a domain started, whatever its
// outcome; the zero time if it never ran.
type LastStart func(ctx context.Context, domain string) (time.Time, error)

// Runner runs one sync of a domain, as host.Host.Run does. It calls
// o.OnStart with the run's id once the run has started.
type Runner func(ctx context.Context, domain string, o host.RunOptions) (*host.Report, error)

// Options configure a Scheduler.
type Options struct {
	Source Source
	// LastStart decides which domains catch up; nil: every domain the
	// scheduler sees for the first time runs soon.
	LastStart LastStart
	Runner    Runner
	// MaxConcurrent is how many runs may go on at once (default 2),
	// scheduled or started by RunNow.
	MaxConcurrent int
	// Tick is how often the domain list is read again (default 1s).
	Tick time.Duration
	// CatchUpSpread is the time over which domains that catch up start
	// (default 1m; never more than the domain's interval).
	CatchUpSpread time.Duration
	// Logger receives a line per run started, ended or skipped; nil
	// discards them.
	Logger *slog.Logger
	// Started, if set, is called as a run is about to begin (before its
	// lease is taken); Ended, if set, after it returned. Both are called
	// for every run, scheduled or started by RunNow.
	Started func(domain string)
	Ended   func(domain string, rep *host.Report, err error)
}

// Defaults.
const (
	DefaultMaxConcurrent = 2
	DefaultTick          = time.Second
	DefaultCatchUpSpread = time.Minute
)

// ErrNotRunning is returned by RunNow when the scheduler's Run is not
// going on (not started yet, or shutting down).
var ErrNotRunning = errors.New("the scheduler is not running")

// Scheduler runs domains on their schedule. Make one with New, start it
// with Run.
type Scheduler struct {
	o    Options
	log  *slog.Logger
	sem  chan struct{} // a slot per run that may go on
	wake chan struct{} // a run ended: slots may be free

	mu      sync.Mutex
	ctx     context.Context // Run's, while it runs
	state   int             // idle, running, stopped
	entries map[string]*entry
	running map[string]bool // domains with a run in flight
	wg      sync.WaitGroup  // runs in flight
}

const (
	idle = iota
	running
	stopped
)

// entry is a domain's place in the schedule.
type entry struct {
	d     Domain
	phase time.Duration
	next  time.Time // when it is due
}

// New makes a Scheduler.
func New(o Options) (*Scheduler, error) {
	if o.Source == nil || o.Runner == nil {
		return nil, errors.New("schedule: Source and Runner are required")
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = DefaultMaxConcurrent
	}
	if o.Tick <= 0 {
		o.Tick = DefaultTick
	}
	if o.CatchUpSpread <= 0 {
		o.CatchUpSpread = DefaultCatchUpSpread
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{o: o, log: log, sem: make(chan struct{}, o.MaxConcurrent), wake: make(chan struct{}, 1),
		entries: map[string]*entry{}, running: map[string]bool{}}, nil
}

// Phase is the offset of a domain's runs within its interval: its runs fall
// where the time since the Unix epoch modulo interval equals it. It depends
// on the name and the interval only.
func Phase(name string, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	return time.Duration(hash(name) % uint64(interval))
}

// NextSlot is the first instant after t where a domain of that interval and
// phase is due.
func NextSlot(t time.Time, interval, phase time.Duration) time.Time {
	n, iv := t.UnixNano(), int64(interval)
	k := (n - int64(phase)) / iv
	if (n-int64(phase))%iv < 0 {
		k-- // floor, for times before the epoch
	}
	return time.Unix(0, (k+1)*iv+int64(phase))
}

// CatchUpDelay is how long after it is first seen a domain that catches up
// starts: a hash of its name over spread.
func CatchUpDelay(name string, spread time.Duration) time.Duration {
	if spread <= 0 {
		return 0
	}
	return time.Duration(hash("catch-up\x00"+name) % uint64(spread))
}

func hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	// FNV's low bits mix poorly for names that differ in their last bytes;
	// a final avalanche (from SplitMix64) spreads them.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// NextRun returns when a domain is due next, and false for a domain the
// scheduler does not run (unknown, switched off, or not read yet). A time
// in the past means it waits for a free slot.
func (s *Scheduler) NextRun(domain string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[domain]
	if !ok {
		return time.Time{}, false
	}
	return e.next, true
}

// Running reports whether a run of the domain is going on in this process.
func (s *Scheduler) Running(domain string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[domain]
}

// Run schedules until ctx ends. Then it starts nothing new, cancels the runs
// in flight (scheduled or started by RunNow: their context ends, so
// host.Run rolls them back and records them as cancelled) and returns once
// they have ended. It can be called once.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.state != idle {
		s.mu.Unlock()
		return errors.New("schedule: Run called twice")
	}
	s.state, s.ctx = running, ctx
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.state, s.ctx = stopped, nil
		s.mu.Unlock()
		s.wg.Wait() // the runs' contexts are ctx's children: they end too
	}()

	timer := time.NewTimer(0)
	defer timer.Stop()
	var lastRead time.Time
	for {
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		if lastRead.IsZero() || now.Sub(lastRead) >= s.o.Tick {
			s.refresh(ctx, now)
			lastRead = now
		}
		wait := s.dispatch(ctx, time.Now())
		wait = min(wait, s.o.Tick-time.Since(lastRead))
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		}
	}
}

// refresh reads the domain list and brings the schedule in line with it.
func (s *Scheduler) refresh(ctx context.Context, now time.Time) {
	list, err := s.o.Source(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("reading the domains failed; the schedule stays as it was", "err", err)
		}
		return
	}
	want := make(map[string]Domain, len(list))
	for _, d := range list {
		if d.Sync && d.Interval > 0 && d.Name != "" {
			want[d.Name] = d
		}
	}
	s.mu.Lock()
	var fresh []Domain
	for name, e := range s.entries {
		d, ok := want[name]
		switch {
		case !ok:
			delete(s.entries, name)
			s.log.Info("domain no longer scheduled (removed or sync switched off)", "domain", name)
		case d.Interval != e.d.Interval:
			e.d, e.phase = d, Phase(name, d.Interval)
			if n := NextSlot(now, d.Interval, e.phase); n.Before(e.next) {
				e.next = n
			}
			s.log.Info("domain's interval changed", "domain", name, "interval", d.Interval.String(), "next_run", e.next.Round(time.Millisecond))
		}
	}
	for name, d := range want {
		if _, ok := s.entries[name]; !ok {
			fresh = append(fresh, d)
		}
	}
	s.mu.Unlock()

	// New domains: at their next slot, or soon if their last run is older
	// than their interval. The store is asked outside the lock.
	slices.SortFunc(fresh, func(a, b Domain) int { return strings.Compare(a.Name, b.Name) })
	for _, d := range fresh {
		e := &entry{d: d, phase: Phase(d.Name, d.Interval)}
		e.next = NextSlot(now, d.Interval, e.phase)
		var last time.Time
		if s.o.LastStart != nil {
			var err error
			if last, err = s.o.LastStart(ctx, d.Name); err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Warn("reading the domain's last run failed; it runs soon", "domain", d.Name, "err", err)
				last = time.Time{}
			}
		}
		catchUp := last.IsZero() || now.Sub(last) >= d.Interval
		if catchUp {
			if soon := now.Add(CatchUpDelay(d.Name, min(s.o.CatchUpSpread, d.Interval))); soon.Before(e.next) {
				e.next = soon
			}
		}
		s.mu.Lock()
		if _, ok := s.entries[d.Name]; !ok {
			s.entries[d.Name] = e
		}
		s.mu.Unlock()
		attrs := []any{"domain", d.Name, "interval", d.Interval.String(), "next_run", e.next.Round(time.Millisecond)}
		if !last.IsZero() {
			attrs = append(attrs, "last_run", last.Round(time.Millisecond))
		}
		if catchUp {
			s.log.Info("domain scheduled; its last run is older than its interval, so it runs soon", attrs...)
		} else {
			s.log.Info("domain scheduled", attrs...)
		}
	}
}

// dispatch starts the due domains while slots are free, most overdue
// first, and returns how long until the next domain not yet due is.
func (s *Scheduler) dispatch(ctx context.Context, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []*entry
	wait := time.Duration(1<<63 - 1)
	for _, e := range s.entries {
		if !e.next.After(now) {
			due = append(due, e)
		} else {
			wait = min(wait, e.next.Sub(now))
		}
	}
	slices.SortFunc(due, func(a, b *entry) int {
		if c := a.next.Compare(b.next); c != 0 {
			return c
		}
		return strings.Compare(a.d.Name, b.d.Name)
	})
	for _, e := range due {
		name := e.d.Name
		if s.running[name] {
			e.next = NextSlot(now, e.d.Interval, e.phase)
			s.log.Info("domain skipped: a run of it is still going on; it runs at its next turn",
				"domain", name, "next_run", e.next.Round(time.Millisecond))
			wait = min(wait, e.next.Sub(now))
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			return wait // no free slot: the rest wait for one (wake)
		}
		e.next = NextSlot(now, e.d.Interval, e.phase)
		wait = min(wait, e.next.Sub(now))
		// Processes sharing the store run the same schedule: the first to
		// take the domain's lease runs this turn, the others find it ran.
		s.start(ctx, name, host.RunOptions{SkipIfStartedWithin: e.d.Interval / 2}, "schedule", nil, nil)
	}
	return wait
}

// start runs a domain in the background; the caller holds a slot and s.mu.
// started receives the run's id once it started, done its end.
func (s *Scheduler) start(ctx context.Context, domain string, o host.RunOptions, by string, started chan<- int64, done chan<- error) {
	s.running[domain] = true
	s.wg.Add(1)
	user := o.OnStart
	o.OnStart = func(id int64) {
		s.log.Info("run started", "domain", domain, "run", id, "by", by)
		if started != nil {
			started <- id
		}
		if user != nil {
			user(id)
		}
	}
	go func() {
		defer s.wg.Done()
		if s.o.Started != nil {
			s.o.Started(domain)
		}
		t := time.Now()
		rep, err := s.o.Runner(ctx, domain, o)
		s.logEnd(domain, rep, err, time.Since(t))
		if s.o.Ended != nil {
			s.o.Ended(domain, rep, err)
		}
		s.mu.Lock()
		delete(s.running, domain)
		s.mu.Unlock()
		<-s.sem
		select {
		case s.wake <- struct{}{}:
		default:
		}
		if done != nil {
			done <- err
		}
	}()
}

func (s *Scheduler) logEnd(domain string, rep *host.Report, err error, took time.Duration) {
	took = took.Round(time.Millisecond)
	if errors.Is(err, host.ErrDomainBusy) {
		s.log.Info("domain skipped: another run holds it; it runs at its next turn", "domain", domain, "err", err)
		return
	}
	if errors.Is(err, host.ErrRecentRun) {
		s.log.Info("domain skipped: another run took this turn (another replica, or the live search)", "domain", domain, "err", err)
		return
	}
	if rep == nil {
		s.log.Warn("run failed", "domain", domain, "took", took.String(), "err", err)
		return
	}
	k := rep.Counts
	attrs := []any{"domain", domain, "run", rep.RunID, "outcome", rep.Outcome, "entries", k.Entries,
		"created", k.Created, "updated", k.Updated, "deleted", k.Deleted, "adopted", k.Adopted,
		"memberships_added", k.MembersAdded, "memberships_removed", k.MembersRemoved, "took", took.String()}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	switch {
	case err == nil, rep.Outcome == "cancelled":
		s.log.Info("run ended", attrs...)
	default:
		s.log.Warn("run ended", attrs...)
	}
}

// Slot takes one of the MaxConcurrent run slots for a run the scheduler
// does not start itself (the sync a live search makes before it opens or
// when its kept state no longer fits), waiting as long as ctx allows:
// such a run counts among the runs at once. release gives the slot back.
func (s *Scheduler) Slot(ctx context.Context) (release func(), err error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a free run slot: %w", context.Cause(ctx))
	}
	return func() {
		<-s.sem
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}, nil
}

// RunNow starts a run of domain (an operator's "sync now") under the same
// limit as the scheduled runs: it waits for a free slot until ctx ends,
// then returns the run's id as soon as the run has started, or its error
// if it failed to start. The run goes on in the background, until it ends
// or the scheduler's Run returns; ctx only bounds the wait.
//
// A domain with a run going on in this process, or held by another process
// sharing the store, gives an error that wraps host.ErrDomainBusy. A dry
// run is never recorded, so it has no id: RunNow then returns once it
// ended, with id 0.
func (s *Scheduler) RunNow(ctx context.Context, domain string, o host.RunOptions) (int64, error) {
	busy := func() error {
		return fmt.Errorf("%w: a run of %s is going on in this process", host.ErrDomainBusy, domain)
	}
	s.mu.Lock()
	if s.state != running {
		s.mu.Unlock()
		return 0, ErrNotRunning
	}
	if s.running[domain] {
		s.mu.Unlock()
		return 0, busy()
	}
	runCtx := s.ctx
	s.mu.Unlock()

	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for a free run slot: %w", context.Cause(ctx))
	case <-runCtx.Done():
		return 0, ErrNotRunning
	}
	s.mu.Lock()
	switch {
	case s.state != running:
		s.mu.Unlock()
		<-s.sem
		return 0, ErrNotRunning
	case s.running[domain]: // a scheduled run took it while this one waited
		s.mu.Unlock()
		<-s.sem
		return 0, busy()
	}
	started := make(chan int64, 1)
	done := make(chan error, 1)
	s.start(runCtx, domain, o, "request", started, done)
	s.mu.Unlock()

	select {
	case id := <-started:
		return id, nil
	case err := <-done:
		select {
		case id := <-started: // started, then ended at once
			return id, nil
		default:
		}
		return 0, err
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for the run to start: %w", context.Cause(ctx))
	}
}
