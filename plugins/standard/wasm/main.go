// Command wasm is the source of standard.wasm, the standard policy as a
// WebAssembly reactor module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared \
//		-o plugins/standard/standard.wasm ./plugins/standard/wasm
package main

import (
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

func init() { sdk.Register(standard.New()) }

func main() { sdk.Main() }
