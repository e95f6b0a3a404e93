// Command gendir writes a generated AD-like directory as LDIF, for
// benchmarks and load tests: N users (inetOrgPerson+adUser, two
// proxyAddresses each) and N/100 groups (groupOfNames+adGroup) whose members
// they are, below ou=Generated of the base DN. The output streams, so any N
// fits in constant memory.
//
//	gendir -n 100000 > users.ldif
//	devslapd examples/directory/sample.ldif users.ldif
//
// The base entry is left out unless -with-base is given: devslapd (and
// slapd.Options.LDIF) create it, and sample.ldif has it.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/dirsync/dirsync/host/internal/testpeer/slapd"
)

func main() {
	var (
		o   slapd.GenOptions
		out string
	)
	flag.IntVar(&o.Users, "n", 1000, "number of users")
	flag.IntVar(&o.Groups, "groups", 0, "number of groups (default n/100, at least 1)")
	flag.StringVar(&o.BaseDN, "base", "dc=example,dc=com", "base DN")
	flag.StringVar(&o.Domain, "domain", "example.com", "mail domain of the addresses")
	flag.StringVar(&o.Container, "container", "ou=Generated", "OU below the base DN that holds the generated entries")
	flag.BoolVar(&o.WithBase, "with-base", false, "also write the base entry")
	flag.StringVar(&out, "o", "-", "output file (- for stdout)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: gendir [flags] > out.ldif\n\nWrites an AD-like directory of generated users and groups as LDIF.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(o, out); err != nil {
		fmt.Fprintln(os.Stderr, "gendir:", err)
		os.Exit(1)
	}
}

func run(o slapd.GenOptions, out string) error {
	if out == "-" {
		return slapd.GenerateDirectory(os.Stdout, o)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := slapd.GenerateDirectory(f, o); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
