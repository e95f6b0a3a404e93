// Package testpolicy is the policy the runtime tests (wasmrt, processrt, the
// CLI's guard rails) build from ./cmd as a WebAssembly module or a plugin
// program, and also call directly, to compare the two.
//
// Its Map and Reconcile follow the standard rules closely enough to cost
// what a real policy costs; magic inputs make it misbehave or tell about
// its process:
//
//	Filter "(loop=forever)"          loops forever
//	Filter "(panic=yes)"             panics
//	Filter "(exit=3)"                calls os.Exit(3)
//	Filter "(oom=yes)"               allocates until memory runs out
//	Filter "(goroutine-panic=yes)"   panics in another goroutine (a crash)
//	Filter "(sleep=DURATION)"        sleeps, then answers as usual
//	Filter "(pid=?)"                 answers "(pid=N)", its process id
//	Filter "(env=NAME)"              answers "(env=VALUE)" from its environment
//	Filter "(stderr=TEXT)"           writes TEXT and a newline to os.Stderr
//	Filter "(stdout=TEXT)"           writes TEXT and a newline to os.Stdout
//	Filter "(log=TEXT)"              logs TEXT with the log package
//	Filter "(spawn=yes)"             starts a child that sleeps, holding the
//	                                 process's stdout, and answers "(child=PID)"
//	Map entry with ID "error"        returns an error
//	Map entry with ID "panic"        panics (a nil map write)
//	config key "fail"                Configure returns its value as an error
package testpolicy

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dirsync/dirsync/sdk"
)

// Policy is the test policy.
type Policy struct {
	prefix string // config "prefix": put before display names
}

// New returns the test policy.
func New() *Policy { return &Policy{} }

// Info names the policy.
func (p *Policy) Info() sdk.Info {
	return sdk.Info{Name: "testpolicy", Version: "1.0.0", ABIMajor: sdk.ABIMajor, ABIMinor: sdk.ABIMinor,
		Attributes: []string{"objectclass", "mail", "proxyaddresses", "displayname", "cn", "member", "memberof", "useraccountcontrol"}}
}

// Configure reads "prefix" and fails on "fail".
func (p *Policy) Configure(cfg map[string]any) error {
	if v, ok := cfg["fail"]; ok {
		return fmt.Errorf("%v", v)
	}
	p.prefix, _ = cfg["prefix"].(string)
	return nil
}

// Filter checks that the filter is parenthesized and balanced.
func (p *Policy) Filter(r sdk.FilterRequest) (sdk.FilterResponse, error) {
	switch r.Filter {
	case "(loop=forever)":
		n := 0
		for {
			n++
		}
	case "(panic=yes)":
		panic("filter panic")
	case "(oom=yes)":
		var keep [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1 // touch every page: the memory is really used
			}
			keep = append(keep, b)
		}
	case "(exit=3)":
		os.Exit(3)
	case "(goroutine-panic=yes)":
		done := make(chan struct{})
		go func() { panic("in a goroutine") }()
		<-done
	case "(pid=?)":
		return sdk.FilterResponse{Filter: "(pid=" + strconv.Itoa(os.Getpid()) + ")"}, nil
	case "(spawn=yes)":
		cmd := exec.Command("sleep", "1000")
		cmd.Stdout = os.NewFile(1, "stdout") // the process's own, not go-plugin's os.Stdout
		if err := cmd.Start(); err != nil {
			return sdk.FilterResponse{}, err
		}
		return sdk.FilterResponse{Filter: "(child=" + strconv.Itoa(cmd.Process.Pid) + ")"}, nil
	}
	if v, ok := magic(r.Filter, "sleep"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return sdk.FilterResponse{}, err
		}
		time.Sleep(d)
	}
	if v, ok := magic(r.Filter, "env"); ok {
		return sdk.FilterResponse{Filter: "(env=" + os.Getenv(v) + ")"}, nil
	}
	if v, ok := magic(r.Filter, "stderr"); ok {
		fmt.Fprintln(os.Stderr, v)
	}
	if v, ok := magic(r.Filter, "stdout"); ok {
		fmt.Fprintln(os.Stdout, v)
	}
	if v, ok := magic(r.Filter, "log"); ok {
		log.Print(v)
	}
	f := strings.TrimSpace(r.Filter)
	if !strings.HasPrefix(f, "(") {
		return sdk.FilterResponse{}, &sdk.FilterError{Position: 0, Reason: "a filter starts with ("}
	}
	depth := 0
	for i, c := range f {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return sdk.FilterResponse{}, &sdk.FilterError{Position: i, Reason: "unbalanced )"}
			}
		}
	}
	if depth != 0 {
		return sdk.FilterResponse{}, &sdk.FilterError{Position: len(f), Reason: "missing )"}
	}
	return sdk.FilterResponse{Filter: f}, nil
}

