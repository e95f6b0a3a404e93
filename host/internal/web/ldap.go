package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// ldapView is the "LDAP Connection" page of a domain.
type ldapView struct {
	Name      string
	Policy    string
	ManagedBy string
	// FromConfig: the domain is declared in dirsync.toml (read-only).
	FromConfig bool
	// MayWrite: the principal may change the settings and start runs.
	MayWrite bool
	// ReadOnly: the fields are shown, not edited.
	ReadOnly    bool
	Version     int64
	Author      string
	Saved       time.Time
	PasswordSet bool
	// Sync is the switch as the form has it; SavedSync as saved.
	Sync, SavedSync bool
	Fields          []field
	// FormError is an error that belongs to no one field.
	FormError string
	LastRun   *store.Run
	NextRun   time.Time
	HasNext   bool
	Conn      *host.ConnectionResult
	Preview   *previewView
}

// field is one input of the connection fields.
type field struct {
	Key, ID, Label, Type, Value, Hint, Error string
	Checked                                  bool
	Autocomplete                             string
	// Check is the URL the filter is checked at as it is typed.
	Check string
	// Mark shows where in the value the error is.
	Mark *mark
}

// mark splits a filter at the position of its error.
type mark struct{ Before, At, After string }

// markAt marks the byte position pos of s (the character there, or a
// space at the end).
func markAt(s string, pos int) *mark {
	if pos < 0 || pos > len(s) {
		return nil
	}
	if pos == len(s) {
		return &mark{Before: s, At: " "}
	}
	_, n := utf8.DecodeRuneInString(s[pos:])
	return &mark{Before: s[:pos], At: s[pos : pos+n], After: s[pos+n:]}
}

// form is the connection form's values as text.
type form struct {
	sync                         bool
	urls, bindDN, baseDN         string
	filter, caFile, interval     string
	aliasDomains, password       string
	startTLS, insecureSkipVerify bool
}

func formOf(d *config.Domain) form {
	return form{sync: d.Sync, urls: strings.Join(d.LDAP.URLs, "\n"), bindDN: d.LDAP.BindDN, baseDN: d.LDAP.BaseDN,
		filter: d.LDAP.Filter, caFile: d.LDAP.CAFile, interval: shortDuration(d.Interval.Duration),
		aliasDomains: strings.Join(d.AliasDomains, " "), startTLS: d.LDAP.StartTLS, insecureSkipVerify: d.LDAP.InsecureSkipVerify}
}

// readForm reads the posted form over the current settings cur. The
// connection fields are taken only when the form carried them (its
// marker "fields"): a browser does not send the fields of a disabled
// fieldset, and then they keep their values.
func readForm(r *http.Request, cur *config.Domain) form {
	f := formOf(cur)
	f.sync = r.PostFormValue("sync") == "on"
	if r.PostFormValue("fields") == "" {
		return f
	}
	f.urls, f.bindDN, f.baseDN = r.PostFormValue("urls"), r.PostFormValue("bind_dn"), r.PostFormValue("base_dn")
	// Trimmed here, so that a filter error's position counts in the
	// filter as shown again.
	f.filter = strings.TrimSpace(r.PostFormValue("filter"))
	f.caFile, f.interval = r.PostFormValue("ca_file"), r.PostFormValue("interval")
	f.aliasDomains, f.password = r.PostFormValue("alias_domains"), r.PostFormValue("password")
	f.startTLS = r.PostFormValue("start_tls") == "on"
	f.insecureSkipVerify = r.PostFormValue("insecure_skip_verify") == "on"
	return f
}

