// Package guard holds the host's guarantees that no policy can bend: a
// policy's decisions touch only its own domain and only what the rules let
// it touch (S4), and a run that would delete too much stops before writing
// (S2).
package guard

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// Limits are the deletion limits of S2.
type Limits struct {
	MaxDeletes       int
	MaxDeletePercent float64
	PercentFloor     int
}

// The limits a StopError names.
const (
	LimitEmptyRead        = "empty_read"
	LimitMaxDeletes       = "max_deletes"
	LimitMaxDeletePercent = "max_delete_percent"
)

// StopError is a run the deletion guard stopped.
type StopError struct {
	Deletes int
	Total   int
	// Limit is the rule that stopped it: LimitEmptyRead, LimitMaxDeletes
	// or LimitMaxDeletePercent.
	Limit  string
	Reason string
	// Empty: the directory yielded nothing; no confirmation lets such a
	// run delete.
	Empty bool
	// Filter and BaseDN are the search of an empty read, and Read the
	// entries it returned, when the caller knows them (Filter not ""):
	// the message then names them.
	Filter, BaseDN string
	Read           int
}

func (e *StopError) Error() string {
	if e.Empty && e.Filter != "" {
		return fmt.Sprintf("stopped before writing: %s while the store holds %d LDAP mailboxes, and an empty read never deletes, confirmed or not; nothing was changed — %s",
			emptyRead(e.Read, e.Filter, e.BaseDN), e.Total, emptyReadCheck(e.Filter))
	}
	if e.Empty {
		return fmt.Sprintf("stopped before writing: the directory returned no valid entry while the store holds %d LDAP mailboxes, and an empty read never deletes, confirmed or not; nothing was changed — check base_dn, the filter and the reader's rights", e.Total)
	}
	return fmt.Sprintf("stopped before writing: the run would delete %d of %d LDAP mailboxes (%s); nothing was changed — check the directory and the filter, then confirm this one run with --confirm-deletes",
		e.Deletes, e.Total, e.Reason)
}

// EmptyRead says what a read that yielded no valid entry searched for and
// where to look: read is how many entries the directory returned for
// filter under base.
func EmptyRead(read int, filter, base string) string {
	return emptyRead(read, filter, base) + "; " + emptyReadCheck(filter)
}

func emptyRead(read int, filter, base string) string {
	if read == 0 {
		return fmt.Sprintf("the directory returned 0 entries for filter %s under base %s", filter, base)
	}
	return fmt.Sprintf("the directory returned %d entries for filter %s under base %s, no valid entry among them", read, filter, base)
}

func emptyReadCheck(filter string) string {
	s := "check [domain.ldap] filter and base_dn, and the reader's rights"
	if strings.Contains(strings.ToLower(filter), "samaccounttype") {
		s += " (this filter selects Active Directory objects by sAMAccountType; a directory without that attribute, such as OpenLDAP, needs a filter for its own classes, e.g. inetOrgPerson and groupOfNames)"
	}
	return s
}

// Deletes applies S2 to a run that would delete n of the domain's total LDAP
// mailboxes while the directory yielded kept entries that keep or make a
// mailbox (valid ones and held ones). An empty yield while the store holds
// LDAP mailboxes always stops; confirmed lets a run past the limits only.
// A limit of 0 is strict: max_deletes = 0 stops at the first delete,
// percent_floor = 0 applies the share from the first delete.
func Deletes(n, total, kept int, l Limits, confirmed bool) error {
	switch {
	case total > 0 && kept == 0:
		return &StopError{Deletes: n, Total: total, Limit: LimitEmptyRead, Reason: "the directory returned no valid entry", Empty: true}
	case confirmed:
		return nil
	case n > l.MaxDeletes:
		return &StopError{Deletes: n, Total: total, Limit: LimitMaxDeletes, Reason: fmt.Sprintf("more than max_deletes = %d", l.MaxDeletes)}
	case n > l.PercentFloor && total > 0 && float64(n)*100 > l.MaxDeletePercent*float64(total):
		return &StopError{Deletes: n, Total: total, Limit: LimitMaxDeletePercent, Reason: fmt.Sprintf("more than max_delete_percent = %g%% while deleting more than %d", l.MaxDeletePercent, l.PercentFloor)}
	}
	return nil
}

