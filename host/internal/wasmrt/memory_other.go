//go:build !linux

package wasmrt

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator returns nil: wazero's default, a Go slice grown by copying.
func memoryAllocator() experimental.MemoryAllocator { return nil }
