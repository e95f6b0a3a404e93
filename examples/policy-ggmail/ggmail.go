// Package ggmail is an example of a custom sync policy, written the way an
// operator's own policy would be: against package sdk and the Go standard
// library only, so that the same source is linked into a program (builtin)
// and built to a WebAssembly module (./wasm).
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
	"sort"
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

// Settings are the policy's [policy.config] table.
type Settings struct {
	// GroupPrefix (key group_prefix) marks the directory groups that fill
	// gateway groups. It is compared case-insensitively.
	GroupPrefix string
	// ExcludeDisabled (key exclude_disabled) skips users whose
	// userAccountControl has the ACCOUNTDISABLE bit (2) set.
	ExcludeDisabled bool
	// DeleteMissing (key delete_missing) lets a sync delete the mailboxes
	// of entries the directory no longer returns. When false, every such
	// delete is vetoed and the mailbox stays until removed by hand.
	DeleteMissing bool
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
func (p *Policy) Info() sdk.Info {
	return sdk.Info{
		Name:       Name,
		Version:    Version,
		ABIMajor:   sdk.ABIMajor,
		ABIMinor:   sdk.ABIMinor,
		Attributes: append([]string(nil), attributes...),
	}
}

// knownKeys lists the config keys, for error messages.
const knownKeys = "delete_missing, exclude_disabled, group_prefix"

// Configure validates the [policy.config] table and, if it is valid,
// replaces the settings; nil or an empty table gives DefaultSettings. An
// unknown key, or a value of the wrong type, is an error that names the
// key, so that the host refuses the policy at load with that message.
//
// Values arrive as the ABI carries them whatever the runtime: strings,
// booleans, numbers as float64, lists as []any, tables as map[string]any.
func (p *Policy) Configure(config map[string]any) error {
	set := DefaultSettings()
	keys := make([]string, 0, len(config))
	for k := range config {
		keys = append(keys, k)
	}
	sort.Strings(keys) // of several bad keys, always report the same one
	for _, k := range keys {
		v := config[k]
		switch k {
		case "group_prefix":
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("ggmail policy: config key %q must be a string such as \"GG-Mail-\", got %s", k, describe(v))
			}
			if strings.TrimSpace(s) == "" {
				return fmt.Errorf("ggmail policy: config key %q must not be empty: every group would match", k)
			}
			if s != strings.TrimSpace(s) {
				return fmt.Errorf("ggmail policy: config key %q is %q: white space at either end is almost certainly a mistake", k, s)
			}
			if strings.ContainsAny(s, "\x00") {
				return fmt.Errorf("ggmail policy: config key %q holds a NUL byte", k)
			}
			set.GroupPrefix = s
		case "exclude_disabled", "delete_missing":
			b, ok := v.(bool)
			if !ok {
				return fmt.Errorf("ggmail policy: config key %q must be a bool (true or false), got %s", k, describe(v))
			}
			if k == "exclude_disabled" {
				set.ExcludeDisabled = b
			} else {
				set.DeleteMissing = b
			}
		default:
			return fmt.Errorf("ggmail policy: unknown config key %q (known keys: %s)", k, knownKeys)
		}
	}
	p.set = set
	return nil
}

// describe shows a config value and its type in an error message.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing"
	case string:
		return fmt.Sprintf("the string %q", v)
	case float64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("the bool %v", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T %v", v, v)
}
