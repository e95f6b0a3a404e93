// Package host is the embeddable dirsync engine. A Host reads a domain's
// directory, runs the domain's sync policy on what it read, checks the
// policy's decisions and applies them to a store in one transaction.
//
//	h, err := host.New(host.Options{Config: cfg, Store: st, Builtins: builtins})
//	report, err := h.Run(ctx, "example.com", host.RunOptions{})
//
// Run and Preview return a *Report; errors that stop a run before it writes
// are *RunError values naming the stage that failed.
package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/mapcache"
	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// Options configure a Host.
type Options struct {
	Config *config.Config
	// Store is the mailbox store runs read and write. It may be nil for a
	// Host that only checks filters (CheckFilter); Run and Preview then fail.
	Store store.Store
	// Builtins are the policies linked into the program, by name; a manifest
	// entry with runtime = "builtin" names one of them.
	Builtins map[string]func() sdk.Policy
	// Logger receives progress and diagnostics; nil discards them.
	Logger *slog.Logger
	// OnApplied, when set, is called after each sync whose changes were
	// committed to the store, with its report (RunID set, Outcome "ok"):
	// not after a dry run, a preview, or a run that failed, stopped or was
	// cancelled. It runs on the goroutine of Run, before Run returns, so a
	// program can publish events (a webhook, a message bus, a cache to
	// refresh) in the order of each domain's runs; a slow hook delays only
	// its own domain's next run. The report must not be changed.
	OnApplied func(rep *Report)
	// Credentials, when set, give the bind password and CAs of every
	// domain in place of the settings' password_file, password_env, sealed
	// password and ca_file (see Credentials).
	Credentials Credentials
	// LeaseTTL is how long a run's lease on its domain lasts unless renewed
	// (default: the config's [serve] lease_ttl, else DefaultLeaseTTL): a
	// crashed holder frees the domain after it.
	LeaseTTL time.Duration
}

// Host runs syncs for the domains of one config.
type Host struct {
	cfg      *config.Config
	store    store.Store
	builtins map[string]func() sdk.Policy
	log      *slog.Logger
	leaseTTL time.Duration
	creds    Credentials
	applied  func(*Report)
	pending  pendingRecords

	mu       sync.Mutex
	policies map[string]policy.Runtime
	modules  map[string][]byte // policy name → SHA-256 of its module file
}

// ErrUnknownDomain is returned for a domain the config does not declare.
var ErrUnknownDomain = config.ErrUnknownDomain

// New makes a Host. It loads no policy yet: each is loaded on first use.
func New(o Options) (*Host, error) {
	if o.Config == nil {
		return nil, errors.New("host: Config is required")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ttl := o.LeaseTTL
	if ttl <= 0 {
		ttl = o.Config.Serve.LeaseTTL.Duration
	}
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	return &Host{cfg: o.Config, store: o.Store, builtins: o.Builtins, log: log, leaseTTL: ttl, creds: o.Credentials, applied: o.OnApplied,
		policies: map[string]policy.Runtime{}, modules: map[string][]byte{}}, nil
}

// Close unloads the policies. It does not close the store.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for name, p := range h.policies {
		errs = append(errs, p.Close(context.Background()))
		delete(h.policies, name)
	}
	return errors.Join(errs...)
}

// PolicyRuntime is a policy module as the host calls it, whatever runtime
// serves it (builtin, wasm or process): the stages of sdk.Policy with a
// context, the policy already configured with its [policy.config], and
// Close to stop it. A wasm or process policy's methods are safe for
// concurrent use; Close ends its instances or process.
type PolicyRuntime interface {
	Info() sdk.Info
	Filter(ctx context.Context, req sdk.FilterRequest) (sdk.FilterResponse, error)
	Map(ctx context.Context, req sdk.MapRequest) (sdk.MapResponse, error)
	Reconcile(ctx context.Context, req sdk.ReconcileRequest) (sdk.ReconcileResponse, error)
	Close(ctx context.Context) error
}

var _ PolicyRuntime = policy.Runtime(nil)

// Policy returns the loaded policy of the given manifest name, loading it
// on first use. The host keeps it until Close.
func (h *Host) Policy(ctx context.Context, name string) (PolicyRuntime, error) {
	return h.policy(ctx, name, true)
}

