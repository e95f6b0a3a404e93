package memstore_test

import (
	"context"
	"fmt"
	"log"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/memstore"
	"github.com/dirsync/dirsync/plugins/standard"
	"github.com/dirsync/dirsync/sdk"
)

// A store is handed to the host like any other: here the host keeps a
// domain's settings in it, and an operator's group and mailbox go in
// directly.
func Example() {
	ctx := context.Background()
	st := memstore.New()
	defer st.Close()

	// A config that declares no domain, with the standard policy linked in
	// for the domains kept in the store.
	h, err := host.New(host.Options{
		Config: &config.Config{Manifest: &config.Manifest{
			Policies: []config.Policy{{Name: standard.Name, Runtime: "builtin"}},
		}},
		Store:    st,
		Builtins: map[string]func() sdk.Policy{standard.Name: standard.New},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	// The host checks the settings and saves them as version 1 in the store.
	d := config.Domain{Name: "example.com", Sync: true, Policy: standard.Name, LDAP: config.LDAP{
		URLs: []string{"ldap://dc1.example.com"}, BaseDN: "dc=example,dc=com",
	}}
	if _, err := h.SaveSettings(ctx, d, nil, "ops", 0); err != nil {
		log.Fatal(err)
	}
	domains, err := h.Domains(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, d := range domains {
		fmt.Printf("%s: kept in the %s, version %d\n", d.Name, d.ManagedBy, d.Version)
	}

	// What an operator makes by hand, and where an alias leads.
	if err := st.AddGroup(ctx, "example.com", "Sales"); err != nil {
		log.Fatal(err)
	}
	if _, err := st.AddMailbox(ctx, "example.com", store.Mailbox{
		Primary: "alice@example.com", Aliases: []string{"al@example.org"}, Groups: []string{"Sales"},
	}); err != nil {
		log.Fatal(err)
	}
	primary, err := st.Resolve(ctx, "AL@example.org")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("AL@example.org is", primary)
	// Output:
	// example.com: kept in the store, version 1
	// AL@example.org is alice@example.com
}
