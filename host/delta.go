package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/diff"
	"github.com/dirsync/dirsync/host/internal/dirstate"
	"github.com/dirsync/dirsync/host/internal/ldapfetch"
	"github.com/dirsync/dirsync/host/internal/mapcache"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// A run reads the directory in full or, when the domain's last applied
// sync left a directory state with a cookie (store.DirState), only what
// changed since (a delta): the changed entries are mapped, patched into the
// kept state, and the run decides on the whole domain from there exactly as
// after a full read — diff, reconcile and the guards see the same input,
// so S1–S5 hold unchanged. A delta is not taken, and the run reads in full,
// when:
//   - RunOptions.Full asks for it (dirsync sync --full), or the run is a
//     preview;
//   - there is no state, or it was read with other settings: its key
//     (stateKey) covers the servers, the reader (bind DN), base DN,
//     filter, the attributes, the policy module, its config and the
//     domain as the policy sees it (alias domains, gateway groups), since
//     each changes what an unchanged entry maps to or which entries are
//     seen;
//   - the last full read is older than the domain's full_interval;
//   - the directory refuses the cookie, or names as unchanged an entry
//     the state does not hold.

// readPlan is how a run reads: the kept state to read a delta from (nil:
// in full).
type readPlan struct {
	state *store.DirState
	why   string // why the read is full, for the log
}

// planRead decides between a full and a delta read; key is the state key
// of the run's settings.
func (h *Host) planRead(ctx context.Context, d *config.Domain, key, mode string, o RunOptions) readPlan {
	var plan readPlan
	switch {
	case mode == "preview":
		plan.why = "a preview reads in full"
		return plan
	case o.Full:
		plan.why = "a full read was asked for"
		return plan
	}
	st, err := h.store.DirStateHead(ctx, d.Name) // the entries only if the delta needs them
	switch {
	case err != nil:
		h.log.Warn("the kept directory state could not be read; reading in full", "domain", d.Name, "err", err)
		plan.why = "the kept state could not be read"
	case st == nil:
		plan.why = "no kept state"
	case st.Key != key:
		plan.why = "the settings, policy or gateway groups changed since the state was read"
	case len(st.Cookie) == 0:
		plan.why = "the directory gave no cookie"
	case time.Since(st.FullAt) >= d.FullInterval.Duration:
		plan.why = fmt.Sprintf("the last full read is older than full_interval (%v)", d.FullInterval.Duration)
	default:
		plan.state = st
	}
	return plan
}

// stateKey names what a directory state depends on besides the
// directory's content.
func (h *Host) stateKey(d *config.Domain, in *runInput) string {
	module, cfg := h.policyIdentity(d.Policy)
	if module == nil { // linked in: the policy is the program's
		module = []byte("builtin " + buildID())
	}
	ctx, err := mapcache.NewContext(module, in.p.Info(), cfg, in.sd)
	if err != nil {
		return "" // a config that does not encode: never equal to a kept key
	}
	sum := sha256.New()
	sum.Write(ctx[:])
	// The reader too: another may see other entries or attributes.
	for _, part := range []string{d.Policy, d.LDAP.BaseDN, d.LDAP.Filter, strings.Join(d.LDAP.URLs, " "), strings.Join(in.p.Info().Attributes, " "), d.LDAP.BindDN} {
		fmt.Fprintf(sum, "%d:%s", len(part), part)
	}
	return "1:" + hex.EncodeToString(sum.Sum(nil))
}

// buildID names this program's build: a linked-in policy changes only
// with it.
func buildID() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	id := bi.Main.Path + "@" + bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
			id += " " + s.Value
		}
	}
	return id
}

// syncKey is the key the directory's change messages name an entry by:
// its entryUUID (RFC 4533) when it has one, else its id (an AD
// objectGUID).
func syncKey(e *sdk.Entry) string {
	if k := ldapfetch.SyncKey(*e); k != "" {
		return k
	}
	return e.ID
}

// entryRef is what a run keeps of an entry beside its intent, copied out
// of the LDAP message it came in: its sync key and its id and DN. The key
// shares the id's copy when they are equal, as they mostly are.
func entryRef(e *sdk.Entry) (string, diff.Ref) {
	ref := diff.Ref{ID: strings.Clone(e.ID), DN: strings.Clone(e.DN)}
	key := syncKey(e)
	if key == e.ID {
		return ref.ID, ref
	}
	return strings.Clone(key), ref
}

