package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/host/api"
)

// mailbox is a mailbox as the API returns it.
type mailbox struct {
	ID          int64    `json:"id"`
	Address     string   `json:"address"`
	Kind        string   `json:"kind"`
	Source      string   `json:"source"`
	DisplayName string   `json:"display_name"`
	Aliases     []string `json:"aliases"`
	Groups      []string `json:"groups"`
}

type group struct {
	Name    string   `json:"name"`
	Source  string   `json:"source"`
	Members []string `json:"members"`
}

type runSummary struct {
	ID      int64          `json:"id"`
	Domain  string         `json:"domain"`
	Outcome string         `json:"outcome"`
	Ended   *time.Time     `json:"ended"`
	Counts  map[string]int `json:"counts"`
	Changes []any          `json:"changes"`
	// ChangeCount is the number of the run's changes, which the list
	// does not carry.
	ChangeCount int `json:"change_count"`
}

type report struct {
	Domain  string `json:"domain"`
	Mode    string `json:"mode"`
	Outcome string `json:"outcome"`
	Filter  string `json:"filter"`
	Users   []struct {
		Address string   `json:"address"`
		Groups  []string `json:"groups"`
	} `json:"users"`
	Groups []struct {
		Name   string `json:"name"`
		Target string `json:"target"`
	} `json:"groups"`
	Unmatched []string         `json:"unmatched_groups"`
	Changes   []map[string]any `json:"changes"`
	Counts    map[string]int   `json:"counts"`
}

const ex = "/api/v1/domains/example.com"

