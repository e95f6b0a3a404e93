package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/diff"
	"github.com/dirsync/dirsync/host/internal/dirstate"
	"github.com/dirsync/dirsync/host/internal/guard"
	"github.com/dirsync/dirsync/host/internal/ldapfetch"
	"github.com/dirsync/dirsync/host/internal/mapcache"
	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// RunOptions modify one run.
type RunOptions struct {
	// DryRun runs every stage but the write (and records nothing).
	DryRun bool
	// ConfirmDeletes lets this one run past the deletion limits (S2). It
	// never lets a run whose directory read came back empty delete.
	ConfirmDeletes bool
	// Wait is how long a sync waits for a domain that another run holds
	// (in this process or another sharing the store) before it fails with
	// ErrDomainBusy; 0 fails at once.
	Wait time.Duration
	// SkipIfStartedWithin, for runs that a schedule starts: when the
	// domain's newest run (by any holder, in any process sharing the store)
	// started less than this long ago, the run does nothing and fails with
	// ErrRecentRun, unrecorded. Replicas sharing a schedule so run each
	// due turn once. 0 runs regardless.
	SkipIfStartedWithin time.Duration
	// Full reads the whole directory although the domain's kept state
	// would let the run read only what changed since the last (a delta).
	Full bool
	// live, for a run of Host.Live, holds the changes a live search
	// gathered: the run applies them instead of reading the directory.
	live *liveBatch
	// ifCookie, when set, makes the run take place only while the kept
	// state's cookie is this one (checked under the lease; else
	// errLiveStale, unrecorded): a live search's full run after the
	// directory refused its cookie, which another replica may have
	// replaced meanwhile.
	ifCookie []byte
	// OnStart, if set, is called with the run's id once the run holds its
	// domain and its start is recorded (a sync only): a caller that starts
	// runs in the background can answer with the id at once.
	OnStart func(runID int64)
}

// Report is what a run or a preview found and did.
type Report struct {
	Domain  string `json:"domain"`
	Mode    string `json:"mode"` // "sync", "dry-run" or "preview"
	Outcome string `json:"outcome"`
	// Read says how the directory was read: "full" or "delta" (only what
	// changed since the last applied sync); "" when it was not read.
	Read string `json:"read,omitempty"`
	// Unchanged says that a delta found nothing changed in the directory
	// and nobody wrote the domain in the store since the last sync: the
	// run decided nothing (the policy was not asked) and changed nothing.
	// Counts then has the entries only.
	Unchanged bool   `json:"unchanged,omitempty"`
	RunID     int64  `json:"run_id,omitempty"`
	Server    string `json:"server,omitempty"`
	// FailedOver lists the servers tried, and not reachable, before Server.
	FailedOver []string `json:"failed_over,omitempty"`
	Filter     string   `json:"filter"`
	// BaseDN is the base of the search (for messages; the API's report
	// does not carry it).
	BaseDN string `json:"-"`
	Policy string `json:"policy"`
	// Error says why a run failed or stopped.
	Error string `json:"error,omitempty"`
	// Counts are what the run read and, for a sync, applied: a sync that
	// did not apply counts no change here but in Intended.
	Counts store.Counts `json:"counts"`
	// Intended are the change counts a sync that did not apply (stopped,
	// failed) would have made.
	Intended *store.Counts `json:"intended,omitempty"`
	// References are the continuation references the directory returned:
	// parts of the tree held by other servers, which were not read.
	References []string `json:"references,omitempty"`
	// Mailboxes are the valid users and public folders the directory yields.
	Mailboxes []sdk.Mailbox `json:"-"`
	// Users lists them (a preview's), but for those whose create was
	// vetoed (a conflict, or a change it waits on that did not happen):
	// the run does not bring them in.
	Users []ReportUser `json:"users"`
	// Groups, Unmatched, Skipped and Held are, for a delta run that
	// decided on what its changes reach (Counts.Reached), those among
	// the entries it decided on.
	Groups    []ReportGroup `json:"groups"`
	Unmatched []string      `json:"unmatched_groups"`
	Skipped   []ReportSkip  `json:"skipped"`
	// Held are entries the directory returned that the policy could not
	// map (bad data); their mailboxes were kept as they were.
	Held      []ReportSkip      `json:"held"`
	Conflicts []Conflict        `json:"conflicts"`
	Vetoed    []Vetoed          `json:"vetoed"`
	Changes   []store.RunChange `json:"changes"`
	Timings   Timings           `json:"timings"`
}

// ReportUser is a valid user or public folder of a preview.
type ReportUser struct {
	Address     string   `json:"address"`
	Kind        string   `json:"kind"`
	DisplayName string   `json:"display_name,omitempty"`
	Aliases     []string `json:"aliases"`
	Groups      []string `json:"groups"`
	DN          string   `json:"dn"`
}

// ReportGroup is a directory group of a report and the gateway group it
// fills (Target, when the policy maps it to another name than its own).
type ReportGroup struct {
	Name    string `json:"name"`
	DN      string `json:"dn"`
	Target  string `json:"target,omitempty"`
	Members int    `json:"members"`
}

// ReportSkip is a directory entry, or one of its addresses, that the
// policy skipped or held, with its reason.
type ReportSkip struct {
	DN      string `json:"dn"`
	Address string `json:"address,omitempty"`
	Reason  string `json:"reason"`
}

// convertAll converts each element of a slice, never returning nil.
func convertAll[T, U any](in []T, conv func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = conv(v)
	}
	return out
}

