// Package memstore is an in-memory store.Store: the reference a gateway
// vendor reads, or copies, when they write a store of their own for their
// existing database. It keeps every rule of the store.Store contract and
// passes the shared suite store/storetest, in plain Go: one mutex guards a
// few maps and slices, and values are copied in and out so that a caller
// never shares memory with the store.
//
// It is not for production: everything is lost when the process exits, its
// leases keep apart the runs of one process only (a real store shares them
// between every process that syncs), and a sync's Apply copies the domain
// and the address index, which costs time in proportion to their size. Use
// it in tests, demos and as a model; ship the SQLite store (store/sqlite) or
// your own.
//
// In a store of your own, the mutex becomes a database transaction per
// method; the owners index a unique key on the address; the generation a
// counter on the domain's row, checked and bumped in Apply's transaction;
// a lease a row per domain whose expiry is compared with the clock in the
// transaction that takes it.
//
// Where each rule of the contract lives:
//
//   - one transaction per Apply, all or nothing: Apply (apply.go) changes
//     copies and swaps them in only when every change succeeded;
//   - an address (primary or alias) has one owner in the whole store: the
//     owners index, checked by Apply and AddMailbox;
//   - a write generation per domain, bumped by Apply and by every hand-made
//     change, and store.ErrStoreChanged when a run's snapshot is stale: Apply;
//   - leases with a holder and an expiry, and StartRun marking a dead
//     holder's running runs abandoned: runs.go;
//   - the source of each membership (a sync's, or made by hand), kept
//     beside the mailboxes' groups: domainState.sources, here;
//   - runs paged by id, their changes paged, runs pruned, ids never
//     reused: runs.go;
//   - settings versions and store.ErrConflict on a stale expected version:
//     settings.go;
//   - the directory state of a domain, replaced (or its chunks patched) in
//     the Apply of a run and only there: Apply and dirstate.go;
//   - Resolve, from any address to its mailbox's primary address: here.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// Store is a store.Store held in memory. Every method takes mu for its whole
// length, so each one is a transaction of its own and sees one consistent
// state; that is what makes the store safe for concurrent use.
type Store struct {
	mu     sync.Mutex
	now    func() time.Time // the clock of leases, settings and abandoned runs
	closed bool

	domains map[string]*domainState // by domain name, lower case
	// owners maps every address in the store, primary or alias, lower case,
	// to the one mailbox that owns it, whatever its domain.
	owners      map[string]owner
	lastMailbox int64 // the last mailbox id given out; ids are never reused

	runs    []store.Run // every run of every domain, in id order
	lastRun int64       // the last run id given out; ids are never reused

	leases   map[string]store.Lease             // by domain
	settings map[string][]store.SettingsVersion // by domain; [i] is version i+1
	// dirStates holds the directory state each domain's last applied run
	// left (store.DirState), by domain, its Chunks in ascending Seq: Apply
	// replaces it, copied (nextDirState), and never changes one in place
	// but for MoveCookie's cookie.
	dirStates map[string]*store.DirState
}

// domainState is one domain's mailboxes and gateway groups.
type domainState struct {
	// generation counts the writes to the domain (store.Snapshot.Generation).
	generation int64
	// mailboxes holds the domain's mailboxes by id, each with its aliases
	// and groups sorted (nil when there are none). A mailbox's groups are
	// its memberships.
	mailboxes map[int64]*store.Mailbox
	// groups holds the names of the gateway groups, byte-exact: "Sales" and
	// "sales" are two groups. An operator makes them (source manual).
	groups map[string]bool
	// sources holds the source of every membership, one entry for each
	// group of each mailbox: sdk.SourceLDAP for one a sync made,
	// sdk.SourceManual for one made by hand. join, leave and drop keep it
	// in step with the mailboxes' groups.
	sources map[membership]string
}

// membership is a mailbox's membership of a group.
type membership struct {
	mailbox int64
	group   string
}

// join adds m to group with a membership of source; a membership m has
// already takes that source.
func (d *domainState) join(m *store.Mailbox, group, source string) {
	m.Groups = withString(m.Groups, group)
	d.sources[membership{m.ID, group}] = source
}

// leave removes m from group.
func (d *domainState) leave(m *store.Mailbox, group string) {
	m.Groups = withoutString(m.Groups, group)
	delete(d.sources, membership{m.ID, group})
}

// drop forgets the memberships of m, a mailbox being deleted.
func (d *domainState) drop(m *store.Mailbox) {
	for _, g := range m.Groups {
		delete(d.sources, membership{m.ID, g})
	}
}

// owner is the mailbox that owns an address.
type owner struct {
	domain string
	id     int64
}

var _ store.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		now:       time.Now,
		domains:   make(map[string]*domainState),
		owners:    make(map[string]owner),
		leases:    make(map[string]store.Lease),
		settings:  make(map[string][]store.SettingsVersion),
		dirStates: make(map[string]*store.DirState),
	}
}

// errClosed is returned by every method after Close.
var errClosed = errors.New("memstore: the store is closed")