// TestEveryPath calls every path of the document with an admin token, from
// an empty store through a sync to hand-made changes.
func TestEveryPath(t *testing.T) {
	e := newEnv(t, nil)

	// The document itself.
	var doc map[string]any
	e.want(e.do("GET", "/api/v1/openapi.json", adminToken, nil), 200).json(t, &doc)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", doc["openapi"])
	}

	// Domains, before any run.
	var domains []map[string]any
	e.want(e.do("GET", "/api/v1/domains", adminToken, nil), 200).json(t, &domains)
	if len(domains) != 2 || domains[0]["name"] != "example.com" || domains[1]["name"] != "other.test" {
		t.Fatalf("domains: %v", domains)
	}
	d0 := domains[0]
	if d0["sync"] != true || d0["managed_by"] != "config" || d0["last_run"] != nil || d0["next_run_at"] != nextRun.Format(time.RFC3339) {
		t.Errorf("example.com: %v", d0)
	}
	if d1 := domains[1]; d1["sync"] != false || d1["next_run_at"] != nil {
		t.Errorf("other.test: %v", d1)
	}

	// A valid filter comes back normalized.
	var fc map[string]string
	e.want(e.do("POST", ex+"/filter-check", adminToken, map[string]string{"filter": "(|(cn=a)(cn=b))"}), 200).json(t, &fc)
	if fc["normalized"] == "" {
		t.Errorf("filter-check: %v", fc)
	}

	// Settings: a domain of dirsync.toml is shown and tested; a store-kept
	// one is made, changed and removed (TestStoreKeptDomain has more).
	var set settings
	e.want(e.do("GET", ex+"/settings", adminToken, nil), 200).json(t, &set)
	if set.Name != "example.com" || set.ManagedBy != "config" || !set.LDAP.PasswordSet {
		t.Errorf("settings: %+v", set)
	}
	var conn connResult
	e.want(e.do("POST", ex+"/connection-test", adminToken, nil), 200).json(t, &conn)
	if conn.Entries == 0 {
		t.Errorf("connection test: %+v", conn)
	}
	newTest := form(e.ldapURL, map[string]any{"name": "new.test", "sync": false})
	e.want(e.do("POST", "/api/v1/domains", adminToken, newTest), 201).json(t, &set)
	newTest["version"] = set.Version
	newTest["alias_domains"] = []string{"new.example"}
	e.want(e.do("PUT", "/api/v1/domains/new.test/settings", adminToken, newTest), 200).json(t, &set)
	if set.Version != 2 || !slices.Equal(set.AliasDomains, []string{"new.example"}) {
		t.Errorf("settings of new.test: %+v", set)
	}
	e.want(e.do("DELETE", "/api/v1/domains/new.test", adminToken, nil), 204)

	// Groups: made by hand, never by a sync.
	var g group
	e.want(e.do("POST", ex+"/groups", adminToken, map[string]string{"name": "Sales"}), 201).json(t, &g)
	if g.Name != "Sales" || g.Source != "manual" || g.Members == nil || len(g.Members) != 0 {
		t.Errorf("new group: %+v", g)
	}
	e.want(e.do("POST", ex+"/groups", adminToken, map[string]string{"name": "All Staff"}), 201)
	e.want(e.do("POST", ex+"/groups", adminToken, map[string]string{"name": "Sales"}), 409)
	e.want(e.do("POST", ex+"/groups", adminToken, map[string]string{"name": ""}), 422)
	e.want(e.do("POST", ex+"/groups", adminToken, "{not json"), 400)
	e.want(e.do("POST", ex+"/groups", adminToken, nil), 400)

	// The preview shows what a sync would bring in.
	var prev report
	e.want(e.do("POST", ex+"/preview", adminToken, nil), 200).json(t, &prev)
	if prev.Mode != "preview" || prev.Outcome != "ok" || len(prev.Users) == 0 || len(prev.Changes) == 0 {
		t.Errorf("preview: %+v", prev)
	}
	if !slices.Contains(prev.Unmatched, "Marketing") {
		t.Errorf("preview: Marketing is not unmatched: %v", prev.Unmatched)
	}
	matched := false
	for _, g := range prev.Groups {
		matched = matched || g.Target == "Sales"
	}
	if !matched {
		t.Errorf("preview: no group fills Sales: %+v", prev.Groups)
	}

	// A dry run answers with its report and records nothing.
	var dry report
	e.want(e.do("POST", ex+"/runs", adminToken, map[string]bool{"dry_run": true}), 200).json(t, &dry)
	if dry.Mode != "dry-run" || dry.Outcome != "ok" || dry.Counts["created"] == 0 {
		t.Errorf("dry run: %+v", dry)
	}
	var page struct {
		Items      []runSummary `json:"items"`
		NextBefore *int64       `json:"next_before"`
	}
	e.want(e.do("GET", ex+"/runs", adminToken, nil), 200).json(t, &page)
	if len(page.Items) != 0 || page.NextBefore != nil {
		t.Fatalf("runs after a dry run: %+v", page)
	}

	// A sync: 202 with its id, then it is in the runs.
	var started struct {
		ID int64 `json:"id"`
	}
	e.want(e.do("POST", ex+"/runs", adminToken, map[string]bool{}), 202).json(t, &started)
	if started.ID == 0 {
		t.Fatal("run-now answered id 0")
	}
	run := e.waitRun("example.com", started.ID)
	if run["outcome"] != "ok" || run["ended"] == nil {
		t.Fatalf("run %d: %v", started.ID, run)
	}
	total := int(run["changes_total"].(float64))
	if total == 0 || len(run["changes"].([]any)) != total || int(run["change_count"].(float64)) != total {
		t.Errorf("run %d: %d changes in all (change_count %v), %d listed", started.ID, total, run["change_count"], len(run["changes"].([]any)))
	}
	var part map[string]any
	e.want(e.do("GET", fmt.Sprintf("%s/runs/%d?offset=1&limit=2", ex, started.ID), adminToken, nil), 200).json(t, &part)
	if len(part["changes"].([]any)) != 2 || int(part["changes_total"].(float64)) != total ||
		!reflect.DeepEqual(part["changes"], run["changes"].([]any)[1:3]) {
		t.Errorf("changes 1..2 of run %d: %v", started.ID, part)
	}
	for _, q := range []string{fmt.Sprintf("offset=%d", total+5), "limit=0"} {
		e.want(e.do("GET", fmt.Sprintf("%s/runs/%d?%s", ex, started.ID, q), adminToken, nil), 200).json(t, &part)
		if len(part["changes"].([]any)) != 0 || int(part["changes_total"].(float64)) != total {
			t.Errorf("run %d?%s: %v, want no changes of %d", started.ID, q, part, total)
		}
	}
	e.want(e.do("GET", ex+"/runs/999999", adminToken, nil), 404)
	e.want(e.do("GET", ex+"/runs/notanumber", adminToken, nil), 400)
	e.want(e.do("GET", fmt.Sprintf("%s/runs/%d?limit=-1", ex, started.ID), adminToken, nil), 400)

	// A second sync; the runs page newest first.
	e.want(e.do("POST", ex+"/runs", adminToken, nil), 202).json(t, &started)
	e.waitRun("example.com", started.ID)
	e.want(e.do("GET", ex+"/runs", adminToken, nil), 200).json(t, &page)
	if len(page.Items) != 2 || page.Items[0].ID != started.ID || page.Items[0].ID < page.Items[1].ID || page.NextBefore != nil {
		t.Fatalf("runs: %+v", page)
	}
	if page.Items[0].Changes != nil || page.Items[1].ChangeCount != total {
		t.Errorf("the runs list carries changes, or not the count of the first run's (%d): %+v", total, page.Items)
	}
	e.want(e.do("GET", ex+"/runs?limit=1", adminToken, nil), 200).json(t, &page)
	if len(page.Items) != 1 || page.NextBefore == nil || *page.NextBefore != started.ID {
		t.Fatalf("runs?limit=1: %+v", page)
	}
	e.want(e.do("GET", fmt.Sprintf("%s/runs?limit=1&before=%d", ex, *page.NextBefore), adminToken, nil), 200).json(t, &page)
	if len(page.Items) != 1 || page.Items[0].ID >= started.ID {
		t.Fatalf("runs?before: %+v", page)
	}
	e.want(e.do("GET", ex+"/runs?limit=0", adminToken, nil), 400)
	e.want(e.do("GET", ex+"/runs?limit=x", adminToken, nil), 400)

	e.want(e.do("GET", "/api/v1/domains", adminToken, nil), 200).json(t, &domains)
	if lr, _ := domains[0]["last_run"].(map[string]any); lr == nil || lr["id"] != float64(started.ID) || lr["outcome"] != "ok" {
		t.Errorf("last_run of example.com: %v", domains[0]["last_run"])
	}

	// Mailboxes: the sync's, paged and searched.
	var mbs struct {
		Items []mailbox `json:"items"`
		Total int       `json:"total"`
	}
	e.want(e.do("GET", ex+"/mailboxes", adminToken, nil), 200).json(t, &mbs)
	if mbs.Total < 5 || len(mbs.Items) != mbs.Total {
		t.Fatalf("mailboxes: %+v", mbs)
	}
	if !slices.IsSortedFunc(mbs.Items, func(a, b mailbox) int { return strings.Compare(a.Address, b.Address) }) {
		t.Errorf("mailboxes are not sorted by address")
	}
	all := mbs
	all.Items = slices.Clone(mbs.Items)
	var alice mailbox
	for _, m := range all.Items {
		if m.Address == "alice@example.com" {
			alice = m
		}
	}
	if alice.Source != "ldap" || !slices.Contains(alice.Aliases, "a.anders@example.com") || !slices.Contains(alice.Groups, "Sales") {
		t.Errorf("alice: %+v", alice)
	}
	e.want(e.do("GET", ex+"/mailboxes?q=ANDERS", adminToken, nil), 200).json(t, &mbs)
	if mbs.Total != 1 || len(mbs.Items) != 1 || mbs.Items[0].Address != "alice@example.com" {
		t.Errorf("mailboxes?q=ANDERS (an alias of alice): %+v", mbs)
	}
	e.want(e.do("GET", ex+"/mailboxes?offset=1&limit=2", adminToken, nil), 200).json(t, &mbs)
	if mbs.Total != all.Total || len(mbs.Items) != 2 || mbs.Items[0].Address != all.Items[1].Address {
		t.Errorf("mailboxes?offset=1&limit=2: %+v", mbs)
	}
	e.want(e.do("GET", ex+"/mailboxes?limit=0", adminToken, nil), 400)

	// A hand-made mailbox.
	var zed mailbox
	e.want(e.do("POST", ex+"/mailboxes", adminToken, map[string]any{
		"address": "Zed@example.com", "display_name": "Zed", "aliases": []string{"zed@example.org"}, "groups": []string{"Sales"}}), 201).json(t, &zed)
	if zed.Address != "zed@example.com" || zed.Source != "manual" || zed.Kind != "user" || zed.ID == 0 ||
		!slices.Equal(zed.Aliases, []string{"zed@example.org"}) || !slices.Equal(zed.Groups, []string{"Sales"}) {
		t.Errorf("new mailbox: %+v", zed)
	}
	e.want(e.do("POST", ex+"/mailboxes", adminToken, map[string]any{"address": "zed@example.com"}), 409)
	e.want(e.do("POST", ex+"/mailboxes", adminToken, map[string]any{"address": "zed@elsewhere.net"}), 422)
	e.want(e.do("POST", ex+"/mailboxes", adminToken, map[string]any{"address": "not an address"}), 422)
	e.want(e.do("POST", ex+"/mailboxes", adminToken, map[string]any{"address": "yan@example.com", "groups": []string{"Nope"}}), 422)
	e.want(e.do("POST", ex+"/mailboxes", adminToken, map[string]any{"address": "yan@example.com", "kind": "robot"}), 422)

	// Hand-made memberships.
	e.want(e.do("PUT", ex+"/groups/All%20Staff/members/zed@example.org", adminToken, nil), 204)
	e.want(e.do("PUT", ex+"/groups/All%20Staff/members/zed@example.com", adminToken, nil), 204) // done already
	var groups []group
	e.want(e.do("GET", ex+"/groups", adminToken, nil), 200).json(t, &groups)
	if len(groups) != 2 || groups[0].Name != "All Staff" || !slices.Contains(groups[0].Members, "zed@example.com") ||
		groups[1].Name != "Sales" || !slices.Contains(groups[1].Members, "alice@example.com") {
		t.Errorf("groups: %+v", groups)
	}
	e.want(e.do("DELETE", ex+"/groups/All%20Staff/members/zed@example.com", adminToken, nil), 204)
	e.want(e.do("DELETE", ex+"/groups/All%20Staff/members/zed@example.com", adminToken, nil), 404)
	e.want(e.do("PUT", ex+"/groups/Nope/members/zed@example.com", adminToken, nil), 404)
	e.want(e.do("PUT", ex+"/groups/Sales/members/nobody@example.com", adminToken, nil), 404)

	// Report recipients and resolve.
	var recips []struct {
		Address string   `json:"address"`
		Covers  []string `json:"covers"`
	}
	e.want(e.do("GET", ex+"/report-recipients", adminToken, nil), 200).json(t, &recips)
	found := false
	for _, r := range recips {
		if r.Address == "alice@example.com" {
			found = slices.Contains(r.Covers, "a.anders@example.com")
		}
	}
	if !found || len(recips) != all.Total+1 {
		t.Errorf("report recipients: %+v", recips)
	}
	var res map[string]string
	e.want(e.do("GET", "/api/v1/resolve?address=A.Anders@example.com", adminToken, nil), 200).json(t, &res)
	if res["primary"] != "alice@example.com" {
		t.Errorf("resolve: %v", res)
	}
	e.want(e.do("GET", "/api/v1/resolve?address=nobody@example.com", adminToken, nil), 404)
	e.want(e.do("GET", "/api/v1/resolve?address=nonsense", adminToken, nil), 400)
	e.want(e.do("GET", "/api/v1/resolve", adminToken, nil), 400)

	// Deleting mailboxes: a directory one is refused, a hand-made one goes.
	p := e.problemOf(e.want(e.do("DELETE", ex+"/mailboxes/alice@example.com", adminToken, nil), 409))
	if !strings.Contains(p.Detail, "next sync") {
		t.Errorf("deleting an LDAP mailbox: %+v", p)
	}
	e.want(e.do("DELETE", ex+"/mailboxes/zed@example.org", adminToken, nil), 404) // an alias
	e.want(e.do("DELETE", ex+"/mailboxes/zed@example.com", adminToken, nil), 204)
	e.want(e.do("DELETE", ex+"/mailboxes/zed@example.com", adminToken, nil), 404)

	// Deleting groups.
	e.want(e.do("DELETE", ex+"/groups/All%20Staff", adminToken, nil), 204)
	e.want(e.do("DELETE", ex+"/groups/All%20Staff", adminToken, nil), 404)

	// Paths and methods the API does not serve.
	e.want(e.do("GET", "/api/v1/nothing", adminToken, nil), 404)
	e.want(e.do("GET", "/api/v2/domains", adminToken, nil), 404)
	r := e.want(e.do("DELETE", "/api/v1/domains", adminToken, nil), 405)
	if r.header.Get("Allow") != "GET, POST" {
		t.Errorf("Allow: %q", r.header.Get("Allow"))
	}

	// Every change was logged with who made it.
	logs := e.logs.String()
	for _, want := range []string{
		`msg="api: domain created" principal=admin domain=new.test version=1`,
		`msg="api: settings changed" principal=admin domain=new.test version=2 set.alias_domains=[new.example]`,
		`msg="api: domain removed" principal=admin domain=new.test version=2`,
		`msg="api: group added" principal=admin domain=example.com group=Sales`,
		`msg="api: run started" principal=admin domain=example.com run=`,
		`msg="api: mailbox added" principal=admin domain=example.com address=zed@example.com`,
		`msg="api: mailbox assigned to group" principal=admin domain=example.com group="All Staff" address=zed@example.org`,
		`msg="api: mailbox removed from group" principal=admin`,
		`msg="api: mailbox removed" principal=admin domain=example.com address=zed@example.com`,
		`msg="api: group removed" principal=admin domain=example.com group="All Staff"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log has no %s", want)
		}
	}
	noSecrets(t, logs)
	noSecrets(t, e.bodies.String())
}

// noSecrets fails if text holds a token or the bind password.
func noSecrets(t *testing.T, text string) {
	t.Helper()
	for _, s := range []string{adminToken, viewerToken, otherToken, readerPassword} {
		if strings.Contains(text, s) {
			t.Errorf("a secret (%.6s…) is in the output", s)
		}
	}
}

// TestAuth checks who may do what.
func TestAuth(t *testing.T) {
	e := newEnv(t, nil)
	e.want(e.do("POST", ex+"/groups", adminToken, map[string]string{"name": "Sales"}), 201)

	t.Run("no token", func(t *testing.T) {
		for _, path := range []string{"/api/v1/domains", ex + "/groups", "/api/v1/openapi.json", "/api/v1/nothing"} {
			r := e.want(e.do("GET", path, "", nil), 401)
			if r.header.Get("WWW-Authenticate") == "" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("GET %s: WWW-Authenticate %q", path, r.header.Get("WWW-Authenticate"))
			}
		}
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/domains", nil)
		req.SetBasicAuth("admin", adminToken)
		e.want(e.send(req), 401)
	})
	t.Run("unknown token", func(t *testing.T) {
		e.want(e.do("GET", "/api/v1/domains", "not-a-token", nil), 401)
		e.want(e.do("POST", ex+"/groups", adminToken+"x", map[string]string{"name": "X"}), 401)
	})
	t.Run("another domain's token", func(t *testing.T) {
		missing := e.want(e.do("GET", "/api/v1/domains/missing.test/groups", adminToken, nil), 404)
		for _, c := range []struct{ method, path string }{
			{"GET", "/api/v1/domains/example.com/groups"},
			{"GET", "/api/v1/domains/EXAMPLE.COM/groups"},
			{"POST", "/api/v1/domains/example.com/filter-check"},
			{"POST", "/api/v1/domains/example.com/runs"},
			{"DELETE", "/api/v1/domains/example.com/groups/Sales"},
		} {
			var body any
			if c.method == "POST" {
				body = map[string]string{"filter": "(cn=a)"}
			}
			hidden := e.want(e.do(c.method, c.path, otherToken, body), 404)
			path := strings.Replace(strings.ToLower(c.path), "example.com", "missing.test", 1)
			absent := e.want(e.do(c.method, path, otherToken, body), 404)
			hb := bytes.Replace(hidden.body, []byte("example.com"), []byte("missing.test"), 1)
			if !bytes.Equal(hb, absent.body) || !bytes.Equal(absent.body, missing.body) ||
				hidden.header.Get("Content-Type") != absent.header.Get("Content-Type") {
				t.Errorf("%s %s: a hidden domain is answered\n%s\nand a missing one\n%s", c.method, c.path, hidden.body, absent.body)
			}
		}
		var domains []map[string]any
		e.want(e.do("GET", "/api/v1/domains", otherToken, nil), 200).json(t, &domains)
		if len(domains) != 1 || domains[0]["name"] != "other.test" {
			t.Errorf("domains of the other token: %v", domains)
		}
		// resolve does not tell about another domain's mailboxes either.
		e.want(e.do("POST", ex+"/mailboxes", adminToken, map[string]any{"address": "kim@example.com"}), 201)
		e.want(e.do("GET", "/api/v1/resolve?address=kim@example.com", otherToken, nil), 404)
		e.want(e.do("GET", "/api/v1/resolve?address=kim@example.com", viewerToken, nil), 200)
	})
	t.Run("viewer", func(t *testing.T) {
		// Reads, filter checks and previews.
		e.want(e.do("GET", "/api/v1/domains", viewerToken, nil), 200)
		e.want(e.do("GET", ex+"/groups", viewerToken, nil), 200)
		e.want(e.do("GET", ex+"/mailboxes", viewerToken, nil), 200)
		e.want(e.do("GET", ex+"/runs", viewerToken, nil), 200)
		e.want(e.do("GET", ex+"/report-recipients", viewerToken, nil), 200)
		e.want(e.do("POST", ex+"/filter-check", viewerToken, map[string]string{"filter": "(cn=a)"}), 200)
		e.want(e.do("POST", ex+"/preview", viewerToken, nil), 200)
		// No changes.
		for _, c := range []struct {
			method, path string
			body         any
		}{
			{"POST", ex + "/groups", map[string]string{"name": "X"}},
			{"DELETE", ex + "/groups/Sales", nil},
			{"PUT", ex + "/groups/Sales/members/kim@example.com", nil},
			{"DELETE", ex + "/groups/Sales/members/kim@example.com", nil},
			{"POST", ex + "/mailboxes", map[string]string{"address": "x@example.com"}},
			{"DELETE", ex + "/mailboxes/kim@example.com", nil},
			{"POST", ex + "/runs", nil},
		} {
			e.want(e.do(c.method, c.path, viewerToken, c.body), 403)
		}
		// Outside its list, a viewer learns nothing more than a missing domain.
		e.want(e.do("POST", "/api/v1/domains/other.test/groups", viewerToken, map[string]string{"name": "X"}), 404)
		var groups []group
		e.want(e.do("GET", ex+"/groups", viewerToken, nil), 200).json(t, &groups)
		if len(groups) != 1 || groups[0].Name != "Sales" {
			t.Errorf("a viewer changed the groups: %+v", groups)
		}
	})
	logs := e.logs.String()
	if !strings.Contains(logs, `msg="api: request refused: the principal may only read" principal=viewer`) {
		t.Errorf("the refusals of the viewer are not logged")
	}
	noSecrets(t, logs)
}

// TestBodyLimit checks that a body over the limit is refused with 413,
// whether or not it says its length.
func TestBodyLimit(t *testing.T) {
	e := newEnv(t, nil)
	big := `{"filter": "` + strings.Repeat("a", api.DefaultMaxBodyBytes) + `"}`
	e.want(e.do("POST", ex+"/filter-check", adminToken, big), 413)
	e.want(e.do("POST", ex+"/groups", adminToken, big), 413)

	// Sent in chunks, without a Content-Length.
	req, _ := http.NewRequest("POST", e.srv.URL+ex+"/filter-check", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	if req.ContentLength != 0 {
		t.Fatal("the request says its length")
	}
	e.want(e.send(req), 413)

	// A smaller limit of the handler's options.
	e2 := newEnv(t, func(o *api.Options) { o.MaxBodyBytes = 64 })
	e2.want(e2.do("POST", ex+"/groups", adminToken, map[string]string{"name": strings.Repeat("n", 100)}), 413)
	e2.want(e2.do("POST", ex+"/groups", adminToken, map[string]string{"name": "Sales"}), 201)
}

// TestFilterErrors checks the position and reason of an invalid filter,
// whether it is checked or saved.
func TestFilterErrors(t *testing.T) {
	e := newEnv(t, nil)
	r := e.want(e.do("POST", ex+"/filter-check", adminToken, map[string]string{"filter": "(|(cn=a)(cn=b)"}), 422)
	p := e.problemOf(r)
	if p.Position == nil || *p.Position != 14 || p.Reason == "" || p.Type != "urn:dirsync:problem:invalid-filter" {
		t.Errorf("filter-check of an unclosed filter: %+v", p)
	}
	p = e.problemOf(e.want(e.do("POST", ex+"/filter-check", adminToken, map[string]string{"filter": "(&)"}), 422))
	if p.Position == nil || p.Reason == "" {
		t.Errorf("filter-check of an empty AND: %+v", p)
	}
	// other.test's saved filter is invalid: its preview says where.
	p = e.problemOf(e.want(e.do("POST", "/api/v1/domains/other.test/preview", adminToken, nil), 422))
	if p.Position == nil || p.Reason == "" {
		t.Errorf("preview of an invalid saved filter: %+v", p)
	}
	p = e.problemOf(e.want(e.do("POST", "/api/v1/domains/other.test/runs", adminToken, map[string]bool{"dry_run": true}), 422))
	if p.Position == nil {
		t.Errorf("dry run of an invalid saved filter: %+v", p)
	}
}

// TestRunNowBusy checks that starting a run of a domain another run holds
// is refused with 409, and works once the domain is free.
func TestRunNowBusy(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, err := e.st.AcquireLease(ctx, "example.com", "another replica", time.Minute); err != nil {
		t.Fatal(err)
	}
	p := e.problemOf(e.want(e.do("POST", ex+"/runs", adminToken, nil), 409))
	if p.Type != "urn:dirsync:problem:domain-busy" || !strings.Contains(p.Detail, "another replica") {
		t.Errorf("run-now of a busy domain: %+v", p)
	}
	if err := e.st.ReleaseLease(ctx, "example.com", "another replica"); err != nil {
		t.Fatal(err)
	}
	var started struct {
		ID int64 `json:"id"`
	}
	e.want(e.do("POST", ex+"/runs", adminToken, map[string]bool{"confirm_deletes": true}), 202).json(t, &started)
	if run := e.waitRun("example.com", started.ID); run["outcome"] != "ok" {
		t.Errorf("run %d: %v", started.ID, run)
	}

	// A domain whose sync is off: the run starts, is recorded, and fails.
	var off struct {
		ID int64 `json:"id"`
	}
	e.want(e.do("POST", "/api/v1/domains/other.test/runs", adminToken, nil), 202).json(t, &off)
	if run := e.waitRun("other.test", off.ID); run["outcome"] != "failed" || run["stage"] != "switch" {
		t.Errorf("run of a domain with sync off: %v", run)
	}
}

// TestNoScheduler checks the answer of a server that was given no RunNow.
func TestNoScheduler(t *testing.T) {
	e := newEnv(t, func(o *api.Options) { o.RunNow, o.NextRun = nil, nil })
	e.want(e.do("POST", ex+"/runs", adminToken, nil), 503)
	var domains []map[string]any
	e.want(e.do("GET", "/api/v1/domains", adminToken, nil), 200).json(t, &domains)
	if domains[0]["next_run_at"] != nil {
		t.Errorf("next_run_at without a scheduler: %v", domains[0])
	}
}

// TestClientGoneIsNoServerError: a request whose client went away (its
// context cancelled while the store answers) gets no answer written and
// logs no server error.
func TestClientGoneIsNoServerError(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", "/api/v1/domains/example.com/runs", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	rec := httptest.NewRecorder()
	e.srv.Config.Handler.ServeHTTP(rec, req)
	if rec.Body.Len() > 0 && rec.Code >= 500 {
		t.Errorf("a gone client was answered %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(e.logs.String(), "request failed") {
		t.Errorf("a gone client was logged as a server error:\n%s", e.logs)
	}
}
