package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-no-such-flag"},
		{"extra"},
		{"-config", filepath.Join(t.TempDir(), "missing.toml")},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("run(%q) = %d, want 2; stderr: %s", args, code, errb.String())
		}
	}
}

// TestUnreachableDirectory runs the in-code config against a port where no
// directory listens: the preview fails at the fetch stage, exit 1.
func TestUnreachableDirectory(t *testing.T) {
	t.Setenv("EMBED_TEST_PASSWORD", "x")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{
		"-url", "ldap://127.0.0.1:1", "-password-env", "EMBED_TEST_PASSWORD",
		"-db", filepath.Join(t.TempDir(), "embed.db"), "-group", "Sales",
	}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), `failed at stage "fetch"`) {
		t.Errorf("exit %d, stderr %q; want 1 and a fetch failure", code, errb.String())
	}
}
