package cachedir_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dirsync/dirsync/host/internal/cachedir"
)

func TestEnsureCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := cachedir.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && st.Mode().Perm() != 0o700 {
			t.Errorf("%s was created with mode %o, want 0700", d, st.Mode().Perm())
		}
	}
	if err := cachedir.Ensure(dir); err != nil {
		t.Errorf("a directory Ensure made is refused: %v", err)
	}
}

func TestEnsureRefusesWritable(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	for mode, who := range map[os.FileMode]string{0o777: "group and others", 0o770: "its group", 0o703: "others", 0o1777: "group and others"} {
		dir := filepath.Join(t.TempDir(), "cache")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		err := cachedir.Ensure(dir)
		if err == nil {
			t.Errorf("mode %o: accepted", mode)
			continue
		}
		for _, want := range []string{"cache directory " + dir + " is writable by " + who, "chmod go-w " + dir} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("mode %o: %v; want it to say %q", mode, err, want)
			}
		}
	}
}

func TestEnsureRefusesOtherOwner(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix owners")
	}
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
	err := cachedir.Ensure(dir)
	if err == nil {
		t.Fatal("a directory of uid 65534 is accepted")
	}
	for _, want := range []string{"cache directory " + dir + " is owned by uid 65534", "chown 0 " + dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v; want it to say %q", err, want)
		}
	}
}

func TestEnsureRefusesFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cachedir.Ensure(f); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Ensure(a file) = %v", err)
	}
}
