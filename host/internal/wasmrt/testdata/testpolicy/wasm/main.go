// Command wasm builds the test policy as a WebAssembly reactor module:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o testpolicy.wasm .
package main

import (
	"github.com/dirsync/dirsync/host/internal/wasmrt/testdata/testpolicy"
	"github.com/dirsync/dirsync/sdk"
)

func init() { sdk.Register(testpolicy.New()) }

func main() { sdk.Main() }
