package api_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestGeneratedCode checks that internal/gen is what `make generate`
// makes of openapi.yaml now.
func TestGeneratedCode(t *testing.T) {
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Without its output key the generator writes to stdout.
	cfg = regexp.MustCompile(`(?m)^output:.*$`).ReplaceAll(cfg, nil)
	tmp := filepath.Join(t.TempDir(), "oapi-codegen.yaml")
	if err := os.WriteFile(tmp, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command("go", "tool", "oapi-codegen", "-config", tmp, "openapi.yaml")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go tool oapi-codegen: %v\n%s", err, stderr.Bytes())
	}
	committed, err := os.ReadFile(filepath.Join("internal", "gen", "gen.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), committed) {
		t.Fatal("internal/gen/gen.go is not what openapi.yaml makes: run `make generate`")
	}
}