// Close drops everything the store holds; later calls fail.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.domains, s.owners, s.runs, s.leases, s.settings, s.dirStates = nil, nil, nil, nil, nil, nil
	return nil
}

// lock takes the store's mutex unless ctx is done or the store is closed.
// The caller unlocks it.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errClosed
	}
	return nil
}

// domain returns the state of a domain, or an empty one (not kept) if the
// store has never seen it: an unknown domain reads as empty, at generation 0.
func (s *Store) domain(name string) *domainState {
	if d := s.domains[name]; d != nil {
		return d
	}
	return &domainState{}
}

// ensureDomain returns the state of a domain, creating it if needed.
func (s *Store) ensureDomain(name string) *domainState {
	d := s.domains[name]
	if d == nil {
		d = &domainState{mailboxes: make(map[int64]*store.Mailbox), groups: make(map[string]bool),
			sources: make(map[membership]string)}
		s.domains[name] = d
	}
	return d
}

// EnsureDomain creates the domain if it does not exist. Domain names are
// kept in lower case.
func (s *Store) EnsureDomain(ctx context.Context, domain string) error {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.ensureDomain(domain)
	return nil
}

// Snapshot returns copies of the domain's mailboxes and groups, the owner of
// every address in the domain and its alias domains (mailboxes of other
// domains included, in Foreign), and the domain's generation. An unknown
// domain has an empty snapshot at generation 0.
func (s *Store) Snapshot(ctx context.Context, domain string, aliasDomains []string) (*store.Snapshot, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	domains, err := store.NormDomains(domain, aliasDomains)
	if err != nil {
		return nil, fmt.Errorf("snapshot of %s: %w", domain, err)
	}
	covered := map[string]bool{}
	for _, d := range domains {
		covered[d] = true
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()

	d := s.domain(domain)
	snap := &store.Snapshot{
		Domain:     domain,
		Mailboxes:  d.sortedMailboxes(),
		Groups:     d.sortedGroups(),
		Owners:     make(map[string]int64),
		Foreign:    make(map[int64]store.Mailbox),
		Generation: d.generation,
	}
	for addr, o := range s.owners {
		if !covered[addrDomain(addr)] {
			continue
		}
		snap.Owners[addr] = o.id
		if o.domain != domain {
			snap.Foreign[o.id] = copyMailbox(s.domains[o.domain].mailboxes[o.id])
		}
	}
	return snap, nil
}

// SnapshotPart is Snapshot restricted to the mailboxes of the directory
// ids and the owners of the addresses given (store.PartReader).
func (s *Store) SnapshotPart(ctx context.Context, domain string, aliasDomains []string, dirIDs, addresses []string) (*store.Snapshot, int, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, 0, err
	}
	domains, err := store.NormDomains(domain, aliasDomains)
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot of %s: %w", domain, err)
	}
	covered := map[string]bool{}
	for _, d := range domains {
		covered[d] = true
	}
	if err := s.lock(ctx); err != nil {
		return nil, 0, err
	}
	defer s.mu.Unlock()

	d := s.domain(domain)
	snap := &store.Snapshot{
		Domain:     domain,
		Groups:     d.sortedGroups(),
		Owners:     make(map[string]int64),
		Foreign:    make(map[int64]store.Mailbox),
		Generation: d.generation,
	}
	picked := map[owner]bool{}
	ids := make(map[string]bool, len(dirIDs))
	for _, id := range dirIDs {
		ids[id] = true
	}
	ldap := 0
	for id, m := range d.mailboxes {
		if m.Source == sdk.SourceLDAP {
			ldap++
			if ids[m.DirID] {
				picked[owner{domain, id}] = true
			}
		}
	}
	for _, a := range addresses {
		if o, ok := s.owners[a]; ok {
			picked[owner{o.domain, o.id}] = true
		}
	}
	for o := range picked {
		m := copyMailbox(s.domains[o.domain].mailboxes[o.id])
		for _, a := range append([]string{m.Primary}, m.Aliases...) {
			if covered[addrDomain(a)] {
				snap.Owners[a] = m.ID
			}
		}
		if o.domain == domain {
			snap.Mailboxes = append(snap.Mailboxes, m)
		} else {
			snap.Foreign[m.ID] = m
		}
	}
	slices.SortFunc(snap.Mailboxes, func(a, b store.Mailbox) int { return strings.Compare(a.Primary, b.Primary) })
	return snap, ldap, nil
}

// Mailboxes returns copies of a domain's mailboxes sorted by primary
// address.
func (s *Store) Mailboxes(ctx context.Context, domain string) ([]store.Mailbox, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.domain(domain).sortedMailboxes(), nil
}

// Groups lists a domain's gateway groups sorted by name (byte order).
func (s *Store) Groups(ctx context.Context, domain string) ([]store.Group, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.domain(domain).sortedGroups(), nil
}

