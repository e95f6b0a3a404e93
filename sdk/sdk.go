// Package sdk is what a sync-policy author imports: the types that cross the
// policy ABI, the Policy interface with its stages, and Register/Main, which
// serve one Policy from a WebAssembly reactor module (GOOS=wasip1) or, built
// natively, as a hashicorp/go-plugin gRPC plugin process.
//
// A policy never talks to the directory or the store. The host reads the
// directory, hands the policy normalized entries, proposes changes and applies
// the policy's decisions after checking them (design rules S1–S5).
package sdk

import (
	"iter"
	"strconv"
)

// ABI version spoken by this package. A host refuses a module whose major
// version differs from its own; a higher minor version only adds fields.
const (
	ABIMajor = 1
	ABIMinor = 3 // 1.1: GroupIntent.Nested; 1.2: IntentHold; 1.3: Info.Reconcile
)

// Policy is a sync policy: the rules that decide which directory entries
// count, what they become, and which proposed changes may happen.
//
// Implementations must be deterministic: the same request gives the same
// response, whatever runtime (builtin, wasm, process) serves them.
type Policy interface {
	// Info names the policy and the directory attributes it reads.
	Info() Info
	// Configure receives the [policy.config] table of the manifest once,
	// before any other stage. An error refuses the policy at load time.
	Configure(config map[string]any) error
	// Filter validates and normalizes an RFC 4515 filter. A broken filter
	// is reported as a *FilterError.
	Filter(FilterRequest) (FilterResponse, error)
	// Map turns each entry into exactly one Intent, in order.
	Map(MapRequest) (MapResponse, error)
	// Reconcile decides on the host's proposed changes. Changes without a
	// Decision are accepted as proposed.
	Reconcile(ReconcileRequest) (ReconcileResponse, error)
}

// Info describes a policy.
type Info struct {
	Name    string
	Version string
	// ABIMajor and ABIMinor are the ABI version the policy was built with.
	ABIMajor, ABIMinor uint32
	// Attributes are the directory attributes the policy reads (lower case).
	// The host fetches these and nothing more, plus the stable-id attributes.
	Attributes []string
	// Reconcile says which proposed changes the host asks Reconcile about:
	// all of them (ReconcileAll, the zero value), or only those that need
	// a decision of this policy (ReconcileConflicts). (ABI 1.3; a host of
	// an older ABI asks about all of them.)
	Reconcile ReconcileScope
	// ValuesOnly says that the policy reads entries only through
	// Entry.Values, Entry.Get and Entry.All (package filter does), never
	// Entry.Attributes: the entries the sdk decodes for it, in a
	// WebAssembly module or a plugin process, then have no Attributes map,
	// which is most of what decoding an entry costs in a module, and
	// Values finds an attribute without hashing its name. (ABI 1.3. The
	// entries of the builtin runtime, which the host makes, keep the map;
	// the three methods read either form.)
	ValuesOnly bool
}

// ReconcileScope is the part of a run's proposed changes that a policy's
// Reconcile is asked about.
type ReconcileScope int32

const (
	// ReconcileAll: every proposed change. A policy that decides on
	// deletes, updates or memberships (a deletion rule, say) needs them all.
	ReconcileAll ReconcileScope = 0
	// ReconcileConflicts: only the changes that have Conflicts, and the
	// adopts. The host accepts every other change as proposed, as if
	// Reconcile had returned no decision for it, and skips the call when
	// no change needs one; a decision's Index is the position in the
	// request the policy received. A first sync of 100,000 users then
	// sends the policy no change at all instead of 100,000 creates.
	ReconcileConflicts ReconcileScope = 1
)

// FilterRequest asks a policy to check the domain's filter.
type FilterRequest struct {
	Filter string
}

// FilterResponse carries the normalized filter the host sends to the directory.
type FilterResponse struct {
	Filter string
}

