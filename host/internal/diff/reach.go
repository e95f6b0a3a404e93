package diff

import (
	"maps"
	"slices"

	"github.com/dirsync/dirsync/sdk"
)

// Reach is the part of a domain that changed directory entries can
// change. When the store holds what the last decision on the whole domain
// left (nothing written since, nothing left waiting on a conflict or a
// veto), the entries outside it want their mailboxes exactly as they are,
// so a decision on the reach alone, with the store's part for it
// (store.PartReader), proposes the changes that a decision on the whole
// domain would: a delta run costs what changed, not the domain's size.
//
// The reach holds each mailbox entry that changed; that claims an address
// a reached entry claims or claimed, or has a reached entry's directory id
// (R7: one owner per address, one mailbox per id); that a changed group
// names or named as a member; or that names a changed group in memberOf
// (R5). It holds the matched groups that name a reached mailbox, or that
// it names, so its memberships come out whole.
type Reach struct {
	// Entries index the entries to decide on, in order.
	Entries []int
	// DirIDs and Addresses name what the store's part must hold: the
	// mailboxes of the entries reached and of those that changed or went,
	// and the owners of every address they claim or claimed. Sorted.
	DirIDs    []string
	Addresses []string
}

// Reaches finds the part of a domain that changes reach. oldRefs and
// oldIntents are the entries before the changes, refs and intents after;
// oldAt indexes the entries before that changed or went, at the entries
// after that changed, came, or had member or memberOf values follow the
// changes (dirstate.Touched). ok is false when the changes reach more than
// most mailboxes, or reach in ways this does not follow (a nested group,
// an entry the policy held, an intent kind this host does not know): the
// run then decides on the whole domain.
func Reaches(oldRefs []Ref, oldIntents []sdk.Intent, oldAt []int, refs []Ref, intents []sdk.Intent, at []int, most int) (r Reach, ok bool) {
	var (
		ids      = map[string]bool{}
		addrs    = map[string]bool{}
		members  = map[string]bool{} // DNs a changed group names or named
		groupDNs = map[string]bool{} // the changed groups' DNs
	)
	claim := func(mb *sdk.MailboxIntent) {
		addrs[mb.Primary] = true
		for _, a := range mb.Aliases {
			addrs[a] = true
		}
	}
	// A changed group reaches its members, before and after; but a
	// group of the same id, DN and gateway group before and after reaches
	// only the members it gained or lost (a member renamed or gone, one
	// added).
	type groupAt struct {
		dn     string
		intent *sdk.GroupIntent
	}
	before := map[string]groupAt{}
	var dupGroup bool
	// seed takes in what a changed entry, before or after, reaches.
	seed := func(ref Ref, it *sdk.Intent, old bool) bool {
		ids[ref.ID] = true // its mailbox, if it has one, may change or go
		switch it.Kind {
		case sdk.IntentMailbox:
			if it.Mailbox != nil {
				claim(it.Mailbox)
			}
		case sdk.IntentGroup:
			if it.Group == nil {
				break
			}
			dn := NormDN(ref.DN)
			if old {
				_, dup := before[ref.ID]
				dupGroup = dupGroup || dup
				before[ref.ID] = groupAt{dn, it.Group}
				break
			}
			was, ok := before[ref.ID]
			if ok && !dupGroup && was.dn == dn && was.intent.Target == it.Group.Target {
				delete(before, ref.ID)
				for m := range symDiff(was.intent.Members, it.Group.Members) {
					members[m] = true
				}
				break
			}
			groupDNs[dn] = true
			for _, m := range it.Group.Members {
				members[NormDN(m)] = true
			}
		case sdk.IntentSkip:
		default:
			return false
		}
		return true
	}
	for _, i := range oldAt {
		if !seed(oldRefs[i], &oldIntents[i], true) {
			return r, false
		}
	}
	reached := make([]bool, len(intents))
	n := 0
	for _, j := range at {
		if !seed(refs[j], &intents[j], false) {
			return r, false
		}
		reached[j] = true
		n++
	}
	for _, g := range before { // gone, or not the same group after
		groupDNs[g.dn] = true
		for _, m := range g.intent.Members {
			members[NormDN(m)] = true
		}
	}
	for i := range intents {
		switch it := &intents[i]; it.Kind {
		case sdk.IntentMailbox, sdk.IntentSkip:
		case sdk.IntentGroup:
			if it.Group != nil && it.Group.Nested {
				return r, false
			}
		default: // held, or a kind of a newer ABI
			return r, false
		}
	}

	// The mailboxes reached, until no more are: the first pass also
	// follows the changed groups; a reached mailbox's addresses and id may
	// reach others, before or after it.
	for pass := 0; ; pass++ {
		grew := false
		for j := range intents {
			it := &intents[j]
			if reached[j] || it.Kind != sdk.IntentMailbox || it.Mailbox == nil {
				continue
			}
			hit := ids[refs[j].ID] || addrs[it.Mailbox.Primary]
			for _, a := range it.Mailbox.Aliases {
				hit = hit || addrs[a]
			}
			if !hit && pass == 0 {
				hit = len(members) > 0 && members[NormDN(refs[j].DN)]
				for _, g := range it.Mailbox.MemberOf {
					hit = hit || (len(groupDNs) > 0 && groupDNs[NormDN(g)])
				}
			}
			if !hit {
				continue
			}
			if n++; n > most {
				return r, false
			}
			reached[j], grew = true, true
			ids[refs[j].ID] = true
			claim(it.Mailbox)
		}
		if !grew {
			break
		}
	}

	// The matched groups that name a reached mailbox, or that one names.
	dns, named := map[string]bool{}, map[string]bool{}
	for j := range intents {
		if it := &intents[j]; reached[j] && it.Kind == sdk.IntentMailbox && it.Mailbox != nil {
			dns[NormDN(refs[j].DN)] = true
			for _, g := range it.Mailbox.MemberOf {
				named[NormDN(g)] = true
			}
		}
	}
	for j := range intents {
		it := &intents[j]
		if reached[j] || it.Kind != sdk.IntentGroup || it.Group == nil || it.Group.Target == "" {
			continue
		}
		hit := named[NormDN(refs[j].DN)]
		for _, m := range it.Group.Members {
			if hit {
				break
			}
			hit = dns[NormDN(m)]
		}
		reached[j] = hit
	}
	for j, ok := range reached {
		if ok {
			r.Entries = append(r.Entries, j)
		}
	}
	r.DirIDs = slices.Sorted(maps.Keys(ids))
	r.Addresses = slices.Sorted(maps.Keys(addrs))
	return r, true
}

// symDiff returns the normalized DNs in one of a and b but not both.
func symDiff(a, b []string) map[string]bool {
	in := make(map[string]bool, len(a))
	for _, m := range a {
		in[NormDN(m)] = true
	}
	out := map[string]bool{}
	for _, m := range b {
		if n := NormDN(m); in[n] {
			in[n] = false // in both
		} else if _, seen := in[n]; !seen {
			out[n] = true
		}
	}
	for n, only := range in {
		if only {
			out[n] = true
		}
	}
	return out
}
