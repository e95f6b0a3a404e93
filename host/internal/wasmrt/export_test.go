package wasmrt

import (
	"errors"

	"github.com/dirsync/dirsync/host/internal/policy"
	"github.com/dirsync/dirsync/host/internal/wasmrt/interrupt"
)

// WithoutInterrupt makes Load compile modules with wazero's own exit check,
// as it does a module that package interrupt cannot rewrite, until restore
// is called.
func WithoutInterrupt() (restore func()) {
	instrument = func([]byte) ([]byte, error) { return nil, errors.New("turned off by a test") }
	return func() { instrument = interrupt.Instrument }
}

// Idle is how many idle instances rt's pool holds.
func Idle(rt policy.Runtime) int {
	m := rt.(*module)
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.idle)
}
