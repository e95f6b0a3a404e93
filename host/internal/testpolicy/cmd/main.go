// Command cmd is the test policy as a plugin program or a wasm module:
//
//	go build -o testpolicy ./host/internal/testpolicy/cmd
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o testpolicy.wasm ./host/internal/testpolicy/cmd
//
// Built with -ldflags "-X main.abiMajor=N", its Info claims ABI major
// version N (its go-plugin handshake still speaks the sdk's).
package main

import (
	"strconv"

	"github.com/dirsync/dirsync/host/internal/testpolicy"
	"github.com/dirsync/dirsync/sdk"
)

var abiMajor string

type claims struct{ *testpolicy.Policy }

func (c claims) Info() sdk.Info {
	info := c.Policy.Info()
	if n, err := strconv.Atoi(abiMajor); err == nil {
		info.ABIMajor = uint32(n)
	}
	return info
}

func init() { sdk.Register(claims{testpolicy.New()}) }

func main() { sdk.Main() }