// Conflict is a directory entry that was not imported because its address
// belongs to a mailbox of another source (R10).
type Conflict struct {
	DN     string `json:"dn"`
	Reason string `json:"reason"`
}

// Vetoed is a change the policy turned down.
type Vetoed struct {
	Kind    string `json:"kind"`
	Address string `json:"address"`
	Group   string `json:"group,omitempty"`
	Reason  string `json:"reason"`
}

// Timings says where a run spent its time.
type Timings struct {
	Fetch  time.Duration `json:"fetch_ns"`
	Policy time.Duration `json:"policy_ns"`
	Diff   time.Duration `json:"diff_ns"`
	Apply  time.Duration `json:"apply_ns"`
	Total  time.Duration `json:"total_ns"`
}

// RunError is a run that failed or stopped before writing. Stage names the
// stage: "config" (the config or policy manifest is wrong: a policy that
// will not load or refuses its config, a password that cannot be read),
// "switch" (sync is off), "lease" (another run holds the domain), "store",
// "filter", "fetch", "policy", "guard", "apply", "record" (the run could
// not be recorded).
type RunError struct {
	Domain string
	Stage  string
	Err    error
}

func (e *RunError) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.Domain, e.Stage, e.Err)
}

func (e *RunError) Unwrap() error { return e.Err }

// ErrSyncOff is returned by Run for a domain whose sync switch is off (R1).
var ErrSyncOff = errors.New("sync is switched off for this domain (sync = false); preview still works")

// ErrDomainBusy is returned (inside a *RunError, with the store's
// *store.BusyError naming the holder) by a sync of a domain that another
// run holds.
var ErrDomainBusy = store.ErrDomainBusy

// ErrRecentRun is returned (inside a *RunError of stage "lease") by a run
// with RunOptions.SkipIfStartedWithin when the domain ran that recently:
// another process sharing the store took this turn.
var ErrRecentRun = errors.New("the domain ran moments ago; this turn was taken")

// Run syncs a domain: fetch, map, diff, reconcile, guard, apply. A run that
// fails after it started is recorded (S5) and changes nothing else.
func (h *Host) Run(ctx context.Context, domain string, o RunOptions) (*Report, error) {
	mode := "sync"
	if o.DryRun {
		mode = "dry-run"
	}
	return h.run(ctx, domain, mode, o)
}

// Preview runs every stage but the write (R9) and reports the valid users
// and groups, the unmatched groups, the skipped entries and the changes a
// run would make. It works whether or not the domain's sync is switched on.
func (h *Host) Preview(ctx context.Context, domain string) (*Report, error) {
	return h.run(ctx, domain, "preview", RunOptions{DryRun: true})
}

// PreviewSettings is Preview of settings that are not saved (a form before
// "Apply changes"): d is checked as SaveSettings checks it, and password
// nil uses the bind password stored for the domain, if any.
func (h *Host) PreviewSettings(ctx context.Context, d config.Domain, password *string) (*Report, error) {
	if h.store == nil {
		return nil, errors.New("host: this Host has no Store")
	}
	r, err := h.resolveUnsaved(ctx, d, password)
	if err != nil {
		return nil, err
	}
	return h.runResolved(ctx, r, "preview", RunOptions{DryRun: true})
}

func (h *Host) run(ctx context.Context, name, mode string, o RunOptions) (*Report, error) {
	if h.store == nil {
		return nil, errors.New("host: this Host has no Store")
	}
	r, err := h.resolve(ctx, name)
	if err != nil {
		if mode == "sync" && !errors.Is(err, ErrUnknownDomain) {
			return h.failUnresolved(ctx, name, err)
		}
		return nil, err
	}
	return h.runResolved(ctx, r, mode, o)
}

// failUnresolved records a sync of a domain whose settings could not be
// read from the store (a database that does not answer): a failed attempt
// at stage "store", written now or, if the store is away, once it
// answers again.
func (h *Host) failUnresolved(ctx context.Context, name string, err error) (*Report, error) {
	h.flushRecords(ctx)
	name = strings.ToLower(name)
	rep := &Report{Domain: name, Mode: "sync"}
	run := &store.Run{Domain: name, Started: time.Now(), Outcome: store.OutcomeRunning, Holder: h.holder()}
	return h.fail(ctx, rep, run, "store", err)
}