// fetchDelta reads what changed since the kept state's cookie, with the
// reader that made the cookie (its first byte: cookieKind), maps it and
// patches the state into in. errFullRead (wrapped) asks the caller to read
// in full.
func (h *Host) fetchDelta(ctx context.Context, d *config.Domain, creds bind, rep *Report, in *runInput, st *store.DirState) error {
	cfg := h.fetchConfig(d, creds)
	start := time.Now()
	var ch *dirChanges
	var err error
	switch kind, raw := st.Cookie[0], st.Cookie[1:]; kind {
	case cookieSyncrepl:
		ch, err = h.readSyncrepl(ctx, cfg, rep, in, raw)
	case cookieDirSync:
		ch, err = h.readDirSync(ctx, cfg, rep, in, raw)
	case cookieUSN:
		ch, err = h.readUSN(ctx, cfg, rep, in, raw)
	default:
		err = fmt.Errorf("%w: a cookie of an unknown kind", errFullRead)
	}
	rep.Timings.Fetch = time.Since(start)
	if err != nil {
		return err
	}
	hd, herr := dirstate.DecodeHead(st.Head)
	if herr == nil && unchangedDelta(ch, hd, st.Generation) {
		in.unchanged, in.cookie, in.fullAt, in.cookieNow = true, st.Cookie, st.FullAt, ch.cookie
		rep.Read = store.ReadDelta
		rep.Counts.Entries = hd.Count
		return nil
	}
	delta, err := h.mapDelta(ctx, d, rep, in, ch)
	if err != nil {
		return err
	}
	if ok, err := h.patchPart(ctx, d, rep, in, st, ch, delta); ok || err != nil {
		return err
	}
	// The entries, which the run's lease keeps as they were a moment ago.
	full, err := h.store.DirState(ctx, d.Name)
	if err != nil {
		return &stageError{"store", err}
	}
	if full == nil || !bytes.Equal(full.Cookie, st.Cookie) {
		return fmt.Errorf("%w: the kept state changed while the delta was read", errFullRead)
	}
	return h.patch(ctx, d, rep, in, full, nil, ch, delta)
}

// decodeState decodes a kept state, written whole or in chunks.
func decodeState(st *store.DirState) (*dirstate.State, error) {
	if st.Chunks == nil && len(st.Entries) == 0 {
		// A store.ChunkStore gives a state of no entries without chunks.
		if hd, err := dirstate.DecodeHead(st.Head); err == nil && hd.Count == 0 {
			return &dirstate.State{Encoded: []string{}}, nil
		}
	}
	if st.Chunks != nil {
		s, _, err := dirstate.DecodeChunks(st.Chunks)
		return s, err
	}
	return dirstate.Decode(st.Entries)
}

// mapDelta maps the changed entries of ch: the delta to patch into the
// kept state.
func (h *Host) mapDelta(ctx context.Context, d *config.Domain, rep *Report, in *runInput, ch *dirChanges) (*dirstate.Delta, error) {
	delta := &dirstate.Delta{Deleted: ch.deleted, PresentPhase: ch.presentPhase, Present: ch.present}
	for i := 0; i < len(ch.entries); i += batchSize {
		b := ch.entries[i:min(i+batchSize, len(ch.entries))]
		t := time.Now()
		out, err := mapBatch(ctx, in.p, in.sd, b, nil)
		rep.Timings.Policy += time.Since(t)
		if err != nil {
			return nil, &stageError{"policy", fmt.Errorf("policy %q: map: %w", d.Policy, err)}
		}
		for j := range b {
			compact(&out[j])
			key, ref := entryRef(&b[j])
			delta.Changed.Append(key, ref, out[j])
		}
	}
	return delta, nil
}