// FilterError reports a filter that breaks RFC 4515 or the policy's rules.
type FilterError struct {
	// Position is the 0-based byte offset in the filter where the problem is.
	Position int
	Reason   string
}

func (e *FilterError) Error() string {
	return "invalid filter at position " + strconv.Itoa(e.Position) + ": " + e.Reason
}

// Domain is the gateway domain a run is for, as the policy sees it.
type Domain struct {
	Name         string
	AliasDomains []string
	// Groups are the names of the gateway groups that exist in the domain.
	// A sync never creates groups (R4): a directory group maps to one of
	// these or to none.
	Groups []string
}

// Entry is one directory entry, normalized by the host.
type Entry struct {
	// ID is the entry's stable id: AD objectGUID (as a GUID string),
	// OpenLDAP entryUUID, or the DN when neither exists.
	ID string
	DN string
	// Attributes maps lower-case attribute names to their values. Binary
	// values (objectGUID, objectSid, …) are base64. It is nil in the
	// entries a WebAssembly module decodes for a policy whose Info says
	// ValuesOnly; Values and Get read either form.
	Attributes map[string][]string
	// attrs are the attributes when Attributes is nil: the list, in the
	// order the host sent them, that the sdk decoded for a ValuesOnly
	// policy (no repeated names).
	attrs []attr
}

// attr is one attribute of an entry decoded without the Attributes map.
type attr struct {
	name   string
	values []string
}

// Values returns the values of a (lower-case) attribute, or nil.
func (e *Entry) Values(name string) []string {
	if e.Attributes != nil {
		return e.Attributes[name]
	}
	for i := range e.attrs {
		if e.attrs[i].name == name {
			return e.attrs[i].values
		}
	}
	return nil
}

// All yields each attribute of the entry, its lower-case name and its
// values, in no particular order.
func (e *Entry) All() iter.Seq2[string, []string] {
	return func(yield func(string, []string) bool) {
		if e.Attributes != nil {
			for name, vs := range e.Attributes {
				if !yield(name, vs) {
					return
				}
			}
			return
		}
		for _, a := range e.attrs {
			if !yield(a.name, a.values) {
				return
			}
		}
	}
}

