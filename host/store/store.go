// Package store defines the mailbox store the host keeps in step with a
// directory. A vendor who embeds the host can hand it their own Store; the
// SQLite one in store/sqlite ships with dirsync, and every Store must pass the
// shared suite in store/storetest.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dirsync/dirsync/sdk"
)

// Errors a Store returns; wrap them with context, test them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrDomainBusy: another holder has the domain's lease (see *BusyError).
	ErrDomainBusy = errors.New("domain is being synced by another run")
	// ErrLeaseLost: the holder's lease expired and was taken, or released.
	ErrLeaseLost = errors.New("the run lost its lease on the domain")
	// ErrStoreChanged: Apply found the domain written since the run's
	// snapshot (Snapshot.Generation ≠ Run.Generation); nothing was applied.
	ErrStoreChanged = errors.New("the domain changed in the store since the run read it; nothing was applied, run again")
	// ErrNoStore: a read-only open found no store to read.
	ErrNoStore = errors.New("no store")
	// ErrConflict: PutSettings was given a stale expected version (the
	// domain's settings were saved or removed since the caller read them);
	// nothing was saved.
	ErrConflict = errors.New("conflict")
)

// SettingsVersion is one saved version of a store-kept domain's settings:
// a domain made and changed through the API, page or CLI rather than
// declared in the config file. Versions are numbered 1, 2, … per domain and
// kept: a change saves a new version, it never edits one.
type SettingsVersion struct {
	Domain  string `json:"domain"`
	Version int64  `json:"version"` // 1, 2, … per domain, never reused
	// Settings is the JSON of the domain's keys, as the host writes them;
	// the store keeps the bytes and does not read them.
	Settings []byte `json:"settings"`
	// Secret is the sealed bind password (see host/internal/secrets), nil
	// if none. It is never encoded as JSON.
	Secret  []byte    `json:"-"`
	Author  string    `json:"author"` // who saved it: an API token's name, "cli" …
	Created time.Time `json:"created"`
	// Removed marks the version that removed the domain. It carries the
	// settings of the version it removed and no secret.
	Removed bool `json:"removed,omitempty"`
}

// Lease is a domain's lease: while it lasts, only Holder runs a sync of the
// domain, in this process or any other sharing the store.
type Lease struct {
	Domain string    `json:"domain"`
	Holder string    `json:"holder"`
	RunID  int64     `json:"run_id,omitempty"` // set by StartRun
	Since  time.Time `json:"since"`
	Expiry time.Time `json:"expiry"`
}

// BusyError is returned by AcquireLease when another holder has the
// domain's unexpired lease. errors.Is(err, ErrDomainBusy) holds.
type BusyError struct{ Lease Lease }

func (e *BusyError) Error() string {
	s := "domain " + e.Lease.Domain + " is being synced by " + e.Lease.Holder
	if e.Lease.RunID != 0 {
		s += fmt.Sprintf(" (run %d)", e.Lease.RunID)
	}
	return s + " since " + e.Lease.Since.Local().Format(time.DateTime)
}

// Is makes errors.Is(err, ErrDomainBusy) true.
func (e *BusyError) Is(target error) bool { return target == ErrDomainBusy }

// Mailbox is a mailbox with its aliases and gateway groups. Source is
// sdk.SourceLDAP or sdk.SourceManual; DirID and DN are set for LDAP ones.
type Mailbox = sdk.Mailbox

// Group is a gateway group. Groups are made by an operator (source manual);
// a sync never creates one.
type Group struct {
	Name   string
	Source string
}

