package wasmrt_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/internal/testpolicy/runtimetest"
	"github.com/dirsync/dirsync/host/internal/wasmrt"
	"github.com/dirsync/dirsync/sdk"
)

// TestCompilationCacheDir checks that the compilation cache's directory,
// which holds machine code the host runs, is the host's own.
func TestCompilationCacheDir(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	loadErr := func(dir string) error {
		rt, err := wasmrt.Load(context.Background(), policyWasm, wasmrt.Options{Name: "test", Config: runtimetest.Config, CacheDir: dir})
		if err == nil {
			rt.Close(context.Background())
		}
		return err
	}
	wantRefused := func(t *testing.T, err error, says ...string) {
		t.Helper()
		if err == nil {
			t.Fatal("the load succeeded")
		}
		for _, s := range says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%v\nwant it to say %q", err, s)
			}
		}
	}

	t.Run("created 0700", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "dirsync", "wasm")
		rt := load(t, wasmrt.Options{CacheDir: dir})
		if _, err := rt.Filter(context.Background(), sdk.FilterRequest{Filter: "(a=b)"}); err != nil {
			t.Fatal(err)
		}
		subs, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(subs) != 1 || !strings.HasPrefix(subs[0].Name(), "wazero-") {
			t.Fatalf("cache directory holds %v, want wazero's directory", subs)
		}
		for _, d := range []string{dir, filepath.Join(dir, subs[0].Name())} {
			if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
				t.Errorf("%s: %v, %v; want mode 0700", d, st.Mode(), err)
			}
		}
		// wazero's directory is checked as well: it is the one wazero uses.
		sub := filepath.Join(dir, subs[0].Name())
		if err := os.Chmod(sub, 0o777); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, loadErr(dir), "compilation cache: cache directory "+sub+" is writable by group and others", "chmod go-w "+sub)
	})
	t.Run("writable by others", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "cache")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, loadErr(dir), `policy "test" (testpolicy.wasm): compilation cache: cache directory `+dir+" is writable by group and others (mode 0777)", "chmod go-w "+dir)
	})
	t.Run("another owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("only root can give a directory away")
		}
		dir := filepath.Join(t.TempDir(), "cache")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, loadErr(dir), "cache directory "+dir+" is owned by uid 65534", "chown 0 "+dir)
	})
}
