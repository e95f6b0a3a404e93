package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/host/store/sqlite"
)

// rows counts the rows of a table's body.
func (pg *page) rows(table string) []string {
	pg.t.Helper()
	return get(pg, "the rows of "+table, chromedp.Evaluate[[]string](fmt.Sprintf(
		`[...document.querySelectorAll('#%s tbody tr')].map(tr => tr.textContent.replace(/\s+/g, ' ').trim())`, table)))
}

// TestPageValidUsersAndGroups drives the "Valid users and groups" page
// and the directory check of the Groups page in chromium: the saved
// settings' preview lists users and public folders apart (the display
// name of markup as text), the unmatched group Marketing is created in
// one click and the page comes back with it matched; the Groups page's
// "Find unmatched directory groups" no longer lists it; removing it takes
// its confirmation and puts it back among the unmatched.
func TestPageValidUsersAndGroups(t *testing.T) {
	pe := newPageEnv(t)
	pg := &page{t: t, ctx: browser(t, true), base: pe.p.base}
	pg.signIn(pageAdmin)
	pg.pick("example.com")

	pg.navTo("Valid users and groups", `form[action$="/valid"]`)
	pg.shot("valid-before")
	pg.submit("Check valid users and groups", button("Check valid users and groups"), "#preview")
	pg.shot("valid")
	users := pg.rows("preview-users")
	if len(users) == 0 || !strings.Contains(strings.Join(users, "\n"), "alice@example.com") {
		t.Fatalf("the valid users are %q, want alice@example.com among them", users)
	}
	if !strings.Contains(strings.Join(users, "\n"), scriptName) {
		t.Errorf("the display name %s is not shown as text: %q", scriptName, users)
	}
	if n := get(pg, "script elements in the report", chromedp.Evaluate[int](`document.querySelectorAll('#preview script').length`)); n != 0 {
		t.Errorf("the report holds %d script elements", n)
	}
	folders := pg.rows("preview-folders")
	if len(folders) == 0 {
		t.Errorf("no public folders in the report; the sample directory has one")
	}
	for _, f := range folders {
		for _, u := range users {
			if f == u {
				t.Errorf("%q is listed both as a user and as a public folder", f)
			}
		}
	}
	if un := pg.text("#preview-unmatched"); !strings.Contains(un, "Marketing") {
		t.Fatalf("the unmatched groups are %q, want Marketing", un)
	}
	create := `//ul[@id="preview-unmatched"]/li[span[normalize-space()="Marketing"]]//button[normalize-space()="Create gateway group"]`
	pg.submit("Create gateway group Marketing", create, "#flash")
	pg.shot("valid-group-created")
	if h := pg.text("h1"); h != "Valid users and groups" {
		t.Errorf("after Create gateway group the page is %q", h)
	}
	if msg := pg.text("#flash"); !strings.Contains(msg, "Gateway group Marketing created") {
		t.Errorf("after Create gateway group the page says %q", msg)
	}
	if gs := pg.text("#preview-groups"); !strings.Contains(gs, "Marketing") {
		t.Errorf("the matched groups are %q, want Marketing", gs)
	}
	if _, ok := pe.groupList()["Marketing"]; !ok {
		t.Fatalf("the groups are %v, want Marketing", pe.groupList())
	}

	// The Groups page: the directory check, then the removal.
	pg.navTo("Groups", "#groups")
	pg.submit("Find unmatched directory groups", button("Find unmatched directory groups"), "#directory-groups")
	pg.shot("groups-directory")
	section := pg.text("#directory-groups")
	if strings.Contains(section, "could not be read") {
		t.Fatalf("the directory check failed: %q", section)
	}
	if strings.Contains(section, "Marketing") {
		t.Errorf("Marketing, a gateway group now, is listed as unmatched: %q", section)
	}
	pg.submit("Remove group Marketing", `//a[normalize-space()="Remove group Marketing"]`, "#confirm")
	pg.shot("groups-confirm")
	if _, ok := pe.groupList()["Marketing"]; !ok {
		t.Fatalf("the confirmation removed the group")
	}
	pg.submit("confirm the removal", `//section[@id="confirm"]//button[normalize-space()="Remove group"]`, "#flash")
	pg.shot("groups-removed")
	if msg := pg.text("#flash"); !strings.Contains(msg, "Marketing removed") {
		t.Errorf("after Remove group the page says %q", msg)
	}
	if _, ok := pe.groupList()["Marketing"]; ok {
		t.Errorf("Marketing is still a group")
	}
	pg.submit("Find unmatched directory groups again", button("Find unmatched directory groups"), "#directory-groups")
	if section := pg.text("#directory-groups"); !strings.Contains(section, "Marketing") {
		t.Errorf("a removed group is not unmatched again: %q", section)
	}
}

