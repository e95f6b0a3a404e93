package wasmrt

import (
	"fmt"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"

	"github.com/dirsync/dirsync/host/internal/cachedir"
)

// openCompilationCache opens wazero's compilation cache in dir. The cache
// holds machine code that the host maps and runs as it finds it, so dir and
// the subdirectory wazero keeps its files in must be the host's own
// (package cachedir): a missing one is made with mode 0700, one that
// another user owns or that group or others may write to is refused.
func openCompilationCache(dir string) (wazero.CompilationCache, error) {
	if err := cachedir.Ensure(dir); err != nil {
		return nil, err
	}
	if err := cachedir.Ensure(filepath.Join(dir, wazeroSubdir())); err != nil {
		return nil, err
	}
	return wazero.NewCompilationCacheWithDir(dir)
}

// wazeroSubdir is the name of the directory that wazero.NewCompilationCacheWithDir
// makes in the cache directory: "wazero-VERSION-GOARCH-GOOS", with the
// version of the wazero module linked in as wazero finds it (its internal
// package version), "dev" when the build has none.
var wazeroSubdir = sync.OnceValue(func() string {
	v := ""
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if strings.Contains(dep.Path, "github.com/tetratelabs/wazero") {
				v = dep.Version
			}
		}
		if v == "" || v == "(devel)" {
			v = info.Main.Version
		}
	}
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	return fmt.Sprintf("wazero-%s-%s-%s", v, runtime.GOARCH, runtime.GOOS)
})
