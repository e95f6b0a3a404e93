package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/cachedir"
	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/sdk"
)

// A policy's facts (policy.Facts: its Info and the filters it accepted)
// are kept in the cache folder, one file per policy name, under a key of
// everything they depend on: a module or config that changed makes them
// unknown again. With them, a run loads a wasm or process policy only
// when it has entries to map or changes to reconcile.

// factsFile is what the cache folder keeps of a policy.
type factsFile struct {
	Key     string            `json:"key"`
	Info    sdk.Info          `json:"info"`
	Filters map[string]string `json:"filters"`
}

// factsKey names what a policy's facts depend on: its name, runtime,
// module and config, and the ABI this host speaks.
func factsKey(spec *config.Policy, module []byte) (string, error) {
	cfg, err := json.Marshal(spec.Config) // map keys sorted: the same config, the same bytes
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, part := range [][]byte{[]byte("dirsync policy facts 1"), []byte(spec.Name), []byte(spec.Runtime), module, cfg,
		{byte(sdk.ABIMajor), byte(sdk.ABIMinor)}} {
		h.Write(part)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (h *Host) factsPath(name string) string {
	return filepath.Join(h.cacheDir(), "policyfacts", name+".json")
}

// readFacts returns the kept facts of spec's policy with module, if any.
func (h *Host) readFacts(spec *config.Policy, module []byte) (policy.Facts, bool) {
	key, err := factsKey(spec, module)
	if err != nil || h.cacheDir() == "" {
		return policy.Facts{}, false
	}
	b, err := os.ReadFile(h.factsPath(spec.Name))
	if err != nil {
		return policy.Facts{}, false
	}
	var f factsFile
	if json.Unmarshal(b, &f) != nil || f.Key != key || f.Info.ABIMajor != sdk.ABIMajor {
		return policy.Facts{}, false
	}
	return policy.Facts{Info: f.Info, Filters: f.Filters}, true
}

// writeFacts keeps facts of spec's policy with module (a file replaced
// whole, so that a reader never sees half of it). A failure only costs the
// next run a load.
func (h *Host) writeFacts(spec *config.Policy, module []byte, facts policy.Facts) {
	key, err := factsKey(spec, module)
	if err != nil || h.cacheDir() == "" {
		return
	}
	path := h.factsPath(spec.Name)
	if err := cachedir.Ensure(filepath.Dir(path)); err != nil {
		h.log.Debug("policy facts not kept", "policy", spec.Name, "err", err)
		return
	}
	b, err := json.Marshal(factsFile{Key: key, Info: facts.Info, Filters: facts.Filters})
	if err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), spec.Name+".*.tmp")
	if err != nil {
		return
	}
	_, err = tmp.Write(b)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		h.log.Debug("policy facts not kept", "policy", spec.Name, "err", err)
	}
}

// deferredPolicy returns spec's policy as a runtime that loads when it
// must (policy.Deferred), if its facts are kept; nil if not. The module's
// pin is checked here, so that a pinned module that changed is refused
// at once, as a load would.
func (h *Host) deferredPolicy(spec *config.Policy) (policy.Runtime, []byte, error) {
	code, err := os.ReadFile(spec.Path)
	if err != nil {
		return nil, nil, nil // the load says why
	}
	pin, err := policy.ParsePin(spec.SHA256)
	if err != nil {
		return nil, nil, err
	}
	if err := pin.Check(code, "refusing to load"); err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(code)
	facts, ok := h.readFacts(spec, sum[:])
	if !ok {
		return nil, nil, nil
	}
	load := func(ctx context.Context) (policy.Runtime, error) { return h.load(ctx, spec) }
	return policy.Deferred(facts, load, func(f policy.Facts) { h.writeFacts(spec, sum[:], f) }), sum[:], nil
}
