//go:build !wasip1

package sdk

import "os"

// Main serves the policy set by Register and does not return.
//
// Outside WebAssembly a policy program is a plugin process: the host starts
// it (runtime = "process" in plugin.toml) and calls its stages over gRPC,
// with hashicorp/go-plugin's handshake (see Handshake). Main serves the
// registered policy until the host shuts the process down, and exits. Run
// by hand, the program prints one line saying what it is and exits with
// status 1. See serve_process.go.
//
// The same main package builds both ways:
//
//	go build -o policy .                                              # a plugin process
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o policy.wasm .  # a wasm module
func Main() {
	os.Exit(serveProcess(registered))
}