// runResolved takes a run of a resolved domain through its stages (design
// §2): the lease and the run's record (a sync), the switch, reading the
// directory and the store, the decision, the guards, and the write.
func (h *Host) runResolved(ctx context.Context, r *resolved, mode string, o RunOptions) (*Report, error) {
	d := r.d
	started := time.Now()
	rep := &Report{Domain: d.Name, Mode: mode, Policy: d.Policy, BaseDN: d.LDAP.BaseDN}
	// A sync is recorded from its start (S5): a "running" row, finished
	// whatever happens; a process that dies leaves the row for the next run
	// of the domain to mark abandoned.
	var run *store.Run
	if mode == "sync" {
		h.flushRecords(ctx)
		run = &store.Run{Domain: d.Name, Started: started, Outcome: store.OutcomeRunning, Holder: h.holder(),
			Settings: settingsJSON(d), SettingsVersion: r.version}
		if o.live != nil {
			run.Holder += liveHolder
		}
		var release func()
		var err error
		ctx, release, err = h.lease(ctx, run, o)
		if errors.Is(err, store.ErrDomainBusy) || errors.Is(err, ErrRecentRun) || errors.Is(err, errLiveStale) {
			// Not a run of its own but a turn another run has: the holder's
			// run is the record (replicas racing for a domain would
			// otherwise fill the runs with failures).
			rep.Outcome, rep.Error = store.OutcomeFailed, err.Error()
			return rep, &RunError{Domain: d.Name, Stage: "lease", Err: err}
		}
		if err != nil {
			return h.fail(ctx, rep, run, "lease", err)
		}
		defer release()
		rep.RunID = run.ID
		if o.OnStart != nil {
			o.OnStart(run.ID)
		}
	}
	var in *runInput
	fail := func(stage string, err error) (*Report, error) {
		in.closePrewrite() // before the record: it frees the store's writer
		rep.Timings.Total = time.Since(started)
		return h.fail(ctx, rep, run, stage, err)
	}
	if mode == "sync" && !d.Sync {
		return fail("switch", ErrSyncOff)
	}

	in, stage, err := h.read(ctx, r, run != nil, rep, o)
	if err != nil {
		return fail(stage, err)
	}
	defer in.closePrewrite() // before the lease's release
	if in.unchanged {
		return h.unchanged(ctx, run, rep, started, o, in)
	}
	// The state to keep is encoded while the run decides (decide drops
	// the run's references to the entries, and reads but never changes
	// them). A run that ends before it applies leaves the encoder to
	// finish into its buffered channel.
	state := func() *store.DirState { return nil }
	if mode == "sync" {
		ch := make(chan *store.DirState, 1)
		go func(in runInput) { ch <- h.dirState(d, &in) }(*in)
		state = func() *store.DirState { return <-ch }
	}
	dec, err := h.decide(ctx, d, in, rep)
	if err != nil {
		return fail("policy", err)
	}
	if err := guard.Deletes(rep.Counts.Deleted, dec.ldapTotal, dec.kept, limits(d), o.ConfirmDeletes); err != nil {
		if stop := (*guard.StopError)(nil); errors.As(err, &stop) && stop.Empty {
			stop.Filter, stop.BaseDN, stop.Read = rep.Filter, d.LDAP.BaseDN, rep.Counts.Entries
		}
		if mode == "preview" { // a preview shows what a sync would do, stop included
			rep.Outcome, rep.Error = store.OutcomeStopped, "a sync would stop: "+err.Error()
			rep.Timings.Total = time.Since(started)
			return rep, nil
		}
		return fail("guard", err)
	}
	if o.DryRun {
		rep.Outcome = store.OutcomeOK
		rep.Timings.Total = time.Since(started)
		return rep, nil
	}
	if run.DirState = state(); run.DirState != nil {
		// The last decision stands while nothing changes only if it waits
		// on nothing else: every change applied as proposed (no conflict,
		// no veto, no replacement).
		dirstate.SetSettled(run.DirState.Head, dec.settled)
	}
	if err := h.apply(ctx, d, run, rep, dec.final, in.snap.Generation, in.prewrite()); err != nil {
		return fail("apply", err)
	}
	if o.live != nil && run.DirState != nil {
		o.live.nextHead = run.DirState.Head // what the next batch follows
	}
	rep.RunID = run.ID
	rep.Outcome = store.OutcomeOK
	rep.Timings.Total = time.Since(started)
	h.logDone(rep)
	if h.applied != nil {
		h.applied(rep)
	}
	return rep, nil
}

// runInput is what a run read: the policy, the domain as the policy sees
// it, the store's snapshot of the domain, and the directory's entries with
// the policy's intents.
type runInput struct {
	p       policy.Runtime
	sd      sdk.Domain
	snap    *store.Snapshot
	refs    []diff.Ref
	intents []sdk.Intent
	// The directory state to keep (dirstate.State: keys parallel to refs
	// and intents), under key, with the directory's cookie (nil: none)
	// and the start of the last full read.
	keys     []string
	encoded  []string // a delta's: the intents' kept encodings (dirstate.State.Encoded)
	stateKey string
	cookie   []byte
	fullAt   time.Time
	// unchanged: a delta found nothing changed in the directory, and the
	// store was not written since the kept state: the last run's decision
	// stands, and the run has nothing to decide or apply. cookieNow is
	// then the directory's cookie after the delta, which the kept state
	// moves on to (cookie stays the kept one).
	unchanged bool
	cookieNow []byte
	// readSnapshot starts reading the store's snapshot of the domain
	// beside the rest of the read, once the read knows it will decide
	// (a full read, a delta with changes); snapshot waits for it (and
	// starts it if need be).
	readSnapshot func()
	snapshot     func() (*store.Snapshot, error)
	// reach, when not nil, is the part of the domain a delta's changes
	// reach (diff.Reaches): the run decides on it alone, with the store's
	// part for it, read by partSnapshot with the count of the domain's
	// LDAP mailboxes (ldapTotal). The part must be of reachGeneration,
	// the domain's generation when its kept state was found settled.
	reach           *diff.Reach
	reachGeneration int64
	// part, when not nil, is the part of a state kept in chunks that a
	// delta read and patched (patchPart): in's entries are its New, the
	// whole state's others are as they were. partDelta is the delta it
	// patched in, partHead the kept state's head.
	part         *dirstate.Part
	partDelta    *dirstate.Delta
	partHead     dirstate.Head
	partOf       *store.DirState // the kept state (its head) the part was read from
	partSnapshot func() (*store.Snapshot, int, error)
	ldapTotal    int
	// prewriter writes, during a full read and while the run decides,
	// the mailboxes the run will create (prewrite.go); its transaction is
	// the one the run applies in.
	prewriter *prewriter
}

