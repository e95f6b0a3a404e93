package host

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/sdk"
)

// LoadOptions configure LoadPolicy.
type LoadOptions struct {
	// CacheDir keeps compiled WebAssembly modules between loads; "" uses
	// the user's cache folder.
	CacheDir string
	// Builtins are the policies linked into the program, by name, for a
	// spec with runtime "builtin".
	Builtins map[string]func() sdk.Policy
	// Logger receives a process policy's log lines; nil discards them.
	Logger *slog.Logger
}

// LoadPolicy loads one policy as the host loads a [[policy]] of
// plugin.toml, through the same runtime (builtin, wasm or process), the
// same sandbox, limits and checksum pin, configured with spec.Config: for
// a program or a test that runs a policy outside a sync (the policy
// author's policytest.Load does). spec.Path is used as given; a zero
// MemoryLimitMB or Timeout takes the manifest's default. Close the
// returned policy when done.
func LoadPolicy(ctx context.Context, spec config.Policy, o LoadOptions) (PolicyRuntime, error) {
	if spec.Name == "" {
		spec.Name = "policy"
	}
	if spec.MemoryLimitMB == 0 {
		spec.MemoryLimitMB = config.DefaultMemoryLimitMB
	}
	if spec.Timeout.Duration == 0 {
		spec.Timeout.Duration = config.DefaultPolicyTimeout
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Host{cfg: &config.Config{Plugins: config.Plugins{CacheDir: o.CacheDir}}, builtins: o.Builtins, log: log}
	return h.load(ctx, &spec)
}

// checkABI refuses (and closes) a policy of another ABI major version.
func checkABI(ctx context.Context, name string, p PolicyRuntime) error {
	info := p.Info()
	if info.ABIMajor != sdk.ABIMajor {
		p.Close(ctx)
		return fmt.Errorf("policy %q speaks ABI %d.%d, this host speaks %d.%d", name, info.ABIMajor, info.ABIMinor, sdk.ABIMajor, sdk.ABIMinor)
	}
	return nil
}
