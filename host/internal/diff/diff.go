// Package diff compares what a policy made of the directory (one intent per
// entry) with the store's state of a domain, and proposes the changes that
// bring the store in step: create, update, delete, add and remove
// memberships. It touches only mailboxes that an LDAP sync of the domain
// made (R5, R6); everything else is read, never changed.
//
// A skipped entry is out of scope: its mailbox goes like that of an entry
// the directory no longer returns. A held entry (sdk.IntentHold) is one the
// policy could not map because of bad data: its mailbox stays exactly as it
// is, addresses and memberships included.
package diff

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// Ref names the directory entry behind an intent.
type Ref struct {
	ID string
	DN string
}

// Skip is an entry, or one address of an entry, left out, and why.
type Skip struct {
	DN      string `json:"dn"`
	Address string `json:"address,omitempty"`
	Reason  string `json:"reason"`
}

// Group is a directory group and the gateway group it fills.
type Group struct {
	Name    string `json:"name"`
	DN      string `json:"dn"`
	Target  string `json:"target,omitempty"`
	Members int    `json:"members"`
}

// Result is the outcome of a diff.
type Result struct {
	// Mailboxes are the valid users and public folders, as they would be
	// after the run (before reconcile), sorted by primary address (only
	// from Compute: Changes leaves them out). Kept is how many there are.
	Mailboxes []sdk.Mailbox
	Kept      int
	// Groups are the matched directory groups; Unmatched the names of the
	// groups no gateway group matches (R4).
	Groups    []Group
	Unmatched []string
	Skipped   []Skip
	// Held are the entries the policy held (sdk.IntentHold, or an intent
	// kind this host does not know), with the policy's reasons, in the
	// order of the intents: their mailboxes, if any, are left as they are.
	// The values a held entry's intent lists as skipped are in Skipped.
	Held []Skip
	// Changes are the proposed changes, in a stable order.
	Changes []sdk.Change
	// Unstable says that an entry lost an address to one that was then
	// skipped itself (each held what the other wanted): the same entries
	// may be decided otherwise once these changes are applied, so the run
	// is not a settled one (diff.Reaches).
	Unstable bool
}

// NormDN puts a DN in a form that compares equal for equal DNs: lower case,
// no blanks around separators. It is cheap enough for every member value.
func NormDN(dn string) string {
	clean := true
	for i := 0; i < len(dn); i++ {
		c := dn[i]
		if c >= 'A' && c <= 'Z' || c == ' ' || c >= 0x80 {
			clean = false
			break
		}
	}
	if clean {
		return dn
	}
	b := appendNormDN(make([]byte, 0, len(dn)), dn)
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is this string's alone
}

// AppendNormDN appends NormDN(dn) to b, without allocating for an ASCII
// DN.
func AppendNormDN(b []byte, dn string) []byte { return appendNormDN(b, dn) }

