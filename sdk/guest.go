package sdk

import (
	"fmt"
	"runtime"
	"strings"
)

// stage names one export of the guest ABI.
type stage int

const (
	stageInfo stage = iota
	stageConfigure
	stageFilter
	stageMap
	stageReconcile
)

// handle runs stage s of p on an encoded request and returns the encoded
// reply envelope: the stage's response, or the error it flagged. It never
// panics: a panic in the policy becomes an ERROR_CODE_PANIC reply.
//
// The wasm exports (guest_wasip1.go) call it; it has no build tag so that
// its tests run on every platform.
func handle(p Policy, s stage, req []byte) (reply []byte) {
	defer func() {
		if r := recover(); r != nil {
			reply = encodeErrorReply(wireError{code: errCodePanic, message: panicMessage(r)})
		}
	}()
	if p == nil {
		return encodeErrorReply(wireError{code: errCodeNotRegistered, message: notRegisteredMessage})
	}
	switch s {
	case stageInfo:
		info := p.Info()
		return encodeInfoReply(&info)
	case stageConfigure:
		cfg, err := decodeConfigureRequest(req)
		if err != nil {
			return badRequest(err)
		}
		if err := p.Configure(cfg); err != nil {
			return encodeErrorReply(errorOf(err))
		}
		return encodeConfigureReply()
	case stageFilter:
		r, err := decodeFilterRequest(req)
		if err != nil {
			return badRequest(err)
		}
		resp, err := p.Filter(r)
		if err != nil {
			return encodeErrorReply(errorOf(err))
		}
		return encodeFilterReply(&resp)
	case stageMap:
		r, err := decodeMapRequest(req, valuesOnly(p))
		if err != nil {
			return badRequest(err)
		}
		resp, err := p.Map(r)
		if err != nil {
			return encodeErrorReply(errorOf(err))
		}
		return encodeMapReply(&resp)
	case stageReconcile:
		r, err := decodeReconcileRequest(req)
		if err != nil {
			return badRequest(err)
		}
		resp, err := p.Reconcile(r)
		if err != nil {
			return encodeErrorReply(errorOf(err))
		}
		return encodeReconcileReply(&resp)
	}
	return encodeErrorReply(wireError{code: errCodeBadRequest, message: fmt.Sprintf("unknown stage %d", s)})
}

// valuesOnly reports whether p's Info says ValuesOnly. An Info that panics
// says no: Map then runs, and reports its own failures.
func valuesOnly(p Policy) (v bool) {
	defer func() {
		if recover() != nil {
			v = false
		}
	}()
	return p.Info().ValuesOnly
}

func badRequest(err error) []byte {
	return encodeErrorReply(wireError{code: errCodeBadRequest, message: err.Error()})
}

// panicMessage describes a recovered panic value and where it happened: the
// innermost frame outside the Go runtime, which is the policy's code for a
// runtime error such as a nil dereference.
func panicMessage(r any) string {
	msg := fmt.Sprint(r)
	pcs := make([]uintptr, 32)
	// Skip runtime.Callers, panicMessage and the deferred function.
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	for {
		f, more := frames.Next()
		if f.Function != "" && !strings.HasPrefix(f.Function, "runtime.") {
			return fmt.Sprintf("%s (at %s:%d in %s)", msg, f.File, f.Line, f.Function)
		}
		if !more {
			return msg
		}
	}
}
