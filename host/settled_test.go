package host

import (
	"reflect"
	"testing"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/diff"
	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/memstore"
	"github.com/dirsync/dirsync/sdk"
)

// decider is a policy whose Reconcile decides every proposed change with
// decide (nil: accepts it).
type decider struct {
	decide func(i int, c sdk.Change) *sdk.Decision
}

func (decider) Info() sdk.Info {
	return sdk.Info{Name: "decider", ABIMajor: sdk.ABIMajor, ABIMinor: sdk.ABIMinor}
}
func (decider) Configure(map[string]any) error { return nil }
func (decider) Filter(r sdk.FilterRequest) (sdk.FilterResponse, error) {
	return sdk.FilterResponse{Filter: r.Filter}, nil
}
func (decider) Map(sdk.MapRequest) (sdk.MapResponse, error) { return sdk.MapResponse{}, nil }
func (p decider) Reconcile(r sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	var out sdk.ReconcileResponse
	for i, c := range r.Changes {
		if d := p.decide(i, c); d != nil {
			d.Index = i
			out.Decisions = append(out.Decisions, *d)
		}
	}
	return out, nil
}

// TestSettledOnlyAsProposed checks that a run's decision counts as settled
// (a delta may then decide on what its changes reach alone) only when
// every proposed change is applied as proposed: a veto, a replacement (a
// delete turned into an update, say) or a conflict leaves the store other
// than a decision on the whole domain wants.
func TestSettledOnlyAsProposed(t *testing.T) {
	const domain = "example.com"
	st := memstore.New()
	ctx := t.Context()
	if _, err := st.AddMailbox(ctx, domain, store.Mailbox{Primary: "hand@example.com"}); err != nil {
		t.Fatal(err)
	}
	gone := sdk.Change{Kind: sdk.ChangeCreate, After: &sdk.Mailbox{DirID: "id-1", Primary: "gone@example.com", Kind: sdk.KindUser, Source: sdk.SourceLDAP}}
	snap, err := st.Snapshot(ctx, domain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, domain, []sdk.Change{gone}, &store.Run{Domain: domain, Generation: snap.Generation}); err != nil {
		t.Fatal(err)
	}
	if snap, err = st.Snapshot(ctx, domain, nil); err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Config: &config.Config{}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	user := func(primary string, aliases ...string) sdk.Intent {
		return sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Primary: primary, Aliases: aliases}}
	}
	accept := func(int, sdk.Change) *sdk.Decision { return nil }
	tests := []struct {
		name    string
		intents []sdk.Intent // of entries id-0, id-1, …
		decide  func(int, sdk.Change) *sdk.Decision
		want    bool
	}{
		{"AllAccepted", []sdk.Intent{user("new@example.com")}, accept, true},
		{"Vetoed", []sdk.Intent{user("new@example.com")},
			func(int, sdk.Change) *sdk.Decision { return &sdk.Decision{Action: sdk.Veto, Reason: "no"} }, false},
		{"UpdateReplaced", []sdk.Intent{user("new@example.com"), user("gone@example.com", "gone.alias@example.com")},
			func(_ int, c sdk.Change) *sdk.Decision {
				if c.Kind != sdk.ChangeUpdate {
					return nil
				}
				after := *c.After
				after.Aliases = nil // as the standard policy drops an alias it may not have
				return &sdk.Decision{Action: sdk.Replace, Replacement: &sdk.Change{Kind: sdk.ChangeUpdate, Before: c.Before, After: &after}}
			}, false},
		{"CreateReplaced", []sdk.Intent{user("new@example.com")},
			func(_ int, c sdk.Change) *sdk.Decision {
				if c.Kind != sdk.ChangeCreate {
					return nil
				}
				after := *c.After
				after.DisplayName = "renamed"
				return &sdk.Decision{Action: sdk.Replace, Replacement: &sdk.Change{Kind: sdk.ChangeCreate, After: &after}}
			}, false},
		{"ConflictVetoed", []sdk.Intent{user("new@example.com", "hand@example.com")},
			func(_ int, c sdk.Change) *sdk.Decision {
				if len(c.Conflicts) > 0 {
					return &sdk.Decision{Action: sdk.Veto, Reason: "conflict"}
				}
				return nil
			}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Builtin(decider{tc.decide}, nil)
			if err != nil {
				t.Fatal(err)
			}
			in := &runInput{p: p, sd: sdk.Domain{Name: domain}, snap: snap}
			for i, it := range tc.intents {
				id := "id-" + string(rune('0'+i))
				in.refs = append(in.refs, diff.Ref{ID: id, DN: "cn=" + id + ",o=x"})
				in.intents = append(in.intents, it)
			}
			dec, err := h.decide(ctx, &config.Domain{Name: domain, Policy: "decider"}, in, &Report{Mode: "sync"})
			if err != nil {
				t.Fatal(err)
			}
			if dec.settled != tc.want {
				t.Errorf("settled = %v, want %v (final changes %d)", dec.settled, tc.want, len(dec.final))
			}
		})
	}
}

// TestPartUnfit: a run decides on what a delta reaches only with a part of
// the store of the generation its kept state was found settled at, and
// whose LDAP mailboxes are all of the reach.
func TestPartUnfit(t *testing.T) {
	r := &diff.Reach{DirIDs: []string{"a", "b"}}
	part := func(gen int64, ms ...store.Mailbox) *store.Snapshot {
		return &store.Snapshot{Generation: gen, Mailboxes: ms}
	}
	ldap := func(dirID string) store.Mailbox { return store.Mailbox{DirID: dirID, Source: sdk.SourceLDAP} }
	tests := []struct {
		name string
		snap *store.Snapshot
		fit  bool
	}{
		{"Fits", part(7, ldap("a"), ldap("b"), store.Mailbox{Source: sdk.SourceManual}), true},
		{"WrittenSince", part(8, ldap("a")), false},
		{"MailboxOutsideTheReach", part(7, ldap("a"), ldap("c")), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if why := partUnfit(tc.snap, r, 7); (why == "") != tc.fit {
				t.Errorf("partUnfit = %q, want fit %v", why, tc.fit)
			}
		})
	}
}

// TestCompactAddresses: the addresses of a policy's intent are compared,
// claimed and deduplicated as the stores keep them (store.NormAddress).
func TestCompactAddresses(t *testing.T) {
	it := sdk.Intent{Kind: sdk.IntentMailbox, Mailbox: &sdk.MailboxIntent{Primary: " Alice@Example.COM",
		Aliases: []string{"A.Smith@example.com", "a.smith@example.com", "Jörg@Example.com\t"}}}
	compact(&it)
	if want := (sdk.MailboxIntent{Primary: "alice@example.com", Aliases: []string{"a.smith@example.com", "a.smith@example.com", "jörg@example.com"}}); !reflect.DeepEqual(*it.Mailbox, want) {
		t.Errorf("compact = %+v, want %+v", *it.Mailbox, want)
	}
	// And the diff makes one alias of the two, once created proposing
	// nothing more (diff.TestAliasTwice).
	res := diff.Changes(sdk.Domain{Name: "example.com"}, []diff.Ref{{ID: "a", DN: "cn=a"}}, []sdk.Intent{it},
		&store.Snapshot{Domain: "example.com", Owners: map[string]int64{}})
	if len(res.Changes) != 1 || !reflect.DeepEqual(res.Changes[0].After.Aliases, []string{"a.smith@example.com", "jörg@example.com"}) {
		t.Errorf("changes: %+v", res.Changes)
	}
}
