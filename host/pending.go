package host

import (
	"context"
	"sync"

	"github.com/dirsync/dirsync/host/store"
)

// maxPending bounds the run records kept for a store that does not answer.
const maxPending = 1000

// pendingRecords are run records that could not be written (the store was
// down or unreachable): each is written again before the next run of any
// domain, so that an attempt made while the database was away still shows
// in the runs once it is back (S5). The oldest are dropped past
// maxPending, with a warning.
type pendingRecords struct {
	mu   sync.Mutex
	runs []*store.Run
}

// keep queues a copy of run.
func (h *Host) keepRecord(run *store.Run) {
	c := *run
	h.pending.mu.Lock()
	defer h.pending.mu.Unlock()
	if len(h.pending.runs) == maxPending {
		old := h.pending.runs[0]
		h.log.Warn("too many run records wait for the store; the oldest is dropped", "domain", old.Domain,
			"started", old.Started, "outcome", old.Outcome, "err", old.Error)
		h.pending.runs = h.pending.runs[1:]
	}
	h.pending.runs = append(h.pending.runs, &c)
}

// flushRecords writes the queued records, oldest first, and stops at the
// first the store refuses.
func (h *Host) flushRecords(ctx context.Context) {
	h.pending.mu.Lock()
	defer h.pending.mu.Unlock()
	for len(h.pending.runs) > 0 {
		run := h.pending.runs[0]
		if err := h.store.RecordRun(ctx, run); err != nil {
			return
		}
		h.log.Info("run recorded now that the store answers", "domain", run.Domain, "run", run.ID, "outcome", run.Outcome)
		h.pending.runs = h.pending.runs[1:]
	}
}
