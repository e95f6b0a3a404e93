// Command wrap is the wrap policy's main package. It builds both as a
// WebAssembly reactor module (runtime = "wasm"):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared \
//		-o wrap.wasm ./examples/policy-wrap/cmd/wrap
//
// and as a native plugin program (runtime = "process"), which sdk.Main
// serves over gRPC (hashicorp/go-plugin):
//
//	go build -o wrap ./examples/policy-wrap/cmd/wrap
//
// Register runs in init because a reactor module runs its packages' init
// functions when the host instantiates it, and never runs main.
package main

import (
	wrap "github.com/dirsync/dirsync/examples/policy-wrap"
	"github.com/dirsync/dirsync/sdk"
)

func init() { sdk.Register(wrap.New()) }

func main() { sdk.Main() }
