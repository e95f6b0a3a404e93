package host

import (
	"context"
	"fmt"
	"os"
	"reflect"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/diff"
	"github.com/dirsync/dirsync/sdk"
)

// checkingReach reports whether DIRSYNC_CHECK_REACH=1 is in the
// environment: a run that decides on what a delta reaches (diff.Reaches)
// then also decides on the whole domain, and fails if the two propose
// different changes. The tests of delta and live runs set it.
func checkingReach() bool { return os.Getenv("DIRSYNC_CHECK_REACH") == "1" }

// checkReach decides on the whole domain of in and compares the changes
// and the count of kept mailboxes with those of the decision on its
// reach.
func (h *Host) checkReach(ctx context.Context, d *config.Domain, in *runInput, part *diff.Result, kept int) error {
	snap, err := h.store.Snapshot(ctx, d.Name, d.AliasDomains)
	if err != nil {
		return err
	}
	refs, intents := in.refs, in.intents
	if in.part != nil {
		// The state kept in chunks, whole, with the delta patched in.
		patched, err := h.wholePatched(ctx, d, in)
		if err != nil {
			return fmt.Errorf("DIRSYNC_CHECK_REACH: %w", err)
		}
		refs, intents = patched.Refs, patched.Intents
	}
	whole := diff.Changes(in.sd, refs, intents, snap)
	switch {
	case snap.Generation != in.snap.Generation:
		return fmt.Errorf("DIRSYNC_CHECK_REACH: the domain was written while the run decided")
	case !reflect.DeepEqual(part.Changes, whole.Changes):
		return fmt.Errorf("DIRSYNC_CHECK_REACH: deciding on what the changes reach (%d entries) proposes\n%s\nbut on the whole domain\n%s",
			len(in.reach.Entries), describe(part.Changes), describe(whole.Changes))
	case kept != whole.Kept+len(whole.Held):
		return fmt.Errorf("DIRSYNC_CHECK_REACH: %d mailboxes kept, but %d on the whole domain", kept, whole.Kept+len(whole.Held))
	}
	return nil
}

// describe lists changes one a line.
func describe(cs []sdk.Change) string {
	s := ""
	for _, c := range cs {
		s += fmt.Sprintf("  %s group=%q", c.Kind, c.Group)
		if c.Before != nil {
			s += fmt.Sprintf(" before=%+v", *c.Before)
		}
		if c.After != nil {
			s += fmt.Sprintf(" after=%+v", *c.After)
		}
		s += fmt.Sprintf(" conflicts=%+v\n", c.Conflicts)
	}
	return s
}