// closePrewrite rolls back what a full read wrote while it read, unless
// Apply committed it, and frees the store's writer: before the run records
// a failure, and when the run ends.
func (in *runInput) closePrewrite() {
	if in != nil && in.prewriter != nil {
		in.prewriter.abandon()
		in.prewriter = nil
	}
}

// prewrite waits for the mailboxes written ahead and returns the
// transaction they are in (nil: none).
func (in *runInput) prewrite() store.Prewrite {
	if in.prewriter == nil {
		return nil
	}
	return in.prewriter.finish()
}

// read takes the reading stages of a run: the policy and its check of the
// filter, the bind credentials, the store's snapshot (after making the
// domain, unless the run's record made it) and the fetch and map. A
// failure comes with the stage it failed at.
func (h *Host) read(ctx context.Context, r *resolved, recorded bool, rep *Report, o RunOptions) (*runInput, string, error) {
	d := r.d
	// Loaded only once the run has entries to map or changes to
	// reconcile (policyfacts.go): a delta that finds nothing changed
	// needs no more than the policy's facts.
	p, err := h.policy(ctx, d.Policy, false)
	if err != nil {
		return nil, "config", err
	}
	fresp, err := checkFilter(ctx, p, d.LDAP.Filter)
	if err != nil {
		return nil, "filter", err
	}
	rep.Filter = fresp.Filter
	creds, err := h.credentials(ctx, r)
	if err != nil {
		return nil, "config", err
	}
	if !recorded { // a sync made the domain when it recorded its start
		if err := h.store.EnsureDomain(ctx, d.Name); err != nil {
			return nil, "store", err
		}
	}
	groups, err := h.store.Groups(ctx, d.Name)
	if err != nil {
		return nil, "store", err
	}
	in := &runInput{p: p, sd: sdkDomain(d, groups)}
	// The store's state during the read: Apply refuses the run if the
	// domain is written after this (store.ErrStoreChanged). The entries are
	// mapped with the gateway groups as they were before the read.
	var (
		snap    *store.Snapshot
		snapErr error
		snapped = make(chan struct{})
		once    sync.Once
	)
	in.readSnapshot = func() {
		once.Do(func() {
			go func() {
				snap, snapErr = h.store.Snapshot(ctx, d.Name, d.AliasDomains)
				close(snapped)
			}()
		})
	}
	in.snapshot = func() (*store.Snapshot, error) {
		in.readSnapshot()
		<-snapped
		return snap, snapErr
	}
	if err := h.fetch(ctx, d, creds, rep, in, o); err != nil {
		return nil, stageOf(err), err
	}
	if in.unchanged {
		return in, "", nil // nothing to decide: no snapshot needed
	}
	if in.reach != nil {
		in.snap, in.ldapTotal, err = in.partSnapshot()
		if err == nil {
			if why := partUnfit(in.snap, in.reach, in.reachGeneration); why != "" {
				h.log.Debug("deciding on the whole domain", "domain", d.Name, "why", why)
				in.reach = nil
			}
		}
	}
	if in.reach == nil && in.part != nil && err == nil {
		// Only part of the kept state was read, and the run now decides on
		// the whole domain: the whole state, patched, or every entry
		// outside the part would seem gone.
		err = h.wholeState(ctx, d, in)
	}
	if in.reach == nil && err == nil {
		in.snap, err = in.snapshot()
	}
	if err != nil {
		in.closePrewrite()
		return nil, "store", err
	}
	if !sameGroups(in.snap.Groups, in.sd.Groups) {
		in.closePrewrite()
		return nil, "store", fmt.Errorf("the gateway groups changed while the directory was read: %w", store.ErrStoreChanged)
	}
	return in, "", nil
}

// partUnfit says why a run may not decide on reach r with the store's
// part snap, the domain's state having been found settled at generation;
// "" when it may.
func partUnfit(snap *store.Snapshot, r *diff.Reach, generation int64) string {
	if snap.Generation != generation {
		// The store may no longer be what the last decision left.
		return "the domain was written since its kept state was read"
	}
	// Every LDAP mailbox of the part must be one of an entry the run
	// decides on, or of one that changed or went: any other would be
	// deleted.
	for i := range snap.Mailboxes {
		if m := &snap.Mailboxes[i]; m.Source == sdk.SourceLDAP {
			if _, ok := slices.BinarySearch(r.DirIDs, m.DirID); !ok {
				return "the store has a mailbox of directory id " + m.DirID + " that the kept state does not account for"
			}
		}
	}
	return ""
}

// sdkDomain is the domain as its policy sees it: name, alias domains and
// gateway groups.
func sdkDomain(d *config.Domain, groups []store.Group) sdk.Domain {
	sd := sdk.Domain{Name: d.Name, AliasDomains: d.AliasDomains}
	for _, g := range groups {
		sd.Groups = append(sd.Groups, g.Name)
	}
	return sd
}

// sameGroups reports whether groups are the gateway groups named by names.
func sameGroups(groups []store.Group, names []string) bool {
	have := make([]string, len(groups))
	for i, g := range groups {
		have[i] = g.Name
	}
	slices.Sort(have)
	return slices.Equal(have, slices.Sorted(slices.Values(names)))
}