// Get returns the first value of a (lower-case) attribute, or "".
func (e *Entry) Get(name string) string {
	if v := e.Values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// MapRequest carries a batch of entries of one domain.
type MapRequest struct {
	Domain  Domain
	Entries []Entry
}

// MapResponse has one Intent per entry of the request, in the same order.
type MapResponse struct {
	Intents []Intent
}

// IntentKind says what an entry becomes.
type IntentKind int32

const (
	// IntentSkip: the entry is out of scope (not a user, group or public
	// folder, no address in the domain, excluded by a setting…); Reason
	// says why. An existing LDAP mailbox of the entry is deleted, as for an
	// entry the directory no longer returns (R6).
	IntentSkip    IntentKind = 0
	IntentMailbox IntentKind = 1
	IntentGroup   IntentKind = 2
	// IntentHold: the directory still returns the entry, but the policy
	// cannot map it because of bad data (an unreadable or invalid primary
	// address, say); Reason says which value and what is wrong with it.
	// An existing mailbox of the entry (matched by directory id) is kept
	// exactly as it is: not updated, not deleted, its group memberships
	// untouched, its addresses still its own. No mailbox is created for
	// it. The host reports the entry as held. (ABI 1.2; a host of ABI 1.0
	// or 1.1 does not know this kind and treats it as a skip.)
	IntentHold IntentKind = 3
)

// Mailbox kinds.
const (
	KindUser         = "user"
	KindPublicFolder = "public_folder"
)

// Intent is what a policy makes of one entry.
type Intent struct {
	Kind   IntentKind
	Reason string // why an entry is skipped or held
	// Mailbox is set when Kind is IntentMailbox.
	Mailbox *MailboxIntent
	// Group is set when Kind is IntentGroup.
	Group *GroupIntent
	// Skipped lists values of the entry that were not kept, or not kept
	// as they are, with reasons; any kind of intent may have them.
	Skipped []SkippedAddress
}

// MailboxIntent is the mailbox a user or public-folder entry becomes.
type MailboxIntent struct {
	Kind        string // KindUser or KindPublicFolder
	Primary     string // lower case
	Aliases     []string
	DisplayName string
	// MemberOf holds the DNs of the groups the entry names in memberOf.
	MemberOf []string
}

// GroupIntent is a directory group.
type GroupIntent struct {
	// Name is the group's name in the directory.
	Name string
	// Target is the gateway group (one of Domain.Groups) it fills, or "" when
	// no gateway group matches: the group is then reported as unmatched.
	Target string
	// Members holds the DNs of the group's members.
	Members []string
	// Nested makes the members of member groups (at any depth, whether or
	// not those groups are matched) members of this group too. Without it
	// only direct members count. (ABI 1.1)
	Nested bool
}

// SkippedAddress is a value of an entry that was not kept, and why: most
// often an address (an alias outside the domain, an invalid one). A note on
// another attribute's value, such as a display name with invalid UTF-8 that
// was kept all the same, has that value in Address and a Reason that names
// the attribute.
type SkippedAddress struct {
	Address string
	Reason  string
}

// ChangeKind is the kind of a proposed change.
type ChangeKind int32

const (
	ChangeCreate       ChangeKind = 1 // create a mailbox (with its groups)
	ChangeUpdate       ChangeKind = 2 // change a mailbox's addresses, name or kind
	ChangeDelete       ChangeKind = 3 // delete a mailbox
	ChangeAddMember    ChangeKind = 4 // add a mailbox to a gateway group
	ChangeRemoveMember ChangeKind = 5 // remove a mailbox from a gateway group
	ChangeAdopt        ChangeKind = 6 // make an existing mailbox of another source an LDAP one
)

var changeKindNames = [...]string{"", "create", "update", "delete", "add_member", "remove_member", "adopt"}

func (k ChangeKind) String() string {
	if k > 0 && int(k) < len(changeKindNames) {
		return changeKindNames[k]
	}
	return "unknown(" + strconv.Itoa(int(k)) + ")"
}

// Mailbox sources.
const (
	SourceLDAP   = "ldap"
	SourceManual = "manual"
)

// Mailbox is a mailbox as the store holds it, or as a change would leave it.
type Mailbox struct {
	ID          int64 // store id; 0 for a mailbox not yet created
	DirID       string
	DN          string
	Kind        string
	Primary     string
	Aliases     []string
	DisplayName string
	Source      string
	Groups      []string
}

// Change is one change the host proposes.
type Change struct {
	Kind ChangeKind
	// Before is the mailbox as stored (nil for create); After as the change
	// leaves it (nil for delete). For membership changes both name the mailbox.
	Before, After *Mailbox
	// Group is the gateway group of a membership change.
	Group string
	// Conflicts lists addresses of After that already belong to a mailbox
	// of another source (R10).
	Conflicts []Conflict
}

// Conflict is an address a change wants that another mailbox owns.
type Conflict struct {
	Address   string
	MailboxID int64
	Primary   string
	Source    string
}

// ReconcileRequest carries the proposed changes of one run.
type ReconcileRequest struct {
	Domain  Domain
	Changes []Change
	// LDAPMailboxes is how many mailboxes of the domain an earlier sync made.
	LDAPMailboxes int
}

// Action is a policy's decision on one change.
type Action int32

const (
	Accept  Action = 0
	Veto    Action = 1 // the change does not happen; Reason says why
	Replace Action = 2 // Replacement happens instead
)

// Decision is a policy's verdict on Changes[Index].
type Decision struct {
	Index       int
	Action      Action
	Reason      string
	Replacement *Change
}

// ReconcileResponse lists decisions for the changes that are not accepted as
// proposed.
type ReconcileResponse struct {
	Decisions []Decision
}