// Snapshot is the state of one domain that a sync compares with the
// directory: every mailbox of the domain (all sources) with aliases and
// groups, and every gateway group. Mailboxes are sorted by primary address,
// aliases and groups by name.
type Snapshot struct {
	Domain    string
	Mailboxes []Mailbox
	Groups    []Group
	// Owners maps every address (primary or alias) in the store that lies in
	// the domain or one of the alias domains given to Snapshot, to the id of
	// the mailbox that owns it — including mailboxes of other domains.
	Owners map[string]int64
	// Foreign holds the mailboxes of other domains named in Owners.
	Foreign map[int64]Mailbox
	// Generation counts the writes to the domain (a sync's Apply or any
	// hand-made change). A run hands it back in Run.Generation, and Apply
	// refuses the run if the domain was written since (ErrStoreChanged).
	Generation int64
}

// Change is one change to apply. Creates carry the new mailbox in After
// (with its groups); updates and adopts carry Before and After (After.ID
// names the mailbox); deletes carry Before; membership changes carry the
// mailbox in Before (or, for a mailbox created in the same Apply, in After
// with ID 0 and its DirID) and the group in Group.
type Change = sdk.Change

// Counts sums up a run.
type Counts struct {
	Created        int `json:"created"`
	Updated        int `json:"updated"`
	Deleted        int `json:"deleted"`
	Adopted        int `json:"adopted"`
	MembersAdded   int `json:"memberships_added"`
	MembersRemoved int `json:"memberships_removed"`
	Skipped        int `json:"skipped"`
	Unmatched      int `json:"unmatched_groups"`
	Conflicts      int `json:"conflicts"`
	Vetoed         int `json:"vetoed"`
	// Held counts entries the directory returned that the policy could not
	// map (bad data): their mailboxes were kept unchanged.
	Held    int `json:"held"`
	Entries int `json:"entries"`
	// Cached counts the entries whose intent came from the map cache
	// (unchanged since the last run) instead of a call to the policy.
	Cached int `json:"cached_entries,omitempty"`
	// Changed and Gone are what a delta read (Run.Read "delta") found: the
	// entries added or changed, and those deleted or gone out of scope.
	// Entries counts the whole domain as the run decided on it.
	Changed int `json:"changed_entries,omitempty"`
	Gone    int `json:"gone_entries,omitempty"`
	// Reached counts the entries a delta run decided on: those its
	// changes reach, when the store held what the last decision left
	// (0: it decided on every entry). Skipped, Unmatched and Held then
	// count among them only.
	Reached int `json:"reached_entries,omitempty"`
}

// Run outcomes.
const (
	OutcomeOK        = "ok"
	OutcomeFailed    = "failed"
	OutcomeStopped   = "stopped"   // the guard stopped it (S2)
	OutcomeRunning   = "running"   // started, not finished yet
	OutcomeCancelled = "cancelled" // cancelled (signal, shutdown); rolled back
	OutcomeAbandoned = "abandoned" // its process died; its lease expired
)

// Run is the record of one sync run (S5).
type Run struct {
	ID      int64     `json:"id"`
	Domain  string    `json:"domain"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"` // zero while running
	Outcome string    `json:"outcome"`
	// Stage names the stage a run that did not apply failed or stopped at:
	// "config", "filter", "lease", "store", "fetch", "policy", "guard",
	// "apply".
	Stage  string `json:"stage,omitempty"`
	Error  string `json:"error,omitempty"`
	Server string `json:"server,omitempty"`
	// Holder is the lease holder that ran it (host, pid and a sequence).
	Holder string `json:"holder,omitempty"`
	// SettingsVersion is the version of the store-kept settings the run
	// used (see SettingsVersion); 0 for a domain declared in the config
	// file. StartRun, RecordRun and Apply store it like the other fields.
	SettingsVersion int64 `json:"settings_version,omitempty"`
	// Settings are the domain's settings the run used, as JSON, without
	// secrets.
	Settings string `json:"settings,omitempty"`
	// Counts are what the run read and applied: for a run that did not
	// apply, every change count is zero.
	Counts Counts `json:"counts"`
	// Intended are the counts of the changes a run that did not apply
	// would have made (nil when it applied, or got no further than reading).
	Intended *Counts `json:"intended,omitempty"`
	// References are the continuation references (search result
	// references) the directory returned: parts of the tree held by other
	// servers, not read.
	References []string `json:"references,omitempty"`
	// Read says how the run read the directory: ReadFull (everything
	// under the base) or ReadDelta (what changed since the domain's
	// DirState); "" for a run that got no further than its start. Every
	// writer stores it; every reader fills it.
	Read string `json:"read,omitempty"`
	// Generation is the Snapshot.Generation the run's changes were computed
	// from; Apply refuses the run if the domain was written since.
	Generation int64 `json:"-"`
	// DirState is the directory state the run leaves for the next one:
	// Apply replaces the domain's DirState with it in the run's
	// transaction (nil deletes it), so that a run that does not apply
	// keeps the state, and the cookie, of the last one that did. RecordRun
	// and StartRun ignore it; no reader fills it.
	DirState *DirState `json:"-"`
	// ChangeCount is how many changes the run recorded: RunsPage, LastRuns
	// and Run fill it without reading the changes. A writer (Apply,
	// RecordRun, StartRun) sets it to len(Changes), whatever it was given.
	ChangeCount int `json:"change_count"`
	// Changes is the per-object list of what the run changed (or, with
	// Intended set, would have changed), in order. Writers record it; no
	// reader fills it (a run may have 100,000 changes): RunChanges reads
	// them a page at a time.
	Changes []RunChange `json:"changes,omitempty"`
}

