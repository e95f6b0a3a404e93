package schedule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/store"
)

// TestSpread: the phases of 1,000 domains with interval 1m fill the minute
// evenly, depend on the name and the interval only, and their slots repeat
// every interval.
func TestSpread(t *testing.T) {
	const n = 1000
	var perSecond [60]int
	for i := range n {
		name := fmt.Sprintf("customer%04d.example", i)
		p := Phase(name, time.Minute)
		if p < 0 || p >= time.Minute {
			t.Fatalf("phase of %s = %v, outside the interval", name, p)
		}
		if p != Phase(name, time.Minute) {
			t.Fatalf("phase of %s changes between calls", name)
		}
		perSecond[p/time.Second]++
	}
	// 16.7 per second on average; a fair spread stays well within 5..35.
	for s, c := range perSecond {
		if c < 5 || c > 35 {
			t.Errorf("second %d of the minute has %d of %d domains: not spread (%v)", s, c, n, perSecond)
			break
		}
	}

	// Slots: after t, at the phase, one interval apart, the same whenever
	// they are computed (a restart finds the same ones).
	iv, ph := time.Hour, Phase("example.com", time.Hour)
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s1 := NextSlot(t0, iv, ph)
	if !s1.After(t0) || s1.Sub(t0) > iv {
		t.Fatalf("next slot %v is not within an interval after %v", s1, t0)
	}
	if got := time.Duration(s1.UnixNano() % int64(iv)); got != ph {
		t.Errorf("slot %v is at offset %v of the interval, want the phase %v", s1, got, ph)
	}
	if s2 := NextSlot(s1, iv, ph); s2.Sub(s1) != iv {
		t.Errorf("the slot after %v is %v, want one interval later", s1, s2)
	}
	if got := NextSlot(s1.Add(-time.Nanosecond), iv, ph); !got.Equal(s1) {
		t.Errorf("the slot just before %v is %v", s1, got)
	}
	if got := NextSlot(t0.Add(17*time.Minute), iv, ph); !got.Equal(s1) && !got.Equal(s1.Add(iv)) {
		t.Errorf("a later start finds slot %v, not one of the same series as %v", got, s1)
	}

	// Catch-up delays spread over their window too.
	var buckets [10]int
	for i := range n {
		d := CatchUpDelay(fmt.Sprintf("customer%04d.example", i), 10*time.Second)
		if d < 0 || d >= 10*time.Second {
			t.Fatalf("catch-up delay %v outside the spread", d)
		}
		buckets[d/time.Second]++
	}
	for i, c := range buckets {
		if c < 60 || c > 140 {
			t.Errorf("catch-up second %d has %d of %d domains (%v)", i, c, n, buckets)
			break
		}
	}
}

// fake is a Runner that counts runs, concurrency overall and per domain.
type fake struct {
	mu        sync.Mutex
	runs      map[string]int
	cur, max  int
	perDomain map[string]int
	overlap   []string
	starts    map[string][]time.Time
	nextID    int64
	hold      time.Duration    // how long a run takes, unless block is set
	block     chan struct{}    // when set, a run ends when it is closed (or ctx ends)
	cancelled atomic.Int32     // runs that ended by their context
	fail      map[string]error // error before the start, by domain
}

func newFake(hold time.Duration) *fake {
	return &fake{runs: map[string]int{}, perDomain: map[string]int{}, starts: map[string][]time.Time{}, hold: hold}
}

func (f *fake) run(ctx context.Context, domain string, o host.RunOptions) (*host.Report, error) {
	f.mu.Lock()
	if err := f.fail[domain]; err != nil {
		f.mu.Unlock()
		return &host.Report{Domain: domain, Mode: "sync", Outcome: "failed"}, err
	}
	f.cur++
	f.max = max(f.max, f.cur)
	f.perDomain[domain]++
	if f.perDomain[domain] > 1 {
		f.overlap = append(f.overlap, domain)
	}
	f.runs[domain]++
	f.starts[domain] = append(f.starts[domain], time.Now())
	f.nextID++
	id := f.nextID
	block := f.block
	f.mu.Unlock()
	if o.OnStart != nil {
		o.OnStart(id)
	}
	var err error
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			err = ctx.Err()
		}
	} else {
		select {
		case <-time.After(f.hold):
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	f.mu.Lock()
	f.cur--
	f.perDomain[domain]--
	f.mu.Unlock()
	rep := &host.Report{Domain: domain, Mode: "sync", Outcome: "ok", RunID: id}
	if err != nil {
		f.cancelled.Add(1)
		rep.Outcome = "cancelled"
		return rep, &host.RunError{Domain: domain, Stage: "fetch", Err: err}
	}
	return rep, nil
}

func (f *fake) count(domain string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[domain]
}

func (f *fake) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.runs {
		n += c
	}
	return n
}

