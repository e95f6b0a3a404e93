// Command dirsync keeps a mail gateway's mailbox store in step with a
// customer's directory. See the README for the commands.
package main

import (
	"os"

	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// builtins are the policies linked into this binary (runtime = "builtin").
var builtins = map[string]func() sdk.Policy{
	"standard": standard.New,
}

func main() {
	os.Exit(withProfiles(func() int { return Main(os.Args[1:], os.Stdout, os.Stderr) }))
}
