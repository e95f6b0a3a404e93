package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var screenshots = flag.String("screenshots", "", "save the page tests' screenshots under this folder (one folder per test)")

const (
	pageAdmin  = "page-admin-token-for-the-test"
	pageViewer = "page-viewer-token-for-the-test"
	scriptName = "<script>alert(1)</script>"
)

// pageEnv is dirsync serve with its page, over slapd's sample directory:
// example.com is kept in the store (its switch off), config.example is
// declared in dirsync.toml; one admin and one viewer token.
type pageEnv struct {
	*env
	p *serveProc
}

func newPageEnv(t *testing.T) *pageEnv {
	t.Helper()
	e := newEnv(t)
	listen := freeAddr(t)
	e.writeTokenConfig(listen, pageAdmin, pageViewer, fmt.Sprintf(`[[domain]]
name = "config.example"
policy = "standard"
  [domain.ldap]
  urls = [%q]
  base_dn = "dc=example,dc=com"
`, e.srv.URL))
	e.ok("domain", "add", "example.com", "policy=standard", "sync=false", "alias_domains=['example.org']",
		fmt.Sprintf("ldap.urls=[%q]", e.srv.URL), "ldap.bind_dn=cn=reader,dc=example,dc=com",
		"ldap.base_dn=dc=example,dc=com", "--password-file", filepath.Join(e.dir, "reader.pw"))
	// A user whose display name is markup: the page must show it as text.
	if err := e.srv.Add("cn=Mallory,ou=People,dc=example,dc=com", map[string][]string{
		"objectClass":        {"top", "person", "organizationalPerson", "inetOrgPerson", "adUser"},
		"cn":                 {"Mallory"},
		"sn":                 {"Mallory"},
		"displayName":        {scriptName},
		"sAMAccountName":     {"mallory"},
		"sAMAccountType":     {"805306368"},
		"userAccountControl": {"512"},
		"mail":               {"mallory@example.com"},
		"proxyAddresses":     {"SMTP:mallory@example.com"},
	}); err != nil {
		t.Fatal(err)
	}
	return &pageEnv{env: e, p: e.startServe(e.config, listen)}
}

// browser starts Debian's chromium, headless, 360 px wide; a missing
// chromium fails the test.
func browser(t *testing.T, js bool) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed for the page tests (apt-get install chromium; scripts/deps.sh installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(360, 900), chromedp.Flag("disable-gpu", true))
	if !js {
		opts = append(opts, chromedp.Flag("blink-settings", "scriptEnabled=false"))
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	// The first call starts the browser, on a context without a timeout:
	// the browser lives as long as it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// page drives one browser tab and saves its screenshots.
type page struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots int
}

// stepTimeout bounds each group of steps.
const stepTimeout = 20 * time.Second

func (pg *page) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		pg.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		pg.t.Fatalf("%s: %v", what, err)
	}
}

// shot saves a screenshot as DIR/TestName/NN-name.png when -screenshots
// DIR is given.
func (pg *page) shot(name string) {
	pg.t.Helper()
	if *screenshots == "" {
		return
	}
	ctx, cancel := context.WithTimeout(pg.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		pg.t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := filepath.Join(*screenshots, pg.t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		pg.t.Fatal(err)
	}
	pg.shots++
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d-%s.png", pg.shots, name)), png, 0o644); err != nil {
		pg.t.Fatal(err)
	}
}

// button finds a button by its text; labelled finds an input by the text
// of its <label for>, as a user does. Both are XPath searches.
func button(text string) string { return fmt.Sprintf(`//button[normalize-space()=%q]`, text) }
func labelled(text string) string {
	return fmt.Sprintf(`//*[@id=//label[normalize-space()=%q]/@for]`, text)
}

// get runs one action that returns a value.
func get[T any](pg *page, what string, a chromedp.Action[T]) T {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(pg.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		pg.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		pg.t.Fatalf("%s: %v", what, err)
	}
	return v
}

func (pg *page) text(css string) string {
	pg.t.Helper()
	return get(pg, "reading "+css, chromedp.Text(chromedp.CSS(css)))
}

func (pg *page) disabled(xpath string) bool {
	pg.t.Helper()
	return get(pg, "is "+xpath+" disabled", chromedp.Evaluate[bool](fmt.Sprintf(
		`document.evaluate(%q, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue.matches(':disabled')`, xpath)))
}