// domains is a Source whose list a test can change.
type domains struct {
	mu   sync.Mutex
	list []Domain
}

func (d *domains) set(list ...Domain) {
	d.mu.Lock()
	d.list = list
	d.mu.Unlock()
}

func (d *domains) source(context.Context) ([]Domain, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Domain(nil), d.list...), nil
}

// logBuf collects log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs a scheduler until the test ends; it returns the scheduler and
// a stop func that cancels Run and waits for it.
func start(t *testing.T, o Options) (*Scheduler, func()) {
	t.Helper()
	if o.Tick == 0 {
		o.Tick = 20 * time.Millisecond
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	// Wait until Run has begun, so that RunNow finds it running.
	for i := 0; ; i++ {
		s.mu.Lock()
		st := s.state
		s.mu.Unlock()
		if st == running {
			break
		}
		if i > 1000 {
			t.Fatal("Run did not start")
		}
		time.Sleep(time.Millisecond)
	}
	return s, stop
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRunsOnSchedule: a domain with sync on runs every interval, at its
// phase; one with sync off never; a domain added to the source later is
// picked up, and one removed stops.
func TestRunsOnSchedule(t *testing.T) {
	f := newFake(time.Millisecond)
	src := &domains{}
	iv := 300 * time.Millisecond
	src.set(Domain{Name: "on.example", Sync: true, Interval: iv}, Domain{Name: "off.example", Sync: false, Interval: iv})
	recent := func(context.Context, string) (time.Time, error) { return time.Now(), nil } // no catch-up
	s, stop := start(t, Options{Source: src.source, LastStart: recent, Runner: f.run})

	eventually(t, 5*time.Second, "on.example ran 3 times", func() bool { return f.count("on.example") >= 3 })
	if n := f.count("off.example"); n != 0 {
		t.Errorf("off.example (sync off) ran %d times", n)
	}
	if _, ok := s.NextRun("off.example"); ok {
		t.Error("off.example has a next run")
	}
	f.mu.Lock()
	starts := append([]time.Time(nil), f.starts["on.example"]...)
	f.mu.Unlock()
	ph := Phase("on.example", iv)
	for i, st := range starts {
		// Each start is at the phase of the interval, give or take the
		// time a goroutine takes to wake.
		off := time.Duration(st.UnixNano()%int64(iv)) - ph
		if off < 0 {
			off += iv
		}
		if off > 150*time.Millisecond {
			t.Errorf("run %d started %v after its slot", i, off)
		}
	}

	src.set(Domain{Name: "on.example", Sync: true, Interval: iv}, Domain{Name: "new.example", Sync: true, Interval: iv})
	eventually(t, 5*time.Second, "new.example, added later, ran", func() bool { return f.count("new.example") >= 1 })
	src.set(Domain{Name: "new.example", Sync: true, Interval: iv})
	eventually(t, time.Second, "on.example left the schedule", func() bool { _, ok := s.NextRun("on.example"); return !ok })
	n := f.count("on.example")
	time.Sleep(2 * iv)
	if m := f.count("on.example"); m > n+1 { // one may have been starting as it was removed
		t.Errorf("on.example ran %d more times after it was removed", m-n)
	}
	stop()
}

// TestCatchUp: at start, a domain whose last run began more than an
// interval ago, or that never ran, runs within the catch-up spread; one that
// ran recently waits for its slot.
func TestCatchUp(t *testing.T) {
	f := newFake(time.Millisecond)
	src := &domains{}
	now := time.Now()
	last := map[string]time.Time{
		"old.example":    now.Add(-2 * time.Hour),
		"recent.example": now.Add(-time.Minute),
	}
	var list []Domain
	for _, n := range []string{"old.example", "never.example", "recent.example"} {
		list = append(list, Domain{Name: n, Sync: true, Interval: time.Hour})
	}
	// Many that never ran: they spread over the catch-up window.
	for i := range 40 {
		list = append(list, Domain{Name: fmt.Sprintf("d%02d.example", i), Sync: true, Interval: time.Hour})
	}
	src.set(list...)
	lastStart := func(_ context.Context, d string) (time.Time, error) { return last[d], nil }
	const spread = 400 * time.Millisecond
	s, _ := start(t, Options{Source: src.source, LastStart: lastStart, Runner: f.run, CatchUpSpread: spread, MaxConcurrent: 50})

	eventually(t, 2*time.Second, "old and never-run domains caught up", func() bool {
		return f.count("old.example") == 1 && f.count("never.example") == 1
	})
	next, ok := s.NextRun("recent.example")
	if !ok {
		t.Fatal("recent.example is not scheduled")
	}
	if want := NextSlot(now, time.Hour, Phase("recent.example", time.Hour)); next.Sub(want).Abs() > time.Second {
		t.Errorf("recent.example is due at %v, want its slot %v", next, want)
	}
	eventually(t, 2*time.Second, "the 40 never-run domains caught up", func() bool { return f.total() >= 42 })

	// They started spread over the window, not all at once.
	f.mu.Lock()
	var first, lastT time.Time
	for i := range 40 {
		st := f.starts[fmt.Sprintf("d%02d.example", i)][0]
		if first.IsZero() || st.Before(first) {
			first = st
		}
		if st.After(lastT) {
			lastT = st
		}
		if d := st.Sub(now); d > spread+time.Second {
			t.Errorf("d%02d.example caught up after %v, beyond the spread of %v", i, d, spread)
		}
	}
	f.mu.Unlock()
	if lastT.Sub(first) < spread/4 {
		t.Errorf("40 catch-ups started within %v of each other: not spread over %v", lastT.Sub(first), spread)
	}
	if n := f.count("recent.example"); n != 0 && time.Until(next) > 0 {
		t.Errorf("recent.example ran %d times before its slot", n)
	}
}

// TestLimit: never more runs at once than MaxConcurrent; every due domain
// runs once a slot frees.
func TestLimit(t *testing.T) {
	f := newFake(100 * time.Millisecond)
	src := &domains{}
	var list []Domain
	for i := range 10 {
		list = append(list, Domain{Name: fmt.Sprintf("d%d.example", i), Sync: true, Interval: time.Hour})
	}
	src.set(list...)
	start(t, Options{Source: src.source, Runner: f.run, MaxConcurrent: 3, CatchUpSpread: 10 * time.Millisecond})
	eventually(t, 3*time.Second, "all 10 domains ran", func() bool { return f.total() == 10 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.max != 3 {
		t.Errorf("%d runs went on at once, want the limit 3", f.max)
	}
}

// TestNoOverlap: a run that takes longer than its interval is never joined
// by a second run of the domain; the turns it misses are skipped and logged.
func TestNoOverlap(t *testing.T) {
	f := newFake(250 * time.Millisecond)
	src := &domains{}
	src.set(Domain{Name: "slow.example", Sync: true, Interval: 60 * time.Millisecond})
	var logs logBuf
	s, stop := start(t, Options{Source: src.source, Runner: f.run, MaxConcurrent: 4, CatchUpSpread: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	eventually(t, 3*time.Second, "three runs", func() bool { return f.count("slow.example") >= 3 })
	if !s.Running("slow.example") && f.count("slow.example") < 3 {
		t.Error("Running reports no run")
	}
	stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.overlap) > 0 {
		t.Errorf("two runs of a domain at once: %v", f.overlap)
	}
	if f.max != 1 {
		t.Errorf("%d runs at once for one domain", f.max)
	}
	if !strings.Contains(logs.String(), "domain skipped: a run of it is still going on") ||
		!strings.Contains(logs.String(), "level=INFO") {
		t.Errorf("no Info line for the skipped turns:\n%s", logs.String())
	}
}

// TestRunNow: a run started by hand returns its id as soon as it started
// and goes on in the background; a domain with a run going on is busy
// (host.ErrDomainBusy, in this process or from the store's lease); a run by
// hand waits for a free slot and gives up when its context ends.
func TestRunNow(t *testing.T) {
	f := newFake(0)
	f.block = make(chan struct{})
	src := &domains{} // nothing scheduled: every run is by hand
	s, stop := start(t, Options{Source: src.source, Runner: f.run, MaxConcurrent: 1})
	ctx := context.Background()

	id, err := s.RunNow(ctx, "a.example", host.RunOptions{})
	if err != nil || id != 1 {
		t.Fatalf("RunNow = %d, %v; want id 1", id, err)
	}
	if !s.Running("a.example") {
		t.Error("the run did not go on after RunNow returned")
	}
	// The same domain: busy at once.
	if _, err := s.RunNow(ctx, "a.example", host.RunOptions{}); !errors.Is(err, host.ErrDomainBusy) {
		t.Errorf("RunNow of a running domain = %v, want ErrDomainBusy", err)
	}
	// Another domain: the one slot is taken; it waits until its context ends.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	t0 := time.Now()
	_, err = s.RunNow(short, "b.example", host.RunOptions{})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) < 90*time.Millisecond {
		t.Errorf("RunNow with no free slot = %v after %v, want it to wait out its context", err, time.Since(t0))
	}
	if f.count("b.example") != 0 {
		t.Error("b.example ran past the limit")
	}
	// It gets the slot as soon as the first run ends.
	got := make(chan error, 1)
	go func() {
		_, err := s.RunNow(ctx, "b.example", host.RunOptions{})
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if f.count("b.example") != 0 {
		t.Error("b.example started while the slot was taken")
	}
	close(f.block)
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("RunNow after the slot freed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunNow did not get the freed slot")
	}

	// Held by another process: the host's lease error comes back as it is.
	f.mu.Lock()
	f.fail = map[string]error{"c.example": &host.RunError{Domain: "c.example", Stage: "lease",
		Err: &store.BusyError{Lease: store.Lease{Domain: "c.example", Holder: "other pid 7 #1"}}}}
	f.mu.Unlock()
	_, err = s.RunNow(ctx, "c.example", host.RunOptions{})
	if !errors.Is(err, host.ErrDomainBusy) || !strings.Contains(err.Error(), "other pid 7") {
		t.Errorf("RunNow of a domain another process holds = %v, want ErrDomainBusy naming the holder", err)
	}
	stop()
	if _, err := s.RunNow(ctx, "a.example", host.RunOptions{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("RunNow after shutdown = %v, want ErrNotRunning", err)
	}
}

// TestShutdownCancels: when Run's context ends, the runs in flight (by
// schedule and by hand) are cancelled, Run returns once they ended, and
// nothing new starts.
func TestShutdownCancels(t *testing.T) {
	f := newFake(0)
	f.block = make(chan struct{}) // never closed: runs end by their context only
	src := &domains{}
	src.set(Domain{Name: "a.example", Sync: true, Interval: 50 * time.Millisecond},
		Domain{Name: "b.example", Sync: true, Interval: 50 * time.Millisecond})
	var ended atomic.Int32
	s, stop := start(t, Options{Source: src.source, Runner: f.run, MaxConcurrent: 3, CatchUpSpread: time.Millisecond,
		Ended: func(string, *host.Report, error) { ended.Add(1) }})
	eventually(t, 2*time.Second, "both domains running", func() bool { return s.Running("a.example") && s.Running("b.example") })
	if _, err := s.RunNow(context.Background(), "c.example", host.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	stop() // returns only after the runs ended
	if n := f.cancelled.Load(); n != 3 {
		t.Errorf("%d runs were cancelled, want 3", n)
	}
	if n := ended.Load(); n != 3 {
		t.Errorf("Ended was called %d times before Run returned, want 3", n)
	}
	n := f.total()
	time.Sleep(150 * time.Millisecond)
	if m := f.total(); m != n {
		t.Errorf("%d runs started after shutdown", m-n)
	}
}

// TestSlot: a run the scheduler does not start itself (a live search's own
// sync) takes a slot like its runs: while it holds the only one, a run by
// hand waits; once it gives it back, the run goes on.
func TestSlot(t *testing.T) {
	f := newFake(0)
	src := &domains{}
	s, stop := start(t, Options{Source: src.source, Runner: f.run, MaxConcurrent: 1})
	defer stop()
	ctx := context.Background()
	release, err := s.Slot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, err = s.RunNow(short, "a.example", host.RunOptions{})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("RunNow while the slot is held = %v, want it to wait out its context", err)
	}
	short, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
	if _, err := s.Slot(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a second Slot = %v, want it to wait out its context", err)
	}
	cancel()
	release()
	if _, err := s.RunNow(ctx, "a.example", host.RunOptions{}); err != nil {
		t.Errorf("RunNow once the slot is back: %v", err)
	}
}
