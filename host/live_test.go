package host_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/store"
)

// TestLiveRunsTakeNoScheduledTurn: a scheduled run skips its turn when
// another run of the domain started within SkipIfStartedWithin, but not
// for a run of a live search's changes, or a domain whose directory changes
// often would never have a scheduled run (nor its full read on
// full_interval).
func TestLiveRunsTakeNoScheduledTurn(t *testing.T) {
	st := openSQLite(t)
	h := unreachableHost(t, st)
	ctx := context.Background()
	record := func(holder string) {
		t.Helper()
		r := &store.Run{Domain: "example.com", Started: time.Now(), Ended: time.Now(), Outcome: store.OutcomeOK, Holder: holder, Read: store.ReadDelta}
		if err := st.RecordRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	scheduled := func() error {
		_, err := h.Run(ctx, "example.com", host.RunOptions{SkipIfStartedWithin: time.Hour})
		return err
	}
	record("vm pid 1 #7 (live)")
	if err := scheduled(); errors.Is(err, host.ErrRecentRun) {
		t.Errorf("a live run took the scheduled turn: %v", err)
	}
	record("vm pid 1 #8")
	if err := scheduled(); !errors.Is(err, host.ErrRecentRun) {
		t.Errorf("after a scheduled run moments ago: %v, want ErrRecentRun", err)
	}
}
