package host

import (
	"context"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/wasmrt"
)

// loadWasm loads a runtime = "wasm" policy of the manifest.
func loadWasm(ctx context.Context, spec *config.Policy, cacheDir string) (policy.Runtime, error) {
	return wasmrt.Load(ctx, spec.Path, wasmrt.Options{
		Name:          spec.Name,
		CacheDir:      cacheDir,
		MemoryLimitMB: spec.MemoryLimitMB,
		Timeout:       spec.Timeout.Duration,
		Config:        spec.Config,
		SHA256:        spec.SHA256,
	})
}
