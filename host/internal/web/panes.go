package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// The pages of a domain besides "LDAP Connection": Groups, Runs (and one
// run's changes) and Mailboxes.

// Page sizes.
const (
	runsPerPage      = 50
	changesPerPage   = 200
	mailboxesPerPage = 100
)

// nav is the links between the pages of a domain.
type nav struct {
	Domain  string
	Current string // "ldap", "valid", "groups", "runs", "mailboxes"
}

// domainPath is /domains/NAME followed by more.
func domainPath(name string, more ...string) string {
	return "/domains/" + url.PathEscape(name) + strings.Join(more, "")
}

// pane begins a request for a page of the path's domain: false when it
// was answered (signed out, no such domain).
func (s *server) pane(w http.ResponseWriter, r *http.Request) (*request, *host.Settings, bool) {
	q := s.begin(r)
	set, ok := s.domainFor(w, r, q)
	if !ok {
		q.release()
		return nil, nil, false
	}
	return q, set, true
}

// show renders a page of a domain with the scope picker and the nav.
func (s *server) show(w http.ResponseWriter, r *http.Request, q *request, code int, name, current string, p *page) {
	list, err := s.domains(r.Context(), q, current)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Principal, p.Domains = q.p, list
	s.render(w, r, code, name, p)
}

// pageNumber reads ?page= (1 when absent or wrong).
func pageNumber(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// ---- Groups ----

// groupsView is the "Groups" page of a domain.
type groupsView struct {
	Name     string
	MayWrite bool
	Groups   []groupItem
	// Confirm is the group whose removal is asked to be confirmed.
	Confirm *groupItem
	// Checked: the directory was read for its unmatched groups.
	Checked   bool
	Unmatched []string
	// CheckError says why the directory could not be read.
	CheckError string
}

// groupItem is a gateway group with its members.
type groupItem struct {
	Name   string
	Source string
	// Members are sorted by address; each says how the membership was made
	// (Source: "manual" by hand, "ldap" by a sync) and where the mailbox
	// comes from.
	Members []store.Member
}

// groupList reads the domain's gateway groups with their members.
func (s *server) groupList(r *http.Request, domain string) ([]groupItem, error) {
	groups, err := s.o.Store.Groups(r.Context(), domain)
	if err != nil {
		return nil, err
	}
	out := make([]groupItem, 0, len(groups))
	for _, g := range groups {
		members, err := s.o.Store.GroupMembers(r.Context(), domain, g.Name)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed since Groups read it
		}
		if err != nil {
			return nil, err
		}
		out = append(out, groupItem{Name: g.Name, Source: g.Source, Members: members})
	}
	return out, nil
}

// groupsPage is GET /domains/{domain}/groups: the gateway groups, and
// with ?directory=1 the directory's groups that match none.
func (s *server) groupsPage(w http.ResponseWriter, r *http.Request) {
	q, set, ok := s.pane(w, r)
	if !ok {
		return
	}
	defer q.release()
	s.showGroups(w, r, q, set, http.StatusOK, "", "")
}

func (s *server) showGroups(w http.ResponseWriter, r *http.Request, q *request, set *host.Settings, code int, flash, formErr string) {
	groups, err := s.groupList(r, set.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v := &groupsView{Name: set.Name, MayWrite: mayWrite(q.p), Groups: groups}
	query := r.URL.Query()
	if c := query.Get("confirm"); c != "" && r.Method == http.MethodGet {
		for i := range groups {
			if groups[i].Name == c {
				v.Confirm = &groups[i]
			}
		}
	}
	if query.Get("directory") != "" && r.Method == http.MethodGet {
		v.Checked = true
		rep, err := q.h.Preview(r.Context(), set.Name)
		switch {
		case err != nil:
			v.CheckError = oneLine(err.Error())
		case rep.Error != "":
			v.CheckError = oneLine(rep.Error)
		default:
			v.Unmatched = rep.Unmatched
		}
	}
	if flash == "" && r.Method == http.MethodGet {
		if c := query.Get("created"); c != "" && slices.ContainsFunc(groups, func(g groupItem) bool { return g.Name == c }) {
			flash = "Gateway group " + c + " created: the next sync fills it with the directory group's members."
		}
		if c := query.Get("removed"); c != "" && !slices.ContainsFunc(groups, func(g groupItem) bool { return g.Name == c }) {
			flash = "Gateway group " + c + " removed."
		}
		if query.Get("assigned") != "" {
			flash = "Membership added."
		}
		if query.Get("unassigned") != "" {
			flash = "Membership removed."
		}
	}
	s.show(w, r, q, code, "groups", set.Name, &page{Title: "Groups · " + set.Name, Nav: &nav{Domain: set.Name, Current: "groups"},
		Groups: v, Flash: flash, Error: formErr})
}

// sentence makes a one-line error a sentence for the page.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	return strings.ToUpper(msg[:1]) + msg[1:] + "."
}

// refuseRead answers a POST of a principal that may not write.
func (s *server) refuseRead(w http.ResponseWriter, r *http.Request, q *request, set *host.Settings, what string) {
	s.showGroups(w, r, q, set, http.StatusForbidden, "",
		"Your token's role ("+string(q.p.Role)+") may look, not "+what+".")
}