// setValue sets an input's value at once, as pasting does.
func (pg *page) setValue(xpath, v string) {
	pg.t.Helper()
	get(pg, "set "+xpath, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		const el = document.evaluate(%q, document, null, XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
		el.value = %q;
		el.dispatchEvent(new Event('input', {bubbles: true}));
		return true;
	})()`, xpath, v)))
}

func (pg *page) signIn(token string) {
	pg.t.Helper()
	pg.run("open the sign-in page",
		chromedp.Navigate(pg.base+"/"),
		chromedp.WaitVisible(labelled("API token")),
	)
	pg.shot("sign-in")
	pg.run("sign in",
		chromedp.SendKeys(labelled("API token"), token),
		chromedp.Click(button("Sign in")),
		chromedp.WaitVisible(chromedp.CSS("ul.domains")),
	)
	pg.shot("domains")
}

func (pg *page) pick(domain string) {
	pg.t.Helper()
	pg.run("pick the domain",
		chromedp.SetValue(labelled("Domain"), domain),
		chromedp.Click(button("Open")),
		chromedp.WaitVisible(chromedp.CSS("#ldap-form")),
	)
	if h := pg.text("h1"); h != "LDAP Connection" {
		pg.t.Fatalf("the domain's page is %q, want LDAP Connection", h)
	}
}

// domainShow is `dirsync domain show NAME --json`.
func (e *env) domainShow(name string) (version int64, sync bool, filter string) {
	e.t.Helper()
	var s struct {
		Version int64 `json:"version"`
		Sync    bool  `json:"sync"`
		LDAP    struct {
			Filter string `json:"filter"`
		} `json:"ldap"`
	}
	if err := json.Unmarshal([]byte(e.ok("domain", "show", name, "--json")), &s); err != nil {
		e.t.Fatal(err)
	}
	return s.Version, s.Sync, s.LDAP.Filter
}

// TestPageLDAPConnection drives the LDAP Connection page in chromium as an
// operator does: sign in with a token, pick the domain, switch the sync
// on (the fields become editable), type a broken filter (its error and
// position appear without a page load), check the valid users and groups
// of the form as it stands (the users, the unmatched group Marketing, and
// a display name of markup shown as text), and apply the changes (a new
// settings version).
func TestPageLDAPConnection(t *testing.T) {
	pe := newPageEnv(t)
	pg := &page{t: t, ctx: browser(t, true), base: pe.p.base}
	pg.signIn(pageAdmin)
	pg.pick("example.com")
	pg.shot("ldap-connection")

	sw := labelled("Synchronization of groups and users")
	filter := labelled("LDAP filter")
	if !pg.disabled(filter) || !pg.disabled(labelled("Base DN")) {
		t.Fatalf("with the switch off, the fields are editable")
	}
	pg.run("switch on", chromedp.Click(sw))
	if pg.disabled(filter) || pg.disabled(labelled("LDAP server URLs")) {
		t.Fatalf("with the switch on, the fields are still disabled")
	}
	pg.shot("switched-on")

	// A broken filter: the error, with its position, without a page load.
	get(pg, "mark the page", chromedp.Evaluate[bool](`window.stillThisPage = true`))
	pg.run("type a broken filter", chromedp.SendKeys(filter, "(|(cn=a)"))
	get(pg, "the filter's error", chromedp.Poll[bool](`document.getElementById('filter-error').textContent.includes('position')`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if !get(pg, "read the mark", chromedp.Evaluate[bool](`window.stillThisPage === true`)) {
		t.Errorf("the filter check loaded a new page")
	}
	if msg := pg.text("#filter-error"); !strings.Contains(msg, "Invalid filter at position ") {
		t.Errorf("the filter's error is %q", msg)
	}
	if m := pg.text("#filter-mark"); m != "(|(cn=a) " {
		t.Errorf("the filter's error is marked in %q, want the end of (|(cn=a) marked", m)
	}
	pg.shot("broken-filter")
	// Fixed: the error goes away.
	pg.setValue(filter, "")
	pg.run("fix the filter", chromedp.SendKeys(filter, "(objectClass=*)"))
	get(pg, "the filter's error gone", chromedp.Poll[bool](`document.getElementById('filter-error').textContent === ''`,
		chromedp.WithPollingTimeout(10*time.Second)))
	pg.setValue(filter, "")

	// The valid users and groups of the form as it stands (not saved).
	pg.run("Check valid users and groups",
		chromedp.Click(button("Check valid users and groups")),
		chromedp.WaitVisible(chromedp.CSS("#preview")),
	)
	pg.shot("preview")
	users := pg.text("#preview-users")
	for _, want := range []string{"alice@example.com", "a.anders@example.com", "bob@example.com", "mallory@example.com", scriptName} {
		if !strings.Contains(users, want) {
			t.Errorf("the valid users do not show %q:\n%s", want, users)
		}
	}
	if ch := pg.text("#preview-changes"); !strings.Contains(ch, "alice@example.com") {
		t.Errorf("the changes a run would make do not show alice@example.com:\n%s", ch)
	}
	if un := pg.text("#preview-unmatched"); !strings.Contains(un, "Marketing") {
		t.Errorf("the unmatched groups are %q, want Marketing among them", un)
	}
	if scripts := get(pg, "count the scripts", chromedp.Evaluate[int](`document.querySelectorAll('script').length`)); scripts != 1 {
		t.Errorf("the page holds %d script elements, want 1 (its own file): the display name became markup", scripts)
	}
	if v, _, _ := pe.domainShow("example.com"); v != 1 {
		t.Errorf("the preview saved settings: version %d", v)
	}

	// "Apply changes": a new settings version, with the switch on.
	if pg.disabled(filter) {
		t.Fatalf("after the preview the fields are disabled though the switch is on")
	}
	pg.run("Apply changes",
		chromedp.SetValue(filter, "(|(sAMAccountType=805306368)(sAMAccountType=268435456))"),
		chromedp.Click(button("Apply changes")),
		chromedp.WaitVisible(chromedp.CSS("p.ok")),
	)
	pg.shot("applied")
	if msg := pg.text("p.ok"); !strings.Contains(msg, "version 2") {
		t.Errorf("after Apply changes the page says %q", msg)
	}
	if v, sync, f := pe.domainShow("example.com"); v != 2 || !sync || f != "(|(sAMAccountType=805306368)(sAMAccountType=268435456))" {
		t.Errorf("after Apply changes: version %d, sync %v, filter %q", v, sync, f)
	}

	// "Test connection" of the form: the server, the entries matched.
	pg.run("Test connection",
		chromedp.Click(button("Test connection")),
		chromedp.WaitVisible(chromedp.CSS("#connection-result")),
	)
	pg.shot("test-connection")
	if msg := pg.text("#connection-result"); !strings.Contains(msg, "Connected to "+pe.srv.URL) || !regexp.MustCompile(`matches \d+ entries`).MatchString(msg) {
		t.Errorf("Test connection says %q", msg)
	}

	// "Sync now": the run starts, and shows as the last run. The schedule
	// may have started a run of the newly switched-on domain: the page
	// then says a run is going on, and the button is tried again.
	var id int64
	for try := 0; id == 0; try++ {
		pg.run("Sync now",
			chromedp.Click(button("Sync now")),
			chromedp.WaitVisible(chromedp.CSS("#flash, #form-error")),
		)
		msg := pg.text("#flash, #form-error")
		if _, err := fmt.Sscanf(msg, "Run %d started.", &id); err != nil {
			if !strings.Contains(msg, "going on") || try == 5 {
				t.Fatalf("Sync now says %q", msg)
			}
			time.Sleep(time.Second)
		}
	}
	pe.p.eventually(30*time.Second, "the run started with Sync now, ended", func() bool {
		for _, r := range pe.runs() {
			if r.ID == id && r.Outcome != "running" {
				return true
			}
		}
		return false
	})
	pg.run("reload", chromedp.Navigate(pe.p.base+"/domains/example.com"), chromedp.WaitVisible(chromedp.CSS("#ldap-form")))
	pg.shot("last-run")
	// The last run: this one, or one the schedule started after it.
	if last := pg.text("#last-run"); !regexp.MustCompile(`^run \d+, ok, started `).MatchString(last) {
		t.Errorf("the last run shows as %q, want run %d or a later one, ok", last, id)
	}
	if r := pe.runs(); len(r) == 0 || r[len(r)-1].ID > id || r[0].ID < id {
		t.Errorf("the runs %+v do not hold run %d", r, id)
	}
}

// TestPageWithoutJavaScript: with JavaScript off in the browser, the
// fields are editable whatever the switch, "Apply changes" saves, a
// broken filter is shown next to its field, with its position, after the
// page load, and "Check valid users and groups" previews the form as it
// stands without saving it.
func TestPageWithoutJavaScript(t *testing.T) {
	pe := newPageEnv(t)
	pg := &page{t: t, ctx: browser(t, false), base: pe.p.base}
	pg.signIn(pageAdmin)
	pg.pick("example.com")
	attrs := get(pg, "the fieldset", chromedp.Attributes(chromedp.CSS("#ldap-fields")))
	if _, ok := attrs["disabled"]; ok {
		t.Fatalf("without JavaScript the fields are disabled")
	}
	filter := labelled("LDAP filter")
	pg.run("a broken filter",
		chromedp.Click(labelled("Synchronization of groups and users")),
		chromedp.SendKeys(filter, "(|(cn=a)"),
		chromedp.Click(button("Apply changes")),
		chromedp.WaitVisible(chromedp.CSS("#form-error, #filter-error:not(:empty)")),
	)
	pg.shot("broken-filter")
	if msg := pg.text("#filter-error"); !strings.Contains(msg, "Invalid filter at position ") {
		t.Errorf("the filter's error is %q", msg)
	}
	if m := pg.text("#filter-mark mark"); m == "" {
		t.Errorf("the filter's error is not marked in the filter")
	}
	if v, _, _ := pe.domainShow("example.com"); v != 1 {
		t.Errorf("a broken filter was saved: version %d", v)
	}
	pg.run("fix the filter and apply",
		chromedp.Clear(filter), // the value the page came with: no script needed
		chromedp.SendKeys(filter, "(|(cn=a))"),
		chromedp.Click(button("Apply changes")),
		chromedp.WaitVisible(chromedp.CSS("#flash")),
	)
	pg.shot("applied")
	if v, sync, f := pe.domainShow("example.com"); v != 2 || !sync || f != "(|(cn=a))" {
		t.Errorf("after Apply changes without JavaScript: version %d, sync %v, filter %q", v, sync, f)
	}
	// The form as it stands, unsaved, previewed with a plain POST.
	pg.run("a filter for the preview",
		chromedp.Clear(filter),
		chromedp.SendKeys(filter, "(sAMAccountName=alice)"),
	)
	pg.submit("Check valid users and groups", button("Check valid users and groups"), "#preview")
	pg.shot("preview")
	if users := pg.rows("preview-users"); len(users) != 1 || !strings.Contains(users[0], "alice@example.com") {
		t.Errorf("the preview of the unsaved filter lists %q, want alice@example.com alone", users)
	}
	if _, _, f := pe.domainShow("example.com"); f != "(|(cn=a))" {
		t.Errorf("the preview saved the filter: %q", f)
	}
}

// client is a browser-less client with a cookie jar.
func pageClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

func send(t *testing.T, c *http.Client, method, u string, form url.Values, header map[string]string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestPageSecurity: the session cookie is HttpOnly, SameSite=Strict; every
// answer has a strict Content-Security-Policy; a cross-origin POST is
// refused (403) even with a valid session; a viewer's page is read-only
// and its "Apply changes" is refused; a domain of dirsync.toml is shown
// read-only as "set in dirsync.toml"; a domain outside the token's list
// is not found.
func TestPageSecurity(t *testing.T) {
	pe := newPageEnv(t)
	base := pe.p.base
	c := pageClient(t)
	noRedirect := *c
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	resp, body := send(t, c, "GET", base+"/", nil, nil)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") ||
		!strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("Content-Security-Policy: %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(body, `for="token"`) {
		t.Errorf("the sign-in page: %s %v", body, resp.Header)
	}

	if resp, _ := send(t, &noRedirect, "POST", base+"/signin", url.Values{"token": {"not-a-token"}}, nil); resp.StatusCode != 401 {
		t.Errorf("a wrong token: %d, want 401", resp.StatusCode)
	}
	resp, _ = send(t, &noRedirect, "POST", base+"/signin", url.Values{"token": {pageViewer}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", resp.StatusCode)
	}
	cookie := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="} {
		if !strings.Contains(cookie, want) {
			t.Errorf("the session cookie %q lacks %s", cookie, want)
		}
	}

	if _, body := send(t, c, "GET", base+"/", nil, nil); !strings.Contains(body, `href="/domains/example.com"`) || strings.Contains(body, "config.example") {
		t.Errorf("the viewer's domains are not only its own:\n%s", body)
	}
	// The viewer's page: read-only, no Apply changes, no Sync now.
	_, body = send(t, c, "GET", base+"/domains/example.com", nil, nil)
	if !strings.Contains(body, "LDAP Connection") || strings.Contains(body, "Apply changes") || strings.Contains(body, "Sync now") ||
		!strings.Contains(body, `id="ldap-fields" disabled`) {
		t.Errorf("the viewer's page is not read-only:\n%s", body)
	}
	form := url.Values{"action": {"apply"}, "version": {"1"}, "sync": {"on"}, "fields": {"1"},
		"urls": {pe.srv.URL}, "base_dn": {"dc=example,dc=com"}, "interval": {"1h"}}
	if resp, _ := send(t, c, "POST", base+"/domains/example.com", form, nil); resp.StatusCode != 403 {
		t.Errorf("a viewer's Apply changes: %d, want 403", resp.StatusCode)
	}
	if resp, _ := send(t, c, "GET", base+"/domains/config.example", nil, nil); resp.StatusCode != 404 {
		t.Errorf("a domain outside the viewer's list: %d, want 404", resp.StatusCode)
	}

	// The admin: a domain of dirsync.toml is read-only.
	c = pageClient(t)
	send(t, c, "POST", base+"/signin", url.Values{"token": {pageAdmin}}, nil)
	_, body = send(t, c, "GET", base+"/domains/config.example", nil, nil)
	if !strings.Contains(body, "set in dirsync.toml") || strings.Contains(body, "Apply changes") {
		t.Errorf("a domain of dirsync.toml is not shown read-only:\n%s", body)
	}

	// The filter check the page calls as the filter is typed.
	check := func(c *http.Client, filter string, h map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/ui/domains/example.com/filter-check", strings.NewReader(fmt.Sprintf(`{"filter":%q}`, filter)))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, out := check(c, "(|(cn=a)", nil); code != 422 || !strings.Contains(out, `"position":`) || !strings.Contains(out, `"reason":`) {
		t.Errorf("filter check of a broken filter: %d %s", code, out)
	}
	if code, out := check(c, "(cn=a)", nil); code != 200 || !strings.Contains(out, `"normalized":"(cn=a)"`) {
		t.Errorf("filter check of a good filter: %d %s", code, out)
	}
	if code, _ := check(pageClient(t), "(cn=a)", nil); code != 401 {
		t.Errorf("filter check without a session: %d, want 401", code)
	}
	if code, _ := check(c, "(cn=a)", map[string]string{"Sec-Fetch-Site": "cross-site"}); code != 403 {
		t.Errorf("a cross-origin filter check: %d, want 403", code)
	}

	// Cross-origin POSTs are refused, with a valid session too.
	for _, h := range []map[string]string{
		{"Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "cross-site"},
	} {
		if resp, _ := send(t, c, "POST", base+"/domains/example.com", form, h); resp.StatusCode != 403 {
			t.Errorf("a cross-origin Apply changes (%v): %d, want 403", h, resp.StatusCode)
		}
		if resp, _ := send(t, c, "POST", base+"/domains/example.com/runs", url.Values{}, h); resp.StatusCode != 403 {
			t.Errorf("a cross-origin Sync now (%v): %d, want 403", h, resp.StatusCode)
		}
		if resp, _ := send(t, c, "POST", base+"/signin", url.Values{"token": {pageAdmin}}, h); resp.StatusCode != 403 {
			t.Errorf("a cross-origin sign-in (%v): %d, want 403", h, resp.StatusCode)
		}
	}
	if v, sync, _ := pe.domainShow("example.com"); v != 1 || sync {
		t.Errorf("after refused POSTs: version %d, sync %v", v, sync)
	}

	// The same request from the page's own origin saves (the form without
	// JavaScript: every field posted).
	resp, body = send(t, c, "POST", base+"/domains/example.com", form, map[string]string{"Origin": base})
	if resp.StatusCode != 200 || !strings.Contains(body, "Saved as settings version 2") {
		t.Errorf("a same-origin Apply changes: %d\n%s", resp.StatusCode, body)
	}
	if v, sync, _ := pe.domainShow("example.com"); v != 2 || !sync {
		t.Errorf("after Apply changes: version %d, sync %v", v, sync)
	}

	// The version read is sent back: a stale one is refused, and says so.
	resp, body = send(t, c, "POST", base+"/domains/example.com", form, nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "changed since this page read them") {
		t.Errorf("Apply changes over a stale version: %d", resp.StatusCode)
	}
	// A refused key is shown next to its field.
	form.Set("version", "2")
	form.Set("urls", "http://ldap.example")
	resp, body = send(t, c, "POST", base+"/domains/example.com", form, nil)
	if resp.StatusCode != 422 || !regexp.MustCompile(`id="urls-error"[^>]*>[^<]*not an ldap:// or ldaps:// URL`).MatchString(body) {
		t.Errorf("a bad URL: %d, its error not next to its field:\n%s", resp.StatusCode, body)
	}
	if v, _, _ := pe.domainShow("example.com"); v != 2 {
		t.Errorf("a refused form was saved: version %d", v)
	}

	// Signed out: the session is gone.
	send(t, c, "POST", base+"/signout", url.Values{}, nil)
	if resp, _ := send(t, &http.Client{Jar: c.Jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		"GET", base+"/domains/example.com", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the page after signing out: %d, want 303 to the sign-in", resp.StatusCode)
	}
}

