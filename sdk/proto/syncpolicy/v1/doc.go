// Package syncpolicyv1 is the generated Go code of syncpolicy.proto, the
// protobuf schema of the dirsync policy ABI, version 1. Regenerate it with
// sdk/proto/gen.sh (make proto). Programs use the sdk types and convert
// with package sdk/abi; nothing else should build these messages by hand.
package syncpolicyv1