// appendNormDN appends NormDN(dn) to b: a caller that only looks a DN up
// (m[string(appendNormDN(buf[:0], dn))]) normalizes it without allocating
// (but for a DN with non-ASCII letters, lowered as Unicode first).
func appendNormDN(b []byte, dn string) []byte {
	for i := 0; i < len(dn); i++ {
		if dn[i] >= 0x80 {
			dn = strings.ToLower(dn)
			break
		}
	}
	start := len(b)
	for i := 0; i < len(dn); i++ {
		c := dn[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c == ' ' {
			// Drop blanks next to ',', '=' and '+', and at either end.
			prev := byte(',')
			if len(b) > start {
				prev = b[len(b)-1]
			}
			j := i
			for j < len(dn) && dn[j] == ' ' {
				j++
			}
			next := byte(',')
			if j < len(dn) {
				next = dn[j]
			}
			if isSep(prev) || isSep(next) {
				i = j - 1
				continue
			}
		}
		b = append(b, c)
	}
	return b
}

func isSep(c byte) bool { return c == ',' || c == '=' || c == '+' }

// want is a mailbox the directory asks for, or (held set) the mailbox of a
// held entry, which keeps its addresses.
type want struct {
	ref    Ref
	intent *sdk.MailboxIntent
	addrs  []string // primary first
	groups []string // gateway groups, deduplicated by addGroup
	held   bool
	nextDN *want // the next want of the same DN hash (dnIndex)
}

// newWant is the mailbox an entry's intent asks for: its addresses are
// the primary and the aliases that are not the primary, each once (a
// mailbox has a set of addresses: an alias given twice would otherwise
// never compare equal to the stored mailbox, nor store).
func newWant(ref Ref, mb *sdk.MailboxIntent) want {
	w := want{ref: ref, intent: mb, addrs: make([]string, 1, 1+len(mb.Aliases))}
	w.addrs[0] = mb.Primary
	for _, a := range mb.Aliases {
		if !slices.Contains(w.addrs, a) {
			w.addrs = append(w.addrs, a)
		}
	}
	return w
}

// mailbox is the mailbox w asks for, without its groups.
func (w *want) mailbox() sdk.Mailbox {
	m := sdk.Mailbox{
		DirID:       w.ref.ID,
		DN:          w.ref.DN,
		Kind:        w.intent.Kind,
		Primary:     w.addrs[0],
		Aliases:     sortedCopy(w.addrs[1:]),
		DisplayName: w.intent.DisplayName,
		Source:      sdk.SourceLDAP,
	}
	if m.Kind == "" {
		m.Kind = sdk.KindUser
	}
	return m
}

// Created is the mailbox a create for the entry of ref makes, as Changes
// proposes it when no other entry or mailbox claims its addresses, but
// without its groups; ok is false for an intent that makes no mailbox.
func Created(ref Ref, it *sdk.Intent) (m sdk.Mailbox, ok bool) {
	if it.Kind != sdk.IntentMailbox || it.Mailbox == nil || it.Mailbox.Primary == "" {
		return m, false
	}
	w := newWant(ref, it.Mailbox)
	return w.mailbox(), true
}

// addGroup adds a gateway group once.
func (w *want) addGroup(g string) {
	if !slices.Contains(w.groups, g) {
		w.groups = append(w.groups, g)
	}
}

// Compute proposes the changes and lists the mailboxes. refs and intents
// are parallel; domain.Groups must hold the snapshot's gateway groups.
func Compute(domain sdk.Domain, refs []Ref, intents []sdk.Intent, snap *store.Snapshot) *Result {
	return compute(refs, intents, snap, true)
}

// Changes is Compute without the list of mailboxes (Result.Mailboxes), which
// only a preview shows: a sync of 100,000 users would hold a copy of every
// mailbox for nothing.
func Changes(domain sdk.Domain, refs []Ref, intents []sdk.Intent, snap *store.Snapshot) *Result {
	return compute(refs, intents, snap, false)
}

func compute(refs []Ref, intents []sdk.Intent, snap *store.Snapshot, list bool) *Result {
	// Sized for the usual directory: nearly every entry a mailbox with an
	// alias or two, nearly every LDAP mailbox kept.
	n := len(intents)
	c := &computation{
		res:       &Result{Changes: make([]sdk.Change, 0, n)},
		list:      list,
		snap:      snap,
		byDN:      newDNIndex(n),
		groupByDN: map[string]dgroup{},
		matched:   make(map[int64]bool, len(snap.Mailboxes)),
		claim:     make(map[string]*want, 2*n),
		seenID:    map[string]bool{},
	}
	c.sortIntents(refs, intents)
	c.joinMemberships()
	c.indexStore()
	c.keepHeld()
	c.assignAddresses()
	c.countMembers()
	c.compare()
	c.res.Kept = len(c.wants)
	sort.Slice(c.res.Mailboxes, func(i, j int) bool { return c.res.Mailboxes[i].Primary < c.res.Mailboxes[j].Primary })
	slices.SortStableFunc(c.res.Changes, compareChanges)
	return c.res
}

// computation is what the steps of Compute hand on to each other.
type computation struct {
	res  *Result
	snap *store.Snapshot
	list bool // Result.Mailboxes wanted

	// From the intents.
	wants     []*want           // the desired mailboxes
	byDN      *dnIndex          // wants by DN
	groupByDN map[string]dgroup // directory groups by normalized DN
	held      []Ref             // the held entries

	// From the store.
	existing map[string]*sdk.Mailbox // LDAP mailboxes of the domain by directory id
	byID     map[int64]*sdk.Mailbox  // every mailbox of the snapshot, foreign ones included

	matched   map[int64]bool   // mailboxes that an entry keeps: never deleted
	claim     map[string]*want // the owner of each address (R7)
	seenID    map[string]bool  // directory ids that have their mailbox
	heldBoxes []*sdk.Mailbox   // the mailboxes of held entries
}

// dgroup is a directory group.
type dgroup struct {
	ref    Ref
	intent *sdk.GroupIntent
}

// sortIntents sorts the intents into desired mailboxes, directory groups
// by DN, skipped entries and held entries.
func (c *computation) sortIntents(refs []Ref, intents []sdk.Intent) {
	res := c.res
	unmatched := map[string]bool{}
	wants := make([]want, 0, len(intents)) // one allocation for all of them
	c.wants = make([]*want, 0, len(intents))
	for i := range intents {
		it := &intents[i]
		ref := refs[i]
		for _, s := range it.Skipped {
			res.Skipped = append(res.Skipped, Skip{DN: ref.DN, Address: s.Address, Reason: s.Reason})
		}
		switch it.Kind {
		case sdk.IntentMailbox:
			if it.Mailbox == nil || it.Mailbox.Primary == "" {
				res.Skipped = append(res.Skipped, Skip{DN: ref.DN, Reason: "policy gave a mailbox without a primary address"})
				continue
			}
			wants = append(wants, newWant(ref, it.Mailbox))
			w := &wants[len(wants)-1]
			c.wants = append(c.wants, w)
			c.byDN.put(ref.DN, w)
		case sdk.IntentGroup:
			if it.Group == nil {
				continue
			}
			if it.Group.Target == "" {
				unmatched[it.Group.Name] = true
			}
			c.groupByDN[NormDN(ref.DN)] = dgroup{ref, it.Group} // unmatched ones too: nested groups pass through them
		case sdk.IntentSkip:
			reason := it.Reason
			if reason == "" {
				reason = "skipped by the policy"
			}
			res.Skipped = append(res.Skipped, Skip{DN: ref.DN, Reason: reason})
		default:
			// IntentHold, and a kind of a newer ABI that this host does
			// not know: when in doubt, nothing is deleted.
			reason := it.Reason
			switch {
			case it.Kind != sdk.IntentHold:
				reason = "the policy gave intent kind " + strconv.Itoa(int(it.Kind)) + ", unknown to this host: held" + suffix(reason)
			case reason == "":
				reason = "held by the policy"
			}
			res.Held = append(res.Held, Skip{DN: ref.DN, Reason: reason})
			c.held = append(c.held, ref)
		}
	}
	for n := range unmatched {
		res.Unmatched = append(res.Unmatched, n)
	}
	sort.Strings(res.Unmatched)
}

// joinMemberships puts each wanted mailbox in its gateway groups: through
// a group's member values (through member groups too, for a nested group)
// and the mailbox's memberOf values. It lists the matched groups.
func (c *computation) joinMemberships() {
	res := c.res
	for _, g := range c.groupByDN {
		if g.intent.Target == "" {
			continue
		}
		var visit func(*sdk.GroupIntent)
		seen := map[string]bool{}
		visit = func(gi *sdk.GroupIntent) {
			for _, m := range gi.Members {
				if w := c.byDN.get(m); w != nil {
					w.addGroup(g.intent.Target)
					continue
				}
				if !g.intent.Nested {
					continue
				}
				dn := NormDN(m)
				if inner, ok := c.groupByDN[dn]; ok && !seen[dn] {
					seen[dn] = true
					visit(inner.intent)
				}
			}
		}
		visit(g.intent)
		res.Groups = append(res.Groups, Group{Name: g.intent.Name, DN: g.ref.DN, Target: g.intent.Target})
	}
	var buf []byte
	for _, w := range c.wants {
		for _, dn := range w.intent.MemberOf {
			buf = appendNormDN(buf[:0], dn)
			if g, ok := c.groupByDN[string(buf)]; ok && g.intent.Target != "" {
				w.addGroup(g.intent.Target)
			}
		}
	}
	sort.Slice(res.Groups, func(i, j int) bool {
		if res.Groups[i].Name != res.Groups[j].Name {
			return res.Groups[i].Name < res.Groups[j].Name
		}
		return res.Groups[i].DN < res.Groups[j].DN
	})
}

// indexStore indexes the snapshot: the domain's LDAP mailboxes by
// directory id, every mailbox by id.
func (c *computation) indexStore() {
	snap := c.snap
	c.existing = make(map[string]*sdk.Mailbox, len(snap.Mailboxes))
	c.byID = make(map[int64]*sdk.Mailbox, len(snap.Mailboxes)+len(snap.Foreign))
	for id, m := range snap.Foreign {
		c.byID[id] = &m
	}
	for i := range snap.Mailboxes {
		m := &snap.Mailboxes[i]
		c.byID[m.ID] = m
		if m.Source == sdk.SourceLDAP && m.DirID != "" {
			c.existing[m.DirID] = m
		}
	}
}

// keepHeld keeps the mailboxes of held entries as they are: matched (never
// deleted), their memberships kept, and every address they own theirs
// alone for this run.
func (c *computation) keepHeld() {
	for _, ref := range c.held {
		c.seenID[ref.ID] = true // a mailbox intent of the same id does not take the mailbox over
		m := c.existing[ref.ID]
		if m == nil || c.matched[m.ID] {
			continue
		}
		c.matched[m.ID] = true
		hw := &want{ref: ref, held: true}
		for _, a := range append([]string{m.Primary}, m.Aliases...) {
			if c.snap.Owners[a] == m.ID {
				c.claim[a] = hw
			}
		}
		c.heldBoxes = append(c.heldBoxes, m)
	}
}

// assignAddresses gives each address one owner (R7), deterministic and
// stable across runs: the held entry whose mailbox owns it, else the entry
// whose mailbox already owns it, else the smallest id. An entry that loses
// its primary address, or has the directory id of another, is skipped; an
// alias it loses is dropped from it.
func (c *computation) assignAddresses() {
	res := c.res
	// By id, and entries of the same id (bad data: only the first gets
	// the mailbox) by DN: an order that does not depend on the order the
	// entries came in, which a delta run and a full read do not share
	// (and, stable, on it only for entries of one id and DN).
	slices.SortStableFunc(c.wants, func(a, b *want) int {
		if c := strings.Compare(a.ref.ID, b.ref.ID); c != 0 {
			return c
		}
		return strings.Compare(NormDN(a.ref.DN), NormDN(b.ref.DN))
	})
	for i, w := range c.wants {
		if i > 0 && c.wants[i-1].ref.ID == w.ref.ID {
			continue // the mailbox is the first entry's of its id
		}
		m := c.existing[w.ref.ID]
		if m == nil || c.seenID[w.ref.ID] {
			continue
		}
		for _, a := range w.addrs {
			if c.snap.Owners[a] == m.ID {
				c.claim[a] = w
			}
		}
	}
	for _, w := range c.wants {
		if c.seenID[w.ref.ID] {
			continue // of a held entry's id: skipped below
		}
		for _, a := range w.addrs {
			if _, ok := c.claim[a]; !ok {
				c.claim[a] = w
			}
		}
	}
	kept := c.wants[:0]
	var winners []*want // of an address another wanted
	for _, w := range c.wants {
		if c.seenID[w.ref.ID] {
			res.Skipped = append(res.Skipped, Skip{DN: w.ref.DN, Reason: "another entry has the same directory id " + w.ref.ID})
			continue
		}
		c.seenID[w.ref.ID] = true
		if owner := c.claim[w.addrs[0]]; owner != w {
			res.Skipped = append(res.Skipped, Skip{DN: w.ref.DN, Address: w.addrs[0],
				Reason: "primary address also claimed by " + owner.describe()})
			winners = append(winners, owner)
			continue
		}
		addrs := w.addrs[:1]
		for _, a := range w.addrs[1:] {
			if owner := c.claim[a]; owner != w {
				res.Skipped = append(res.Skipped, Skip{DN: w.ref.DN, Address: a, Reason: "alias also claimed by " + owner.describe()})
				winners = append(winners, owner)
				continue
			}
			addrs = append(addrs, a)
		}
		w.addrs = addrs
		kept = append(kept, w)
	}
	c.wants = kept
	if len(winners) > 0 {
		in := make(map[*want]bool, len(kept))
		for _, w := range kept {
			in[w] = true
		}
		for _, w := range winners {
			res.Unstable = res.Unstable || !w.held && !in[w]
		}
	}
}

// countMembers counts the members of each matched group: the mailboxes
// that will be in it, the held ones (whose memberships are kept) included.
func (c *computation) countMembers() {
	count := map[string]int{}
	for _, w := range c.wants {
		for _, g := range w.groups {
			count[g]++
		}
	}
	for _, m := range c.heldBoxes {
		for _, g := range m.Groups {
			count[g]++
		}
	}
	for i := range c.res.Groups {
		c.res.Groups[i].Members = count[c.res.Groups[i].Target]
	}
}

// compare proposes the changes: a create or an update and membership
// changes for each wanted mailbox, and a delete for each LDAP mailbox of
// the domain that no entry keeps.
func (c *computation) compare() {
	for _, w := range c.wants {
		c.compareMailbox(w)
	}
	for i := range c.snap.Mailboxes {
		m := &c.snap.Mailboxes[i]
		if m.Source == sdk.SourceLDAP && !c.matched[m.ID] {
			c.res.Changes = append(c.res.Changes, sdk.Change{Kind: sdk.ChangeDelete, Before: clone(*m)})
		}
	}
}

// compareMailbox proposes the changes that bring the mailbox of w in step:
// a create, or an update and the memberships to add and remove.
func (c *computation) compareMailbox(w *want) {
	res := c.res
	after := w.mailbox()
	after.Groups = sortedCopy(w.groups)
	m := c.existing[w.ref.ID]
	if m == nil {
		c.listMailbox(after)
		res.Changes = append(res.Changes, sdk.Change{Kind: sdk.ChangeCreate, After: clone(after), Conflicts: c.conflicts(w, 0)})
		return
	}
	c.matched[m.ID] = true
	after.ID = m.ID
	c.listMailbox(after)
	if after.Primary != m.Primary || after.DN != m.DN || after.Kind != m.Kind ||
		after.DisplayName != m.DisplayName || !slices.Equal(after.Aliases, m.Aliases) {
		upd := after
		upd.Groups = m.Groups
		res.Changes = append(res.Changes, sdk.Change{Kind: sdk.ChangeUpdate, Before: clone(*m), After: clone(upd), Conflicts: c.conflicts(w, m.ID)})
	}
	for _, g := range m.Groups {
		if !slices.Contains(w.groups, g) { // R5: the directory is authoritative
			res.Changes = append(res.Changes, sdk.Change{Kind: sdk.ChangeRemoveMember, Before: clone(*m), After: clone(after), Group: g})
		}
	}
	for _, g := range after.Groups {
		if !slices.Contains(m.Groups, g) {
			res.Changes = append(res.Changes, sdk.Change{Kind: sdk.ChangeAddMember, Before: clone(*m), After: clone(after), Group: g})
		}
	}
}

// listMailbox adds m to Result.Mailboxes, if they are wanted.
func (c *computation) listMailbox(m sdk.Mailbox) {
	if c.list {
		if c.res.Mailboxes == nil {
			c.res.Mailboxes = make([]sdk.Mailbox, 0, len(c.wants))
		}
		c.res.Mailboxes = append(c.res.Mailboxes, m)
	}
}

// conflicts lists the addresses of w that a mailbox other than own owns
// and this sync may not take: one of another source or another domain.
func (c *computation) conflicts(w *want, own int64) []sdk.Conflict {
	var cs []sdk.Conflict
	for _, a := range w.addrs {
		id, ok := c.snap.Owners[a]
		if !ok || id == own {
			continue
		}
		if o := c.byID[id]; o != nil && (o.Source != sdk.SourceLDAP || foreign(c.snap, id)) {
			cs = append(cs, sdk.Conflict{Address: a, MailboxID: id, Primary: o.Primary, Source: sourceName(c.snap, id, o)})
		}
	}
	return cs
}

// compareChanges orders changes by address, then kind, then group.
func compareChanges(a, b sdk.Change) int {
	if c := strings.Compare(primary(&a), primary(&b)); c != 0 {
		return c
	}
	if a.Kind != b.Kind {
		return int(a.Kind) - int(b.Kind)
	}
	return strings.Compare(a.Group, b.Group)
}

func primary(c *sdk.Change) string {
	if c.After != nil {
		return c.After.Primary
	}
	return c.Before.Primary
}

// describe names the entry of w in a reason.
func (w *want) describe() string {
	if w.held {
		return w.ref.DN + ", which is held (its mailbox keeps its addresses)"
	}
	return w.ref.DN
}

// suffix returns ": "+reason, or "" for no reason.
func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

func foreign(snap *store.Snapshot, id int64) bool {
	_, ok := snap.Foreign[id]
	return ok
}

func sourceName(snap *store.Snapshot, id int64, m *sdk.Mailbox) string {
	if foreign(snap, id) {
		return m.Source + " (another domain)"
	}
	return m.Source
}

func clone(m sdk.Mailbox) *sdk.Mailbox { return &m }

func sortedCopy(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}
