package sdk

import "fmt"

// Exported for the tests of package sdk_test, which import sdk/abi and the
// generated messages (an in-package test cannot: abi imports sdk).

var (
	DecodeFilterRequest    = decodeFilterRequest
	DecodeMapRequest       = func(b []byte) (MapRequest, error) { return decodeMapRequest(b, false) }
	DecodeReconcileRequest = decodeReconcileRequest
	DecodeConfigureRequest = decodeConfigureRequest

	EncodeInfoReply      = encodeInfoReply
	EncodeConfigureReply = encodeConfigureReply
	EncodeFilterReply    = encodeFilterReply
	EncodeMapReply       = encodeMapReply
	EncodeReconcileReply = encodeReconcileReply
)

// DecodeMapRequestValuesOnly decodes b as for a policy whose Info says
// ValuesOnly. It fails if an entry has an Attributes map or its list
// repeats a name, or if Values disagrees with the list; else each entry's
// Attributes is set to its list, so that the result compares with what
// DecodeMapRequest gives.
func DecodeMapRequestValuesOnly(b []byte) (MapRequest, error) {
	r, err := decodeMapRequest(b, true)
	if err != nil {
		return r, err
	}
	for i := range r.Entries {
		e := &r.Entries[i]
		if e.Attributes != nil {
			return r, fmt.Errorf("entry %d has an Attributes map", i)
		}
		for _, a := range e.attrs {
			if e.Attributes == nil {
				e.Attributes = map[string][]string{}
			}
			if _, dup := e.Attributes[a.name]; dup {
				return r, fmt.Errorf("entry %d lists %q twice", i, a.name)
			}
			e.Attributes[a.name] = a.values
			if v := (&Entry{attrs: e.attrs}).Values(a.name); len(v) != len(a.values) || (len(v) > 0 && &v[0] != &a.values[0]) {
				return r, fmt.Errorf("entry %d: Values(%q) = %q, want %q", i, a.name, v, a.values)
			}
		}
		e.attrs = nil
	}
	return r, nil
}

// Stages, for Handle.
const (
	StageInfo      = int(stageInfo)
	StageConfigure = int(stageConfigure)
	StageFilter    = int(stageFilter)
	StageMap       = int(stageMap)
	StageReconcile = int(stageReconcile)
)

// Handle runs a stage of p as the wasm exports do.
func Handle(p Policy, s int, req []byte) []byte { return handle(p, stage(s), req) }

// EncodeError encodes an error reply the way a stage flags err.
func EncodeError(err error) []byte { return encodeErrorReply(errorOf(err)) }

// SwapRegistered sets the registered policy and returns the previous one.
func SwapRegistered(p Policy) Policy {
	old := registered
	registered = p
	return old
}
