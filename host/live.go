package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/dirstate"
	"github.com/dirsync/dirsync/host/internal/ldapfetch"
	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// LiveOptions tune Host.Live.
type LiveOptions struct {
	// Quiet is how long a burst of changes may pause before the changes
	// so far are applied (default 200ms); MaxDelay bounds how long the
	// first change of a burst waits (default 1s).
	Quiet, MaxDelay time.Duration
	// MaxBatch applies the changes once this many have gathered (default
	// 5000).
	MaxBatch int
	// OnRun, if set, is called after each run that applies a batch, and
	// each run Live starts itself (a sync when the kept state is missing
	// or of other settings, a full run after a refused cookie), with what
	// Run returned.
	OnRun func(rep *Report, err error)
	// OnOpen, if set, is called with true when the live search is open
	// and with false when it ends.
	OnOpen func(open bool)
	// Slot, if set, is called before each run Live starts itself (a sync
	// when the kept state is missing or of other settings, a full run
	// after a refused cookie: a full read, maybe), and the run waits for
	// it; release is called when the run ends. dirsync serve counts them
	// among its max_concurrent_runs. A batch's run does not wait: it
	// applies a few changes within moments.
	Slot func(ctx context.Context) (release func(), err error)
}

// Defaults of LiveOptions, and the reconnect backoff of Live.
const (
	DefaultLiveQuiet    = 200 * time.Millisecond
	DefaultLiveMaxDelay = time.Second
	DefaultLiveMaxBatch = 5000
	liveBackoffMax      = 5 * time.Minute
)

// The reconnect backoff starts at liveBackoffMin, and starts there again
// after a live search that stayed open liveHealthy (variables for tests).
var (
	liveBackoffMin = time.Second
	liveHealthy    = time.Minute
)

// ErrNotLive is returned by Live for a domain whose sync switch or live
// setting is off.
var ErrNotLive = errors.New("the domain is not set to live (live = true and sync = true)")

// errLiveStale: the domain's kept state moved on (another run applied
// what followed the cookie a live batch was read from); the batch is
// dropped and the live search starts again from the kept state.
var errLiveStale = errors.New("the kept directory state moved on since the live search started (another run read the directory); the live search starts again from it")

// errLiveResync: a live batch does not fit the kept state (the settings,
// the policy or the gateway groups changed since it was read, or the
// directory's changes do not fit it); the batch is dropped, a run brings
// the state up to date (in full when it must), and the live search starts
// again from it. Starting again without the run would read the same
// changes, which would not fit again.
var errLiveResync = errors.New("the live changes do not fit the kept directory state (the settings, policy or gateway groups changed, or the state is not the directory's); a run brings it up to date and the live search starts again from it")

// Live keeps a live search open on the domain's directory (OpenLDAP's
// refreshAndPersist, RFC 4533) and applies each change within moments: the
// changes of a burst are gathered (LiveOptions) and applied as one run,
// through Map, Reconcile, the guards and Apply like any run, recorded with
// read "delta". A domain without a kept state is first synced in full. A
// dropped connection reconnects with the kept cookie after a backoff (1s,
// doubling to 5m; reset after a healthy minute); a cookie the directory
// refuses makes a full run. A batch the guard stops is not applied: the
// live search starts again after the backoff and finds the same changes,
// until an operator confirms a run (dirsync sync --confirm-deletes) that
// moves the kept state on. Live returns when ctx ends (nil) or when the
// domain is not live (ErrNotLive).
func (h *Host) Live(ctx context.Context, domain string, o LiveOptions) error {
	if o.Quiet <= 0 {
		o.Quiet = DefaultLiveQuiet
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultLiveMaxDelay
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultLiveMaxBatch
	}
	backoff := liveBackoffMin
	var refused time.Time // when the directory last refused the cookie
	for {
		// When the search opened: the time a run takes before it (a sync
		// of the domain, which may fail after minutes) is not a healthy
		// search's.
		var opened time.Time
		err := h.liveOnce(ctx, domain, o, &refused, &opened)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrNotLive):
			return err
		case errors.Is(err, errLiveStale):
			h.log.Debug("live search restarts from the kept state", "domain", domain)
			continue
		case errors.Is(err, errLiveResync):
			h.log.Info("live changes do not fit the kept state; syncing before the live search starts again", "domain", domain, "err", err)
			if err = h.liveRun(ctx, domain, o, RunOptions{Wait: time.Minute}); err == nil {
				continue
			}
		}
		if !opened.IsZero() && time.Since(opened) > liveHealthy {
			backoff = liveBackoffMin
		}
		h.log.Warn("live search ended; reconnecting", "domain", domain, "err", err, "after", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, liveBackoffMax)
	}
}