// fetch reads the directory, only what changed when it can (delta.go), and
// maps its entries into in; a full read is overlapped: the policy maps one
// batch while the next page is read. It reports the server, a fail-over,
// the continuation references it did not follow and the map cache's hits,
// and saves the cache (but for a preview); a delta does not use the cache.
func (h *Host) fetch(ctx context.Context, d *config.Domain, creds bind, rep *Report, in *runInput, o RunOptions) error {
	in.stateKey = h.stateKey(d, in)
	if o.live != nil {
		return h.fetchLive(ctx, d, rep, in, o.live)
	}
	plan := h.planRead(ctx, d, in.stateKey, rep.Mode, o)
	if plan.state != nil {
		err := h.fetchDelta(ctx, d, creds, rep, in, plan.state)
		if !errors.Is(err, errFullRead) {
			return err
		}
		plan.why = err.Error()
		rep.Counts = store.Counts{}
	}
	h.log.Debug("reading the directory in full", "domain", d.Name, "why", plan.why)
	// The map cache serves full reads, whose entries are mostly those
	// mapped last time; a delta's are the changed ones, which it would
	// not hold, and reading it (tens of megabytes) would cost a delta more
	// than it saves.
	// A preview reads the cache but does not write it: the cache holds
	// what the last sync or dry run mapped (what its count says the
	// entries are unchanged since), and a preview of unsaved settings
	// cannot replace it with entries of another filter or context.
	cache := h.mapCache(ctx, d, in.p, in.sd, rep.Mode != "preview")
	defer cache.Close()
	in.readSnapshot()
	rep.Read = store.ReadFull
	in.fullAt = time.Now()
	var cookieServer string
	if rep.Mode == "sync" {
		var err error
		if in.cookie, cookieServer, err = h.takeCookie(ctx, d, creds); err != nil {
			return err
		}
	}
	var pw *prewriter
	if rep.Mode == "sync" {
		pw = h.newPrewriter(ctx, d.Name, in.snapshot)
	}
	keys, refs, intents, res, err := h.fetchAndMap(ctx, d, creds, rep, in.p, in.sd, cache, pw)
	if t, ok := in.p.(policy.Trimmer); ok {
		t.Trim() // what Map grew to, before the decision's heap
	}
	if pw != nil {
		if err != nil {
			pw.abandon()
		} else {
			pw.readDone()
			in.prewriter = pw // it goes on while the run decides
		}
	}
	rep.Server = res.URL
	rep.References = res.References
	if i := slices.Index(d.LDAP.URLs, res.URL); i > 0 {
		rep.FailedOver = d.LDAP.URLs[:i]
		h.log.Warn("failed over to another directory server", "domain", d.Name, "server", res.URL, "unreachable", rep.FailedOver)
	}
	if err != nil {
		return err
	}
	if in.cookie != nil && res.URL != cookieServer {
		// The cookie says what one server had; the entries are another's,
		// which may lag behind it: a delta from the cookie would never
		// read what that one had and this one had not.
		h.log.Warn("the read failed over from the server that gave the cookie; no delta follows it, the next run reads in full",
			"domain", d.Name, "cookie_from", cookieServer, "read_from", res.URL)
		in.cookie = nil
	}
	if len(rep.References) > 0 {
		h.log.Warn("the directory referred parts of the tree to other servers; they were not read",
			"domain", d.Name, "references", rep.References)
	}
	rep.Counts.Entries = len(refs)
	if cache != nil {
		rep.Counts.Cached = cache.Hits()
		if err := cache.Save(); err != nil && cache.Err() == nil {
			h.log.Warn("the map cache was not saved; the next run maps every entry", "domain", d.Name, "err", err)
		}
	}
	in.keys, in.refs, in.intents = keys, refs, intents
	return nil
}

// decision is what a run decided: the final changes, the LDAP mailboxes of
// the domain before the run and the mailboxes that entries keep (for the
// guard on deletes, S2).
type decision struct {
	final     []sdk.Change
	ldapTotal int
	kept      int
	// settled: every proposed change is applied as proposed, none had a
	// conflict, and no address went to an entry that was then skipped
	// (diff.Result.Unstable): once applied, the store is what a decision
	// on the whole domain wants, and stays so while nothing changes
	// (diff.Reaches).
	settled bool
}

// decide compares the intents with the snapshot, has the policy reconcile
// the proposed changes and checks the result (S4); the report gets the
// changes. in's entries and intents are dropped once compared.
func (h *Host) decide(ctx context.Context, d *config.Domain, in *runInput, rep *Report) (*decision, error) {
	var dres *diff.Result
	compute := diff.Changes // only a preview lists the users
	if rep.Mode == "preview" {
		compute = diff.Compute
	}
	refs, intents := in.refs, in.intents
	if in.reach != nil {
		refs, intents = pick(refs, in.reach.Entries), pick(intents, in.reach.Entries)
	} else if in.part != nil {
		return nil, errors.New("deciding on the whole domain with part of its entries") // wholeState prevents it
	}
	rep.Timings.Diff = timed(func() { dres = compute(in.sd, refs, intents, in.snap) })
	if in.reach != nil {
		rep.Counts.Reached = len(in.reach.Entries)
	}

	inSnap := 0 // LDAP mailboxes
	for i := range in.snap.Mailboxes {
		if in.snap.Mailboxes[i].Source == sdk.SourceLDAP {
			inSnap++
		}
	}
	ldapTotal, kept := inSnap, dres.Kept+len(dres.Held)
	if in.reach != nil {
		// The mailboxes outside the part are those of the entries
		// outside the reach, each kept as it is.
		ldapTotal = in.ldapTotal
		kept += ldapTotal - inSnap
		if checkingReach() {
			if err := h.checkReach(ctx, d, in, dres, kept); err != nil {
				return nil, err
			}
		}
	}
	in.refs, in.intents = nil, nil

	var rresp sdk.ReconcileResponse
	var perr error
	asked, at := guard.Asked(in.p.Info().Reconcile, dres.Changes)
	if len(asked) > 0 || at == nil {
		rep.Timings.Policy += timed(func() {
			rresp, perr = in.p.Reconcile(ctx, sdk.ReconcileRequest{Domain: in.sd, Changes: asked, LDAPMailboxes: ldapTotal})
		})
	}
	if perr != nil {
		return nil, fmt.Errorf("policy %q: reconcile: %w", d.Policy, perr)
	}
	final, vetoed, err := guard.Decide(d.Policy, in.sd, in.snap, dres.Changes, at, rresp)
	if err != nil {
		return nil, err
	}
	h.fill(rep, dres, final, vetoed)
	settled := len(vetoed) == 0 && !dres.Unstable
	for _, d := range rresp.Decisions {
		settled = settled && d.Action != sdk.Replace
	}
	for i := range dres.Changes {
		settled = settled && len(dres.Changes[i].Conflicts) == 0
	}
	return &decision{final: final, ldapTotal: ldapTotal, kept: kept, settled: settled}, nil
}

