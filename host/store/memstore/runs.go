package memstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dirsync/dirsync/host/store"
)

// AcquireLease takes the domain's lease for holder until now+ttl, creating
// the domain if needed. Another holder's unexpired lease is a
// *store.BusyError naming it; an expired one is taken over (a new lease,
// with no run); the holder's own lease is renewed, its since and run kept.
// The mutex makes the check and the take one step: of holders racing for a
// free lease, exactly one gets it.
func (s *Store) AcquireLease(ctx context.Context, domain, holder string, ttl time.Duration) (store.Lease, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return store.Lease{}, err
	}
	if err := leaseArgs(holder, ttl); err != nil {
		return store.Lease{}, fmt.Errorf("acquire lease on %s: %w", domain, err)
	}
	if err := s.lock(ctx); err != nil {
		return store.Lease{}, err
	}
	defer s.mu.Unlock()
	s.ensureDomain(domain)
	now := s.now()
	l, held := s.leases[domain]
	switch {
	case held && l.Holder == holder:
		l.Expiry = now.Add(ttl)
	case held && l.Expiry.After(now):
		return store.Lease{}, &store.BusyError{Lease: l}
	default: // free, or expired: its holder is gone or too late
		l = store.Lease{Domain: domain, Holder: holder, Since: now, Expiry: now.Add(ttl)}
	}
	s.leases[domain] = l
	return l, nil
}

// RenewLease moves the expiry of holder's lease to now+ttl;
// store.ErrLeaseLost if another holder took it or it was released. A lease
// that expired but that nobody took is still holder's.
func (s *Store) RenewLease(ctx context.Context, domain, holder string, ttl time.Duration) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if err := leaseArgs(holder, ttl); err != nil {
		return fmt.Errorf("renew lease on %s: %w", domain, err)
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	l, held := s.leases[domain]
	if !held || l.Holder != holder {
		return fmt.Errorf("lease on %s of %s: %w", domain, holder, store.ErrLeaseLost)
	}
	l.Expiry = s.now().Add(ttl)
	s.leases[domain] = l
	return nil
}

// ReleaseLease gives up holder's lease; a lease holder does not have is
// left alone, and is no error.
func (s *Store) ReleaseLease(ctx context.Context, domain, holder string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if l, held := s.leases[domain]; held && l.Holder == holder {
		delete(s.leases, domain)
	}
	return nil
}

// leaseArgs checks the holder and ttl given to AcquireLease or RenewLease.
func leaseArgs(holder string, ttl time.Duration) error {
	if holder == "" {
		return errors.New("empty lease holder")
	}
	if ttl <= 0 {
		return fmt.Errorf("lease duration %v is not positive", ttl)
	}
	return nil
}

// abandonedError is the error of a running run that StartRun found left
// behind by a holder that is gone.
const abandonedError = "the process running it ended without finishing it (lease expired)"

