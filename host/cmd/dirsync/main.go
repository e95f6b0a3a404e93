// Command dirsync keeps a mail gateway's mailbox store in step with a
// customer's directory. See the README for the commands.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// builtins are the policies linked into this binary (runtime = "builtin").
var builtins = map[string]func() sdk.Policy{
	"standard": standard.New,
}

func main() {
	// DIRSYNC_CPUPROFILE=FILE writes a CPU profile of the command to FILE
	// (go tool pprof): where a slow sync spends its time.
	if path := os.Getenv("DIRSYNC_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "dirsync: DIRSYNC_CPUPROFILE: %v\n", err)
			os.Exit(exitUsage)
		}
		code := Main(os.Args[1:], os.Stdout, os.Stderr)
		pprof.StopCPUProfile()
		f.Close()
		os.Exit(code)
	}
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}