// pick returns the elements of s at the indexes at.
func pick[T any](s []T, at []int) []T {
	out := make([]T, len(at))
	for i, j := range at {
		out[i] = s[j]
	}
	return out
}

// apply writes the final changes and the run's record in one store
// transaction (S3, S5), checked against the generation of the snapshot.
//
// pw, when not nil, is the transaction in which the run wrote mailboxes
// while it read: the changes are applied in it.
func (h *Host) apply(ctx context.Context, d *config.Domain, run *store.Run, rep *Report, final []sdk.Change, generation int64, pw store.Prewrite) error {
	run.Outcome, run.Server, run.Counts, run.Changes, run.Read = store.OutcomeOK, rep.Server, rep.Counts, rep.Changes, rep.Read
	run.References, run.Generation = rep.References, generation
	if len(final) > 0 {
		h.log.Info("writing to the store", "domain", d.Name, "run", run.ID, "changes", len(final))
	}
	var err error
	rep.Timings.Apply = timed(func() {
		run.Ended = time.Now()
		if pw != nil {
			err = pw.Apply(ctx, final, run)
		} else {
			err = h.store.Apply(ctx, d.Name, final, run)
		}
	})
	return err
}

// logDone logs the end of a sync that applied, with its counts and the
// time of each stage.
func (h *Host) logDone(rep *Report) {
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	h.log.Info("sync done", "domain", rep.Domain, "run", rep.RunID, "created", rep.Counts.Created, "updated", rep.Counts.Updated,
		"deleted", rep.Counts.Deleted, "took", ms(rep.Timings.Total), "fetch", ms(rep.Timings.Fetch),
		"policy", ms(rep.Timings.Policy), "diff", ms(rep.Timings.Diff), "apply", ms(rep.Timings.Apply))
}

// fail finishes a run that did not apply: the report says why, and a sync
// (run != nil) is recorded with its stage, error and what it read; the
// changes it would have made are counted apart, as intended. A record that
// cannot be written fails the run as well.
func (h *Host) fail(ctx context.Context, rep *Report, run *store.Run, stage string, err error) (*Report, error) {
	rep.Outcome = store.OutcomeFailed
	var stop *guard.StopError
	switch {
	case errors.As(err, &stop):
		rep.Outcome = store.OutcomeStopped
	case errors.Is(ctx.Err(), context.Canceled) && !errors.Is(context.Cause(ctx), store.ErrLeaseLost):
		// Cancelled by the caller (a signal, a shutdown), not by a lost lease.
		rep.Outcome = store.OutcomeCancelled
	}
	rep.Error = err.Error()
	if run != nil && rep.Mode == "sync" {
		if n := rep.Counts; changed(n) {
			rep.Intended = &n
			rep.Counts = readCounts(n)
		}
		run.Ended, run.Outcome, run.Stage, run.Error = time.Now(), rep.Outcome, stage, rep.Error
		run.Server, run.Counts, run.Intended, run.References, run.Changes = rep.Server, rep.Counts, rep.Intended, rep.References, rep.Changes
		run.Read = rep.Read
		if rerr := h.store.RecordRun(context.WithoutCancel(ctx), run); rerr != nil {
			err = fmt.Errorf("%w; and the run could not be recorded (it is, once the store answers again): %w", err, rerr)
			stage = "record"
			h.keepRecord(run)
		}
		rep.RunID = run.ID
		h.log.Debug("sync "+rep.Outcome, "domain", rep.Domain, "run", run.ID, "stage", stage, "err", err)
	}
	return rep, &RunError{Domain: rep.Domain, Stage: stage, Err: err}
}

// changed reports whether counts hold any change.
func changed(c store.Counts) bool {
	return c.Created+c.Updated+c.Deleted+c.Adopted+c.MembersAdded+c.MembersRemoved > 0
}

// readCounts keeps what a run read and found, without the changes.
func readCounts(c store.Counts) store.Counts {
	c.Created, c.Updated, c.Deleted, c.Adopted, c.MembersAdded, c.MembersRemoved = 0, 0, 0, 0, 0, 0
	return c
}

func limits(d *config.Domain) guard.Limits {
	return guard.Limits{MaxDeletes: d.Safety.MaxDeletes, MaxDeletePercent: d.Safety.MaxDeletePercent, PercentFloor: d.Safety.PercentFloor}
}