// patchPart is patch for a state kept in chunks (store.ChunkStore) when
// the run may decide on what the changes reach (the state settled): it
// reads every chunk's summary, then only the chunks
// that the changes and what they reach need (dirstate.PatchChunks), and
// the run writes back only those it changed (dirState). st is the kept
// state's head. ok is false when the part will not do: the caller patches
// the whole state.
func (h *Host) patchPart(ctx context.Context, d *config.Domain, rep *Report, in *runInput, st *store.DirState, ch *dirChanges, delta *dirstate.Delta) (ok bool, err error) {
	cs, chunked := h.store.(store.ChunkStore)
	pr, parts := h.store.(store.PartReader)
	hd, herr := dirstate.DecodeHead(st.Head)
	if !chunked || !parts || herr != nil || !settledAt(hd, st.Generation) {
		return false, nil
	}
	sums, err := cs.DirStateSummaries(ctx, d.Name)
	if err != nil {
		return false, &stageError{"store", err}
	}
	if sums == nil || sums.Chunks == nil {
		return false, nil // kept whole (by an earlier version)
	}
	if sums.Key != st.Key || !bytes.Equal(sums.Cookie, st.Cookie) || !bytes.Equal(sums.Head, st.Head) {
		return false, fmt.Errorf("%w: the kept state changed while the delta was read", errFullRead)
	}
	part, err := dirstate.PatchChunks(sums.Chunks, hd, delta, 1000, func(seqs []int64) ([]store.StateChunk, error) {
		return cs.DirStateChunks(ctx, d.Name, seqs)
	})
	if errors.Is(err, dirstate.ErrWhole) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %v", errFullRead, err)
	}
	h.log.Debug("deciding on what the changes reach", "domain", d.Name, "entries", len(part.Reach.Entries),
		"directory_ids", len(part.Reach.DirIDs), "addresses", len(part.Reach.Addresses), "chunks_read", part.Chunks, "chunks", part.All)
	in.part, in.partDelta, in.partHead, in.partOf = part, delta, hd, st
	in.reach, in.reachGeneration = &part.Reach, st.Generation
	in.partSnapshot = func() (*store.Snapshot, int, error) {
		return pr.SnapshotPart(ctx, d.Name, d.AliasDomains, part.Reach.DirIDs, part.Reach.Addresses)
	}
	in.keys, in.refs, in.intents, in.encoded, in.fullAt = part.New.Keys, part.New.Refs, part.New.Intents, part.New.Encoded, st.FullAt
	in.cookie = ch.cookie
	if in.cookie == nil {
		in.cookie = st.Cookie
	}
	rep.Read = store.ReadDelta
	rep.Counts.Entries = part.Count
	rep.Counts.Changed, rep.Counts.Gone = len(ch.entries), part.Touched.Gone
	in.unchanged = len(ch.entries) == 0 && part.Touched.Gone == 0
	return true, nil
}

// unchangedDelta reports whether a delta changes nothing that a run would
// decide, told from the kept state's head alone: no entry changed, no
// entry gone (the present phase names exactly the kept keys; else nothing
// was deleted), nobody wrote the domain since the state was kept
// (generation is the domain's now), and the run that kept it settled
// everything (applied every change as proposed).
func unchangedDelta(ch *dirChanges, hd dirstate.Head, generation int64) bool {
	if len(ch.entries) > 0 || !settledAt(hd, generation) {
		return false
	}
	if ch.presentPhase {
		return len(ch.present) == hd.Count && dirstate.KeysHash(ch.present) == hd.Keys
	}
	return len(ch.deleted) == 0
}

// settledAt reports whether the run that kept a state settled everything
// (applied every change as proposed: no conflict, veto or replacement
// waiting on something outside the directory) and nobody wrote the domain
// since: generation, the domain's now, is the one it left.
func settledAt(hd dirstate.Head, generation int64) bool {
	return hd.Settled && hd.Generation == generation && generation > 0
}

// readSyncrepl reads what changed since an RFC 4533 cookie.
func (h *Host) readSyncrepl(ctx context.Context, cfg ldapfetch.Config, rep *Report, in *runInput, cookie []byte) (*dirChanges, error) {
	var changed []sdk.Entry
	res, err := ldapfetch.Sync(ctx, cfg, rep.Filter, in.p.Info().Attributes, cookie, func(e sdk.Entry) error {
		changed = append(changed, e)
		return nil
	})
	rep.Server = res.URL
	// A refused cookie, or a server that cannot sync at all (one the read
	// failed over to, without syncprov): a full read still can.
	if errors.Is(err, ldapfetch.ErrRefreshRequired) || errors.Is(err, ldapfetch.ErrSyncUnsupported) {
		return nil, fmt.Errorf("%w: %v", errFullRead, err)
	}
	if err != nil {
		return nil, &stageError{"fetch", err}
	}
	return &dirChanges{entries: changed, deleted: res.Deleted, presentPhase: res.PresentPhase, present: res.Present,
		cookie: kindCookie(cookieSyncrepl, res.Cookie)}, nil
}

