package policytest

import (
	"slices"
	"strconv"
	"strings"

	"github.com/dirsync/dirsync/sdk"
)

// Sizes of the ABI edge cases.
const (
	// BatchSize is the number of entries of the large Map batch.
	BatchSize = 10000
	// HugeValue is the size in bytes of the huge attribute value.
	HugeValue = 1 << 20
	manyVals  = 5000
	bigGroup  = 20000
)

// ABICases returns the edge cases of the policy ABI: empty requests, entries
// without attributes, huge values, non-ASCII text, and a large batch. Their
// Want values are those of the standard policy; RunABI checks only the
// invariants every policy must keep. Each call returns fresh values.
func ABICases() Cases {
	return Cases{
		Filter:    abiFilterCases(),
		Map:       abiMapCases(),
		Reconcile: abiReconcileCases(),
	}
}

func abiFilterCases() []FilterCase {
	var b strings.Builder
	b.WriteString("(|")
	for i := range manyVals {
		b.WriteString("(sAMAccountName=user" + strconv.Itoa(i) + ")")
	}
	b.WriteString(")")
	long := b.String()
	huge := "(description=" + strings.Repeat("x", HugeValue) + ")"
	return []FilterCase{
		{Name: "many components", Rule: "R2", Filter: long, Want: long},
		{Name: "huge value", Rule: "R2", Filter: huge, Want: huge},
		{Name: "non-ASCII value", Rule: "R2", Filter: "(displayName=山田 太郎 — Zoë 🚀 مريم)", Want: "(displayName=山田 太郎 — Zoë 🚀 مريم)"},
		{Name: "error position after non-ASCII", Rule: "R2", Filter: "(cn=Müller(", Err: fe(11, "unescaped '('")},
	}
}

func abiMapCases() []MapCase {
	hugeName := strings.Repeat("N", HugeValue)
	var proxies, aliases []string
	proxies = append(proxies, "SMTP:many@example.com")
	for i := range manyVals {
		proxies = append(proxies, "smtp:many"+strconv.Itoa(i)+"@example.com")
		aliases = append(aliases, "many"+strconv.Itoa(i)+"@example.com")
	}
	slices.Sort(aliases)
	members := make([]string, bigGroup)
	for i := range members {
		members[i] = "CN=user" + strconv.Itoa(i) + ",OU=Staff,DC=example,DC=com"
	}
	batch, batchWant := batch(BatchSize)
	return []MapCase{
		{Name: "empty request", Request: sdk.MapRequest{}},
		{Name: "empty request with domain", Request: sdk.MapRequest{Domain: testDomain()}},
		{Name: "empty entries slice", Request: sdk.MapRequest{Domain: testDomain(), Entries: []sdk.Entry{}}},
		{Name: "entries without attributes", Request: sdk.MapRequest{Domain: testDomain(), Entries: []sdk.Entry{
			{ID: "nil-map", DN: "cn=a,dc=example,dc=com"},
			{ID: "empty-map", DN: "cn=b,dc=example,dc=com", Attributes: attrs{}},
			{ID: "empty-values", DN: "cn=c,dc=example,dc=com", Attributes: attrs{"objectclass": {}, "mail": {}, "samaccounttype": {}}},
			{},
		}}, Want: []sdk.Intent{skip("objectClass"), skip("objectClass"), skip("objectClass"), skip("objectClass")}},
		{Name: "huge display name", Request: sdk.MapRequest{Domain: testDomain(), Entries: []sdk.Entry{
			with(adUser("huge", "SMTP:huge@example.com"), attrs{"displayname": {hugeName}}),
		}}, Want: []sdk.Intent{user("huge@example.com", hugeName)}},
		{Name: "many aliases", Request: sdk.MapRequest{Domain: testDomain(), Entries: []sdk.Entry{
			adUser("many", proxies...),
		}}, Want: []sdk.Intent{user("many@example.com", "many", aliases...)}},
		{Name: "huge group", Request: sdk.MapRequest{Domain: testDomain(), Entries: []sdk.Entry{
			{ID: "big", DN: "CN=Sales,DC=example,DC=com", Attributes: attrs{
				"objectclass": {"group"}, "samaccounttype": {samGroup}, "cn": {"Sales"}, "member": members,
			}},
		}}, Want: []sdk.Intent{group("Sales", "Sales", members...)}},
		{Name: "non-ASCII display names", Request: sdk.MapRequest{Domain: testDomain(), Entries: []sdk.Entry{
			with(adUser("u1", "SMTP:u1@example.com"), attrs{"displayname": {"Jürgen Müller"}}),
			with(adUser("u2", "SMTP:u2@example.com"), attrs{"displayname": {"山田 太郎"}}),
			with(adUser("u3", "SMTP:u3@example.com"), attrs{"displayname": {"مريم العلي"}}),
			with(adUser("u4", "SMTP:u4@example.com"), attrs{"displayname": {"Zoë 🚀\u200d✨"}}),
			{ID: "g", DN: "CN=Ventes Équipe,DC=example,DC=com", Attributes: attrs{"objectclass": {"group"}, "cn": {"Ventes Équipe"}}},
		}}, Want: []sdk.Intent{
			user("u1@example.com", "Jürgen Müller"),
			user("u2@example.com", "山田 太郎"),
			user("u3@example.com", "مريم العلي"),
			user("u4@example.com", "Zoë 🚀\u200d✨"),
			group("Ventes Équipe", ""),
		}},
		{Name: "10k batch", Request: sdk.MapRequest{Domain: testDomain(), Entries: batch}, Want: batchWant},
	}
}

