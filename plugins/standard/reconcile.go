package standard

import (
	"strings"

	"github.com/dirsync/dirsync/sdk"
)

// Reconcile decides on the host's proposed changes (R5, R6, R10) and returns
// decisions only for the changes it does not accept as proposed:
//
//   - a create whose addresses belong to a mailbox of another source is vetoed
//     (R10: no duplicate, no takeover);
//   - an update whose primary address belongs to another mailbox is vetoed;
//     one whose aliases do is replaced by the same update without them;
//   - a delete, an update or a membership change of a mailbox whose source is
//     not ldap is vetoed (R5, R6; the host never proposes them, this is
//     defence in depth);
//   - an adopt is vetoed: the standard policy never takes over a mailbox of
//     another source (a custom policy may);
//   - a change of a kind it does not know is vetoed.
//
// Its Info asks a host of ABI 1.3 or later only about changes with
// conflicts and adopts (sdk.ReconcileConflicts); an older host asks about
// every change, and gets the same outcome.
func (p *Policy) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	var ds []sdk.Decision
	for i := range req.Changes {
		if d, ok := decide(&req.Changes[i]); ok {
			d.Index = i
			ds = append(ds, d)
		}
	}
	return sdk.ReconcileResponse{Decisions: ds}, nil
}

func veto(reason string) (sdk.Decision, bool) {
	return sdk.Decision{Action: sdk.Veto, Reason: reason}, true
}

func decide(c *sdk.Change) (sdk.Decision, bool) {
	switch c.Kind {
	case sdk.ChangeCreate:
		if c.After == nil {
			return veto("create without the mailbox to create")
		}
		if len(c.Conflicts) > 0 {
			return veto(conflictReason(c.Conflicts))
		}
	case sdk.ChangeUpdate:
		if c.Before == nil || c.After == nil {
			return veto("update without the mailbox before and after the change")
		}
		if c.Before.Source != sdk.SourceLDAP {
			return veto(notLDAP("update", c.Before))
		}
		if len(c.Conflicts) > 0 {
			return resolveUpdate(c)
		}
	case sdk.ChangeDelete:
		if c.Before == nil {
			return veto("delete without the mailbox to delete")
		}
		if c.Before.Source != sdk.SourceLDAP {
			return veto(notLDAP("delete", c.Before))
		}
	case sdk.ChangeAddMember, sdk.ChangeRemoveMember:
		switch {
		case c.Before != nil:
			if c.Before.Source != sdk.SourceLDAP {
				return veto(notLDAP("change the groups of", c.Before))
			}
		case c.After == nil:
			return veto("membership change without a mailbox")
		}
		// Before == nil: a mailbox this run creates.
	case sdk.ChangeAdopt:
		return veto("the standard policy never adopts a mailbox of another source (R10)")
	default:
		return veto("unknown change kind " + c.Kind.String())
	}
	return sdk.Decision{}, false
}

func notLDAP(what string, mb *sdk.Mailbox) string {
	src := mb.Source
	if src == "" {
		src = "unknown"
	}
	return "a sync does not " + what + " mailbox " + mb.Primary + " of source " + src + " (R5, R6)"
}

// conflictReason says which addresses belong to which mailboxes.
func conflictReason(cs []sdk.Conflict) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString("conflict: ")
		b.WriteString(c.Address)
		b.WriteString(" belongs to ")
		b.WriteString(c.Source)
		b.WriteString(" mailbox ")
		b.WriteString(c.Primary)
	}
	return b.String()
}

// resolveUpdate vetoes an update whose primary address conflicts and replaces
// one whose aliases conflict by the same update without those aliases.
func resolveUpdate(c *sdk.Change) (sdk.Decision, bool) {
	for _, cf := range c.Conflicts {
		if strings.EqualFold(cf.Address, c.After.Primary) {
			return veto(conflictReason([]sdk.Conflict{cf}))
		}
	}
	after := *c.After
	after.Aliases = nil
	for _, a := range c.After.Aliases {
		if !conflicts(a, c.Conflicts) {
			after.Aliases = append(after.Aliases, a)
		}
	}
	repl := *c
	repl.After = &after
	repl.Conflicts = nil
	return sdk.Decision{
		Action:      sdk.Replace,
		Reason:      conflictReason(c.Conflicts) + " (conflicting aliases dropped)",
		Replacement: &repl,
	}, true
}

func conflicts(addr string, cs []sdk.Conflict) bool {
	for _, c := range cs {
		if strings.EqualFold(c.Address, addr) {
			return true
		}
	}
	return false
}