// Violation is a decision S4 forbids. The whole run is rejected.
type Violation struct {
	Policy string
	Msg    string
}

func (v *Violation) Error() string {
	return fmt.Sprintf("policy %q broke the host's rules (S4): %s; the run was rejected and nothing was changed", v.Policy, v.Msg)
}

// Vetoed is a proposed change a policy turned down.
type Vetoed struct {
	Change   sdk.Change
	Reason   string
	Conflict bool // the change wanted addresses of another source's mailbox (R10)
}

// Asked picks the proposed changes that a policy of the given scope is
// asked about (sdk.Info.Reconcile), and the position of each among
// proposed. For sdk.ReconcileAll, and a scope this host does not know,
// that is all of them: asked is proposed and at is nil.
func Asked(scope sdk.ReconcileScope, proposed []sdk.Change) (asked []sdk.Change, at []int) {
	if scope != sdk.ReconcileConflicts {
		return proposed, nil
	}
	at = []int{}
	for i := range proposed {
		if len(proposed[i].Conflicts) > 0 || proposed[i].Kind == sdk.ChangeAdopt {
			asked, at = append(asked, proposed[i]), append(at, i)
		}
	}
	return asked, at
}

// Decide applies a policy's decisions to the proposed changes and checks
// every change that would result. snap is the domain's state the changes
// were proposed from. at, when not nil, is where each change the policy
// was asked about is among proposed (Asked): a decision's Index is a
// position in the request, not in proposed.
func Decide(policy string, domain sdk.Domain, snap *store.Snapshot, proposed []sdk.Change, at []int, resp sdk.ReconcileResponse) ([]sdk.Change, []Vetoed, error) {
	bad := func(format string, args ...any) error {
		return &Violation{Policy: policy, Msg: fmt.Sprintf(format, args...)}
	}
	asked := len(proposed)
	if at != nil {
		asked = len(at)
	}
	decided := make(map[int]sdk.Decision, len(resp.Decisions))
	for _, d := range resp.Decisions {
		if d.Index < 0 || d.Index >= asked {
			return nil, nil, bad("decision for change #%d, but only %d changes were proposed", d.Index, asked)
		}
		if at != nil {
			d.Index = at[d.Index]
		}
		if _, dup := decided[d.Index]; dup {
			return nil, nil, bad("two decisions for change #%d", d.Index)
		}
		decided[d.Index] = d
	}

	c := checker{domain: domain, snap: snap, byID: map[int64]*sdk.Mailbox{}, groups: map[string]bool{}}
	for i := range snap.Mailboxes {
		c.byID[snap.Mailboxes[i].ID] = &snap.Mailboxes[i]
	}
	for _, g := range snap.Groups {
		c.groups[g.Name] = true
	}

	// At most one change of final per proposed one: sized once, a first
	// sync's 200,000 changes are not copied as the list grows.
	final := make([]sdk.Change, 0, len(proposed))
	from := make([]int, 0, len(proposed)) // the index in proposed of each change of final
	var vetoed []Vetoed
	for i, ch := range proposed {
		d, ok := decided[i]
		if !ok {
			final, from = append(final, ch), append(from, i)
			continue
		}
		switch d.Action {
		case sdk.Accept:
			final, from = append(final, ch), append(from, i)
		case sdk.Veto:
			vetoed = append(vetoed, Vetoed{Change: ch, Reason: d.Reason, Conflict: len(ch.Conflicts) > 0})
		case sdk.Replace:
			if d.Replacement == nil {
				return nil, nil, bad("change #%d (%s %s) replaced by nothing", i, ch.Kind, addr(&ch))
			}
			r, err := c.replacement(ch, *d.Replacement)
			if err != nil {
				return nil, nil, bad("change #%d (%s %s): %v", i, ch.Kind, addr(&ch), err)
			}
			final, from = append(final, r), append(from, i)
		default:
			return nil, nil, bad("change #%d: unknown action %d", i, d.Action)
		}
	}
	// A change that takes an address which another proposed change was to
	// release waits on that change: when the policy vetoed it (or replaced
	// it by one that keeps the address), the store would refuse the run,
	// and so on every run until the directory changes. Such a change is
	// held back with the one it waits on, as if vetoed, and what waits on
	// it in turn, until the rest holds. Only what the host proposed can
	// wait: an address that a change as proposed did not want (a
	// replacement's) is the policy's to answer for (S4).
	c.releasedBy = c.released(proposed)
	c.wanted = func(i int, a string) bool { return wants(proposed[from[i]].After, a) }
	for {
		waiting, err := c.check(final)
		if err != nil {
			return nil, nil, bad("%v", err)
		}
		if len(waiting) == 0 {
			return final, vetoed, nil
		}
		keep, keepFrom := final[:0:0], from[:0:0]
		for i, ch := range final {
			if len(waiting) > 0 && waiting[0].at == i {
				vetoed = append(vetoed, Vetoed{Change: ch, Reason: waiting[0].reason()})
				waiting = waiting[1:]
				continue
			}
			keep, keepFrom = append(keep, ch), append(keepFrom, from[i])
		}
		final, from = keep, keepFrom
	}
}

