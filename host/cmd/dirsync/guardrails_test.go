package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// TestPluginGuardRails checks that no policy can hurt the store or the
// host: whatever the policy does — as a wasm module, a plugin process or
// linked in — the CLI exits 1 with one line naming the policy and what it
// did, the store stays exactly as it was, and no plugin process is left.
func TestPluginGuardRails(t *testing.T) {
	e := newEnv(t)
	const D = "example.com"
	e.ok("group", "add", "--domain", D, "Sales")
	e.ok("mailbox", "add", "--domain", D, "hand@example.com")
	e.ok("sync", "--domain", D)
	state := e.state()
	good, _ := readFile(e.config)

	// The wasmrt test policy misbehaves on magic filters.
	wasm := filepath.Join(e.dir, "testpolicy.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", wasm, "./host/internal/testpolicy/cmd")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test policy: %v\n%s", err, b)
	}
	native := filepath.Join(e.dir, "testpolicy")
	cmd = exec.Command("go", "build", "-o", native, "./host/internal/testpolicy/cmd")
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test policy program: %v\n%s", err, b)
	}
	// Misbehaving builtin policies, linked in for this test only.
	builtins["evil-group"] = func() sdk.Policy { return evilGroup{standard.New()} }
	builtins["evil-replace"] = func() sdk.Policy { return evilReplace{standard.New()} }
	builtins["evil-outside"] = func() sdk.Policy { return evilOutside{standard.New()} }
	t.Cleanup(func() {
		delete(builtins, "evil-group")
		delete(builtins, "evil-replace")
		delete(builtins, "evil-outside")
	})

	processPolicy := fmt.Sprintf("[[policy]]\nname = \"standard\"\nruntime = \"process\"\npath = %q\ntimeout = \"2s\"\nmemory_limit_mb = 64\n", native)
	wasmPolicy := fmt.Sprintf("[[policy]]\nname = \"standard\"\nruntime = \"wasm\"\npath = %q\ntimeout = \"2s\"\nmemory_limit_mb = 64\n", wasm)
	for _, tc := range []struct {
		name     string
		manifest string
		filter   string
		want     []string
	}{
		{"infinite loop", wasmPolicy, "(loop=forever)", []string{`policy "standard"`, "filter", "timeout of 2s"}},
		{"panic", wasmPolicy, "(panic=yes)", []string{`policy "standard"`, "filter", "panic"}},
		{"memory bomb", wasmPolicy, "(oom=yes)", []string{`policy "standard"`, "filter"}},
		{"exit", wasmPolicy, "(exit=3)", []string{`policy "standard"`, "filter"}},
		{"process: infinite loop", processPolicy, "(loop=forever)", []string{`policy "standard"`, "filter", "timeout of 2s", "killed"}},
		{"process: panic", processPolicy, "(panic=yes)", []string{`policy "standard"`, "filter", "panic"}},
		{"process: memory bomb", processPolicy, "(oom=yes)", []string{`policy "standard"`, "filter", "exited during the call"}},
		{"process: dies mid-call", processPolicy, "(exit=3)", []string{`policy "standard"`, "filter", "exited during the call: exit status 3"}},
		{"maps to a group that does not exist", builtinManifest("evil-group"), "", []string{`policy "evil-group"`, `group "Nope"`, "never created"}},
		{"turns a create into an adopt of a hand-made mailbox", builtinManifest("evil-replace"), "", []string{`policy "evil-replace"`, "not a conflicting mailbox"}},
		{"adds an address outside the domain", builtinManifest("evil-outside"), "", []string{`policy "evil-outside"`, "outside domain example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.write("plugin.toml", tc.manifest)
			cfg := strings.Replace(good, `policy        = "standard"`, fmt.Sprintf("policy        = %q", policyName(tc.manifest)), 1)
			cfg = strings.Replace(cfg, `filter        = ""`, fmt.Sprintf("filter        = %q", tc.filter), 1)
			e.write("dirsync.toml", cfg)
			// A new entry gives the evil policies a create to abuse.
			if tc.filter == "" {
				e.srv.Delete("cn=Nina New,ou=People,dc=example,dc=com")
				if err := e.srv.Add("cn=Nina New,ou=People,dc=example,dc=com", map[string][]string{
					"objectClass": {"inetOrgPerson", "adUser"}, "cn": {"Nina New"}, "sn": {"New"},
					"sAMAccountType": {"805306368"}, "proxyAddresses": {"SMTP:nina@example.com"}}); err != nil {
					t.Fatal(err)
				}
			}
			errs := e.fails(1, "", "sync", "--domain", D)
			for _, w := range tc.want {
				if !strings.Contains(errs, w) {
					t.Errorf("error lacks %q:\n%s", w, errs)
				}
			}
			if n := strings.Count(strings.TrimSpace(errs), "\n"); n > 0 {
				t.Errorf("error is %d lines, want one:\n%s", n+1, errs)
			}
			e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
			e.write("dirsync.toml", good)
			want(t, "state", e.state(), state)
			if out, _ := exec.Command("pgrep", "-f", native).Output(); len(out) > 0 {
				t.Errorf("plugin processes left behind: %s", out)
			}
		})
	}
	e.t = t
	e.srv.Delete("cn=Nina New,ou=People,dc=example,dc=com")
}

