package host

import (
	"context"
	"hash/maphash"
	"sync"

	"github.com/dirsync/dirsync/host/internal/diff"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// A full read writes while it reads when the store can (store.Prewriter)
// and the config lets it ([store] write_while_reading): the mailboxes the
// run is going to create are written as their entries are mapped, in the
// run's one transaction, instead of all of them after the read. The run
// still decides on everything it read, exactly as without: diff, Reconcile
// and the guards see the same input, and Apply keeps what was written only
// if every written mailbox is created exactly so (else it undoes all of it
// first), so the outcome is the same and S1–S5 hold: nothing is committed
// before the guards pass, and a run that fails or is killed rolls it back.
//
// A mailbox is written ahead when its entry's intent makes a mailbox whose
// directory id no mailbox of the domain has and whose addresses no mailbox
// of the store owns and no entry read before claimed: those are the
// creates Changes proposes unless a later entry claims an address too
// (R7), or the policy's Reconcile vetoes or replaces one.

// prewriteMin is how many mailboxes a full read must be about to create
// before the run opens the store's write transaction: a run that creates
// a few does not hold the store's writer (SQLite's one; PostgreSQL's lock on
// the domain) while it reads.
var prewriteMin = 2000

// prewriter writes the mailboxes a full read is going to create while the
// read goes on, in the read's order (mapped batches arrive in any order).
type prewriter struct {
	h      *Host
	ctx    context.Context
	domain string
	snap   func() (*store.Snapshot, error) // waits for the run's snapshot

	mu      sync.Mutex
	queue   map[int]mappedBatch // by sequence number
	closed  bool                // no batch follows
	read    bool                // the read is mapped: every batch was added
	stop    bool                // the run ended: write no more
	wake    chan struct{}
	stopped chan struct{}

	// The prewriter's goroutine's own.
	next     int              // the sequence number of the next batch
	existing map[string]bool  // directory ids of the domain's LDAP mailboxes
	owners   map[string]int64 // the store's addresses
	// claimed holds a hash of each address of the entries seen so far
	// (half the memory of a set of the strings); two addresses of one
	// hash only keep a mailbox from being written ahead.
	claimed map[uint64]struct{}
	seed    maphash.Seed
	pending []*sdk.Mailbox
	pw      store.Prewrite
	written int
}

// mappedBatch is a batch of entries as the run keeps them once mapped.
type mappedBatch struct {
	refs    []diff.Ref
	intents []sdk.Intent
}

// newPrewriter returns a prewriter for a full read of domain, or nil when
// the store or the config does not let the run write while it reads.
func (h *Host) newPrewriter(ctx context.Context, domain string, snap func() (*store.Snapshot, error)) *prewriter {
	if _, ok := h.store.(store.Prewriter); !ok || (h.cfg != nil && !h.cfg.Store.WritesWhileReading()) {
		return nil
	}
	p := &prewriter{h: h, ctx: ctx, domain: domain, snap: snap, queue: map[int]mappedBatch{},
		wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go p.run()
	return p
}

// add hands the prewriter the mapped batch with sequence number seq.
func (p *prewriter) add(seq int, b mappedBatch) {
	p.mu.Lock()
	p.queue[seq] = b
	p.mu.Unlock()
	p.signal()
}

// readDone tells the prewriter that every batch of the read was added:
// once it has written them it lets go of what it chose them by (the
// domain's directory ids, the addresses read), which the run's decision
// can use, and waits for finish with the transaction open.
func (p *prewriter) readDone() {
	p.mu.Lock()
	p.read = true
	p.mu.Unlock()
	p.signal()
}

// signal wakes the prewriter's goroutine, unless a wake is pending.
func (p *prewriter) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// finish tells the prewriter that no batch follows, waits until it has
// written what it had, and returns the open transaction (nil: none). It
// may be called again.
func (p *prewriter) finish() store.Prewrite {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.signal()
	<-p.stopped
	return p.pw
}

// abandon stops the prewriter without writing what it still has, and
// rolls back what it wrote unless Apply committed it.
func (p *prewriter) abandon() {
	p.mu.Lock()
	p.stop = true
	p.mu.Unlock()
	if pw := p.finish(); pw != nil {
		pw.Close()
	}
}

func (p *prewriter) run() {
	defer close(p.stopped)
	snap, err := p.snap()
	if err != nil {
		p.drain()
		return
	}
	p.existing = make(map[string]bool, len(snap.Mailboxes))
	for i := range snap.Mailboxes {
		if m := &snap.Mailboxes[i]; m.Source == sdk.SourceLDAP && m.DirID != "" {
			p.existing[m.DirID] = true
		}
	}
	p.owners, p.claimed, p.seed = snap.Owners, map[uint64]struct{}{}, maphash.MakeSeed()
	ok := true
	logged := false
	// done logs what was written ahead and lets go of what the choice
	// needed: the run still has tens of MB to allocate.
	done := func() {
		if p.pw != nil && !logged {
			p.h.log.Debug("wrote mailboxes while reading", "domain", p.domain, "mailboxes", p.written, "stopped", !ok)
			logged = true
		}
		p.existing, p.owners, p.claimed, p.pending = nil, nil, nil, nil
	}
	defer done()
	for {
		p.mu.Lock()
		b, have := p.queue[p.next]
		delete(p.queue, p.next)
		closed := p.closed && !have
		read := p.read && !have && len(p.queue) == 0
		if p.stop {
			have, closed, ok = false, p.closed, false
		}
		p.mu.Unlock()
		switch {
		case have:
			p.next++
			if ok {
				ok = p.batch(b, snap.Generation)
			}
		case closed:
			return
		default:
			if read && p.claimed != nil {
				done()
			}
			<-p.wake
		}
	}
}

// claim marks address a as claimed by an entry read now, and reports
// whether it was free: no mailbox owns it and no entry read before
// claimed it. An address a mailbox owns is never free, so only those no
// mailbox owns are kept: a resync's addresses are mostly its mailboxes'.
func (p *prewriter) claim(a string) bool {
	if _, owned := p.owners[a]; owned {
		return false
	}
	h := maphash.String(p.seed, a)
	_, taken := p.claimed[h]
	p.claimed[h] = struct{}{}
	return !taken
}

// drain waits for the end of the read, writing nothing.
func (p *prewriter) drain() {
	for {
		p.mu.Lock()
		closed := p.closed
		p.queue = map[int]mappedBatch{}
		p.mu.Unlock()
		if closed {
			return
		}
		<-p.wake
	}
}

// batch picks the mailboxes of b to write ahead and writes them once
// there are enough. It returns false once writing ahead has failed: the
// run's Apply then writes everything.
func (p *prewriter) batch(b mappedBatch, generation int64) bool {
	for i := range b.intents {
		it := &b.intents[i]
		if it.Kind != sdk.IntentMailbox || it.Mailbox == nil || it.Mailbox.Primary == "" {
			continue // makes no mailbox (diff.Created)
		}
		// Two entries of one directory id (rare) make Create fail: the
		// run's Apply then writes everything.
		mb := it.Mailbox
		free := p.claim(mb.Primary) && !p.existing[b.refs[i].ID]
		for _, a := range mb.Aliases {
			if a != mb.Primary { // as the mailbox has its addresses
				free = p.claim(a) && free
			}
		}
		if free {
			m, _ := diff.Created(b.refs[i], it)
			p.pending = append(p.pending, &m)
		}
	}
	if p.pw == nil && len(p.pending) < prewriteMin {
		return true
	}
	if p.pw == nil {
		pw, err := p.h.store.(store.Prewriter).Prewrite(p.ctx, p.domain, generation)
		if err != nil {
			p.h.log.Debug("not writing while reading", "domain", p.domain, "err", err)
			p.pending = nil
			return false
		}
		p.pw = pw
		p.h.log.Debug("writing mailboxes while reading", "domain", p.domain, "after", p.next*batchSize)
	}
	err := p.pw.Create(p.ctx, p.pending)
	if err == nil {
		p.written += len(p.pending)
	}
	p.pending = nil
	if err != nil {
		// Apply undoes what was written and writes every create itself.
		p.h.log.Debug("writing while reading stopped; the run writes its creates after the read", "domain", p.domain, "err", err)
		return false
	}
	return true
}
