//go:build wasip1

package sdk

// Main serves the policy set by Register.
//
// In a WebAssembly reactor module (GOOS=wasip1, -buildmode=c-shared) it does
// nothing: the host calls the module's dirsync_* exports, which serve the
// registered policy, and main is never run. It exists so that one plugin
// source builds both as a wasm module and as a plugin process.
func Main() {}