// magic returns the value of a filter "(name=value)".
func magic(filter, name string) (string, bool) {
	v, ok := strings.CutPrefix(filter, "("+name+"=")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(v, ")")
}

// Map makes a mailbox of each user or public folder with an address in the
// domain, a group of each group, and skips the rest.
func (p *Policy) Map(r sdk.MapRequest) (sdk.MapResponse, error) {
	out := sdk.MapResponse{Intents: make([]sdk.Intent, len(r.Entries))}
	for i := range r.Entries {
		e := &r.Entries[i]
		switch e.ID {
		case "error":
			return sdk.MapResponse{}, errors.New("entry error: cannot map " + e.DN)
		case "panic":
			var m map[string]bool
			m[e.DN] = true
		}
		out.Intents[i] = p.mapEntry(&r.Domain, e)
	}
	return out, nil
}

func (p *Policy) mapEntry(d *sdk.Domain, e *sdk.Entry) sdk.Intent {
	classes := e.Attributes["objectclass"]
	has := func(c string) bool {
		return slices.ContainsFunc(classes, func(x string) bool { return strings.EqualFold(x, c) })
	}
	if has("group") {
		g := &sdk.GroupIntent{Name: e.Get("cn"), Members: e.Attributes["member"]}
		if slices.Contains(d.Groups, g.Name) {
			g.Target = g.Name
		}
		return sdk.Intent{Kind: sdk.IntentGroup, Group: g}
	}
	if uac := e.Get("useraccountcontrol"); uac != "" && uac != "512" && uac != "66048" {
		return sdk.Intent{Kind: sdk.IntentSkip, Reason: "account disabled (userAccountControl " + uac + ")"}
	}
	inDomain := func(addr string) bool {
		at := strings.LastIndexByte(addr, '@')
		if at < 0 {
			return false
		}
		dom := addr[at+1:]
		return dom == d.Name || slices.Contains(d.AliasDomains, dom)
	}
	var in sdk.Intent
	mb := &sdk.MailboxIntent{Kind: sdk.KindUser, MemberOf: e.Attributes["memberof"]}
	if has("publicfolder") {
		mb.Kind = sdk.KindPublicFolder
	}
	keep := func(addr string, primary bool) {
		addr = strings.ToLower(addr)
		switch {
		case !inDomain(addr):
			in.Skipped = append(in.Skipped, sdk.SkippedAddress{Address: addr, Reason: "not in the domain or its alias domains"})
		case primary && mb.Primary == "":
			mb.Primary = addr
		default:
			mb.Aliases = append(mb.Aliases, addr)
		}
	}
	if pa := e.Attributes["proxyaddresses"]; len(pa) > 0 {
		for _, a := range pa {
			switch {
			case strings.HasPrefix(a, "SMTP:"):
				keep(a[5:], true)
			case strings.HasPrefix(a, "smtp:"):
				keep(a[5:], false)
			}
		}
	} else {
		for i, a := range e.Attributes["mail"] {
			keep(a, i == 0)
		}
	}
	if mb.Primary == "" {
		in.Kind, in.Reason = sdk.IntentSkip, "no address in the domain"
		return in
	}
	if dn := e.Get("displayname"); dn != "" {
		mb.DisplayName = p.prefix + dn
	}
	in.Kind, in.Mailbox = sdk.IntentMailbox, mb
	return in
}

// Reconcile vetoes deleting mailboxes of other sources and adding anyone to
// "Blocked", and disables instead of deleting while the domain has fewer
// than three LDAP mailboxes.
func (p *Policy) Reconcile(r sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	var out sdk.ReconcileResponse
	for i, c := range r.Changes {
		switch {
		case c.Kind == sdk.ChangeDelete && c.Before != nil && c.Before.Source != sdk.SourceLDAP:
			out.Decisions = append(out.Decisions, sdk.Decision{Index: i, Action: sdk.Veto, Reason: "not made by this sync"})
		case c.Kind == sdk.ChangeDelete && r.LDAPMailboxes < 3:
			after := *c.Before
			after.DisplayName = "(disabled) " + after.DisplayName
			out.Decisions = append(out.Decisions, sdk.Decision{Index: i, Action: sdk.Replace, Reason: "too few to delete",
				Replacement: &sdk.Change{Kind: sdk.ChangeUpdate, Before: c.Before, After: &after}})
		case c.Kind == sdk.ChangeAddMember && c.Group == "Blocked":
			out.Decisions = append(out.Decisions, sdk.Decision{Index: i, Action: sdk.Veto, Reason: "blocked group"})
		}
	}
	return out, nil
}
