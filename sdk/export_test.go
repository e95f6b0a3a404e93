package sdk

// Exported for the tests of package sdk_test, which import sdk/abi and the
// generated messages (an in-package test cannot: abi imports sdk).

var (
	DecodeFilterRequest    = decodeFilterRequest
	DecodeMapRequest       = decodeMapRequest
	DecodeReconcileRequest = decodeReconcileRequest
	DecodeConfigureRequest = decodeConfigureRequest

	EncodeInfoReply      = encodeInfoReply
	EncodeConfigureReply = encodeConfigureReply
	EncodeFilterReply    = encodeFilterReply
	EncodeMapReply       = encodeMapReply
	EncodeReconcileReply = encodeReconcileReply
)

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
