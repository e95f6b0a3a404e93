package ggmail

import (
	"strings"

	"github.com/dirsync/dirsync/sdk"
)

// Reconcile decides on the changes the host proposes, and returns a
// decision only for those it does not accept as proposed:
//
//   - a create whose addresses belong to a mailbox of another source is
//     vetoed: no duplicate and no takeover (R10);
//   - an update whose primary address belongs to another mailbox is vetoed;
//     one whose aliases do becomes the same update without those aliases;
//   - with delete_missing = false, every delete is vetoed;
//   - an adopt (taking over a mailbox of another source) is vetoed;
//   - a change to a mailbox that is not of source ldap, or of a kind this
//     policy does not know, is vetoed.
//
// The host checks the outcome whatever a policy decides (rule S4): a
// decision that would touch another domain, a hand-made mailbox or a
// group that does not exist rejects the whole run. The vetoes of
// non-ldap mailboxes above are defence in depth: the host never proposes
// those changes.
func (p *Policy) Reconcile(req sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	var out []sdk.Decision
	for i := range req.Changes {
		if d, ok := p.decide(&req.Changes[i]); ok {
			d.Index = i
			out = append(out, d)
		}
	}
	return sdk.ReconcileResponse{Decisions: out}, nil
}

func veto(reason string) (sdk.Decision, bool) {
	return sdk.Decision{Action: sdk.Veto, Reason: reason}, true
}

// accept leaves a change as proposed: no decision is sent for it.
func accept() (sdk.Decision, bool) { return sdk.Decision{}, false }

func (p *Policy) decide(c *sdk.Change) (sdk.Decision, bool) {
	if c.Before != nil && c.Before.Source != sdk.SourceLDAP {
		return veto("ggmail never changes mailbox " + c.Before.Primary + " of source " + orUnknown(c.Before.Source))
	}
	switch c.Kind {
	case sdk.ChangeCreate:
		if len(c.Conflicts) > 0 {
			return veto(conflicts(c.Conflicts))
		}
	case sdk.ChangeUpdate:
		if len(c.Conflicts) > 0 && c.After != nil {
			return dropConflicts(c)
		}
	case sdk.ChangeDelete:
		if !p.set.DeleteMissing {
			return veto("delete_missing is off: the directory no longer returns this mailbox; remove it by hand if it should go")
		}
	case sdk.ChangeAddMember, sdk.ChangeRemoveMember:
	case sdk.ChangeAdopt:
		return veto("ggmail never takes over a mailbox of another source")
	default:
		return veto("unknown change kind " + c.Kind.String())
	}
	return accept()
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// conflicts says which addresses belong to which mailboxes.
func conflicts(cs []sdk.Conflict) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = "conflict: " + c.Address + " belongs to " + orUnknown(c.Source) + " mailbox " + c.Primary
	}
	return strings.Join(parts, "; ")
}

// dropConflicts vetoes an update whose primary address conflicts, and
// replaces one whose aliases conflict by the same update without them.
func dropConflicts(c *sdk.Change) (sdk.Decision, bool) {
	taken := map[string]bool{}
	for _, cf := range c.Conflicts {
		if strings.EqualFold(cf.Address, c.After.Primary) {
			return veto(conflicts([]sdk.Conflict{cf}))
		}
		taken[strings.ToLower(cf.Address)] = true
	}
	after := *c.After
	after.Aliases = nil
	for _, a := range c.After.Aliases {
		if !taken[strings.ToLower(a)] {
			after.Aliases = append(after.Aliases, a)
		}
	}
	repl := *c
	repl.After, repl.Conflicts = &after, nil
	return sdk.Decision{
		Action:      sdk.Replace,
		Reason:      conflicts(c.Conflicts) + " (the conflicting aliases are left out)",
		Replacement: &repl,
	}, true
}