// domain makes settings of the form over cur; a value that does not parse
// is an error naming its key.
func (f form) domain(cur *config.Domain) (config.Domain, error) {
	d := *cur
	d.LDAP.URLs = fieldsOf(f.urls)
	d.AliasDomains = fieldsOf(f.aliasDomains)
	d.Sync = f.sync
	d.LDAP.BindDN = strings.TrimSpace(f.bindDN)
	d.LDAP.BaseDN = strings.TrimSpace(f.baseDN)
	d.LDAP.Filter = strings.TrimSpace(f.filter)
	d.LDAP.CAFile = strings.TrimSpace(f.caFile)
	d.LDAP.StartTLS = f.startTLS
	d.LDAP.InsecureSkipVerify = f.insecureSkipVerify
	if err := d.Interval.UnmarshalText([]byte(strings.TrimSpace(f.interval))); err != nil {
		return d, &config.Error{Key: "domain.interval", Msg: err.Error()}
	}
	return d, nil
}

// shortDuration writes 1h for 1h0m0s and 30m for 30m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// fieldsOf splits a list written one to a line, or with spaces or commas.
func fieldsOf(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// fields returns the inputs of the form with their errors.
func (f form) fields(name string, passwordSet bool, errs map[string]string) []field {
	pwHint := "No bind password is saved."
	if passwordSet {
		pwHint = "A bind password is saved; it is never shown. Leave this empty to keep it."
	}
	out := []field{
		{Key: "ldap.urls", ID: "urls", Label: "LDAP server URLs", Type: "textarea", Value: f.urls,
			Hint: "ldap:// or ldaps://, one to a line, tried in order."},
		{Key: "ldap.bind_dn", ID: "bind_dn", Label: "Bind DN", Type: "text", Value: f.bindDN, Autocomplete: "off"},
		{Key: "ldap.password", ID: "password", Label: "Bind password", Type: "password", Hint: pwHint, Autocomplete: "new-password"},
		{Key: "ldap.base_dn", ID: "base_dn", Label: "Base DN", Type: "text", Value: f.baseDN, Autocomplete: "off"},
		{Key: "ldap.filter", ID: "filter", Label: "LDAP filter", Type: "text", Value: f.filter, Autocomplete: "off",
			Hint: "Empty: the policy's default filter.", Check: "/ui/domains/" + url.PathEscape(name) + "/filter-check"},
		{Key: "ldap.start_tls", ID: "start_tls", Label: "StartTLS", Type: "checkbox", Checked: f.startTLS},
		{Key: "ldap.ca_file", ID: "ca_file", Label: "CA file", Type: "text", Value: f.caFile, Autocomplete: "off",
			Hint: "A PEM file on the server that checks the directory's certificate; empty: the system's."},
		{Key: "ldap.insecure_skip_verify", ID: "insecure_skip_verify", Label: "Skip certificate verification", Type: "checkbox", Checked: f.insecureSkipVerify},
		{Key: "alias_domains", ID: "alias_domains", Label: "Alias domains", Type: "text", Value: f.aliasDomains, Autocomplete: "off"},
		{Key: "interval", ID: "interval", Label: "Sync interval", Type: "text", Value: f.interval, Autocomplete: "off",
			Hint: "How often the sync runs, e.g. 1h or 30m."},
	}
	for i := range out {
		out[i].Error = errs[out[i].Key]
	}
	if pos, err := strconv.Atoi(errs["ldap.filter@"]); err == nil {
		for i := range out {
			if out[i].Key == "ldap.filter" {
				out[i].Mark = markAt(f.filter, pos)
			}
		}
	}
	return out
}

// filterError returns the *sdk.FilterError in err, or nil.
func filterError(err error) *sdk.FilterError {
	var fe *sdk.FilterError
	if errors.As(err, &fe) {
		return fe
	}
	return nil
}

func filterMessage(fe *sdk.FilterError) string {
	return fmt.Sprintf("Invalid filter at position %d: %s", fe.Position, fe.Reason)
}

// knownKeys are the keys the form shows a field for.
var knownKeys = map[string]bool{"ldap.urls": true, "ldap.bind_dn": true, "ldap.password": true, "ldap.base_dn": true,
	"ldap.filter": true, "ldap.start_tls": true, "ldap.ca_file": true, "ldap.insecure_skip_verify": true,
	"alias_domains": true, "interval": true}

// settingsErrors places an error of checking settings next to its field
// (errs by key), or returns it as the form's error.
func settingsErrors(err error, errs map[string]string) string {
	var ce *config.Error
	switch fe := filterError(err); {
	case fe != nil:
		errs["ldap.filter"] = filterMessage(fe)
		errs["ldap.filter@"] = strconv.Itoa(fe.Position)
	case errors.As(err, &ce) && knownKeys[strings.TrimPrefix(ce.Key, "domain.")]:
		errs[strings.TrimPrefix(ce.Key, "domain.")] = ce.Msg
	case errors.As(err, &ce) && ce.Key != "":
		return strings.TrimPrefix(ce.Key, "domain.") + ": " + ce.Msg
	case errors.As(err, &ce):
		return ce.Msg
	case errors.Is(err, host.ErrNoSecretsKey):
		errs["ldap.password"] = err.Error()
	case errors.Is(err, host.ErrManagedByConfig):
		return "These settings are set in dirsync.toml: change them there."
	default:
		return err.Error()
	}
	return ""
}

// domainFor finds the path's domain for a signed-in principal: false
// when the request was answered (signed out, no such domain).
func (s *server) domainFor(w http.ResponseWriter, r *http.Request, q *request) (*host.Settings, bool) {
	if q.p == nil {
		if r.Method == http.MethodGet {
			http.Redirect(w, r, "/", http.StatusSeeOther)
		} else {
			s.render(w, r, http.StatusUnauthorized, "signin", &page{Title: "Sign in", Error: "Signed out: sign in again."})
		}
		return nil, false
	}
	name := strings.ToLower(r.PathValue("domain"))
	notFound := func() {
		list, _ := s.domains(r.Context(), q, "")
		s.render(w, r, http.StatusNotFound, "message", &page{Title: "No such domain", Principal: q.p, Domains: list,
			Message: "There is no domain " + name + " among your domains."})
	}
	if !q.p.AllowsDomain(name) {
		notFound()
		return nil, false
	}
	set, err := q.h.Settings(r.Context(), name)
	if errors.Is(err, host.ErrUnknownDomain) {
		notFound()
		return nil, false
	}
	if err != nil {
		s.fail(w, r, err)
		return nil, false
	}
	return set, true
}

// view makes the page of a domain with the form f.
func (s *server) view(r *http.Request, q *request, set *host.Settings, f form, errs map[string]string) (*ldapView, error) {
	v := &ldapView{Name: set.Name, Policy: set.Policy, ManagedBy: set.ManagedBy, FromConfig: set.ManagedBy == host.ManagedByConfig,
		MayWrite: mayWrite(q.p), Version: set.Version, Author: set.Author, Saved: set.Saved, PasswordSet: set.PasswordSet, Sync: f.sync, SavedSync: set.Sync}
	v.ReadOnly = v.FromConfig || !v.MayWrite
	v.Fields = f.fields(set.Name, set.PasswordSet, errs)
	runs, err := s.o.Store.RunsPage(r.Context(), set.Name, 1, 0)
	if err != nil {
		return nil, err
	}
	if len(runs) > 0 {
		v.LastRun = &runs[0]
	}
	if s.o.NextRun != nil {
		v.NextRun, v.HasNext = s.o.NextRun(set.Name)
	}
	return v, nil
}

// showDomain renders the page of a domain.
func (s *server) showDomain(w http.ResponseWriter, r *http.Request, q *request, code int, v *ldapView, flash string) {
	list, err := s.domains(r.Context(), q, v.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, code, "ldap", &page{Title: "LDAP Connection · " + v.Name, Principal: q.p, Domains: list, LDAP: v, Flash: flash,
		Nav: &nav{Domain: v.Name, Current: "ldap"}})
}

// domainPage is GET /domains/{domain}.
func (s *server) domainPage(w http.ResponseWriter, r *http.Request) {
	q := s.begin(r)
	defer q.release()
	set, ok := s.domainFor(w, r, q)
	if !ok {
		return
	}
	v, err := s.view(r, q, set, formOf(&set.Domain), map[string]string{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var flash string
	if n, err := strconv.ParseInt(r.URL.Query().Get("saved"), 10, 64); err == nil && n > 0 {
		flash = fmt.Sprintf("Saved as settings version %d: the next run uses it.", n)
	}
	if n, err := strconv.ParseInt(r.URL.Query().Get("run"), 10, 64); err == nil && n > 0 {
		flash = fmt.Sprintf("Run %d started.", n)
	}
	if g := r.URL.Query().Get("group"); g != "" {
		groups, err := s.o.Store.Groups(r.Context(), set.Name)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, have := range groups {
			if have.Name == g {
				flash = "Gateway group " + g + " created: check the valid users and groups again to see it matched."
			}
		}
	}
	s.showDomain(w, r, q, http.StatusOK, v, flash)
}

// domainPost is the connection form's buttons: "Test connection" (test),
// "Check valid users and groups" (preview), "Apply changes" (apply).
func (s *server) domainPost(w http.ResponseWriter, r *http.Request) {
	q := s.begin(r)
	defer q.release()
	set, ok := s.domainFor(w, r, q)
	if !ok {
		return
	}
	p := readPost(r, q, set)
	var (
		conn    *host.ConnectionResult
		rep     *host.Report
		general string
		code    = http.StatusOK
	)
	switch action := r.PostFormValue("action"); action {
	case "test", "preview":
		conn, rep, general, code = p.testOrPreview(r.Context(), q, action)
	case "apply":
		var done bool
		if general, code, done = s.applySettings(w, r, q, p); done {
			return
		}
	default:
		general = "Unknown action: use the buttons of the form."
		code = http.StatusBadRequest
	}
	v, err := s.view(r, q, set, p.f, p.errs)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v.FormError, v.Conn, v.Preview = general, conn, newPreview(set.Name, v.MayWrite, "ldap", p.editable, rep)
	if code == http.StatusOK && rep != nil && rep.Error != "" {
		v.FormError = rep.Error
	}
	s.showDomain(w, r, q, code, v, "")
}

// settingsPost is a post of the connection form: the settings it gives,
// and whether they are the principal's to change.
type settingsPost struct {
	set      *host.Settings
	f        form              // what the form shows again (never the password)
	d        config.Domain     // the settings to test, preview or save
	formErr  error             // why the form gives no valid settings
	password *string           // a new bind password, or nil
	editable bool              // the principal may change the domain's settings
	errs     map[string]string // field errors
}

// readPost reads the connection form. A principal that may not write, and
// a domain of dirsync.toml, test and preview the saved settings: the form
// is not theirs to change.
func readPost(r *http.Request, q *request, set *host.Settings) *settingsPost {
	p := &settingsPost{set: set, errs: map[string]string{}}
	p.editable = mayWrite(q.p) && set.ManagedBy == host.ManagedByStore
	p.f = formOf(&set.Domain)
	if p.editable {
		p.f = readForm(r, &set.Domain)
	}
	p.d, p.formErr = p.f.domain(&set.Domain)
	if p.editable && p.f.password != "" {
		pw := p.f.password // a copy: the form's field is cleared below
		p.password = &pw
	}
	p.f.password = "" // never shown again
	return p
}

// testOrPreview tests the connection (action "test") or previews a run
// (action "preview") with the posted settings, or the saved ones when
// they are not the principal's to change. It returns the outcome, the
// form's error and the status code.
func (p *settingsPost) testOrPreview(ctx context.Context, q *request, action string) (*host.ConnectionResult, *host.Report, string, int) {
	if p.formErr != nil {
		return nil, nil, settingsErrors(p.formErr, p.errs), http.StatusUnprocessableEntity
	}
	var (
		conn *host.ConnectionResult
		rep  *host.Report
		err  error
	)
	switch {
	case action == "test":
		conn, err = q.h.TestConnection(ctx, p.d, p.password)
	case p.editable:
		rep, err = q.h.PreviewSettings(ctx, p.d, p.password)
	default:
		rep, err = q.h.Preview(ctx, p.set.Name)
	}
	if err != nil {
		general := settingsErrors(err, p.errs)
		if action == "test" {
			general = "Test connection failed: " + oneLine(general)
		}
		return conn, rep, general, http.StatusUnprocessableEntity
	}
	return conn, rep, "", http.StatusOK
}

// applySettings saves the posted settings as a new version and redirects
// to the domain's page, which is then done; or it returns the form's
// error and the status code. A principal that may not change the
// settings gets the form back, refused, and done.
func (s *server) applySettings(w http.ResponseWriter, r *http.Request, q *request, p *settingsPost) (general string, code int, done bool) {
	set := p.set
	if !p.editable {
		msg := "Your token's role (" + string(q.p.Role) + ") may look, test and preview, not change settings."
		if set.ManagedBy == host.ManagedByConfig {
			msg = "These settings are set in dirsync.toml: change them there."
		}
		v, err := s.view(r, q, set, p.f, p.errs)
		if err != nil {
			s.fail(w, r, err)
			return "", 0, true
		}
		v.FormError = msg
		s.showDomain(w, r, q, http.StatusForbidden, v, "")
		return "", 0, true
	}
	version, _ := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
	if p.formErr != nil {
		return settingsErrors(p.formErr, p.errs), http.StatusUnprocessableEntity, false
	}
	n, err := q.h.SaveSettings(r.Context(), p.d, p.password, q.p.Name, version)
	switch {
	case errors.Is(err, host.ErrSettingsConflict):
		return fmt.Sprintf("The settings changed since this page read them (version %d): open the page again and apply your changes to them.", version),
			http.StatusConflict, false
	case err != nil:
		return settingsErrors(err, p.errs), http.StatusUnprocessableEntity, false
	}
	attrs := []any{"principal", q.p.Name, "domain", set.Name, "version", n}
	if p.password != nil {
		attrs = append(attrs, "password", "changed")
	}
	s.log.Info("page: settings changed", attrs...)
	http.Redirect(w, r, "/domains/"+url.PathEscape(set.Name)+"?saved="+strconv.FormatInt(n, 10), http.StatusSeeOther)
	return "", 0, true
}

// syncNow is "Sync now": a run of the domain, started in the background.
func (s *server) syncNow(w http.ResponseWriter, r *http.Request) {
	q := s.begin(r)
	defer q.release()
	set, ok := s.domainFor(w, r, q)
	if !ok {
		return
	}
	var msg string
	code := http.StatusAccepted
	switch {
	case !mayWrite(q.p):
		msg, code = "Your token's role ("+string(q.p.Role)+") may not start runs.", http.StatusForbidden
	case s.o.RunNow == nil:
		msg, code = "This server starts no runs.", http.StatusServiceUnavailable
	default:
		id, err := s.o.RunNow(r.Context(), set.Name, host.RunOptions{})
		switch {
		case errors.Is(err, host.ErrDomainBusy):
			msg, code = "A run of this domain is going on: "+oneLine(err.Error()), http.StatusConflict
		case err != nil:
			msg, code = "The run did not start: "+oneLine(err.Error()), http.StatusInternalServerError
		default:
			s.log.Info("page: run started", "principal", q.p.Name, "domain", set.Name, "run", id)
			http.Redirect(w, r, "/domains/"+url.PathEscape(set.Name)+"?run="+strconv.FormatInt(id, 10), http.StatusSeeOther)
			return
		}
	}
	v, err := s.view(r, q, set, formOf(&set.Domain), map[string]string{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v.FormError = msg
	s.showDomain(w, r, q, code, v, "")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