// How a run read the directory (Run.Read).
const (
	ReadFull  = "full"
	ReadDelta = "delta"
)

// DirState is what a domain's last applied sync read from the directory:
// enough for the next run to read only what changed since then (a delta)
// and still decide on the whole domain. The host writes it through
// Run.DirState in the Apply of a run; the store keeps it as given.
type DirState struct {
	// Key names what the state was read with (directory, base DN, filter,
	// policy and its config, alias domains): the host reads in full when
	// its key differs.
	Key string
	// Cookie is the directory's token of the point the state was read up
	// to (an RFC 4533 sync cookie, an Active Directory DirSync cookie);
	// empty when no delta can follow.
	Cookie []byte
	// FullAt is when the last full read of the state started.
	FullAt time.Time
	// Entries is the host's encoding of the entries read: opaque to the
	// store, and large (about 350 bytes an entry). A store that is a
	// ChunkStore gets and gives Chunks instead (Entries nil).
	Entries []byte
	// Chunks are the entries in parts, for a ChunkStore: the state is
	// the chunks in ascending Seq. In a Run.DirState given to Apply they
	// replace every chunk the domain had, unless Patch is set.
	Chunks []StateChunk
	// Patch, in a Run.DirState given to Apply, keeps the domain's chunks
	// and changes only those of Chunks: each replaces the chunk of its
	// Seq (or is added), and one with an empty Data deletes it. Key,
	// Cookie, FullAt and Head are replaced as always. A store that is not
	// a ChunkStore never gets it.
	Patch bool
	// Head is a small part of the host's encoding (its summary of
	// Entries), kept as given and readable without Entries
	// (DirStateHead).
	Head []byte
	// Generation is filled by Store.DirState: the domain's write
	// generation as it reads the state (Snapshot.Generation). Writers
	// ignore it.
	Generation int64
}

// Member is a mailbox in a gateway group, as GroupMembers lists it.
type Member struct {
	// Address is the mailbox's primary address.
	Address string `json:"address"`
	// Source is how the membership was made: sdk.SourceLDAP by a sync
	// (a create's groups, an add_member), sdk.SourceManual by hand
	// (Assign, AddMailbox's groups).
	Source string `json:"source"`
	// MailboxSource is the mailbox's own source (Mailbox.Source).
	MailboxSource string `json:"mailbox_source"`
}

// RunChange is one applied change as a run record keeps it: the object and
// its state before and after.
type RunChange struct {
	Kind    string       `json:"kind"`
	Address string       `json:"address"`
	Group   string       `json:"group,omitempty"`
	Before  *MailboxView `json:"before,omitempty"`
	After   *MailboxView `json:"after,omitempty"`
}

