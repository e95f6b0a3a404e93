package diff

import (
	"maps"
	"slices"

	"github.com/dirsync/dirsync/sdk"
)

// Reach is the part of a domain that changed directory entries can
// change. When the store holds what the last decision on the whole domain
// left (nothing written since, every change applied as proposed), the
// entries outside it want their mailboxes exactly as they are,
// so a decision on the reach alone, with the store's part for it
// (store.PartReader), proposes the changes that a decision on the whole
// domain would: a delta run costs what changed, not the domain's size.
//
// The reach holds each entry that changed; each mailbox entry that claims
// an address a reached entry claims or claimed, or has a reached entry's
// directory id (R7: one owner per address, one mailbox per id); that a
// changed group names or named as a member (only those it gained or lost
// when it is the same group, of the same DN and gateway group, before and
// after); that names a changed group in memberOf (R5); or that has the DN
// of a changed or reached entry (of entries of one DN, bad data, the diff
// joins groups to the last). It holds the matched groups that name a
// reached mailbox, or that one names, so its memberships come out whole,
// and every group of the DN of one it holds.
type Reach struct {
	// Entries index the entries to decide on, in order.
	Entries []int
	// DirIDs and Addresses name what the store's part must hold: the
	// mailboxes of the entries reached and of those that changed or went,
	// and the owners of every address they claim or claimed. Sorted.
	DirIDs    []string
	Addresses []string
	// What else the reach was looked up by, normalized: an entry whose DN
	// is in DNs, that names one of GroupDNs in memberOf, or a group that
	// names one of MemberDNs as a member, may be in the reach; any other
	// is not (nor one whose id is not in DirIDs, or that claims no address
	// of Addresses). A caller that gives Reaches only part of the entries
	// (a state kept in chunks) gets the whole domain's reach once that
	// part holds every entry these and DirIDs and Addresses name.
	DNs, GroupDNs, MemberDNs []string
}