func builtinManifest(name string) string {
	return fmt.Sprintf("[[policy]]\nname = %q\nruntime = \"builtin\"\n", name)
}

func policyName(manifest string) string {
	_, rest, _ := strings.Cut(manifest, `name = "`)
	name, _, _ := strings.Cut(rest, `"`)
	return name
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}

// evilGroup maps every group to a gateway group that does not exist.
type evilGroup struct{ sdk.Policy }

func (p evilGroup) Map(r sdk.MapRequest) (sdk.MapResponse, error) {
	resp, err := p.Policy.Map(r)
	for i := range resp.Intents {
		if g := resp.Intents[i].Group; g != nil {
			g.Target = "Nope"
		}
	}
	return resp, err
}

// evilReplace turns every create into the adoption of mailbox 1 or 2,
// whichever is not its conflict (it has none).
type evilReplace struct{ sdk.Policy }

func (p evilReplace) Reconcile(r sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	var resp sdk.ReconcileResponse
	for i, c := range r.Changes {
		if c.Kind == sdk.ChangeCreate {
			resp.Decisions = append(resp.Decisions, sdk.Decision{Index: i, Action: sdk.Replace,
				Replacement: &sdk.Change{Kind: sdk.ChangeAdopt, After: &sdk.Mailbox{ID: 1, Primary: "hand@example.com"}}})
		}
	}
	return resp, nil
}

// Info asks about every change: the standard policy's Info asks only about
// conflicts, and a create without any would never reach Reconcile.
func (p evilReplace) Info() sdk.Info { return askAll(p.Policy) }

// evilOutside adds an address of another domain to every create.
type evilOutside struct{ sdk.Policy }

func (p evilOutside) Info() sdk.Info { return askAll(p.Policy) }

// askAll is p's Info, asking about every proposed change.
func askAll(p sdk.Policy) sdk.Info {
	in := p.Info()
	in.Reconcile = sdk.ReconcileAll
	return in
}

func (p evilOutside) Reconcile(r sdk.ReconcileRequest) (sdk.ReconcileResponse, error) {
	var resp sdk.ReconcileResponse
	for i, c := range r.Changes {
		if c.Kind == sdk.ChangeCreate {
			m := *c.After
			m.Aliases = append(m.Aliases, "stolen@other.net")
			resp.Decisions = append(resp.Decisions, sdk.Decision{Index: i, Action: sdk.Replace,
				Replacement: &sdk.Change{Kind: sdk.ChangeCreate, After: &m}})
		}
	}
	return resp, nil
}