// createGroup is POST /domains/{domain}/groups: "Create gateway group"
// (name). A name typed in the form is trimmed; one posted with exact=1
// (the button next to an unmatched directory group) is kept byte for
// byte, so that it matches the directory's. back=ldap returns to the
// LDAP Connection page, back=valid to "Valid users and groups".
func (s *server) createGroup(w http.ResponseWriter, r *http.Request) {
	q, set, ok := s.pane(w, r)
	if !ok {
		return
	}
	defer q.release()
	if !mayWrite(q.p) {
		s.refuseRead(w, r, q, set, "create groups")
		return
	}
	name := r.PostFormValue("name")
	if r.PostFormValue("exact") == "" {
		name = strings.TrimSpace(name)
	}
	if err := host.CheckGroupName(name); err != nil {
		s.showGroups(w, r, q, set, http.StatusUnprocessableEntity, "", sentence(err.Error()))
		return
	}
	err := s.o.Store.AddGroup(r.Context(), set.Name, name)
	switch {
	case errors.Is(err, store.ErrExists):
		s.showGroups(w, r, q, set, http.StatusConflict, "", "There is a gateway group "+name+" already.")
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	s.log.Info("page: group added", "principal", q.p.Name, "domain", set.Name, "group", name)
	to := domainPath(set.Name, "/groups?created=", url.QueryEscape(name))
	switch r.PostFormValue("back") {
	case "ldap":
		to = domainPath(set.Name, "?group=", url.QueryEscape(name))
	case "valid": // the report again, with the group matched
		to = domainPath(set.Name, "/valid?check=1&group=", url.QueryEscape(name))
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// removeGroup is POST /domains/{domain}/groups/remove (name): "Remove
// group", after the confirmation that GET …/groups?confirm=NAME shows.
func (s *server) removeGroup(w http.ResponseWriter, r *http.Request) {
	q, set, ok := s.pane(w, r)
	if !ok {
		return
	}
	defer q.release()
	if !mayWrite(q.p) {
		s.refuseRead(w, r, q, set, "remove groups")
		return
	}
	name := r.PostFormValue("name")
	err := s.o.Store.RemoveGroup(r.Context(), set.Name, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.showGroups(w, r, q, set, http.StatusNotFound, "", "There is no gateway group "+name+".")
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	s.log.Info("page: group removed", "principal", q.p.Name, "domain", set.Name, "group", name)
	http.Redirect(w, r, domainPath(set.Name, "/groups?removed=", url.QueryEscape(name)), http.StatusSeeOther)
}

// memberPost is POST /domains/{domain}/groups/members (group, address,
// action assign or unassign): a membership made or taken away by hand.
func (s *server) memberPost(w http.ResponseWriter, r *http.Request) {
	q, set, ok := s.pane(w, r)
	if !ok {
		return
	}
	defer q.release()
	if !mayWrite(q.p) {
		s.refuseRead(w, r, q, set, "change memberships")
		return
	}
	group := r.PostFormValue("group")
	addr := strings.ToLower(strings.TrimSpace(r.PostFormValue("address")))
	if addr == "" {
		s.showGroups(w, r, q, set, http.StatusUnprocessableEntity, "", "Give the address of a mailbox to add to "+group+".")
		return
	}
	var err error
	action := r.PostFormValue("action")
	switch action {
	case "assign":
		err = s.o.Store.Assign(r.Context(), set.Name, group, addr)
	case "unassign":
		err = s.o.Store.Unassign(r.Context(), set.Name, group, addr)
	default:
		s.showGroups(w, r, q, set, http.StatusBadRequest, "", "Unknown action: use the buttons of the page.")
		return
	}
	switch {
	case errors.Is(err, store.ErrExists):
		s.showGroups(w, r, q, set, http.StatusConflict, "", addr+" is in "+group+" already.")
		return
	case errors.Is(err, store.ErrNotFound):
		s.showGroups(w, r, q, set, http.StatusNotFound, "", "No such mailbox, group or membership: "+addr+" in "+group+".")
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	s.log.Info("page: membership changed", "principal", q.p.Name, "domain", set.Name, "group", group, "address", addr, "action", action)
	http.Redirect(w, r, domainPath(set.Name, "/groups?", action+"ed=1"), http.StatusSeeOther)
}

// ---- Runs ----

// runsView is the "Runs" page of a domain.
type runsView struct {
	Name string
	Runs []runItem
	// Before is the id the next (older) page starts before; 0: no more.
	Before int64
	// Paged: this is not the first page.
	Paged bool
}

// runItem is a run with its duration.
type runItem struct {
	store.Run
	Took string
}

func took(r *store.Run) string {
	if r.Ended.IsZero() {
		return "—"
	}
	d := r.Ended.Sub(r.Started)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

// runsPage is GET /domains/{domain}/runs?before=ID.
func (s *server) runsPage(w http.ResponseWriter, r *http.Request) {
	q, set, ok := s.pane(w, r)
	if !ok {
		return
	}
	defer q.release()
	before, err := strconv.ParseInt(r.URL.Query().Get("before"), 10, 64)
	if err != nil || before < 0 {
		before = 0
	}
	runs, err := s.o.Store.RunsPage(r.Context(), set.Name, runsPerPage, before)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	v := &runsView{Name: set.Name, Paged: before > 0}
	for i := range runs {
		v.Runs = append(v.Runs, runItem{Run: runs[i], Took: took(&runs[i])})
	}
	if len(runs) == runsPerPage {
		v.Before = runs[len(runs)-1].ID
	}
	s.show(w, r, q, http.StatusOK, "runs", set.Name, &page{Title: "Runs · " + set.Name, Nav: &nav{Domain: set.Name, Current: "runs"}, Runs: v})
}

// runView is the page of one run.
type runView struct {
	Name string
	Run  runItem
	// Changes are this page's; From is the number of the first (1-based),
	// Total how many the run has.
	Changes     []store.RunChange
	From, Total int
	Prev, Next  int // page numbers, 0: none
}

// readRunPage reads run id of domain and the changes of its page n (1-based;
// the first page when n is past the last): that page's only.
func (s *server) readRunPage(r *http.Request, domain string, id int64, n int) (*runView, error) {
	run, err := s.o.Store.Run(r.Context(), domain, id)
	if err != nil {
		return nil, err
	}
	total := run.ChangeCount
	v := &runView{Name: domain, Run: runItem{Run: *run, Took: took(run)}, Total: total}
	start := (n - 1) * changesPerPage
	if start >= total {
		start, n = 0, 1
	}
	if total > 0 {
		if v.Changes, err = s.o.Store.RunChanges(r.Context(), domain, id, start, changesPerPage); err != nil {
			return nil, err
		}
	}
	v.From = start + 1
	if n > 1 {
		v.Prev = n - 1
	}
	if start+changesPerPage < total {
		v.Next = n + 1
	}
	return v, nil
}

// runPage is GET /domains/{domain}/runs/{id}?page=N.
func (s *server) runPage(w http.ResponseWriter, r *http.Request) {
	q, set, ok := s.pane(w, r)
	if !ok {
		return
	}
	defer q.release()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	var v *runView
	if err == nil {
		v, err = s.readRunPage(r, set.Name, id, pageNumber(r))
	}
	if err != nil {
		// A run pruned between its reads is no run either.
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, strconv.ErrSyntax) || errors.Is(err, strconv.ErrRange) {
			s.show(w, r, q, http.StatusNotFound, "message", set.Name, &page{Title: "No such run", Nav: &nav{Domain: set.Name, Current: "runs"},
				Message: "There is no run " + r.PathValue("id") + " of " + set.Name + "."})
			return
		}
		s.fail(w, r, err)
		return
	}
	run := &v.Run.Run
	s.show(w, r, q, http.StatusOK, "run", set.Name, &page{Title: fmt.Sprintf("Run %d · %s", run.ID, set.Name),
		Nav: &nav{Domain: set.Name, Current: "runs"}, Run: v})
}

// ---- Mailboxes ----

// mailboxesView is the "Mailboxes" page of a domain.
type mailboxesView struct {
	Name      string
	Query     string
	Mailboxes []store.Mailbox
	// Total is how many match; From the number of the first shown.
	Total, From int
	Prev, Next  int
	// Sources counts the matches by source.
	LDAP, Manual int
}

// mailboxesPage is GET /domains/{domain}/mailboxes?q=TEXT&page=N: the
// mailboxes whose primary address or an alias holds TEXT (any case).
func (s *server) mailboxesPage(w http.ResponseWriter, r *http.Request) {
	q, set, ok := s.pane(w, r)
	if !ok {
		return
	}
	defer q.release()
	all, err := s.o.Store.Mailboxes(r.Context(), set.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	text := strings.TrimSpace(r.URL.Query().Get("q"))
	needle := strings.ToLower(text)
	v := &mailboxesView{Name: set.Name, Query: text}
	var match []store.Mailbox
	for _, m := range all {
		if needle == "" || strings.Contains(strings.ToLower(m.Primary), needle) ||
			slices.ContainsFunc(m.Aliases, func(a string) bool { return strings.Contains(strings.ToLower(a), needle) }) {
			match = append(match, m)
			if m.Source == sdk.SourceLDAP {
				v.LDAP++
			} else {
				v.Manual++
			}
		}
	}
	n := pageNumber(r)
	start := (n - 1) * mailboxesPerPage
	if start >= len(match) {
		start, n = 0, 1
	}
	end := min(start+mailboxesPerPage, len(match))
	v.Mailboxes, v.Total, v.From = match[start:end], len(match), start+1
	if n > 1 {
		v.Prev = n - 1
	}
	if end < len(match) {
		v.Next = n + 1
	}
	s.show(w, r, q, http.StatusOK, "mailboxes", set.Name, &page{Title: "Mailboxes · " + set.Name,
		Nav: &nav{Domain: set.Name, Current: "mailboxes"}, Mailboxes: v})
}