// dirChanges are what the directory said changed since a cookie.
type dirChanges struct {
	entries      []sdk.Entry // added or changed
	deleted      []string    // keys of entries deleted or gone out of scope
	presentPhase bool        // present names every unchanged entry
	present      []string
	cookie       []byte // the cookie after the changes; nil: none given
}

// patch patches the changes (ch, delta: its entries mapped) into the kept
// state st, which becomes in's entries. errFullRead (wrapped) when the
// changes do not fit the state.
//
// prev, when not nil, is st's entries decoded already (a live search keeps
// them from its last batch); else they are decoded from st.
func (h *Host) patch(ctx context.Context, d *config.Domain, rep *Report, in *runInput, st *store.DirState, prev *dirstate.State, ch *dirChanges, delta *dirstate.Delta) error {
	// The run decides on what the changes reach only when the store
	// holds what the last decision left: else on the whole domain, whose
	// snapshot is read beside the rest.
	hd, herr := dirstate.DecodeHead(st.Head)
	settled := herr == nil && settledAt(hd, st.Generation)
	pr, _ := h.store.(store.PartReader)
	if pr == nil || !settled {
		in.readSnapshot()
	}
	if prev == nil {
		var err error
		if prev, err = decodeState(st); err != nil {
			return fmt.Errorf("%w: %v", errFullRead, err)
		}
	}
	patched, touched, err := dirstate.Patch(prev, delta)
	if err != nil {
		return fmt.Errorf("%w: %v", errFullRead, err)
	}
	gone := touched.Gone
	if pr != nil && settled {
		// Beyond a quarter of a large domain's entries, the part costs
		// more than the whole.
		reach, ok := diff.Reaches(prev.Refs, prev.Intents, touched.Old, patched.Refs, patched.Intents, touched.New, max(patched.Len()/4, 1000))
		if ok {
			in.reach, in.reachGeneration = &reach, st.Generation
			in.partSnapshot = func() (*store.Snapshot, int, error) {
				return pr.SnapshotPart(ctx, d.Name, d.AliasDomains, reach.DirIDs, reach.Addresses)
			}
			h.log.Debug("deciding on what the changes reach", "domain", d.Name, "entries", len(reach.Entries),
				"directory_ids", len(reach.DirIDs), "addresses", len(reach.Addresses))
		} else {
			in.readSnapshot()
		}
	}
	in.keys, in.refs, in.intents, in.fullAt = patched.Keys, patched.Refs, patched.Intents, st.FullAt
	in.encoded = patched.Encoded
	in.cookie = ch.cookie
	if in.cookie == nil {
		in.cookie = st.Cookie
	}
	rep.Read = store.ReadDelta
	rep.Counts.Entries = patched.Len()
	rep.Counts.Changed, rep.Counts.Gone = len(ch.entries), gone
	// Nothing read changed, and nobody wrote the domain since the state
	// was kept: the run would decide what the last one did. (The kept
	// cookie stays: it still reads from where the state is.)
	in.unchanged = settled && len(ch.entries) == 0 && gone == 0
	return nil
}

// wholeState makes in's entries the whole kept state with the delta that
// patchPart patched into part of it: for a run that, having read a part,
// must decide on the whole domain after all (the store was written
// meanwhile).
func (h *Host) wholeState(ctx context.Context, d *config.Domain, in *runInput) error {
	patched, err := h.wholePatched(ctx, d, in)
	if err != nil {
		return err
	}
	in.keys, in.refs, in.intents, in.encoded = patched.Keys, patched.Refs, patched.Intents, patched.Encoded
	in.part, in.partDelta = nil, nil
	return nil
}

