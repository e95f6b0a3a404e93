package ggmail_test

import (
	"fmt"

	ggmail "github.com/dirsync/dirsync/examples/policy-ggmail"
	"github.com/dirsync/dirsync/sdk"
)

// The host configures a policy once, with the manifest's [policy.config]
// table, and then hands it batches of directory entries.
func Example() {
	p := ggmail.New()
	if err := p.Configure(map[string]any{"group_prefix": "GG-Mail-", "exclude_disabled": true}); err != nil {
		fmt.Println(err)
		return
	}
	resp, _ := p.Map(sdk.MapRequest{
		Domain: sdk.Domain{Name: "example.com", Groups: []string{"Sales"}},
		Entries: []sdk.Entry{
			{ID: "1", DN: "CN=Alice,DC=example,DC=com", Attributes: map[string][]string{
				"samaccounttype": {"805306368"},
				"mail":           {"Alice@example.com", "a.anders@example.com", "alice@gmail.com"},
				"proxyaddresses": {"SMTP:ignored@example.com"},
			}},
			{ID: "2", DN: "CN=Grace,DC=example,DC=com", Attributes: map[string][]string{
				"samaccounttype": {"805306368"}, "useraccountcontrol": {"514"}, "mail": {"grace@example.com"},
			}},
			{ID: "3", DN: "CN=gg-mail-SALES,DC=example,DC=com", Attributes: map[string][]string{
				"samaccounttype": {"268435456"}, "cn": {"gg-mail-SALES"},
			}},
			{ID: "4", DN: "CN=Domain Users,DC=example,DC=com", Attributes: map[string][]string{
				"samaccounttype": {"268435456"}, "cn": {"Domain Users"},
			}},
		},
	})
	for _, in := range resp.Intents {
		switch in.Kind {
		case sdk.IntentMailbox:
			fmt.Println("mailbox", in.Mailbox.Primary, in.Mailbox.Aliases)
			for _, s := range in.Skipped {
				fmt.Println("  not kept:", s.Address, "-", s.Reason)
			}
		case sdk.IntentGroup:
			fmt.Printf("group %q fills %q\n", in.Group.Name, in.Group.Target)
		default:
			fmt.Println("skip:", in.Reason)
		}
	}
	// Output:
	// mailbox alice@example.com [a.anders@example.com]
	//   not kept: alice@gmail.com - outside domain example.com
	// skip: account disabled (userAccountControl 514) and exclude_disabled is on
	// group "gg-mail-SALES" fills "Sales"
	// group "Domain Users" fills ""
}

// An empty filter in dirsync.toml stands for the policy's default, which
// fetches only the groups with the prefix.
func ExamplePolicy_Filter() {
	p := ggmail.New()
	_ = p.Configure(map[string]any{"group_prefix": "Mail*"})
	resp, _ := p.Filter(sdk.FilterRequest{Filter: ""})
	fmt.Println(resp.Filter)

	_, err := p.Filter(sdk.FilterRequest{Filter: "(|(cn=a)"})
	fmt.Println(err)
	// Output:
	// (|(sAMAccountType=805306368)(objectClass=publicFolder)(&(|(sAMAccountType=268435456)(sAMAccountType=268435457))(cn=Mail\2a*)))
	// invalid filter at position 8: unbalanced parentheses: missing ')' to close the '(' at position 0
}

// A config the policy does not understand refuses it at load, with a
// message that names the key.
func ExamplePolicy_Configure() {
	err := ggmail.New().Configure(map[string]any{"exclude_disabled": "yes"})
	fmt.Println(err)
	// Output:
	// ggmail policy: config key "exclude_disabled" must be a bool (true or false), got the string "yes"
}