// MailboxView is the part of a mailbox a run record keeps.
type MailboxView struct {
	Primary     string   `json:"primary"`
	Aliases     []string `json:"aliases,omitempty"`
	DisplayName string   `json:"display_name,omitempty"`
	Kind        string   `json:"kind"`
	DN          string   `json:"dn,omitempty"`
	Groups      []string `json:"groups,omitempty"`
}

// RunChanges turns changes into a run record's list, in the same order.
// Membership changes name the mailbox by Address only.
func RunChanges(changes []Change) []RunChange {
	rcs := make([]RunChange, len(changes))
	for i := range changes {
		c := &changes[i]
		rc := RunChange{Kind: c.Kind.String(), Group: c.Group}
		if c.After != nil && c.After.Primary != "" {
			rc.Address = c.After.Primary
		} else if c.Before != nil {
			rc.Address = c.Before.Primary
		}
		switch c.Kind {
		case sdk.ChangeAddMember, sdk.ChangeRemoveMember:
		default:
			rc.Before, rc.After = view(c.Before), view(c.After)
		}
		rcs[i] = rc
	}
	return rcs
}

func view(m *Mailbox) *MailboxView {
	if m == nil {
		return nil
	}
	return &MailboxView{Primary: m.Primary, Aliases: m.Aliases, DisplayName: m.DisplayName, Kind: m.Kind, DN: m.DN, Groups: m.Groups}
}