// liveOnce runs one live search until it fails. refused is when the
// directory last refused the kept cookie (a full run follows, unless it was
// a moment ago); opened is set when the search opens.
func (h *Host) liveOnce(ctx context.Context, domain string, o LiveOptions, refused, opened *time.Time) error {
	r, err := h.resolve(ctx, domain)
	if err != nil {
		return err
	}
	d := r.d
	if !d.Sync || !d.Live {
		return ErrNotLive
	}
	p, err := h.Policy(ctx, d.Policy)
	if err != nil {
		return err
	}
	fresp, err := checkFilter(ctx, p, d.LDAP.Filter)
	if err != nil {
		return err
	}
	creds, err := h.credentials(ctx, r)
	if err != nil {
		return err
	}
	st, err := h.liveState(ctx, r, p, o)
	if err != nil {
		return err
	}
	h.log.Info("live search open", "domain", d.Name)
	*opened = time.Now()
	if o.OnOpen != nil {
		o.OnOpen(true)
		defer o.OnOpen(false)
	}
	events := make(chan ldapfetch.SyncEvent, 256)
	readErr := make(chan error, 1)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The kept cookie without its kind (an RFC 4533 one: liveState).
		err := ldapfetch.Persist(lctx, h.fetchConfig(d, creds), fresp.Filter, p.Info().Attributes, st.Cookie[1:], func(ev ldapfetch.SyncEvent) error {
			select {
			case events <- ev:
				return nil
			case <-lctx.Done():
				return lctx.Err()
			}
		})
		readErr <- err
	}()
	return h.liveEvents(ctx, d.Name, newLiveBatch(st.Cookie), events, readErr, o, refused)
}

