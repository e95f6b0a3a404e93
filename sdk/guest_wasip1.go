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
// alive for as long as the policy refers to any of its strings. A reply
// buffer is the guest's again once freed: the next reply reuses it.
//
// Garbage collection. Nothing runs in a reactor between calls, and while a
// call runs nearly everything it allocates (the request, the decoded
// entries, the policy's results, the reply) stays live until it returns. A
// collection during a call would mark all that, pay the write barrier for
// the rest of the call, and free little (when the host's deadline check
// still left the machine code at every loop iteration and call,
// collections were 40 % of a Map). So when the host states the instance's
// memory limit (GOMEMLIMIT, which Go's runtime reads at start), the guest
// turns the proportional collector off: it collects at the start of a call
// once the heap has grown past max(gcMinHeap, twice what was live after the
// last collection), when almost everything on it is garbage, and during a
// call only as the heap nears the limit. Without a limit it keeps the
// runtime's GOGC pacing and collects at call starts on the same condition.

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"unsafe"
)

// pinned holds every buffer handed to the host, by address, until
// dirsync_free.
var pinned = map[uint32]pinnedBuffer{}

type pinnedBuffer struct {
	b     []byte
	reply bool // a stage's reply: reusable once freed
}

// pin keeps b alive until dirsync_free and returns its address.
func pin(b []byte, reply bool) uint32 {
	if cap(b) == 0 {
		b = make([]byte, 0, 1) // a real allocation, with an address of its own
	}
	p := uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	pinned[p] = pinnedBuffer{b, reply}
	return p
}

// maxSpareReply bounds the reply buffer kept for reuse: a rare huge reply
// is not worth holding on to.
const maxSpareReply = 16 << 20

// gcMinHeap is the heap below which a call does not start with a
// collection. A Map call of 2,000 entries of 10 attributes allocates about
// 4.5 MB, the request included, so a Map instance collects about every
// other call, when nearly all of the heap is garbage: its memory stays
// near 15 MB instead of the ~40 MB that 32 MB here kept (an instance's
// linear memory never shrinks), at no measured cost in time (a first sync
// of 100,000 users, the standard policy: 4.1 s both ways).
const gcMinHeap = 8 << 20

// gcThreshold is the heap size that makes the next call start with a
// collection (besides 2× the live heap), and gcSamples the metrics that
// tell.
var (
	gcThreshold uint64 = gcMinHeap
	gcSamples          = []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"}, // live and not yet swept
		{Name: "/gc/heap/live:bytes"},                // live after the last collection
	}
)

func init() {
	if limit := debug.SetMemoryLimit(-1); limit != math.MaxInt64 {
		debug.SetGCPercent(-1)
		gcThreshold = min(gcThreshold, uint64(limit)/2)
	}
}

// collect runs a collection if the heap has grown enough since the last.
func collect() {
	metrics.Read(gcSamples)
	heap, live := gcSamples[0].Value.Uint64(), gcSamples[1].Value.Uint64()
	if heap >= max(gcThreshold, 2*live) {
		runtime.GC()
	}
}

// exportABIVersion returns the ABI version of this module as major<<32 | minor.
//
//go:wasmexport dirsync_abi_version
func exportABIVersion() uint64 { return uint64(ABIMajor)<<32 | uint64(ABIMinor) }

// exportAlloc returns a buffer of size bytes for the host to write a
// request into.
//
//go:wasmexport dirsync_alloc
func exportAlloc(size uint32) uint32 { return pin(make([]byte, size), false) }

// exportFree releases a buffer returned by dirsync_alloc or a stage.
// Unknown addresses are ignored.
//
//go:wasmexport dirsync_free
func exportFree(ptr uint32) {
	if p, ok := pinned[ptr]; ok {
		delete(pinned, ptr)
		if p.reply && cap(p.b) > cap(spareReply) && cap(p.b) <= maxSpareReply {
			spareReply = p.b[:0]
		}
	}
}

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
	// Collect the garbage of earlier calls now, while little is live (see
	// the top of this file).
	collect()
	var reply []byte
	if req, ok := request(ptr, size); ok {
		reply = handle(registered, s, req)
	} else {
		reply = encodeErrorReply(wireError{code: errCodeBadRequest,
			message: "request (ptr, len) is not within a buffer from dirsync_alloc"})
	}
	return uint64(pin(reply, true))<<32 | uint64(len(reply))
}

// request returns the request bytes at (ptr, size), which must lie within a
// buffer from dirsync_alloc.
func request(ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	p, ok := pinned[ptr]
	if !ok || p.reply || int(size) > len(p.b) {
		return nil, false
	}
	return p.b[:size], true
}