// Reaches finds the part of a domain that changes reach. oldRefs and
// oldIntents are the entries before the changes, refs and intents after;
// oldAt indexes the entries before that changed or went, at the entries
// after that changed, came, or had member or memberOf values follow the
// changes (dirstate.Touched). ok is false when the changes reach more than
// most entries (groups that only name reached mailboxes aside), or reach
// in ways this does not follow (a nested group, an entry the policy held,
// an intent kind this host does not know): the run then decides on the
// whole domain.
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
	// How many changed entries, before and after, have each DN. Of
	// entries of one DN (bad data), the diff goes by the last: those of a
	// changed entry's DN are reached, and a group whose DN another changed
	// entry has may take over from it or leave it, so it reaches all its
	// members.
	changedDNs := map[string]int{}
	for _, i := range oldAt {
		changedDNs[NormDN(oldRefs[i].DN)]++
	}
	for _, j := range at {
		changedDNs[NormDN(refs[j].DN)]++
	}
	whole := func(g groupAt) { // a changed group reaches all its members
		groupDNs[g.dn] = true
		for _, m := range g.intent.Members {
			members[NormDN(m)] = true
		}
	}
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
			if it.Group.Nested { // before or after: its members' members
				return false
			}
			dn := NormDN(ref.DN)
			if old {
				if was, dup := before[ref.ID]; dup { // two groups of one id (bad data)
					whole(was)
				}
				before[ref.ID] = groupAt{dn, it.Group}
				break
			}
			was, ok := before[ref.ID]
			if ok && was.dn == dn && was.intent.Target == it.Group.Target && changedDNs[dn] == 2 {
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
	if n > most {
		return r, false
	}
	for _, g := range before { // gone, or not the same group after
		whole(g)
	}
	// norm normalizes a DN into a scratch buffer, to look it up without
	// allocating (m[string(norm(dn))]) — a million entries are scanned.
	var scratch []byte
	norm := func(dn string) []byte {
		scratch = appendNormDN(scratch[:0], dn)
		return scratch
	}
	for i := range intents {
		switch it := &intents[i]; it.Kind {
		case sdk.IntentMailbox, sdk.IntentSkip:
		case sdk.IntentGroup:
			if it.Group == nil {
				break
			}
			if it.Group.Nested {
				return r, false
			}
			// A group of a changed entry's DN may take over from it, or
			// it from the group.
			if changedDNs[string(norm(refs[i].DN))] > 0 && !reached[i] {
				reached[i] = true
				whole(groupAt{NormDN(refs[i].DN), it.Group})
			}
		default: // held, or a kind of a newer ABI
			return r, false
		}
	}

	dnOf := func(j int) string { return NormDN(refs[j].DN) } // an entry's, to keep
	mailbox := func(j int) bool { return intents[j].Kind == sdk.IntentMailbox && intents[j].Mailbox != nil }
	// The reached mailboxes' DNs: of mailboxes of one DN (bad data), a
	// group's member value names the last, so they go together.
	mailDNs := map[string]bool{}
	for j, ok := range reached {
		if ok && mailbox(j) {
			mailDNs[dnOf(j)] = true
		}
	}
	// The mailboxes reached, until no more are: the first pass also
	// follows the changed entries' DNs and groups; a reached mailbox's
	// addresses, id and DN may reach others, before or after it.
	for pass := 0; ; pass++ {
		grew := false
		for j := range intents {
			it := &intents[j]
			if reached[j] || !mailbox(j) {
				continue
			}
			hit := ids[refs[j].ID] || addrs[it.Mailbox.Primary]
			for _, a := range it.Mailbox.Aliases {
				hit = hit || addrs[a]
			}
			if !hit {
				dn := norm(refs[j].DN)
				hit = mailDNs[string(dn)] || pass == 0 && (members[string(dn)] || changedDNs[string(dn)] > 0)
			}
			if !hit && pass == 0 && len(groupDNs) > 0 {
				for _, g := range it.Mailbox.MemberOf {
					hit = hit || groupDNs[string(norm(g))]
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
			mailDNs[dnOf(j)] = true
			claim(it.Mailbox)
		}
		if !grew {
			break
		}
	}

	// The matched groups that name a reached mailbox, or that one names;
	// then every group of the DN of a group decided on (of groups of one
	// DN, the diff goes by the last).
	named := map[string]bool{}
	for j, ok := range reached {
		if ok && mailbox(j) {
			for _, g := range intents[j].Mailbox.MemberOf {
				named[NormDN(g)] = true
			}
		}
	}
	group := func(j int) bool { return intents[j].Kind == sdk.IntentGroup && intents[j].Group != nil }
	for j := range intents {
		if reached[j] || !group(j) || intents[j].Group.Target == "" {
			continue
		}
		hit := named[string(norm(refs[j].DN))]
		for _, m := range intents[j].Group.Members {
			if hit {
				break
			}
			hit = mailDNs[string(norm(m))]
		}
		reached[j] = hit
	}
	groupsIn := map[string]bool{}
	for j, ok := range reached {
		if ok && group(j) {
			groupsIn[dnOf(j)] = true
		}
	}
	for j := range intents {
		if !reached[j] && group(j) && groupsIn[string(norm(refs[j].DN))] {
			reached[j] = true
		}
	}
	for j, ok := range reached {
		if ok {
			r.Entries = append(r.Entries, j)
		}
	}
	r.DirIDs = slices.Sorted(maps.Keys(ids))
	r.Addresses = slices.Sorted(maps.Keys(addrs))
	dns := map[string]bool{}
	for _, set := range []map[string]bool{mailDNs, members, named, groupsIn} {
		maps.Copy(dns, set)
	}
	for dn := range changedDNs {
		dns[dn] = true
	}
	r.DNs = slices.Sorted(maps.Keys(dns))
	r.GroupDNs = slices.Sorted(maps.Keys(groupDNs))
	r.MemberDNs = slices.Sorted(maps.Keys(mailDNs))
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
