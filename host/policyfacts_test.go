package host

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/sdk"
)

// TestPolicyFacts: kept facts are used only for the module, config and
// name they were kept for, and a damaged or foreign file is none.
func TestPolicyFacts(t *testing.T) {
	dir := t.TempDir()
	h, err := New(Options{Config: &config.Config{Plugins: config.Plugins{CacheDir: dir}}})
	if err != nil {
		t.Fatal(err)
	}
	spec := &config.Policy{Name: "standard", Runtime: "wasm", Config: map[string]any{"nested_groups": false}}
	module := []byte("module one")
	facts := policy.Facts{Info: sdk.Info{Name: "standard", ABIMajor: sdk.ABIMajor, Attributes: []string{"mail"}},
		Filters: map[string]string{"(cn=x)": "(cn=x)"}}
	h.writeFacts(spec, module, facts)

	got, ok := h.readFacts(spec, module)
	if !ok || got.Info.Name != "standard" || got.Filters["(cn=x)"] != "(cn=x)" || len(got.Info.Attributes) != 1 {
		t.Fatalf("facts read back: %+v, %v", got, ok)
	}
	other := *spec
	other.Config = map[string]any{"nested_groups": true}
	for what, read := range map[string]func() bool{
		"another module": func() bool { _, ok := h.readFacts(spec, []byte("module two")); return ok },
		"another config": func() bool { _, ok := h.readFacts(&other, module); return ok },
	} {
		if read() {
			t.Errorf("facts kept for one module and config were used for %s", what)
		}
	}

	path := filepath.Join(dir, "policyfacts", "standard.json")
	for what, content := range map[string]string{
		"a damaged file": "{\"key\": ",
		"another ABI":    `{"key":"` + mustKey(t, spec, module) + `","info":{"ABIMajor":99}}`,
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, ok := h.readFacts(spec, module); ok {
			t.Errorf("%s was read as facts", what)
		}
	}
}

func mustKey(t *testing.T, spec *config.Policy, module []byte) string {
	t.Helper()
	k, err := factsKey(spec, module)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
