// Package standard is the standard sync policy of dirsync: the rules R1–R11
// of the design, written against package sdk only, so that the same source
// is linked into the host (builtin runtime) and compiled to standard.wasm.
//
// The policy is stateless apart from its configuration: Map and Reconcile
// may be called concurrently once Configure has returned.
package standard

import (
	"fmt"

	"github.com/dirsync/dirsync/sdk"
)

// Name and Version identify the policy in Info.
const (
	Name    = "standard"
	Version = "0.3.0"
)

// DefaultFilter is the filter used when the domain configures none (R2): AD
// users, security and distribution groups, and mail-enabled public folders.
const DefaultFilter = "(|(sAMAccountType=805306368)(sAMAccountType=268435456)(sAMAccountType=268435457)(objectclass=publicFolder))"

// attributes are the directory attributes the policy reads (lower case).
var attributes = []string{
	"objectclass", "samaccounttype", "proxyaddresses", "mail", "displayname",
	"cn", "member", "uniquemember", "memberof", "useraccountcontrol", "samaccountname", "name",
}

// settings is the policy's [policy.config] table.
type settings struct {
	// NestedGroups marks every group Nested: members of member groups, at
	// any depth, count as members (the host walks the groups it read).
	NestedGroups bool `config:"nested_groups"`
	// ExcludeDisabled skips user entries whose userAccountControl has the
	// ACCOUNTDISABLE bit (2) set.
	ExcludeDisabled bool `config:"exclude_disabled"`
}

// Policy is the standard policy. Use New to make one.
type Policy struct {
	cfg settings
}

var _ sdk.Policy = (*Policy)(nil)

// New returns the standard policy with the default configuration. The host
// calls Configure before any other stage.
func New() sdk.Policy { return &Policy{} }

// Info names the policy, its ABI version, the attributes it reads and the
// changes its Reconcile is asked about: those with conflicts, and adopts.
func (p *Policy) Info() sdk.Info {
	return sdk.Info{
		Name:       Name,
		Version:    Version,
		ABIMajor:   sdk.ABIMajor,
		ABIMinor:   sdk.ABIMinor,
		Attributes: append([]string(nil), attributes...),
		// It accepts as proposed every change without conflicts but an
		// adopt (the host never proposes the others it would veto).
		Reconcile: sdk.ReconcileConflicts,
		// It reads entries through Values and Get only.
		ValuesOnly: true,
	}
}

// Configure validates the [policy.config] table and replaces the current
// configuration. nil or an empty table gives the defaults. Known keys are
// nested_groups and exclude_disabled, both booleans; any other key, or a
// value of another type, is an error that names the key (a
// *sdk.ConfigError, from sdk.DecodeConfig).
func (p *Policy) Configure(config map[string]any) error {
	var cfg settings
	if err := sdk.DecodeConfig(config, &cfg); err != nil {
		return fmt.Errorf("standard policy: %w", err)
	}
	p.cfg = cfg
	return nil
}
