// Command standard is the standard policy's main package. It builds both
// as standard.wasm, a WebAssembly reactor module (runtime = "wasm"):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared \
//		-o plugins/standard/standard.wasm ./plugins/standard/cmd/standard
//
// and as a native plugin program (runtime = "process"):
//
//	go build -o plugins/standard/standard ./plugins/standard/cmd/standard
package main

import (
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

func init() { sdk.Register(standard.New()) }

func main() { sdk.Main() }