// TestPageSessionCookieUnderTLS: with [api] cert_file and key_file, the
// session cookie is Secure too.
func TestPageSessionCookieUnderTLS(t *testing.T) {
	e := &env{t: t, dir: t.TempDir()}
	certPEM, keyPEM := selfSigned(t)
	e.write("api.crt", string(certPEM))
	e.write("api.key", string(keyPEM))
	e.write("plugin.toml", "[[policy]]\nname = \"standard\"\nruntime = \"builtin\"\n")
	listen := freeAddr(t)
	cfg := e.write("serve.toml", fmt.Sprintf(`
[store]
dsn = "var/dirsync.db"
[plugins]
manifest = "plugin.toml"
[api]
listen    = %q
cert_file = "api.crt"
key_file  = "api.key"
[[api.token]]
name = "panel"
sha256 = "%x"
role = "admin"
domains = ["*"]
`, listen, sha256.Sum256([]byte(pageAdmin))))
	e.startServe(cfg, listen)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, _ := send(t, c, "POST", "https://"+listen+"/signin", url.Values{"token": {pageAdmin}}, nil)
	cookie := resp.Header.Get("Set-Cookie")
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(cookie, "; Secure") || !strings.Contains(cookie, "HttpOnly") {
		t.Errorf("sign-in over TLS: %d, cookie %q", resp.StatusCode, cookie)
	}
}