// liveEvents gathers the live search's events into batches and applies
// each (liveFlush) until the search ends with readErr. The refresh phase
// (what changed since the kept cookie, up to EventRefreshDone) is one
// batch, however long: cut, its first part would be applied without the
// rest of a present phase, and its last part's present phase would delete
// every entry the parts before named (S1). After it, the changes as they
// happen are gathered into bursts (LiveOptions).
func (h *Host) liveEvents(ctx context.Context, domain string, b *liveBatch, events <-chan ldapfetch.SyncEvent, readErr <-chan error, o LiveOptions, refused *time.Time) error {
	var first, last time.Time
	var timer <-chan time.Time
	refreshing := true
	for {
		select {
		case err := <-readErr:
			if errors.Is(err, ldapfetch.ErrRefreshRequired) {
				if time.Since(*refused) < time.Minute {
					// Refused again right after a full read's fresh cookie:
					// reading in full again would only load the directory.
					return fmt.Errorf("the directory refused the live search's cookie again, a moment after a full read: %w", err)
				}
				*refused = time.Now()
				h.log.Warn("the directory refused the live search's cookie; syncing in full", "domain", domain, "err", err)
				// Unless another run (another replica's) replaced the
				// refused cookie meanwhile: then the search starts again
				// from its state.
				err = h.liveRun(ctx, domain, o, RunOptions{Full: true, Wait: time.Minute, ifCookie: b.base})
				if err == nil || errors.Is(err, errLiveStale) {
					return errLiveStale // the full run's state, or the other run's
				}
			}
			return err
		case ev := <-events:
			b.add(ev)
			if refreshing {
				if ev.Kind != ldapfetch.EventRefreshDone {
					continue
				}
				refreshing = false
				if err := h.liveFlush(ctx, domain, b, o); err != nil {
					return err
				}
				b = b.following()
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			last = now
			if b.n >= o.MaxBatch {
				if err := h.liveFlush(ctx, domain, b, o); err != nil {
					return err
				}
				b, first, timer = b.following(), time.Time{}, nil
				continue
			}
			timer = time.After(min(o.Quiet, time.Until(first.Add(o.MaxDelay))))
		case <-timer:
			if time.Since(last) < o.Quiet && time.Since(first) < o.MaxDelay {
				timer = time.After(min(o.Quiet-time.Since(last), time.Until(first.Add(o.MaxDelay))))
				continue
			}
			if err := h.liveFlush(ctx, domain, b, o); err != nil {
				return err
			}
			b, first, timer = b.following(), time.Time{}, nil
		}
	}
}

// liveState returns the domain's kept state for the live search to start
// from, syncing the domain first when there is none usable (none, no
// cookie, or kept under other settings, policy or gateway groups).
func (h *Host) liveState(ctx context.Context, r *resolved, p policy.Runtime, o LiveOptions) (*store.DirState, error) {
	for attempt := 0; ; attempt++ {
		st, err := h.store.DirStateHead(ctx, r.d.Name)
		if err != nil {
			return nil, err
		}
		key, err := h.liveKey(ctx, r.d, p)
		if err != nil {
			return nil, err
		}
		if st != nil && len(st.Cookie) > 1 && st.Cookie[0] != cookieSyncrepl {
			return nil, fmt.Errorf("%w: the directory tells changes by polling only (Active Directory: DirSync or uSNChanged), not as they happen; scheduled runs read its deltas", ErrNotLive)
		}
		if st != nil && len(st.Cookie) > 1 && st.Key == key {
			return st, nil
		}
		if attempt > 0 {
			if st != nil && st.Key != key {
				return nil, errors.New("the kept directory state is of other settings than the domain's, even after a sync")
			}
			return nil, errors.New("the last sync kept no cookie: the directory gives none (is content synchronization, OpenLDAP's syncprov, set up for this reader?), or its read failed over from the server that gave it")
		}
		if err := h.liveRun(ctx, r.d.Name, o, RunOptions{Wait: time.Minute}); err != nil {
			return nil, err
		}
	}
}

// liveRun is a run Live starts itself (a sync when there is no usable
// kept state, a full run after a refused cookie), reported to o.OnRun as a
// batch's run is, unless it did not take place (errLiveStale).
func (h *Host) liveRun(ctx context.Context, domain string, o LiveOptions, ro RunOptions) error {
	if o.Slot != nil {
		release, err := o.Slot(ctx)
		if err != nil {
			return err
		}
		defer release()
	}
	rep, err := h.Run(ctx, domain, ro)
	if o.OnRun != nil && !errors.Is(err, errLiveStale) {
		o.OnRun(rep, err)
	}
	return err
}

// liveKey is the key a run of d would keep its state under now
// (Host.stateKey): the kept state's must be it for live changes to patch.
func (h *Host) liveKey(ctx context.Context, d *config.Domain, p policy.Runtime) (string, error) {
	groups, err := h.store.Groups(ctx, d.Name)
	if err != nil {
		return "", err
	}
	return h.stateKey(d, &runInput{p: p, sd: sdkDomain(d, groups)}), nil
}

// liveFlush applies a batch as one run; a batch without changes only moves
// nothing (its cookie is kept by the next batch that applies). A batch
// whose kept state is of other settings, policy or gateway groups than the
// domain's now (a gateway group made since the live search opened, say)
// is not run: errLiveResync.
func (h *Host) liveFlush(ctx context.Context, domain string, b *liveBatch, o LiveOptions) error {
	if b.empty() {
		return nil
	}
	// The domain's settings and policy as a run would find them now.
	r, err := h.resolve(ctx, domain)
	if err != nil {
		return err
	}
	p, err := h.Policy(ctx, r.d.Policy)
	if err != nil {
		return err
	}
	key, err := h.liveKey(ctx, r.d, p)
	if err != nil {
		return err
	}
	st, err := h.store.DirStateHead(ctx, domain)
	if err != nil {
		return err
	}
	if st == nil || st.Key != key {
		return errLiveResync
	}
	rep, err := h.Run(ctx, domain, RunOptions{Wait: time.Minute, live: b})
	switch {
	case errors.Is(err, errLiveStale):
		return errLiveStale // not a run: another one applied what followed
	case errors.Is(err, errLiveResync):
		return errLiveResync
	}
	if o.OnRun != nil {
		o.OnRun(rep, err)
	}
	if err != nil {
		return fmt.Errorf("applying live changes: %w", err)
	}
	b.applied = true
	h.log.Info("live changes applied", "domain", domain, "run", rep.RunID, "changed", rep.Counts.Changed, "gone", rep.Counts.Gone,
		"created", rep.Counts.Created, "updated", rep.Counts.Updated, "deleted", rep.Counts.Deleted)
	return nil
}

// liveBatch gathers the events of a live search between two runs.
type liveBatch struct {
	base  []byte          // the kept cookie the events follow
	state *store.DirState // the kept state's head, as the run's lease found it
	// prev are the kept entries, decoded, as the last batch left them,
	// under key prevKey and head prevHead: used only while the kept state
	// is still that one (a full run in between may keep the cookie and
	// change the intents: a gateway group made since, say).
	prev     *dirstate.State
	prevKey  string
	prevHead []byte
	// next are the entries this batch leaves once applied, under nextKey
	// and, once applied, nextHead.
	next         *dirstate.State
	nextKey      string
	nextHead     []byte
	cookie       []byte // the cookie after them; nil: none given yet
	entries      []sdk.Entry
	index        map[string]int // key → its entry in entries
	deleted      map[string]bool
	present      []string
	presentPhase bool
	n            int  // events
	applied      bool // a run applied it
}

func newLiveBatch(base []byte) *liveBatch {
	return &liveBatch{base: base, index: map[string]int{}, deleted: map[string]bool{}}
}

// add takes an event; the later of two events of one entry wins.
func (b *liveBatch) add(ev ldapfetch.SyncEvent) {
	b.n++
	switch ev.Kind {
	case ldapfetch.EventEntry:
		k := syncKey(&ev.Entry)
		delete(b.deleted, k)
		if i, ok := b.index[k]; ok {
			b.entries[i] = ev.Entry
		} else {
			b.index[k] = len(b.entries)
			b.entries = append(b.entries, ev.Entry)
		}
	case ldapfetch.EventDelete:
		b.deleted[ev.Key] = true
	case ldapfetch.EventPresent:
		b.present = append(b.present, ev.Key)
	case ldapfetch.EventRefreshDone:
		b.presentPhase = ev.PresentPhase
	}
	if ev.Cookie != nil {
		b.cookie = kindCookie(cookieSyncrepl, ev.Cookie)
	}
}

// empty reports whether the batch changes nothing: no entry, no delete,
// and no present phase (which may delete).
func (b *liveBatch) empty() bool {
	return len(b.entries) == 0 && len(b.deleted) == 0 && !b.presentPhase
}

// following is the batch after this one. It follows the kept cookie after
// this one: its cookie once a run applied it, else its own base (a batch
// with nothing to apply is not run; its events carry on in the next), with
// the entries that go with it when known.
func (b *liveBatch) following() *liveBatch {
	if !b.applied {
		n := newLiveBatch(b.base)
		n.prev, n.prevKey, n.prevHead = b.prev, b.prevKey, b.prevHead
		return n
	}
	n := newLiveBatch(b.base)
	if b.cookie != nil {
		n = newLiveBatch(b.cookie)
	}
	n.prev, n.prevKey, n.prevHead = b.next, b.nextKey, b.nextHead
	return n
}

// changes are the batch as the changes a delta run patches in.
func (b *liveBatch) changes() *dirChanges {
	ch := &dirChanges{presentPhase: b.presentPhase, present: b.present, cookie: b.cookie}
	for i := range b.entries {
		if !b.deleted[syncKey(&b.entries[i])] {
			ch.entries = append(ch.entries, b.entries[i])
		}
	}
	for k := range b.deleted {
		ch.deleted = append(ch.deleted, k)
	}
	return ch
}

// fetchLive patches a live batch into the kept state, which the run's
// lease found to be the one the batch follows (Host.lease); kept with
// other settings, it is stale too.
func (h *Host) fetchLive(ctx context.Context, d *config.Domain, rep *Report, in *runInput, b *liveBatch) error {
	if b.state == nil || b.state.Key != in.stateKey {
		return &stageError{"fetch", errLiveResync}
	}
	// The entries the last batch left, while the kept state (its cookie
	// checked under the lease, its key and head here) is the one it left;
	// else read.
	st, prev := b.state, b.prev
	if prev != nil && (b.prevKey != st.Key || !bytes.Equal(b.prevHead, st.Head)) {
		prev = nil
	}
	ch := b.changes()
	delta, err := h.mapDelta(ctx, d, rep, in, ch)
	if err != nil {
		return err
	}
	// A state kept in chunks: read and rewrite only the chunks the batch
	// needs, rather than write back the whole of the entries kept.
	part, err := h.patchPart(ctx, d, rep, in, st, ch, delta)
	if err != nil {
		if errors.Is(err, errFullRead) {
			return &stageError{"fetch", fmt.Errorf("%w (%v)", errLiveResync, err)}
		}
		return err
	}
	if part {
		b.nextKey, b.next = in.stateKey, nil
		in.unchanged = false
		return nil
	}
	if prev == nil {
		var err error
		if st, err = h.store.DirState(ctx, d.Name); err != nil {
			return &stageError{"store", err}
		}
		if st == nil {
			return &stageError{"fetch", errLiveResync}
		}
	}
	if err := h.patch(ctx, d, rep, in, st, prev, ch, delta); err != nil {
		if errors.Is(err, errFullRead) {
			return &stageError{"fetch", fmt.Errorf("%w (%v)", errLiveResync, err)}
		}
		return err
	}
	b.nextKey = in.stateKey
	// The batch's cookie is kept even when nothing it read changes what
	// the run decides: the next batch follows it.
	in.unchanged = false
	// What the next batch patches, if this one applies. (Nothing in a run
	// changes the intents it decides on.)
	b.next = &dirstate.State{Keys: in.keys, Refs: in.refs, Intents: in.intents, Encoded: in.encoded}
	return nil
}