// TestPagePaging: the Runs page shows 50 runs a page, newest first, with
// links to older and the newest; the Mailboxes page 100 mailboxes a page.
func TestPagePaging(t *testing.T) {
	pe := newPageEnv(t)
	st, err := sqlite.Open(pe.dbPath())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	start := time.Now().Add(-time.Hour)
	for i := 1; i <= 60; i++ {
		at := start.Add(time.Duration(i) * time.Second)
		r := &store.Run{Domain: "example.com", Started: at, Ended: at.Add(time.Second), Outcome: "failed", Stage: "fetch",
			Error: fmt.Sprintf("recorded run number %d", i)}
		if err := st.RecordRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 120 {
		if _, err := st.AddMailbox(ctx, "example.com", store.Mailbox{Primary: fmt.Sprintf("box%03d@example.com", i), Kind: "user"}); err != nil {
			t.Fatal(err)
		}
	}

	pg := &page{t: t, ctx: browser(t, true), base: pe.p.base}
	pg.signIn(pageAdmin)
	pg.pick("example.com")
	pg.navTo("Runs", "#runs")
	first := pg.rows("runs")
	if len(first) != 50 || !strings.Contains(first[0], "number 60") || !strings.Contains(first[49], "number 11") {
		t.Fatalf("the first page of runs has %d rows, from %q to %q; want 50, from number 60 to 11", len(first), first[0], first[len(first)-1])
	}
	pg.submit("Older runs", `//a[normalize-space()="Older runs"]`, "#runs")
	pg.shot("runs-older")
	older := pg.rows("runs")
	if len(older) != 10 || !strings.Contains(older[0], "number 10") || !strings.Contains(older[9], "number 1 ") && !strings.HasSuffix(older[9], "number 1") {
		t.Errorf("the older runs are %d, from %q to %q; want 10, from number 10 to 1", len(older), older[0], older[len(older)-1])
	}
	if n := get(pg, "an Older runs link", chromedp.Evaluate[int](`[...document.querySelectorAll('a[rel=next]')].length`)); n != 0 {
		t.Errorf("the last page of runs links to older runs")
	}
	pg.submit("Newest runs", `//a[normalize-space()="Newest runs"]`, "#runs")
	if again := pg.rows("runs"); len(again) != 50 || again[0] != first[0] {
		t.Errorf("Newest runs shows %d rows from %q", len(again), again[0])
	}

	pg.navTo("Mailboxes", "#mailboxes")
	boxes := pg.rows("mailboxes")
	if len(boxes) != 100 || !strings.Contains(boxes[0], "box000@example.com") {
		t.Fatalf("the first page of mailboxes has %d rows from %q", len(boxes), boxes[0])
	}
	if c := pg.text("#mailbox-count"); !strings.Contains(c, "120 mailboxes") || !strings.Contains(c, "1–100 shown") {
		t.Errorf("the count says %q", c)
	}
	pg.submit("Next mailboxes", `//a[normalize-space()="Next mailboxes"]`, "#mailboxes")
	pg.shot("mailboxes-next")
	if next := pg.rows("mailboxes"); len(next) != 20 || !strings.Contains(next[0], "box100@example.com") {
		t.Errorf("the next page of mailboxes has %d rows from %q", len(next), next)
	}
	if c := pg.text("#mailbox-count"); !strings.Contains(c, "101–120 shown") {
		t.Errorf("the count of the next page says %q", c)
	}
}

// TestPageBindPassword: a bind password typed into the page is used by
// "Test connection" and kept by "Apply changes": the stored password (a
// wrong one, set by the CLI) is replaced by it, not cleared, and the next
// read of the directory binds with it.
func TestPageBindPassword(t *testing.T) {
	pe := newPageEnv(t)
	wrong := pe.write("wrong.pw", "not-the-reader-password\n")
	pe.ok("domain", "set", "example.com", "--password-file", wrong)
	pe.fails(1, "", "preview", "--domain", "example.com")

	pg := &page{t: t, ctx: browser(t, true), base: pe.p.base}
	pg.signIn(pageAdmin)
	pg.pick("example.com")
	pg.run("switch on, type the reader's password", chromedp.Click(labelled("Synchronization of groups and users")),
		chromedp.SendKeys(labelled("Bind password"), readerPassword))
	pg.submit("Test connection", button("Test connection"), "#connection-result, #form-error")
	pg.shot("tested")
	if msg := pg.text("#connection-result, #form-error"); !strings.Contains(msg, "Connected") {
		t.Fatalf("Test connection with the typed password says %q", msg)
	}
	pg.run("type it again (the page never shows it back)", chromedp.SendKeys(labelled("Bind password"), readerPassword))
	pg.submit("Apply changes", button("Apply changes"), "#flash, #form-error")
	pg.shot("applied")
	if msg := pg.text("#flash, #form-error"); !strings.Contains(msg, "Saved as settings version") {
		t.Fatalf("Apply changes says %q", msg)
	}
	if v := get(pg, "the password field", chromedp.Evaluate[string](`document.getElementById('password').value`)); v != "" {
		t.Errorf("the page shows the password back: %q", v)
	}
	pe.ok("preview", "--domain", "example.com") // binds with the password saved from the page
}
