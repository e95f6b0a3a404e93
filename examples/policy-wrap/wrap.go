// Package wrap is an example of a policy that wraps another one: the
// standard policy (plugins/standard), with one rule more. A user entry that
// its skip filter matches — by default (displayName=Test*), test accounts —
// is skipped, with a reason that previews and run reports show; every other
// decision is the standard policy's.
//
// The wrapper embeds the standard policy as an sdk.Policy and overrides
// only what it changes: Info (its name, and the attributes its filter
// reads), Configure (its own key, the rest passed on) and Map (the standard
// intents, then the skips). Filter and Reconcile are the standard policy's.
//
// Settings come from the manifest's [policy.config] table:
//
//	[policy.config]
//	skip_filter      = "(displayName=Test*)"  # users it matches are skipped; "" skips none
//	exclude_disabled = false                  # the standard policy's keys, passed on
//	nested_groups    = false
//
// A skipped entry whose mailbox an earlier sync made loses that mailbox: the
// host proposes to delete it, as for an entry the directory no longer
// returns (see README.md).
package wrap

import (
	"fmt"
	"slices"

	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/filter"
)

// Name and Version identify the policy in Info.
const (
	Name    = "wrap"
	Version = "1.0.0"
)

// DefaultSkipFilter is the skip filter of an empty config: users whose
// displayName starts with "Test", compared as the directory compares
// displayName, ignoring case ("TEST-Kiosk" and "testuser" too).
const DefaultSkipFilter = "(displayName=Test*)"

// settings are the wrapper's own keys of [policy.config]; Standard holds
// the others, for the standard policy's Configure.
type settings struct {
	SkipFilter string         `config:"skip_filter"`
	Standard   map[string]any `config:",remain"`
}

// Policy is the standard policy with a skip filter. Use New to make one.
type Policy struct {
	sdk.Policy                // the standard policy: Filter and Reconcile as they are
	skip       *filter.Filter // nil: no entry is skipped for being a test account
}

var _ sdk.Policy = (*Policy)(nil)

// New returns the policy with DefaultSkipFilter and the standard policy's
// defaults. The host calls Configure before any other stage.
func New() *Policy {
	f, err := filter.Parse(DefaultSkipFilter)
	if err != nil {
		panic(err) // a constant
	}
	return &Policy{Policy: standard.New(), skip: f}
}

// Info is the standard policy's, under this policy's name, with the
// attributes the skip filter reads added (Map matches entries with it, so
// the host must fetch them). It keeps the standard's ValuesOnly, since Map
// reads entries only through package filter and the standard Map, and its
// Reconcile scope, since Reconcile is the standard's.
func (p *Policy) Info() sdk.Info {
	info := p.Policy.Info()
	info.Name, info.Version = Name, Version
	for _, a := range p.skip.Attributes() {
		if !slices.Contains(info.Attributes, a) {
			info.Attributes = append(info.Attributes, a)
		}
	}
	return info
}

// Configure takes skip_filter (a string: an RFC 4515 filter, or "" for
// none) and hands every other key to the standard policy, which refuses
// what it does not know. Nothing changes unless the whole table is valid.
func (p *Policy) Configure(config map[string]any) error {
	set := settings{SkipFilter: DefaultSkipFilter}
	if err := sdk.DecodeConfig(config, &set); err != nil {
		return fmt.Errorf("wrap policy: %w", err)
	}
	var skip *filter.Filter
	if set.SkipFilter != "" {
		f, err := filter.Parse(set.SkipFilter)
		if err != nil {
			return fmt.Errorf("wrap policy: %w", &sdk.ConfigError{Key: "skip_filter", Reason: "is not a valid filter: " + err.Error()})
		}
		skip = f
	}
	if err := p.Policy.Configure(set.Standard); err != nil {
		return fmt.Errorf("wrap policy: %w", err)
	}
	p.skip = skip
	return nil
}

// Map maps the entries with the standard policy, then skips the user
// mailboxes whose entries the skip filter matches. Groups, public folders,
// skips and holds stay as the standard policy made them: a held entry
// (bad data) stays held, so that its mailbox is kept, never deleted.
func (p *Policy) Map(req sdk.MapRequest) (sdk.MapResponse, error) {
	resp, err := p.Policy.Map(req)
	if err != nil || p.skip == nil {
		return resp, err
	}
	for i := range min(len(resp.Intents), len(req.Entries)) {
		in := &resp.Intents[i]
		if in.Kind != sdk.IntentMailbox || in.Mailbox == nil || in.Mailbox.Kind != sdk.KindUser {
			continue
		}
		if p.skip.Match(req.Entries[i]) {
			*in = sdk.Intent{Kind: sdk.IntentSkip, Reason: "test account: matches skip_filter " + p.skip.String()}
		}
	}
	return resp, nil
}