// batch makes n entries of every kind, in a fixed pattern, with the intents
// of the standard policy.
func batch(n int) ([]sdk.Entry, []sdk.Intent) {
	es := make([]sdk.Entry, n)
	want := make([]sdk.Intent, n)
	for i := range n {
		id := "e" + strconv.Itoa(i)
		switch i % 20 {
		case 0:
			name := []string{"Sales", "Engineering", "sales", "Marketing"}[i/20%4]
			es[i] = sdk.Entry{ID: id, DN: "CN=" + name + ",DC=example,DC=com", Attributes: attrs{
				"objectclass": {"group"}, "samaccounttype": {samGroup}, "cn": {name}, "member": {"CN=e1,DC=example,DC=com"},
			}}
			target := name
			if name == "sales" || name == "Marketing" {
				target = ""
			}
			want[i] = group(name, target, "CN=e1,DC=example,DC=com")
		case 1:
			es[i] = sdk.Entry{ID: id, DN: "CN=" + id + ",DC=example,DC=com", Attributes: attrs{
				"objectclass": {"publicFolder"}, "mail": {id + "@example.com"},
			}}
			want[i] = mailbox(sdk.KindPublicFolder, id+"@example.com", "")
		case 2:
			es[i] = sdk.Entry{ID: id, DN: "OU=" + id + ",DC=example,DC=com", Attributes: attrs{"objectclass": {"organizationalUnit"}}}
			want[i] = skip("organizationalUnit")
		case 3:
			es[i] = adUser(id, "SMTP:"+id+"@elsewhere.net")
			want[i] = skip("no address in domain", sdk.SkippedAddress{Address: id + "@elsewhere.net", Reason: outside})
		default:
			es[i] = with(adUser(id, "SMTP:"+strings.ToUpper(id)+"@Example.com", "smtp:"+id+".alias@example.org", "X500:/o=Org/cn="+id),
				attrs{"displayname": {"User " + id}, "memberof": {"CN=Sales,DC=example,DC=com"}})
			want[i] = memberOf(user(id+"@example.com", "User "+id, id+".alias@example.org"), "CN=Sales,DC=example,DC=com")
		}
	}
	return es, want
}

func abiReconcileCases() []ReconcileCase {
	big := make([]sdk.Change, BatchSize)
	for i := range big {
		big[i] = sdk.Change{Kind: sdk.ChangeCreate, After: ldapBox(0, "n"+strconv.Itoa(i)+"@example.com")}
	}
	return []ReconcileCase{
		{Name: "empty request", Request: sdk.ReconcileRequest{}},
		{Name: "10k creates", Request: sdk.ReconcileRequest{Domain: testDomain(), Changes: big}},
	}
}