// groupList is `dirsync group list --domain example.com --json`.
func (e *env) groupList() map[string][]string {
	e.t.Helper()
	var list []struct {
		Name    string   `json:"name"`
		Members []string `json:"members"`
	}
	if err := json.Unmarshal([]byte(e.ok("group", "list", "--domain", "example.com", "--json")), &list); err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, g := range list {
		out[g.Name] = g.Members
	}
	return out
}

// submit clicks a button or link (an XPath) that loads a new page and
// waits for the new page to show css: an element of the page it leaves
// does not count.
func (pg *page) submit(what, xpath, css string) {
	pg.t.Helper()
	get(pg, "mark the page", chromedp.Evaluate[bool](`window.leaving = true`))
	pg.run(what, chromedp.Click(xpath))
	expr := fmt.Sprintf(`window.leaving === undefined && document.readyState === 'complete' && !!document.querySelector(%q)`, css)
	// An evaluation while the page changes fails: it is tried again.
	for end := time.Now().Add(stepTimeout); ; time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(pg.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(end) {
			pg.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
			pg.t.Fatalf("%s: no new page with %s (last error: %v)", what, css, err)
		}
	}
}

// navTo follows a link of the domain's nav.
func (pg *page) navTo(name, wait string) {
	pg.t.Helper()
	pg.submit("open "+name, fmt.Sprintf(`//nav[contains(@class,"domain-nav")]//a[normalize-space()=%q]`, name), wait)
	if h := pg.text("h1"); h != name {
		pg.t.Fatalf("the %s link opened %q", name, h)
	}
}