// Store holds domains, mailboxes, aliases, groups, memberships and runs.
// Every method is safe for concurrent use.
//
// Rules every Store keeps (the suite in store/storetest checks each):
//   - Domain names and addresses are kept in lower case; Resolve and every
//     lookup by address ignore case. A domain name with an "@" is refused.
//   - An address (primary or alias) belongs to one mailbox of the whole
//     store; a second is ErrExists. Within one LDAP-sourced domain a
//     directory id belongs to one mailbox: a create with the id of an
//     existing one is ErrExists.
//   - Lists come back nil, not empty, when there is nothing: a mailbox
//     without aliases has Aliases nil, one without groups Groups nil; a
//     Run's Intended is kept as given (a non-nil zero Counts stays
//     non-nil).
//   - Errors name what they are about: the change kind and address
//     ("create eve@example.com"), a group's name in quotes.
type Store interface {
	// EnsureDomain creates the domain if it does not exist.
	EnsureDomain(ctx context.Context, domain string) error
	// Snapshot reads the current state of a domain. aliasDomains are the
	// domain's alias domains, whose addresses Owners also covers.
	Snapshot(ctx context.Context, domain string, aliasDomains []string) (*Snapshot, error)
	// Apply makes all changes and records run, in one transaction (S3): all
	// of it lands or none. It first checks that the domain's generation is
	// still run.Generation (else ErrStoreChanged, nothing written), and
	// bumps it. A run with an ID (from StartRun) has its row finished; one
	// without gets a new row. The domain's DirState becomes run.DirState
	// (nil: none) in the same transaction. If run.Changes is nil it records
	// RunChanges(changes). It fills run.ID and run.ChangeCount.
	//
	// Changes are applied as a set, not one by one in the given order:
	// first the deletes, then the updates and adopts (each releasing the
	// addresses it gives up before any takes new ones, so two mailboxes
	// may swap aliases in one run), then the creates, then the membership
	// changes. An update keeps the mailbox's source and ignores
	// After.Groups (memberships change only through add_member and
	// remove_member); an adopt makes the mailbox sdk.SourceLDAP. A
	// create's groups and an add_member make memberships of source
	// sdk.SourceLDAP; an add_member of a member is no error and makes that
	// membership sdk.SourceLDAP, also one made by hand (the sync takes it
	// over).
	Apply(ctx context.Context, domain string, changes []Change, run *Run) error
	// RecordRun records a run that changed nothing (failed, stopped,
	// cancelled): it finishes the row StartRun wrote when run.ID is set,
	// else writes a new row. It fills run.ID and run.ChangeCount.
	RecordRun(ctx context.Context, run *Run) error
	// RunsPage lists a domain's runs newest first by id, without their
	// Changes but with their ChangeCount: at most limit of them (1 to
	// 1000; 0 means 50), only those with an id below beforeID (0: from the
	// newest). The next page starts before the last id of this one; a page
	// shorter than limit is the last. A limit outside 0..1000 or a
	// negative beforeID is an error.
	RunsPage(ctx context.Context, domain string, limit int, beforeID int64) ([]Run, error)
	// LastRuns returns the newest run (by id) of every domain that has
	// one, as RunsPage gives it, by domain: a listing of many domains
	// reads them in one query.
	LastRuns(ctx context.Context) (map[string]Run, error)
	// Run returns run id of the domain as RunsPage gives it: without its
	// Changes, with their ChangeCount. ErrNotFound if there is none, also
	// when run id belongs to another domain.
	Run(ctx context.Context, domain string, id int64) (*Run, error)
	// RunChanges returns a page of the changes of run id of the domain, in
	// their recorded order: at most limit of them (1 to 10000; 0 means
	// 1000) from the one at index offset (0: the first). An offset at or
	// past the run's ChangeCount gives none (and no error). A limit
	// outside 0..10000 or a negative offset is an error; ErrNotFound if
	// the domain has no run id, also when run id belongs to another
	// domain.
	RunChanges(ctx context.Context, domain string, id int64, offset, limit int) ([]RunChange, error)
	// DirState returns the directory state that the domain's last applied
	// run left (Run.DirState), as it was given (an empty Cookie, Entries
	// or Head may come back nil); nil (and no error) when there is none or
	// the domain does not exist.
	DirState(ctx context.Context, domain string) (*DirState, error)
	// DirStateHead is DirState without its Entries and Chunks (nil): the
	// cheap read of a state that may be tens of megabytes.
	DirStateHead(ctx context.Context, domain string) (*DirState, error)
	// PruneRuns deletes the finished runs of every domain that ended
	// before before (a run recorded without an end time counts from its
	// start), never a running one, and returns how many it deleted. Run ids
	// are not reused. It may delete in several transactions; on an error
	// the count is of the runs deleted before it.
	PruneRuns(ctx context.Context, before time.Time) (int64, error)

	// PutSettings saves v as the next version of v.Domain's settings, in
	// one transaction, if the domain's current version is expect: its
	// latest version, or 0 if it has none or its latest version removed
	// it. Otherwise it returns ErrConflict (wrapped, naming the current
	// version) and saves nothing. v.Settings must not be empty, v.Author
	// not empty, and v.Removed false (RemoveSettings removes). PutSettings
	// creates the domain if needed, fills v.Version and v.Created (the
	// store's clock) and sets v.Domain to the name as the store keeps it.
	// The version number is the domain's highest so far plus one, also
	// after a removal: numbers are never reused.
	PutSettings(ctx context.Context, v *SettingsVersion, expect int64) error
	// Settings returns a version of a domain's settings with its secret;
	// version 0 means the latest. ErrNotFound if there is no such version,
	// or, for 0, if the domain has none or its latest version removed it.
	// A version that removed the domain is returned with Removed set.
	Settings(ctx context.Context, domain string, version int64) (*SettingsVersion, error)
	// SettingsHistory lists every version of a domain's settings, newest
	// first, removals included, with Secret nil (Settings has it); none
	// (and no error) for a domain without settings.
	SettingsHistory(ctx context.Context, domain string) ([]SettingsVersion, error)
	// StoredDomains returns the latest version, with its secret, of every
	// store-kept domain whose latest version did not remove it, sorted by
	// domain name.
	StoredDomains(ctx context.Context) ([]SettingsVersion, error)
	// RemoveSettings saves, by author (not empty), a version that removes
	// the domain: it is no longer store-kept (Settings with version 0 and
	// StoredDomains no longer return it) and PutSettings with expect 0 may
	// make it again. Its mailboxes, groups, runs and older versions stay.
	// ErrNotFound if the domain has no settings or is removed already.
	RemoveSettings(ctx context.Context, domain, author string) error

	// AcquireLease takes the domain's lease for holder until now+ttl (and
	// creates the domain if needed). If another holder's lease has not
	// expired it returns a *BusyError; an expired lease is taken over. A
	// holder that has the lease already renews it. Its own short
	// transaction.
	AcquireLease(ctx context.Context, domain, holder string, ttl time.Duration) (Lease, error)
	// RenewLease moves the holder's lease expiry to now+ttl; ErrLeaseLost if
	// holder no longer has it.
	RenewLease(ctx context.Context, domain, holder string, ttl time.Duration) error
	// ReleaseLease gives the lease up; releasing a lease not held is no
	// error.
	ReleaseLease(ctx context.Context, domain, holder string) error
	// StartRun writes run as "running" (its own short transaction), fills
	// run.ID and run.ChangeCount, and notes the run on the lease of
	// run.Holder. The caller holds the domain's lease, so any other
	// "running" row of the domain belongs to a holder that died: StartRun
	// marks those "abandoned". A holder without the lease gets
	// ErrLeaseLost and nothing is written.
	StartRun(ctx context.Context, run *Run) error

	// AddGroup creates a gateway group (ErrExists if it does).
	AddGroup(ctx context.Context, domain, name string) error
	// RemoveGroup deletes a gateway group and its memberships.
	RemoveGroup(ctx context.Context, domain, name string) error
	// Groups lists a domain's gateway groups sorted by name.
	Groups(ctx context.Context, domain string) ([]Group, error)
	// GroupMembers lists the members of a domain's gateway group (its
	// name byte-exact), sorted by address, each with the source of its
	// membership and of its mailbox; ErrNotFound if the domain has no such
	// group. A group without members has none (and no error).
	GroupMembers(ctx context.Context, domain, group string) ([]Member, error)
	// Assign adds the mailbox owning address to group, by hand: the
	// membership's source is manual. A member already, whatever made it,
	// is ErrExists.
	Assign(ctx context.Context, domain, group, address string) error
	// Unassign removes the mailbox owning address from group.
	Unassign(ctx context.Context, domain, group, address string) error

	// AddMailbox creates a hand-made (source manual) mailbox.
	AddMailbox(ctx context.Context, domain string, m Mailbox) (int64, error)
	// RemoveMailbox deletes the mailbox whose primary address is address.
	RemoveMailbox(ctx context.Context, domain, address string) error
	// Mailboxes lists a domain's mailboxes sorted by primary address.
	Mailboxes(ctx context.Context, domain string) ([]Mailbox, error)
	// Resolve returns the primary address that address belongs to
	// (ErrNotFound if none).
	Resolve(ctx context.Context, address string) (string, error)

	Close() error
}

