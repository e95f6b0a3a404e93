package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dirsync/dirsync/host"
)

// liveCheck is how often dirsync serve looks for domains that turned live
// or stopped being live (a settings change through the API); a reload
// looks at once.
const liveCheck = 5 * time.Second

// liveSearches keeps a Host.Live search going for each domain that is
// live (sync and live on) on the Host in use: started when a domain turns
// live, stopped when it no longer is, and moved to the new Host after a
// reload.
type liveSearches struct {
	s       *server
	wg      sync.WaitGroup
	running map[string]*liveSearch
}

type liveSearch struct {
	ref     *hostRef
	version int64 // the domain's settings version it started with
	cancel  context.CancelFunc
}

// run checks the live domains every liveCheck and at each poke until ctx
// ends, then stops every search and waits for them.
func (l *liveSearches) run(ctx context.Context, poke <-chan struct{}) {
	l.running = map[string]*liveSearch{}
	t := time.NewTicker(liveCheck)
	defer t.Stop()
	for {
		l.check(ctx)
		select {
		case <-ctx.Done():
			for _, ls := range l.running {
				ls.cancel()
			}
			l.wg.Wait()
			return
		case <-t.C:
		case <-poke:
		}
	}
}

// check starts and stops searches to match the live domains.
func (l *liveSearches) check(ctx context.Context) {
	ref := l.s.acquire()
	defer l.s.release(ref)
	list, err := ref.h.Domains(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.s.log.Warn("live searches: the domains could not be listed", "err", err)
		}
		return
	}
	want := map[string]int64{} // live domains and their settings versions
	for _, d := range list {
		if d.Sync && d.Live {
			want[d.Name] = d.Version
		}
	}
	// A search that ended by itself (a directory that cannot be live)
	// stays ended until the domain's settings or the config change.
	for name, ls := range l.running {
		if v, ok := want[name]; !ok || v != ls.version || ls.ref != ref {
			ls.cancel()
			delete(l.running, name)
		}
	}
	for name, v := range want {
		if _, ok := l.running[name]; ok {
			continue
		}
		l.start(ctx, name, v)
	}
}

// start begins the live search of a domain on the Host in use.
func (l *liveSearches) start(ctx context.Context, name string, version int64) {
	ref := l.s.acquire()
	lctx, cancel := context.WithCancel(ctx)
	ls := &liveSearch{ref: ref, version: version, cancel: cancel}
	l.running[name] = ls
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer l.s.release(ref)
		l.s.log.Info("live search starting", "domain", name)
		err := ref.h.Live(lctx, name, host.LiveOptions{
			OnRun:  func(rep *host.Report, err error) { l.s.metrics.Observe(name, rep, err) },
			OnOpen: func(open bool) { l.s.metrics.Live(name, open) },
			Slot:   l.s.sched.Slot,
		})
		switch {
		case errors.Is(err, host.ErrNotLive):
			l.s.log.Info("no live search for this domain", "domain", name, "why", err)
		case err != nil:
			l.s.log.Warn("live search stopped", "domain", name, "err", err)
		}
	}()
}