// TestPageGroupsRunsMailboxes drives the domain's other pages in
// chromium: the preview's unmatched directory group Marketing is created
// as a gateway group in one click and shows as matched in the next
// preview; "Sync now" makes a run that the Runs page lists and whose
// page shows its changes (alice@example.com created); the Groups page
// shows Marketing with its member; the Mailboxes search for "alice"
// shows her with her aliases and groups.
func TestPageGroupsRunsMailboxes(t *testing.T) {
	pe := newPageEnv(t)
	pg := &page{t: t, ctx: browser(t, true), base: pe.p.base}
	pg.signIn(pageAdmin)
	pg.pick("example.com")

	pg.run("Check valid users and groups",
		chromedp.Click(button("Check valid users and groups")),
		chromedp.WaitVisible(chromedp.CSS("#preview-unmatched")),
	)
	if un := pg.text("#preview-unmatched"); !strings.Contains(un, "Marketing") {
		t.Fatalf("the unmatched groups are %q, want Marketing among them", un)
	}
	pg.shot("unmatched")
	create := `//ul[@id="preview-unmatched"]/li[span[normalize-space()="Marketing"]]//button[normalize-space()="Create gateway group"]`
	pg.submit("Create gateway group Marketing", create, "#flash")
	pg.shot("group-created")
	if msg := pg.text("#flash"); !strings.Contains(msg, "Gateway group Marketing created") {
		t.Errorf("after Create gateway group the page says %q", msg)
	}
	if _, ok := pe.groupList()["Marketing"]; !ok {
		t.Fatalf("after Create gateway group the groups are %v, want Marketing", pe.groupList())
	}
	pg.submit("Check valid users and groups again", button("Check valid users and groups"), "#preview")
	pg.shot("matched")
	if gs := pg.text("#preview-groups"); !strings.Contains(gs, "Marketing") {
		t.Errorf("the matched groups are %q, want Marketing among them", gs)
	}
	if un := get(pg, "the unmatched groups", chromedp.Evaluate[string](
		`(document.getElementById('preview-unmatched') || {textContent: ''}).textContent`)); strings.Contains(un, "Marketing") {
		t.Errorf("Marketing is still unmatched: %q", un)
	}

	// The switch on, then "Sync now": the run shows in Runs, and its
	// page lists its changes. The schedule may start a run of the newly
	// switched-on domain first: "Sync now" is then tried again.
	pg.run("switch on", chromedp.Click(labelled("Synchronization of groups and users")))
	pg.submit("Apply changes", button("Apply changes"), "#flash")
	var id int64
	for try := 0; id == 0; try++ {
		pg.submit("Sync now", button("Sync now"), "#flash, #form-error")
		msg := pg.text("#flash, #form-error")
		if _, err := fmt.Sscanf(msg, "Run %d started.", &id); err != nil {
			if !strings.Contains(msg, "going on") || try == 5 {
				t.Fatalf("Sync now says %q", msg)
			}
			time.Sleep(time.Second)
		}
	}
	pe.p.eventually(30*time.Second, "the run started with Sync now, ended", func() bool {
		for _, r := range pe.runs() {
			if r.ID == id && r.Outcome != "running" {
				return true
			}
		}
		return false
	})
	// The run that created alice: this one, or, if the schedule's run
	// came between the switch and the click, that one.
	created := id
	for _, r := range pe.runs() {
		for _, c := range r.Changes {
			if c.Kind == "create" && c.Address == "alice@example.com" {
				created = r.ID
			}
		}
	}
	pg.navTo("Runs", "#runs")
	pg.shot("runs")
	row := fmt.Sprintf(`//table[@id="runs"]//tr[td//a[normalize-space()="run %d"]]`, id)
	if tr := get(pg, "the run's row", chromedp.Text(row)); !strings.Contains(tr, "ok") || !strings.Contains(tr, "entries") {
		t.Errorf("the run's row on the Runs page: %q", tr)
	}
	pg.submit("open the run", fmt.Sprintf(`//a[normalize-space()="run %d"]`, created), "#run-changes")
	pg.shot("run")
	if h := pg.text("h1"); h != fmt.Sprintf("Run %d", created) {
		t.Errorf("the run's page is %q", h)
	}
	if !get(pg, "alice's create", chromedp.Evaluate[bool](`[...document.querySelectorAll('#run-changes tbody tr')].some(tr =>
		tr.querySelector('.kind').textContent === 'create' && tr.querySelector('.address').textContent === 'alice@example.com' &&
		tr.cells[1].textContent.trim() === '—' && tr.cells[2].textContent.includes('alice@example.com (Alice Anders)'))`)) {
		t.Errorf("the run's changes do not show alice@example.com created:\n%s", pg.text("#run-changes"))
	}

	// Groups: Marketing, filled by the sync.
	pg.navTo("Groups", "#groups")
	pg.shot("groups")
	if gs := get(pg, "Marketing's entry", chromedp.Text(`//ul[@id="groups"]/li[h3[starts-with(normalize-space(),"Marketing ")]]`)); !strings.Contains(gs, "alice@example.com") {
		t.Errorf("the Groups page shows Marketing as %q, want alice@example.com a member", gs)
	}
	if m := get(pg, "alice's membership", chromedp.Text(`//ul[@id="groups"]/li[h3[starts-with(normalize-space(),"Marketing ")]]//li[starts-with(normalize-space(),"alice@example.com ")]`)); !strings.Contains(m, "directory mailbox") || !strings.Contains(m, "membership: from the directory") {
		t.Errorf("the Groups page shows alice@example.com in Marketing as %q, want a directory mailbox's membership from the directory", m)
	}

	// Mailboxes: search for alice.
	alice := pe.mailboxes()["alice@example.com"]
	if len(alice.Aliases) == 0 {
		t.Fatalf("alice@example.com has no aliases in the store: %+v", alice)
	}
	pg.navTo("Mailboxes", "#mailboxes")
	pg.run("type alice", chromedp.SendKeys(labelled("Search"), "alice"))
	pg.submit("search alice", button("Search"), "#mailboxes")
	pg.shot("mailboxes-alice")
	rows := get(pg, "the mailboxes", chromedp.Evaluate[[]string](`[...document.querySelectorAll('#mailboxes tbody tr')].map(tr => tr.textContent)`))
	if len(rows) != 1 || !strings.Contains(rows[0], "alice@example.com") || !strings.Contains(rows[0], "ldap") || !strings.Contains(rows[0], "Marketing") {
		t.Fatalf("the search for alice shows %q", rows)
	}
	for _, a := range alice.Aliases {
		if !strings.Contains(rows[0], a) {
			t.Errorf("alice's row %q lacks her alias %s", rows[0], a)
		}
	}
}

