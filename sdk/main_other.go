//go:build !wasip1

package sdk

import (
	"fmt"
	"os"
)

// Main serves the policy set by Register and does not return.
//
// Outside WebAssembly a policy program is meant to run as a plugin process
// that the host starts and talks to over gRPC (hashicorp/go-plugin). That
// runtime is not built yet: for now Main prints a message saying so and
// exits with status 1. Build the policy as a WebAssembly module instead:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o policy.wasm .
func Main() {
	os.Exit(serveProcess(registered))
}

// serveProcess serves p as a plugin process and returns the exit status.
// The process runtime (go-plugin over gRPC, with sdk/abi converting to the
// syncpolicy.v1 messages) will replace this body.
func serveProcess(p Policy) int {
	if p == nil {
		fmt.Fprintln(os.Stderr, "dirsync policy: "+notRegisteredMessage)
		return 1
	}
	fmt.Fprintln(os.Stderr, "dirsync policy: the process (go-plugin) runtime is not built yet; "+
		"build this policy as a WebAssembly module: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared")
	return 1
}