// Prewriter is a Store that can write a run's new mailboxes while the run
// still reads the directory, in the one transaction (S3) that Apply then
// finishes: a first sync's rows are written beside the read instead of
// after it. It is optional; the host uses it for full reads when the
// store has it, and Apply otherwise. Both stores that ship have it: the
// sqlite store holds its one writer from Prewrite to Close, so other
// writes wait; the postgres store locks the domain's row, so other writes
// to the domain wait.
type Prewriter interface {
	// Prewrite opens the write transaction of a run of domain, after
	// checking, as Apply does, that the domain's generation is still
	// generation (else ErrStoreChanged).
	Prewrite(ctx context.Context, domain string, generation int64) (Prewrite, error)
}

// Prewrite is a run's open write transaction (Prewriter). Create may be
// called any number of times, then Apply at most once; Close must be
// called in every case, last. It is not safe for concurrent use.
type Prewrite interface {
	// Create writes mailboxes that the run expects to create, each as
	// the After of its create change would be, without its groups.
	// After an error (an address or directory id that is taken, say)
	// further calls write nothing, and Apply writes as Store.Apply would.
	Create(ctx context.Context, mailboxes []*sdk.Mailbox) error
	// Apply is Store.Apply in this transaction, with generation checked
	// at Prewrite. A create whose After equals a mailbox Create wrote
	// (Groups aside) keeps that mailbox, its id and its addresses, and
	// adds its groups. If any mailbox Create wrote has no such create,
	// or a Create failed, everything Create wrote is undone first: the
	// store is then written exactly as Store.Apply writes it, ids
	// included. Apply ends
	// the transaction, committed or rolled back, whatever it returns.
	Apply(ctx context.Context, changes []Change, run *Run) error
	// Close rolls back the transaction unless Apply ended it. It does
	// nothing after Apply, or a second time.
	Close() error
}

