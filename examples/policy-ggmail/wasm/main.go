// Command wasm is the ggmail policy as a WebAssembly reactor module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared \
//		-o ggmail.wasm ./examples/policy-ggmail/wasm
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
