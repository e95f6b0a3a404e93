// Package ggmail is an example of a custom sync policy, written the way an
// operator's own policy would be: against package sdk and the Go standard
// library only, so that the same source is linked into a program (builtin)
// and built to a WebAssembly module (./cmd/ggmail).
//
// It differs from the standard policy (plugins/standard) in what an
// operator of a mail gateway often asks for:
//
//   - Only directory groups named with a prefix, by default "GG-Mail-",
//     fill gateway groups: "GG-Mail-Sales" fills the gateway group "Sales".
//     The rest of the name is matched case-insensitively ("gg-mail-sales"
//     fills "Sales" too). Other groups are reported as unmatched, and the
//     default filter does not even fetch them.
//   - Addresses come from mail only: the first value is the primary
//     address, the others aliases. proxyAddresses is not read.
//   - Accounts that are disabled in Active Directory can be left out, and
//     deleting the mailboxes of entries the directory dropped can be
//     switched off.
//
// Settings come from the manifest's [policy.config] table:
//
//	[policy.config]
//	group_prefix     = "GG-Mail-"   # non-empty string
//	exclude_disabled = true         # skip users with userAccountControl bit 2
//	delete_missing   = true         # false: veto every delete
//
// The policy is stateless apart from its settings: once Configure has
// returned, Map and Reconcile may be called concurrently.
package ggmail

import (
	"fmt"
	"strings"

	"github.com/dirsync/dirsync/sdk"
)

// Name and Version identify the policy in Info.
const (
	Name    = "ggmail"
	Version = "1.0.0"
)

// DefaultPrefix is the group name prefix when the config sets none.
const DefaultPrefix = "GG-Mail-"

// attributes are the directory attributes the policy reads, in lower case.
// The host fetches these and nothing more (plus the stable id): not
// proxyAddresses, which this policy ignores.
var attributes = []string{
	"objectclass", "samaccounttype", "useraccountcontrol",
	"mail", "displayname", "cn", "name", "samaccountname",
	"member", "memberof",
}

// Settings are the policy's [policy.config] table. The config tags name
// the keys for sdk.DecodeConfig.
type Settings struct {
	// GroupPrefix (key group_prefix) marks the directory groups that fill
	// gateway groups. It is compared case-insensitively.
	GroupPrefix string `config:"group_prefix"`
	// ExcludeDisabled (key exclude_disabled) skips users whose
	// userAccountControl has the ACCOUNTDISABLE bit (2) set.
	ExcludeDisabled bool `config:"exclude_disabled"`
	// DeleteMissing (key delete_missing) lets a sync delete the mailboxes
	// of entries the directory no longer returns. When false, every such
	// delete is vetoed and the mailbox stays until removed by hand.
	DeleteMissing bool `config:"delete_missing"`
}

// DefaultSettings are the settings of an empty config.
func DefaultSettings() Settings {
	return Settings{GroupPrefix: DefaultPrefix, DeleteMissing: true}
}

// Policy is the ggmail policy. Use New to make one.
type Policy struct {
	set Settings
}

var _ sdk.Policy = (*Policy)(nil)

// New returns the policy with DefaultSettings. The host calls Configure
// before any other stage.
func New() *Policy { return &Policy{set: DefaultSettings()} }

// Settings returns the settings in effect.
func (p *Policy) Settings() Settings { return p.set }

// Info names the policy, its ABI version and the attributes it reads.
//
// With delete_missing on, Reconcile decides only on changes with
// conflicts (it accepts every other change as proposed), so the policy
// asks to be sent only those (sdk.ReconcileConflicts); with it off, it
// vetoes every delete and must see them all. Every runtime asks for Info
// once the policy is configured.
func (p *Policy) Info() sdk.Info {
	info := sdk.Info{
		Name:       Name,
		Version:    Version,
		ABIMajor:   sdk.ABIMajor,
		ABIMinor:   sdk.ABIMinor,
		Attributes: append([]string(nil), attributes...),
	}
	if p.set.DeleteMissing {
		info.Reconcile = sdk.ReconcileConflicts
	}
	return info
}

// Configure validates the [policy.config] table and, if it is valid,
// replaces the settings; nil or an empty table gives DefaultSettings. An
// unknown key, or a value of the wrong type, is an error that names the
// key (sdk.DecodeConfig checks the types), so that the host refuses the
// policy at load with that message.
//
// Values arrive as the ABI carries them whatever the runtime: strings,
// booleans, numbers as float64, lists as []any, tables as map[string]any.
func (p *Policy) Configure(config map[string]any) error {
	set := DefaultSettings()
	if err := sdk.DecodeConfig(config, &set); err != nil {
		return fmt.Errorf("ggmail policy: %w", err)
	}
	if err := checkPrefix(set.GroupPrefix); err != nil {
		return fmt.Errorf("ggmail policy: %w", err)
	}
	p.set = set
	return nil
}

// checkPrefix checks the value of group_prefix beyond its type.
func checkPrefix(s string) error {
	reason := ""
	switch {
	case strings.TrimSpace(s) == "":
		reason = "must not be empty: every group would match"
	case s != strings.TrimSpace(s):
		reason = fmt.Sprintf("is %q: white space at either end is almost certainly a mistake", s)
	case strings.Contains(s, "\x00"):
		reason = "holds a NUL byte"
	default:
		return nil
	}
	return &sdk.ConfigError{Key: "group_prefix", Reason: reason}
}
