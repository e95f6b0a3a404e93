// Command ggmail is the ggmail policy's main package. It builds both as a
// WebAssembly reactor module (runtime = "wasm"):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared \
//		-o ggmail.wasm ./examples/policy-ggmail/cmd/ggmail
//
// and as a native plugin program (runtime = "process"), which sdk.Main
// serves over gRPC (hashicorp/go-plugin):
//
//	go build -o ggmail ./examples/policy-ggmail/cmd/ggmail
//
// Register runs in init because a reactor module runs its packages' init
// functions when the host instantiates it, and never runs main.
package main

import (
	ggmail "github.com/dirsync/dirsync/examples/policy-ggmail"
	"github.com/dirsync/dirsync/sdk"
)

func init() { sdk.Register(ggmail.New()) }

func main() { sdk.Main() }