// stageError tags an error with the stage it came from.
type stageError struct {
	stage string
	err   error
}

func (e *stageError) Error() string { return e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func stageOf(err error) string {
	var se *stageError
	if errors.As(err, &se) {
		return se.stage
	}
	return "fetch"
}

const (
	batchSize     = 2000  // entries per Map call
	mappers       = 2     // concurrent Map calls
	progressEvery = 10000 // entries between progress lines
)

// fetchAndMap reads the directory in full and maps its entries, a batch
// while the next is read, and returns each entry's sync key, ref and
// intent. pw, when not nil, gets every mapped batch with its place in the
// read, to write ahead the mailboxes the run will create (prewrite.go).
func (h *Host) fetchAndMap(ctx context.Context, d *config.Domain, creds bind, rep *Report, p policy.Runtime, sd sdk.Domain, cache *mapcache.Cache, pw *prewriter) ([]string, []diff.Ref, []sdk.Intent, ldapfetch.Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Mappers: one per core. Map is pure per entry, so batches may be
	// mapped in any order; each result keeps its own refs.
	type readBatch struct {
		seq     int // its place in the read
		entries []sdk.Entry
	}
	batches := make(chan readBatch, mappers)
	// Each mapped batch is kept as it is and joined once at the end: a
	// slice grown entry by entry would copy 100,000 intents several times.
	type mapped struct {
		keys    []string
		refs    []diff.Ref
		intents []sdk.Intent
	}
	var (
		mu     sync.Mutex
		done   []mapped
		total  int
		mapErr error
		wg     sync.WaitGroup
	)
	for range mappers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rb := range batches {
				if ctx.Err() != nil {
					continue // drain after a failure
				}
				b := rb.entries
				t := time.Now()
				out, err := mapBatch(ctx, p, sd, b, cache)
				took := time.Since(t)
				mu.Lock()
				rep.Timings.Policy += took
				if err != nil {
					if mapErr == nil {
						mapErr = &stageError{"policy", fmt.Errorf("policy %q: map: %w", d.Policy, err)}
					}
					cancel()
					mu.Unlock()
					continue
				}
				mu.Unlock()
				m := mapped{keys: make([]string, len(b)), refs: make([]diff.Ref, len(b)), intents: out}
				for i := range b {
					m.keys[i], m.refs[i] = entryRef(&b[i])
					compact(&out[i])
				}
				if pw != nil {
					pw.add(rb.seq, mappedBatch{refs: m.refs, intents: out})
				}
				mu.Lock()
				done, total = append(done, m), total+len(b)
				mu.Unlock()
			}
		}()
	}

	attrs := p.Info().Attributes
	cfg := h.fetchConfig(d, creds)
	batch := make([]sdk.Entry, 0, batchSize)
	start := time.Now()
	n, seq := 0, 0
	res, ferr := ldapfetch.Fetch(ctx, cfg, rep.Filter, attrs, func(e sdk.Entry) error {
		batch = append(batch, e)
		if n++; n%progressEvery == 0 {
			h.log.Info("reading the directory", "domain", d.Name, "entries", n, "elapsed", time.Since(start).Round(time.Millisecond))
		}
		if len(batch) == batchSize {
			select {
			case batches <- readBatch{seq, batch}:
			case <-ctx.Done():
				return ctx.Err()
			}
			seq++
			batch = make([]sdk.Entry, 0, batchSize)
		}
		return nil
	})
	if ferr == nil && len(batch) > 0 {
		batches <- readBatch{seq, batch}
	}
	close(batches)
	rep.Timings.Fetch = time.Since(start)
	wg.Wait()
	if mapErr != nil {
		return nil, nil, nil, res, mapErr
	}
	if ferr != nil {
		return nil, nil, nil, res, &stageError{"fetch", ferr}
	}
	keys, refs, intents := make([]string, 0, total), make([]diff.Ref, 0, total), make([]sdk.Intent, 0, total)
	for i := range done {
		keys, refs, intents = append(keys, done[i].keys...), append(refs, done[i].refs...), append(intents, done[i].intents...)
		done[i] = mapped{}
	}
	return keys, refs, intents, res, nil
}

// fetchConfig is the directory read of a domain's settings.
func (h *Host) fetchConfig(d *config.Domain, b bind) ldapfetch.Config {
	return ldapfetch.Config{
		URLs:               d.LDAP.URLs,
		BindDN:             d.LDAP.BindDN,
		Password:           b.password,
		RootCAs:            b.roots,
		BaseDN:             d.LDAP.BaseDN,
		StartTLS:           d.LDAP.StartTLS,
		CAFile:             h.cfg.Rel(d.LDAP.CAFile),
		InsecureSkipVerify: d.LDAP.InsecureSkipVerify,
		PageSize:           d.LDAP.PageSize,
		Timeout:            d.LDAP.Timeout.Duration,
		ConnectTimeout:     d.LDAP.ConnectTimeout.Duration,
		MaxEntries:         d.LDAP.MaxEntries,
		AllowCleartextBind: d.LDAP.AllowCleartextBind,
	}
}