// policy returns the policy of the given manifest name; loaded (eager),
// or, for a wasm or process policy whose facts are kept, as a runtime that
// loads when it must (policy.Deferred).
func (h *Host) policy(ctx context.Context, name string, eager bool) (policy.Runtime, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.policies[name]; ok {
		if eager {
			if err := policy.Load(ctx, p); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	if h.cfg.Manifest == nil {
		return nil, fmt.Errorf("no policy manifest is configured")
	}
	spec := h.cfg.Manifest.Policy(name)
	if spec == nil {
		return nil, fmt.Errorf("policy %q is not declared in %s", name, h.cfg.Manifest.Path)
	}
	outside := spec.Path != "" && spec.Runtime != "builtin"
	if outside && !eager {
		p, module, err := h.deferredPolicy(spec)
		if err != nil {
			return nil, err
		}
		if p != nil {
			h.policies[name], h.modules[name] = p, module
			return p, nil
		}
	}
	p, err := h.load(ctx, spec)
	if err != nil {
		return nil, err
	}
	if outside {
		if b, err := os.ReadFile(spec.Path); err == nil {
			sum := sha256.Sum256(b)
			h.modules[name] = sum[:]
			// Keep its facts, and learn the filters it accepts.
			facts := policy.Facts{Info: p.Info()}
			h.writeFacts(spec, sum[:], facts)
			loaded := p
			p = policy.Deferred(facts, func(context.Context) (policy.Runtime, error) { return loaded, nil },
				func(f policy.Facts) { h.writeFacts(spec, sum[:], f) })
		}
	}
	h.policies[name] = p
	return p, nil
}

// mapCache opens the domain's map cache for a policy served out of process
// (wasm or plugin), where a call costs far more than a lookup; nil for a
// builtin policy or when there is no cache folder. With save, the run
// writes what it maps for the next (mapcache.Open); the caller closes it.
func (h *Host) mapCache(ctx context.Context, d *config.Domain, p policy.Runtime, sd sdk.Domain, save bool) *mapcache.Cache {
	module, cfg := h.policyIdentity(d.Policy)
	dir := h.cacheDir()
	if module == nil || dir == "" {
		return nil
	}
	mc, err := mapcache.NewContext(module, p.Info(), cfg, sd)
	if err != nil {
		h.log.Warn("no map cache", "domain", d.Name, "err", err)
		return nil
	}
	c := mapcache.Open(filepath.Join(dir, "mapcache", d.Name+".bin"), mc, save)
	if err := c.Err(); err != nil {
		h.log.Warn("every entry is mapped again", "domain", d.Name, "err", err)
	}
	return c
}

// policyIdentity is what a policy's Map results depend on besides the
// entry and the domain: the SHA-256 of its module file (nil for a linked-in
// policy) and its config from the manifest.
func (h *Host) policyIdentity(name string) (module []byte, cfg map[string]any) {
	h.mu.Lock()
	module = h.modules[name]
	h.mu.Unlock()
	if spec := h.cfg.Manifest.Policy(name); spec != nil {
		cfg = spec.Config
	}
	return module, cfg
}

// load loads spec's policy and refuses one of another ABI major version.
func (h *Host) load(ctx context.Context, spec *config.Policy) (policy.Runtime, error) {
	p, err := h.loadRuntime(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := checkABI(ctx, spec.Name, p); err != nil {
		return nil, err
	}
	return p, nil
}

func (h *Host) loadRuntime(ctx context.Context, spec *config.Policy) (policy.Runtime, error) {
	h.log.Debug("loading the policy", "policy", spec.Name, "runtime", spec.Runtime)
	switch spec.Runtime {
	case "builtin":
		mk := h.builtins[spec.Name]
		if mk == nil {
			return nil, fmt.Errorf("policy %q: runtime \"builtin\", but this program links no policy of that name", spec.Name)
		}
		p, err := policy.Builtin(mk(), spec.Config)
		if err != nil {
			return nil, fmt.Errorf("policy %q refused its config: %w", spec.Name, err)
		}
		return p, nil
	case "wasm":
		return loadWasm(ctx, spec, h.cacheDir())
	case "process":
		return loadProcess(ctx, spec, h.log)
	}
	return nil, fmt.Errorf("policy %q: runtime %q is not available in this build", spec.Name, spec.Runtime)
}

func (h *Host) cacheDir() string {
	if h.cfg.Plugins.CacheDir != "" {
		return h.cfg.Plugins.CacheDir
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "dirsync", "wasm")
	}
	return ""
}

// CheckFilter validates a filter with a policy (default: the first domain's
// policy, else "standard") and returns the normalized filter.
func (h *Host) CheckFilter(ctx context.Context, policyName, filter string) (string, error) {
	if policyName == "" {
		policyName = "standard"
		if len(h.cfg.Domains) > 0 {
			policyName = h.cfg.Domains[0].Policy
		}
	}
	p, err := h.Policy(ctx, policyName)
	if err != nil {
		return "", err
	}
	resp, err := checkFilter(ctx, p, filter)
	if err != nil {
		return "", err
	}
	return resp.Filter, nil
}

// checkFilter asks the policy to validate a filter. Text that is not UTF-8
// cannot cross the policy ABI, so the host refuses it itself, naming the
// position as a policy would.
func checkFilter(ctx context.Context, p policy.Runtime, filter string) (sdk.FilterResponse, error) {
	if !utf8.ValidString(filter) {
		for i, r := range filter {
			if r == utf8.RuneError {
				return sdk.FilterResponse{}, &sdk.FilterError{Position: i,
					Reason: fmt.Sprintf("invalid UTF-8 (byte 0x%x); write raw bytes as \\XX", filter[i])}
			}
		}
	}
	return p.Filter(ctx, sdk.FilterRequest{Filter: filter})
}

// timed runs f and returns how long it took.
func timed(f func()) time.Duration {
	t := time.Now()
	f()
	return time.Since(t)
}