// wants says whether mailbox m (nil: none) has address a.
func wants(m *sdk.Mailbox, a string) bool {
	return m != nil && (m.Primary == a || slices.Contains(m.Aliases, a))
}

func addr(c *sdk.Change) string {
	if c.After != nil {
		return c.After.Primary
	}
	if c.Before != nil {
		return c.Before.Primary
	}
	return "?"
}

type checker struct {
	domain sdk.Domain
	snap   *store.Snapshot
	byID   map[int64]*sdk.Mailbox
	groups map[string]bool
	// releasedBy holds the addresses that the proposed changes release,
	// each with its mailbox; wanted(i, a) says whether change i of the
	// final list, as proposed, wanted address a.
	releasedBy map[string]int64
	wanted     func(i int, a string) bool
}

// replacement vets the change a policy put in place of orig. The host keeps
// its own Before; the policy supplies only the new After (or group).
func (c *checker) replacement(orig, r sdk.Change) (sdk.Change, error) {
	switch {
	case orig.Kind == sdk.ChangeCreate && r.Kind == sdk.ChangeCreate:
		if r.After == nil {
			return r, fmt.Errorf("a create without a mailbox")
		}
		a := normAddresses(*r.After)
		a.ID, a.Source, a.DirID = 0, sdk.SourceLDAP, orig.After.DirID
		return sdk.Change{Kind: sdk.ChangeCreate, After: &a}, nil
	case orig.Kind == sdk.ChangeCreate && r.Kind == sdk.ChangeAdopt:
		if r.After == nil {
			return r, fmt.Errorf("an adopt without a mailbox")
		}
		var target *sdk.Conflict
		for i := range orig.Conflicts {
			if orig.Conflicts[i].MailboxID == r.After.ID {
				target = &orig.Conflicts[i]
			}
		}
		m := c.byID[r.After.ID]
		if target == nil || m == nil {
			return r, fmt.Errorf("adopts mailbox %d, which is not a conflicting mailbox of domain %s", r.After.ID, c.domain.Name)
		}
		a := normAddresses(*r.After)
		a.Source, a.DirID, a.Groups = sdk.SourceLDAP, orig.After.DirID, orig.After.Groups
		return sdk.Change{Kind: sdk.ChangeAdopt, Before: m, After: &a}, nil
	case orig.Kind == sdk.ChangeUpdate && r.Kind == sdk.ChangeUpdate:
		if r.After == nil {
			return r, fmt.Errorf("an update without a mailbox")
		}
		a := normAddresses(*r.After)
		a.ID, a.Source, a.DirID, a.Groups = orig.Before.ID, sdk.SourceLDAP, orig.Before.DirID, orig.Before.Groups
		return sdk.Change{Kind: sdk.ChangeUpdate, Before: orig.Before, After: &a}, nil
	}
	return r, fmt.Errorf("cannot be replaced by a %s", r.Kind)
}

