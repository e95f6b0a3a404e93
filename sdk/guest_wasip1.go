//go:build wasip1

package sdk

// The exports of a policy built as a WebAssembly reactor module
// (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared). This is the guest
// half of ABI v1; the host half is the wasm runtime of the dirsync host.
//
// A call goes: the host asks dirsync_alloc for a buffer, writes a protobuf
// request (package syncpolicy.v1) into it, and calls a stage export with its
// pointer and length. The stage returns ptr<<32 | len of a reply envelope
// (InfoReply, …, ReconcileReply): the stage's response or a flagged Error.
// The host reads the reply and hands both buffers back with dirsync_free.
// Requests without fields (dirsync_info) may be passed as (0, 0).
//
// Buffers are pinned in a map until dirsync_free. Decoded request strings
// alias the request buffer, so the host must not write to a request buffer
// once it has passed it to a stage; the guest's garbage collector keeps it
// alive for as long as the policy refers to any of its strings.

import (
	"runtime"
	"unsafe"
)

// pinned holds every buffer handed to the host, by address, until
// dirsync_free.
var pinned = map[uint32][]byte{}

// pin keeps b alive until dirsync_free and returns its address.
func pin(b []byte) uint32 {
	if cap(b) == 0 {
		b = make([]byte, 0, 1) // a real allocation, with an address of its own
	}
	p := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	pinned[p] = b
	return p
}

// exportABIVersion returns the ABI version of this module as major<<32 | minor.
//
//go:wasmexport dirsync_abi_version
func exportABIVersion() uint64 { return uint64(ABIMajor)<<32 | uint64(ABIMinor) }

// exportAlloc returns a buffer of size bytes for the host to write a
// request into.
//
//go:wasmexport dirsync_alloc
func exportAlloc(size uint32) uint32 { return pin(make([]byte, size)) }

// exportFree releases a buffer returned by dirsync_alloc or a stage.
// Unknown addresses are ignored.
//
//go:wasmexport dirsync_free
func exportFree(ptr uint32) { delete(pinned, ptr) }

//go:wasmexport dirsync_info
func exportInfo(ptr, size uint32) uint64 { return call(stageInfo, ptr, size) }

//go:wasmexport dirsync_configure
func exportConfigure(ptr, size uint32) uint64 { return call(stageConfigure, ptr, size) }

//go:wasmexport dirsync_filter
func exportFilter(ptr, size uint32) uint64 { return call(stageFilter, ptr, size) }

//go:wasmexport dirsync_map
func exportMap(ptr, size uint32) uint64 { return call(stageMap, ptr, size) }

//go:wasmexport dirsync_reconcile
func exportReconcile(ptr, size uint32) uint64 { return call(stageReconcile, ptr, size) }

// call runs a stage on the request at (ptr, size) and returns the pinned
// reply as ptr<<32 | len.
func call(s stage, ptr, size uint32) uint64 {
	// Collect the garbage of earlier calls now, while little is live. A
	// reactor never runs the collector's background workers on its own
	// (nothing runs between calls), so without this the heap grows call
	// after call until it hits the memory limit.
	runtime.GC()
	var reply []byte
	if req, ok := request(ptr, size); ok {
		reply = handle(registered, s, req)
	} else {
		reply = encodeErrorReply(wireError{code: errCodeBadRequest,
			message: "request (ptr, len) is not within a buffer from dirsync_alloc"})
	}
	return uint64(pin(reply))<<32 | uint64(len(reply))
}

// request returns the request bytes at (ptr, size), which must lie within a
// buffer from dirsync_alloc.
func request(ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	b, ok := pinned[ptr]
	if !ok || int(size) > len(b) {
		return nil, false
	}
	return b[:size], true
}