// mapBatch maps one batch of entries, asking the policy only for those the
// cache (nil: none) does not know.
func mapBatch(ctx context.Context, p policy.Runtime, sd sdk.Domain, b []sdk.Entry, cache *mapcache.Cache) ([]sdk.Intent, error) {
	call := func(entries []sdk.Entry) ([]sdk.Intent, error) {
		resp, err := p.Map(ctx, sdk.MapRequest{Domain: sd, Entries: entries})
		if err == nil && len(resp.Intents) != len(entries) {
			err = fmt.Errorf("returned %d intents for %d entries", len(resp.Intents), len(entries))
		}
		return resp.Intents, err
	}
	if cache == nil {
		return call(b)
	}
	out := make([]sdk.Intent, len(b))
	keys := make([]mapcache.Key, len(b))
	var miss []int
	for i := range b {
		keys[i] = mapcache.EntryKey(&b[i])
		var ok bool
		if out[i], ok = cache.Get(keys[i]); !ok {
			miss = append(miss, i)
		}
	}
	if len(miss) == 0 {
		return out, nil
	}
	entries := make([]sdk.Entry, len(miss))
	for j, i := range miss {
		entries[j] = b[i]
	}
	mapped, err := call(entries)
	if err != nil {
		return nil, err
	}
	for j, i := range miss {
		out[i] = mapped[j]
		cache.Put(keys[i], &mapped[j])
	}
	return out, nil
}

// compact copies the strings an intent keeps, so that they stop pinning
// the buffers they were decoded from (a whole LDAP message or a policy
// reply, most of which the run no longer needs).
func compact(it *sdk.Intent) {
	for i := range it.Skipped {
		it.Skipped[i].Address = strings.Clone(it.Skipped[i].Address)
		it.Skipped[i].Reason = strings.Clone(it.Skipped[i].Reason)
	}
	it.Reason = strings.Clone(it.Reason)
	if m := it.Mailbox; m != nil {
		m.Kind = strings.Clone(m.Kind)
		m.Primary = cloneAddress(m.Primary)
		m.DisplayName = strings.Clone(m.DisplayName)
		for i, a := range m.Aliases {
			m.Aliases[i] = cloneAddress(a)
		}
		cloneAll(m.MemberOf)
	}
	if g := it.Group; g != nil {
		g.Name = strings.Clone(g.Name)
		g.Target = strings.Clone(g.Target)
		cloneAll(g.Members)
	}
}

// cloneAddress is a copy of an address as the stores keep it (lower case,
// no blanks around it: store.NormAddress): a policy that gives
// "Alice@Example.com" names the mailbox that owns "alice@example.com",
// and the diff compares and claims addresses as they are stored.
func cloneAddress(a string) string {
	for i := 0; i < len(a); i++ {
		if c := a[i]; c >= 'A' && c <= 'Z' || c <= ' ' || c >= 0x80 { // upper case, blanks and controls, non-ASCII
			return strings.ToLower(strings.TrimSpace(a))
		}
	}
	return strings.Clone(a)
}

func cloneAll(s []string) {
	for i := range s {
		s[i] = strings.Clone(s[i])
	}
}

// fill puts the outcome of diff and reconcile into the report.
func (h *Host) fill(rep *Report, res *diff.Result, final []sdk.Change, vetoed []guard.Vetoed) {
	toSkip := func(s diff.Skip) ReportSkip { return ReportSkip(s) }
	rep.Groups = convertAll(res.Groups, func(g diff.Group) ReportGroup { return ReportGroup(g) })
	rep.Skipped, rep.Held = convertAll(res.Skipped, toSkip), convertAll(res.Held, toSkip)
	rep.Unmatched = res.Unmatched
	if rep.Unmatched == nil {
		rep.Unmatched = []string{}
	}
	rep.Counts.Held = len(res.Held)
	rep.Counts.Skipped = len(res.Skipped)
	rep.Counts.Unmatched = len(res.Unmatched)
	vetoedDir := map[string]bool{}
	rep.Conflicts, rep.Vetoed = []Conflict{}, []Vetoed{}
	for _, v := range vetoed {
		m := v.Change.After
		if m == nil {
			m = v.Change.Before
		}
		if v.Change.Kind == sdk.ChangeCreate {
			vetoedDir[m.DirID] = true // not a user the run brings in
		}
		if v.Conflict && v.Change.Kind == sdk.ChangeCreate {
			rep.Conflicts = append(rep.Conflicts, Conflict{DN: m.DN, Reason: v.Reason})
			continue
		}
		rep.Vetoed = append(rep.Vetoed, Vetoed{Kind: v.Change.Kind.String(), Address: m.Primary, Group: v.Change.Group, Reason: v.Reason})
	}
	rep.Counts.Conflicts = len(rep.Conflicts)
	rep.Counts.Vetoed = len(rep.Vetoed)
	rep.Users = make([]ReportUser, 0, len(res.Mailboxes)) // listed for a preview only (decide)
	for _, m := range res.Mailboxes {
		if vetoedDir[m.DirID] {
			continue
		}
		rep.Users = append(rep.Users, ReportUser{Address: m.Primary, Kind: m.Kind, DisplayName: m.DisplayName,
			Aliases: nonNil(m.Aliases), Groups: nonNil(m.Groups), DN: m.DN})
	}
	rep.Changes = store.RunChanges(final)
	for _, c := range final {
		switch c.Kind {
		case sdk.ChangeCreate:
			rep.Counts.Created++
			rep.Counts.MembersAdded += len(c.After.Groups)
		case sdk.ChangeUpdate:
			rep.Counts.Updated++
		case sdk.ChangeAdopt:
			rep.Counts.Adopted++
		case sdk.ChangeDelete:
			rep.Counts.Deleted++
		case sdk.ChangeAddMember:
			rep.Counts.MembersAdded++
		case sdk.ChangeRemoveMember:
			rep.Counts.MembersRemoved++
		}
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
