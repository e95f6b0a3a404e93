package samba

import "testing"

func TestParentDN(t *testing.T) {
	for in, want := range map[string]string{
		"CN=Alice,OU=People,DC=x":        "OU=People,DC=x",
		`CN=Smith\, John,OU=People,DC=x`: "OU=People,DC=x",
		`CN=a\\,DC=x`:                    "DC=x",
		"DC=x":                           "",
	} {
		got, ok := parentDN(in)
		if got != want || ok != (want != "") {
			t.Errorf("parentDN(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestSamName(t *testing.T) {
	for in, want := range map[string]string{
		"Alice Anders":                "alice.anders",
		"O'Brien, Pat [ext]":          "o'brien.pat.ext",
		"A very long common name abc": "a.very.long.common.n",
	} {
		if got := samName(in); got != want {
			t.Errorf("samName(%q) = %q, want %q", in, got, want)
		}
	}
}