// StartRun records run as running and sets run.ID, and notes the run on the
// lease of run.Holder. Only the lease holder may start a run
// (store.ErrLeaseLost, nothing written): it has the domain to itself, so any
// other running run of the domain belongs to a holder that died, and
// StartRun marks it abandoned.
func (s *Store) StartRun(ctx context.Context, run *store.Run) error {
	if run == nil {
		return errors.New("start run: no run")
	}
	domain, err := store.NormDomain(run.Domain)
	if err != nil {
		return fmt.Errorf("start run: %w", err)
	}
	if run.ID != 0 {
		return fmt.Errorf("start run of %s: run %d is started already", domain, run.ID)
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	l, held := s.leases[domain]
	if !held || l.Holder != run.Holder {
		return fmt.Errorf("start run of %s: holder %q: %w", domain, run.Holder, store.ErrLeaseLost)
	}
	now := s.now()
	for i := range s.runs {
		if r := &s.runs[i]; r.Domain == domain && r.Outcome == store.OutcomeRunning {
			r.Outcome, r.Ended, r.Error = store.OutcomeAbandoned, now, abandonedError
		}
	}
	run.Domain, run.Outcome, run.Ended = domain, store.OutcomeRunning, time.Time{}
	if run.Started.IsZero() {
		run.Started = now
	}
	s.ensureDomain(domain)
	s.writeRun(run)
	l.RunID = run.ID
	s.leases[domain] = l
	return nil
}

// RecordRun records a run that changed nothing (failed, stopped,
// cancelled): it finishes the row StartRun wrote when run.ID is set, else
// writes a new row and sets run.ID. It sets run.ChangeCount.
func (s *Store) RecordRun(ctx context.Context, run *store.Run) error {
	if run == nil {
		return errors.New("record run: no run")
	}
	domain, err := store.NormDomain(run.Domain)
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	run.Domain = domain
	if run.ID != 0 && s.runIndex(domain, run.ID) < 0 {
		return fmt.Errorf("record run of %s: run %d: %w", domain, run.ID, store.ErrNotFound)
	}
	s.ensureDomain(domain)
	s.writeRun(run)
	return nil
}

// writeRun stores a copy of run: a new row with the next id (set in run.ID)
// if run.ID is 0, else over the row of run.ID, which keeps its start time.
// It sets run.ChangeCount, the number of run.Changes. The caller has checked
// that a row of run.ID exists.
func (s *Store) writeRun(run *store.Run) {
	run.ChangeCount = len(run.Changes)
	r := copyRun(run, true)
	r.Generation, r.DirState = 0, nil // not part of the record
	if run.ID == 0 {
		s.lastRun++
		r.ID, run.ID = s.lastRun, s.lastRun
		s.runs = append(s.runs, r)
		return
	}
	i := s.runIndex(run.Domain, run.ID)
	r.Started = s.runs[i].Started
	s.runs[i] = r
}

// runIndex returns the index in s.runs of run id of domain, or -1.
func (s *Store) runIndex(domain string, id int64) int {
	i, found := slices.BinarySearchFunc(s.runs, id, func(r store.Run, id int64) int { return cmp.Compare(r.ID, id) })
	if !found || s.runs[i].Domain != domain {
		return -1
	}
	return i
}

// RunsPage lists at most limit (1 to 1000; 0 means 50) of a domain's runs
// with ids below beforeID (0: from the newest), newest first by id, without
// their changes (with their count). s.runs is in id order, so it is read
// from the end.
func (s *Store) RunsPage(ctx context.Context, domain string, limit int, beforeID int64) ([]store.Run, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if limit, err = store.RunsPageLimit(domain, limit, beforeID); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var page []store.Run
	for i := len(s.runs) - 1; i >= 0 && len(page) < limit; i-- {
		r := &s.runs[i]
		if r.Domain == domain && (beforeID == 0 || r.ID < beforeID) {
			page = append(page, copyRun(r, false))
		}
	}
	return page, nil
}

// LastRuns returns the newest run (by id) of every domain that has one,
// without its changes.
func (s *Store) LastRuns(ctx context.Context) (map[string]store.Run, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	last := make(map[string]store.Run)
	for i := len(s.runs) - 1; i >= 0; i-- {
		if _, seen := last[s.runs[i].Domain]; !seen {
			last[s.runs[i].Domain] = copyRun(&s.runs[i], false)
		}
	}
	return last, nil
}

// Run returns run id of domain without its changes (with their count);
// store.ErrNotFound if there is none, also when run id belongs to another
// domain.
func (s *Store) Run(ctx context.Context, domain string, id int64) (*store.Run, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	i := s.runIndex(domain, id)
	if i < 0 {
		return nil, fmt.Errorf("run %d of %s: %w", id, domain, store.ErrNotFound)
	}
	r := copyRun(&s.runs[i], false)
	return &r, nil
}

// RunChanges returns copies of at most limit (1 to 10000; 0 means 1000) of
// the changes of run id of domain, from index offset, in their order;
// store.ErrNotFound if there is no such run, also when run id belongs to
// another domain. The run keeps its changes as one slice: a page is a part
// of it.
func (s *Store) RunChanges(ctx context.Context, domain string, id int64, offset, limit int) ([]store.RunChange, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if limit, err = store.RunChangesLimit(domain, id, offset, limit); err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	i := s.runIndex(domain, id)
	if i < 0 {
		return nil, fmt.Errorf("run %d of %s: %w", id, domain, store.ErrNotFound)
	}
	all := s.runs[i].Changes
	if offset >= len(all) {
		return nil, nil
	}
	return copyChanges(all[offset:min(offset+limit, len(all))]), nil
}

// PruneRuns deletes the finished runs that ended before before (one recorded
// without an end time counts from its start), never a running one, and
// returns how many it deleted. Ids are not reused: lastRun stays.
func (s *Store) PruneRuns(ctx context.Context, before time.Time) (int64, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := len(s.runs)
	s.runs = slices.DeleteFunc(s.runs, func(r store.Run) bool {
		end := r.Ended
		if end.IsZero() {
			end = r.Started
		}
		return r.Outcome != store.OutcomeRunning && end.Before(before)
	})
	return int64(n - len(s.runs)), nil
}

// copyRun returns a copy of r that shares no memory with it, with its
// changes if withChanges (else Changes is nil). Empty lists become nil.
func copyRun(r *store.Run, withChanges bool) store.Run {
	c := *r
	if r.Intended != nil {
		in := *r.Intended
		c.Intended = &in
	}
	c.References = cloneStrings(r.References)
	c.Changes = nil
	if withChanges {
		c.Changes = copyChanges(r.Changes)
	}
	return c
}

// copyChanges returns a copy of rcs that shares no memory with it; nil if
// it is empty.
func copyChanges(rcs []store.RunChange) []store.RunChange {
	if len(rcs) == 0 {
		return nil
	}
	c := make([]store.RunChange, len(rcs))
	for i, rc := range rcs {
		rc.Before, rc.After = copyView(rc.Before), copyView(rc.After)
		c[i] = rc
	}
	return c
}

// copyView returns a copy of v that shares no memory with it.
func copyView(v *store.MailboxView) *store.MailboxView {
	if v == nil {
		return nil
	}
	c := *v
	c.Aliases, c.Groups = cloneStrings(v.Aliases), cloneStrings(v.Groups)
	return &c
}