// TestPageGroupsSecurity: a viewer sees the Groups, Runs and Mailboxes
// pages without their buttons and its POSTs are refused (403); an
// admin's cross-origin POSTs are refused (403); a same-origin "Create
// gateway group" keeps the name byte for byte; removing a group takes
// its confirmation page and a POST; a membership shows whether it was made
// by hand or by a sync, also a directory mailbox's made by hand.
func TestPageGroupsSecurity(t *testing.T) {
	pe := newPageEnv(t)
	base := pe.p.base
	noRedirect := func(c *http.Client) *http.Client {
		n := *c
		n.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return &n
	}

	viewer := pageClient(t)
	send(t, viewer, "POST", base+"/signin", url.Values{"token": {pageViewer}}, nil)
	for _, p := range []string{"/groups", "/groups?directory=1", "/runs", "/mailboxes?q=a"} {
		resp, body := send(t, viewer, "GET", base+"/domains/example.com"+p, nil, nil)
		if resp.StatusCode != 200 || strings.Contains(body, "Create gateway group") || strings.Contains(body, "Add group") ||
			strings.Contains(body, `method="post" action="/domains/example.com/groups`) {
			t.Errorf("the viewer's %s: %d, or it has buttons that change things", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/groups", "/groups/remove", "/groups/members"} {
		form := url.Values{"name": {"Marketing"}, "exact": {"1"}, "group": {"Sales"}, "address": {"alice@example.com"}, "action": {"assign"}}
		if resp, _ := send(t, viewer, "POST", base+"/domains/example.com"+p, form, nil); resp.StatusCode != 403 {
			t.Errorf("a viewer's POST %s: %d, want 403", p, resp.StatusCode)
		}
	}
	if _, ok := pe.groupList()["Marketing"]; ok {
		t.Errorf("a viewer created a group")
	}

	admin := pageClient(t)
	send(t, admin, "POST", base+"/signin", url.Values{"token": {pageAdmin}}, nil)
	odd := " Odd  name é "
	for _, h := range []map[string]string{{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}} {
		if resp, _ := send(t, admin, "POST", base+"/domains/example.com/groups", url.Values{"name": {odd}, "exact": {"1"}}, h); resp.StatusCode != 403 {
			t.Errorf("a cross-origin Create gateway group (%v): %d, want 403", h, resp.StatusCode)
		}
	}
	if n := len(pe.groupList()); n != 0 {
		t.Errorf("refused POSTs made groups: %v", pe.groupList())
	}
	resp, _ := send(t, noRedirect(admin), "POST", base+"/domains/example.com/groups", url.Values{"name": {odd}, "exact": {"1"}}, map[string]string{"Origin": base})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a same-origin Create gateway group: %d", resp.StatusCode)
	}
	if _, ok := pe.groupList()[odd]; !ok {
		t.Errorf("the groups are %q, want %q byte for byte", pe.groupList(), odd)
	}
	if resp, _ := send(t, admin, "POST", base+"/domains/example.com/groups", url.Values{"name": {odd}, "exact": {"1"}}, nil); resp.StatusCode != http.StatusConflict {
		t.Errorf("creating a group twice: %d, want 409", resp.StatusCode)
	}
	if resp, _ := send(t, admin, "POST", base+"/domains/example.com/groups", url.Values{"name": {"a\nb"}}, nil); resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("a group name with a newline: %d, want 422", resp.StatusCode)
	}
	// The Groups page's own list of the directory's unmatched groups.
	_, body := send(t, admin, "GET", base+"/domains/example.com/groups?directory=1", nil, nil)
	if !regexp.MustCompile(`(?s)<ul id="unmatched".*>Marketing</span>.*Create gateway group`).MatchString(body) {
		t.Errorf("the Groups page does not offer to create Marketing:\n%s", body)
	}
	// A membership by hand, and taken away.
	pe.ok("mailbox", "add", "--domain", "example.com", "zoe@example.com")
	member := url.Values{"group": {odd}, "address": {"Zoe@example.com"}, "action": {"assign"}}
	if resp, _ := send(t, noRedirect(admin), "POST", base+"/domains/example.com/groups/members", member, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("Add member: %d", resp.StatusCode)
	}
	if m := pe.groupList()[odd]; !slices.Equal(m, []string{"zoe@example.com"}) {
		t.Errorf("after Add member the group's members are %q", m)
	}
	if _, body := send(t, admin, "GET", base+"/domains/example.com/groups", nil, nil); !strings.Contains(body, "zoe@example.com <span class=\"tag\">hand-made mailbox</span>") ||
		!memberShown(body, "zoe@example.com", "hand-made mailbox", "hand-made") {
		t.Errorf("the Groups page does not show zoe@example.com as a hand-made mailbox's hand-made membership:\n%s", body)
	}
	member.Set("action", "unassign")
	if resp, _ := send(t, noRedirect(admin), "POST", base+"/domains/example.com/groups/members", member, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("Remove member: %d", resp.StatusCode)
	}
	if m := pe.groupList()[odd]; len(m) != 0 {
		t.Errorf("after Remove member the group's members are %q", m)
	}
	// "Remove group NAME" links to its confirmation, which removes
	// nothing by itself.
	_, body = send(t, admin, "GET", base+"/domains/example.com/groups", nil, nil)
	link := regexp.MustCompile(`href="([^"]*\?confirm=[^"]*)">Remove group`).FindStringSubmatch(body)
	if link == nil {
		t.Fatalf("no Remove group link:\n%s", body)
	}
	_, body = send(t, admin, "GET", base+html.UnescapeString(link[1]), nil, nil)
	if !strings.Contains(body, `id="confirm"`) || !strings.Contains(body, "Remove group</button>") {
		t.Errorf("the confirmation of a removal (%s) is missing:\n%s", link[1], body)
	}
	if _, ok := pe.groupList()[odd]; !ok {
		t.Errorf("the confirmation page removed the group")
	}
	if resp, _ := send(t, admin, "POST", base+"/domains/example.com/groups/remove", url.Values{"name": {odd}}, nil); resp.StatusCode != 200 {
		t.Errorf("Remove group: %d", resp.StatusCode)
	}
	if n := len(pe.groupList()); n != 0 {
		t.Errorf("after Remove group: %v", pe.groupList())
	}
	if resp, _ := send(t, admin, "GET", base+"/domains/example.com/runs/999", nil, nil); resp.StatusCode != 404 {
		t.Errorf("a run that does not exist: %d, want 404", resp.StatusCode)
	}

	// A directory mailbox assigned by hand shows as a hand-made
	// membership, beside one a sync made; the next sync, which finds
	// alice in the directory group too, leaves hers hand-made. The switch
	// is on only while the test syncs, so that no scheduled run comes in
	// between.
	syncOnce := func() {
		pe.ok("domain", "set", "example.com", "sync=true")
		pe.ok("sync", "--domain", "example.com", "--wait", "1m")
		pe.ok("domain", "set", "example.com", "sync=false")
	}
	syncOnce()
	pe.ok("group", "add", "--domain", "example.com", "Marketing")
	assign := url.Values{"group": {"Marketing"}, "address": {"alice@example.com"}, "action": {"assign"}}
	if resp, _ := send(t, noRedirect(admin), "POST", base+"/domains/example.com/groups/members", assign, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("Add member alice@example.com: %d", resp.StatusCode)
	}
	syncOnce()
	_, body = send(t, admin, "GET", base+"/domains/example.com/groups", nil, nil)
	if !memberShown(body, "alice@example.com", "directory mailbox", "hand-made") {
		t.Errorf("the Groups page does not show alice@example.com, a directory mailbox assigned by hand, as hand-made:\n%s", body)
	}
	if !memberShown(body, "grace@example.com", "directory mailbox", "from the directory") {
		t.Errorf("the Groups page does not show grace@example.com's membership as from the directory:\n%s", body)
	}
	if strings.Contains(body, "does not say whether") {
		t.Errorf("the Groups page still says the store cannot tell a membership's source:\n%s", body)
	}
}

// memberShown reports whether the Groups page body lists address with its
// mailbox's source and its membership's, as the page words them.
func memberShown(body, address, mailbox, membership string) bool {
	return regexp.MustCompile(regexp.QuoteMeta(address) + ` <span class="tag">` + regexp.QuoteMeta(mailbox) +
		`</span>\s*<span class="membership">membership: ` + regexp.QuoteMeta(membership) + `</span>`).MatchString(body)
}