// normAddresses returns m with its addresses as the stores keep them
// (lower case, no blanks around): a replacement's "Ann@Example.com" is the
// address "ann@example.com" everywhere the host and the store compare.
// One that is not an address stays as it is, for the checks to refuse.
func normAddresses(m sdk.Mailbox) sdk.Mailbox {
	norm := func(a string) string {
		if n, _, err := store.NormAddress(a); err == nil {
			return n
		}
		return a
	}
	m.Primary = norm(m.Primary)
	m.Aliases = slices.Clone(m.Aliases)
	for i, a := range m.Aliases {
		m.Aliases[i] = norm(a)
	}
	return m
}

// check verifies the final change list: own domain only, LDAP mailboxes
// only, existing groups only, addresses in the domain and owned by nobody
// else once the run is done. A change whose every address that stays
// another mailbox's is one it wanted as proposed and that mailbox's
// proposed change was to release (releasedBy) does not break a rule: it is
// returned among the waiting, in order, and claims nothing.
func (c *checker) check(changes []sdk.Change) ([]waiting, error) {
	owner, err := c.releasedOwners(changes)
	if err != nil {
		return nil, err
	}
	var waits []waiting
	newKey := int64(-1)
	for i, ch := range changes {
		want, id, err := c.target(ch, newKey)
		if err != nil {
			return nil, err
		}
		if ch.Kind == sdk.ChangeCreate {
			newKey--
		}
		if want == nil {
			continue
		}
		taken, err := c.claim(owner, ch, want, id)
		if err != nil {
			return nil, err
		}
		if len(taken) == 0 {
			continue
		}
		for _, a := range taken {
			o, _ := owner.get(a)
			if by, ok := c.releasedBy[a]; !ok || by != o || !c.wanted(i, a) {
				return nil, fmt.Errorf("%s %s with address %s, which belongs to another mailbox (R10)", ch.Kind, want.Primary, a)
			}
		}
		o, _ := owner.get(taken[0])
		waits = append(waits, waiting{at: i, addr: taken[0], on: c.byID[o]})
	}
	return waits, nil
}

// waiting is a change that wants an address its owner keeps because the
// owner's own change was vetoed or replaced.
type waiting struct {
	at   int
	addr string
	on   *sdk.Mailbox
}

func (w waiting) reason() string {
	return fmt.Sprintf("waits on a change that did not happen: address %s stays with mailbox %s", w.addr, w.on.Primary)
}

// released returns the addresses that the deletes, updates and adopts
// among proposed release (an update or adopt: those its mailbox has and
// its After lacks), each with the mailbox it is released from.
func (c *checker) released(proposed []sdk.Change) map[string]int64 {
	by := map[string]int64{}
	for _, ch := range proposed {
		switch ch.Kind {
		case sdk.ChangeDelete, sdk.ChangeUpdate, sdk.ChangeAdopt:
			m := c.byID[ch.Before.ID]
			if m == nil {
				continue
			}
			for _, a := range append([]string{m.Primary}, m.Aliases...) {
				if c.snap.Owners[a] == m.ID && !wants(ch.After, a) {
					by[a] = m.ID
				}
			}
		}
	}
	return by
}

// owners is who owns each address as the run's changes go: the store's
// owners (never changed) with what the changes release and claim over
// them, so that a check costs what the changes touch, not the domain's
// addresses.
type owners struct {
	store map[string]int64
	over  map[string]int64 // releasedAddr: released
}

// releasedAddr marks an address released in owners.over (no mailbox's
// id: a create's are -1, -2, …).
const releasedAddr = math.MinInt64

func (o *owners) get(a string) (int64, bool) {
	if id, ok := o.over[a]; ok {
		return id, id != releasedAddr
	}
	id, ok := o.store[a]
	return id, ok
}

// ldapMailbox returns mailbox id, which a change does what to: it must be
// an LDAP mailbox of the domain.
func (c *checker) ldapMailbox(id int64, what string) (*sdk.Mailbox, error) {
	m := c.byID[id]
	if m == nil {
		return nil, fmt.Errorf("%s mailbox %d, which is not in domain %s", what, id, c.domain.Name)
	}
	if m.Source != sdk.SourceLDAP {
		return nil, fmt.Errorf("%s %s mailbox %s, which a sync never touches (R6)", what, m.Source, m.Primary)
	}
	return m, nil
}

