package host

import (
	"context"
	"log/slog"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/processrt"
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

// loadProcess starts a runtime = "process" policy of the manifest.
func loadProcess(ctx context.Context, spec *config.Policy, log *slog.Logger) (policy.Runtime, error) {
	return processrt.Load(ctx, spec.Path, processrt.Options{
		Name:          spec.Name,
		Timeout:       spec.Timeout.Duration,
		Config:        spec.Config,
		SHA256:        spec.SHA256,
		Logger:        log,
		MemoryLimitMB: spec.MemoryLimitMB,
	})
}