// wholePatched reads the whole kept state that in's part came from and
// patches the part's delta into it.
func (h *Host) wholePatched(ctx context.Context, d *config.Domain, in *runInput) (*dirstate.State, error) {
	changed := fmt.Errorf("the kept directory state changed while the run read it: %w", store.ErrStoreChanged)
	st, err := h.store.DirState(ctx, d.Name)
	if err != nil {
		return nil, err
	}
	if st == nil || st.Key != in.partOf.Key || !bytes.Equal(st.Cookie, in.partOf.Cookie) || !bytes.Equal(st.Head, in.partOf.Head) {
		return nil, changed
	}
	s, err := decodeState(st)
	if err != nil {
		return nil, err
	}
	patched, _, err := dirstate.Patch(s, in.partDelta)
	if err != nil {
		return nil, err
	}
	if patched.Len() != in.part.Count {
		return nil, fmt.Errorf("the part counts %d entries, the whole state %d: %w", in.part.Count, patched.Len(), changed)
	}
	return patched, nil
}

// errFullRead is a delta that cannot be read: the run reads in full.
var errFullRead = errors.New("reading in full")

// dirState is the directory state a sync leaves for the next run: nil when
// the directory gave no cookie (no delta can follow).
//
// A store.ChunkStore keeps it in chunks: a run that patched part of them
// (patchPart) writes back those it changed, any other all of them.
func (h *Host) dirState(d *config.Domain, in *runInput) *store.DirState {
	if len(in.cookie) == 0 {
		return nil
	}
	// Apply bumps the generation it checks by one; Settled is known once
	// the run decided (SetSettled).
	hd := dirstate.Head{Generation: in.snap.Generation + 1}
	ds := &store.DirState{Key: in.stateKey, Cookie: in.cookie, FullAt: in.fullAt}
	s := &dirstate.State{Keys: in.keys, Refs: in.refs, Intents: in.intents, Encoded: in.encoded}
	var err error
	if _, chunked := h.store.(store.ChunkStore); chunked {
		if in.part != nil {
			ds.Chunks, err = in.part.Write(in.partHead)
			hd.Count, hd.Keys, ds.Patch = in.part.Count, in.part.Keys, true
		} else {
			ds.Chunks, err = dirstate.EncodeChunks(s, 0, s.Len(), 1, dirstate.ChunkEntries, dirstate.ChunkBytes)
			hd.Count, hd.Keys = s.Len(), dirstate.KeysHash(s.Keys)
		}
		if ds.Chunks == nil {
			ds.Chunks = []store.StateChunk{} // chunks, none (nil would be a state of Entries)
		}
	} else {
		ds.Entries, err = dirstate.Encode(s)
		hd.Count, hd.Keys = s.Len(), dirstate.KeysHash(s.Keys)
	}
	if err != nil {
		h.log.Warn("the directory state cannot be kept; the next run reads in full", "domain", d.Name, "err", err)
		return nil
	}
	ds.Head = dirstate.EncodeHead(hd)
	return ds
}

// unchanged finishes a run whose delta found nothing to do: a sync is
// recorded as ok with what it read (the kept state stays as it is, its
// cookie moved on to the delta's), a dry run or preview just reports.
func (h *Host) unchanged(ctx context.Context, run *store.Run, rep *Report, started time.Time, o RunOptions, in *runInput) (*Report, error) {
	rep.Unchanged = true
	rep.Outcome = store.OutcomeOK
	rep.Changes = []store.RunChange{}
	rep.Timings.Total = time.Since(started)
	if run == nil || o.DryRun {
		return rep, nil
	}
	run.Ended, run.Outcome, run.Server, run.Counts, run.Read = time.Now(), store.OutcomeOK, rep.Server, rep.Counts, rep.Read
	if err := h.store.RecordRun(ctx, run); err != nil {
		return h.fail(ctx, rep, run, "apply", err)
	}
	rep.RunID = run.ID
	// The kept entries are the directory's at the delta's cookie too: the
	// state moves on to it, or the next delta would read again what
	// changed outside the domain's entries (store.CookieMover). Under the
	// run's lease; a cookie that moved meanwhile is left alone.
	if m, ok := h.store.(store.CookieMover); ok && len(in.cookieNow) > 0 && !bytes.Equal(in.cookieNow, in.cookie) {
		if _, err := m.MoveCookie(ctx, run.Domain, in.cookie, in.cookieNow); err != nil {
			h.log.Warn("the kept cookie was not moved on; the next delta reads from the older one", "domain", run.Domain, "err", err)
		}
	}
	h.logDone(rep)
	if h.applied != nil {
		h.applied(rep)
	}
	return rep, nil
}