// releasedOwners returns the owners of the addresses once the deletes,
// updates and adopts of changes have released those of the mailboxes they
// change (an update or adopt: those its After lacks; what it keeps stays
// its own, whatever the order of the changes): the addresses after the
// run start from the store's, less these, and then take what creates,
// updates and adopts want.
func (c *checker) releasedOwners(changes []sdk.Change) (*owners, error) {
	owner := &owners{store: c.snap.Owners, over: map[string]int64{}}
	release := func(m *sdk.Mailbox, keep *sdk.Mailbox) {
		for _, a := range append([]string{m.Primary}, m.Aliases...) {
			if id, _ := owner.get(a); id == m.ID && !wants(keep, a) {
				owner.over[a] = releasedAddr
			}
		}
	}
	for _, ch := range changes {
		switch ch.Kind {
		case sdk.ChangeDelete:
			m, err := c.ldapMailbox(ch.Before.ID, "deletes")
			if err != nil {
				return nil, err
			}
			release(m, nil)
		case sdk.ChangeUpdate, sdk.ChangeAdopt:
			if m := c.byID[ch.Before.ID]; m != nil {
				release(m, ch.After)
			}
		}
	}
	return owner, nil
}

// target checks what ch touches (the mailbox, the groups) and returns the
// mailbox it wants at the end, with its id (newID for a create); nil for a
// delete or a change of groups.
func (c *checker) target(ch sdk.Change, newID int64) (*sdk.Mailbox, int64, error) {
	switch ch.Kind {
	case sdk.ChangeCreate:
		for _, g := range ch.After.Groups {
			if !c.groups[g] {
				return nil, 0, fmt.Errorf("creates group %q for %s: groups are never created by a sync (R4)", g, ch.After.Primary)
			}
		}
		return ch.After, newID, nil
	case sdk.ChangeUpdate:
		if _, err := c.ldapMailbox(ch.Before.ID, "updates"); err != nil {
			return nil, 0, err
		}
		return ch.After, ch.Before.ID, nil
	case sdk.ChangeAdopt:
		if c.byID[ch.Before.ID] == nil {
			return nil, 0, fmt.Errorf("adopts mailbox %d, which is not in domain %s", ch.Before.ID, c.domain.Name)
		}
		return ch.After, ch.Before.ID, nil
	case sdk.ChangeAddMember, sdk.ChangeRemoveMember:
		if _, err := c.ldapMailbox(ch.Before.ID, "changes the groups of"); err != nil {
			return nil, 0, err
		}
		if !c.groups[ch.Group] {
			return nil, 0, fmt.Errorf("%s %s and group %q, which does not exist: groups are never created by a sync (R4)", ch.Kind, ch.Before.Primary, ch.Group)
		}
		return nil, 0, nil
	case sdk.ChangeDelete:
		return nil, 0, nil
	}
	return nil, 0, fmt.Errorf("unknown change kind %d", ch.Kind)
}

// claim gives the addresses of want, mailbox id, to it in owner: each must
// be in the domain or an alias domain and belong to no other mailbox. When
// some belong to other mailboxes, claim gives none and returns those.
func (c *checker) claim(owner *owners, ch sdk.Change, want *sdk.Mailbox, id int64) (taken []string, err error) {
	if want.Primary == "" {
		return nil, fmt.Errorf("%s of a mailbox without a primary address", ch.Kind)
	}
	all := append([]string{want.Primary}, want.Aliases...)
	for _, a := range all {
		if !c.inDomain(a) {
			return nil, fmt.Errorf("%s %s with address %s, outside domain %s and its alias domains", ch.Kind, want.Primary, a, c.domain.Name)
		}
		if o, ok := owner.get(a); ok && o != id {
			taken = append(taken, a)
		}
	}
	if len(taken) > 0 {
		return taken, nil
	}
	for _, a := range all {
		owner.over[a] = id
	}
	return nil, nil
}

func (c *checker) inDomain(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return false
	}
	d := addr[at+1:]
	if d == c.domain.Name {
		return true
	}
	for _, a := range c.domain.AliasDomains {
		if d == a {
			return true
		}
	}
	return false
}