// StateChunk is a part of a kept directory state (DirState.Chunks): a run
// of entries, and a summary that tells a delta, without Data, whether it
// needs them. Both are the host's encoding, opaque to the store.
type StateChunk struct {
	Seq     int64
	Summary []byte
	Data    []byte
}

// ChunkStore is a Store that keeps a directory state in chunks, so that a
// delta run reads the summaries, then only the chunks its changes reach,
// and rewrites only those (DirState.Patch): its cost follows the changes,
// not the domain's size. It is optional; the host gives a Store without it
// the state as one Entries. The three stores that ship have it.
//
// Such a store's DirState returns a chunked state's Chunks (Seq, Summary,
// Data, in ascending Seq) and Entries nil; a state written as Entries (by
// an earlier version) comes back as it was written. A state written with
// no chunk at all reads back with Chunks nil, as one not written in
// chunks. A full write (Patch false) keeps a chunk with an empty Data as
// it is; only a patch deletes with one.
type ChunkStore interface {
	// DirStateSummaries is DirStateHead with the Seq and Summary of every
	// chunk (Data nil), in ascending Seq; Chunks is nil when the state was
	// not written in chunks.
	DirStateSummaries(ctx context.Context, domain string) (*DirState, error)
	// DirStateChunks returns the chunks of the domain's state whose Seq is
	// in seqs, with Summary and Data, in ascending Seq; a Seq it does not
	// have is left out.
	DirStateChunks(ctx context.Context, domain string, seqs []int64) ([]StateChunk, error)
}

// CookieMover is a Store that can move a kept state's cookie on without
// rewriting the state. It is optional; the three stores that ship have it.
type CookieMover interface {
	// MoveCookie replaces the cookie of the domain's kept directory state
	// by to, when it is still from, and leaves the rest of the state as it
	// is; moved says whether it did. A delta that found nothing changed
	// keeps its entries, but the directory's point moved on: a later
	// delta from the older cookie would read again what changed outside
	// the domain's entries since (an Active Directory DirSync reads the
	// whole naming context's changes; a slapd whose session log no longer
	// reaches that far lists every entry instead).
	MoveCookie(ctx context.Context, domain string, from, to []byte) (moved bool, err error)
}

// PartReader is a Store that reads part of a domain's snapshot: what a run
// that decides on a few directory entries needs (a delta run). It is
// optional; a run on a Store without it reads the whole Snapshot. All
// three stores that ship have it.
type PartReader interface {
	// SnapshotPart is Snapshot restricted to the mailboxes that the
	// domain's LDAP mailboxes with a directory id in dirIDs are, and those
	// of any domain and source that own one of addresses: Mailboxes holds
	// those of the domain, Foreign those of other domains, Owners their
	// addresses that lie in the domain or aliasDomains. Groups and
	// Generation are as Snapshot has them. ldap counts all the domain's
	// LDAP mailboxes.
	SnapshotPart(ctx context.Context, domain string, aliasDomains []string, dirIDs, addresses []string) (snap *Snapshot, ldap int, err error)
}