// GroupMembers lists the members of a domain's gateway group (name
// byte-exact) sorted by address, with the source of each membership and of
// its mailbox; store.ErrNotFound if the domain has no such group.
func (s *Store) GroupMembers(ctx context.Context, domain, group string) ([]store.Member, error) {
	domain, err := store.NormDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	d := s.domain(domain)
	if !d.groups[group] {
		return nil, fmt.Errorf("group %q in %s: %w", group, domain, store.ErrNotFound)
	}
	var members []store.Member
	for _, m := range d.mailboxes {
		if slices.Contains(m.Groups, group) {
			members = append(members, store.Member{Address: m.Primary, Source: d.sources[membership{m.ID, group}], MailboxSource: m.Source})
		}
	}
	slices.SortFunc(members, func(a, b store.Member) int { return strings.Compare(a.Address, b.Address) })
	return members, nil
}

// Resolve returns the primary address of the mailbox that owns address
// (primary or alias, any case), in any domain (R8).
func (s *Store) Resolve(ctx context.Context, address string) (string, error) {
	addr, err := normAddress(address)
	if err != nil {
		return "", err
	}
	if err := s.lock(ctx); err != nil {
		return "", err
	}
	defer s.mu.Unlock()
	o, ok := s.owners[addr]
	if !ok {
		return "", fmt.Errorf("address %q: %w", addr, store.ErrNotFound)
	}
	return s.domains[o.domain].mailboxes[o.id].Primary, nil
}

// sortedMailboxes returns copies of the domain's mailboxes sorted by primary
// address; nil if there are none.
func (d *domainState) sortedMailboxes() []store.Mailbox {
	var ms []store.Mailbox
	for _, m := range d.mailboxes {
		ms = append(ms, copyMailbox(m))
	}
	slices.SortFunc(ms, func(a, b store.Mailbox) int { return strings.Compare(a.Primary, b.Primary) })
	return ms
}

// sortedGroups returns the domain's groups sorted by name; nil if none.
func (d *domainState) sortedGroups() []store.Group {
	var gs []store.Group
	for _, name := range slices.Sorted(maps.Keys(d.groups)) {
		gs = append(gs, store.Group{Name: name, Source: sdk.SourceManual})
	}
	return gs
}

// clone returns a deep copy of d, for Apply to change.
func (d *domainState) clone() *domainState {
	c := &domainState{
		generation: d.generation,
		mailboxes:  make(map[int64]*store.Mailbox, len(d.mailboxes)),
		groups:     maps.Clone(d.groups),
		sources:    maps.Clone(d.sources),
	}
	if c.groups == nil {
		c.groups = make(map[string]bool)
	}
	if c.sources == nil {
		c.sources = make(map[membership]string)
	}
	for id, m := range d.mailboxes {
		cp := copyMailbox(m)
		c.mailboxes[id] = &cp
	}
	return c
}

// copyMailbox returns a copy of m that shares no memory with it.
func copyMailbox(m *store.Mailbox) store.Mailbox {
	c := *m
	c.Aliases, c.Groups = cloneStrings(m.Aliases), cloneStrings(m.Groups)
	return c
}

// cloneStrings copies a list; an empty one becomes nil, as the store
// returns it.
func cloneStrings(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	return slices.Clone(list)
}

// sortedSet returns the distinct strings of list, sorted; nil if none.
func sortedSet(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	set := slices.Clone(list)
	slices.Sort(set)
	return slices.Compact(set)
}

// withString returns the sorted list with s added (once).
func withString(list []string, s string) []string {
	return sortedSet(append(slices.Clone(list), s))
}

// withoutString returns list without s; nil if nothing is left.
func withoutString(list []string, s string) []string {
	return cloneStrings(slices.DeleteFunc(slices.Clone(list), func(x string) bool { return x == s }))
}

// addresses returns the addresses of m in lower case, the primary first,
// each once.
func addresses(m *store.Mailbox) ([]string, error) {
	primary, err := normAddress(m.Primary)
	if err != nil {
		return nil, fmt.Errorf("primary address: %w", err)
	}
	set := []string{primary}
	for _, raw := range m.Aliases {
		a, err := normAddress(raw)
		if err != nil {
			return nil, fmt.Errorf("alias: %w", err)
		}
		if !slices.Contains(set, a) {
			set = append(set, a)
		}
	}
	return set, nil
}

// mailboxAddresses lists every address m owns, primary first.
func mailboxAddresses(m *store.Mailbox) []string {
	return append([]string{m.Primary}, m.Aliases...)
}

// takenError reports that addr already belongs to a mailbox.
func takenError(addr string, o owner) error {
	return fmt.Errorf("address %q belongs to mailbox %d of %s: %w", addr, o.id, o.domain, store.ErrExists)
}

// addrDomain returns the part of a normalized address after the '@'.
func addrDomain(addr string) string {
	return addr[strings.LastIndexByte(addr, '@')+1:]
}

// normAddress returns address in lower case, or an error if it is not
// local@domain.
func normAddress(address string) (string, error) {
	addr, _, err := store.NormAddress(address)
	return addr, err
}
