package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/api/internal/gen"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

var _ gen.StrictServerInterface = (*server)(nil)

// rawJSON is a JSON body written as it is.
type rawJSON []byte

func (b rawJSON) VisitGetOpenAPIResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(b)
	return err
}

func (s *server) GetOpenAPI(ctx context.Context, _ gen.GetOpenAPIRequestObject) (gen.GetOpenAPIResponseObject, error) {
	b, err := documentJSON()
	if err != nil {
		return nil, err
	}
	return rawJSON(b), nil
}

func (s *server) ListDomains(ctx context.Context, _ gen.ListDomainsRequestObject) (gen.ListDomainsResponseObject, error) {
	p := principal(ctx)
	infos, err := s.o.Host.Domains(ctx)
	if err != nil {
		return nil, err
	}
	last, err := s.o.Store.LastRuns(ctx)
	if err != nil {
		return nil, err
	}
	out := make(gen.ListDomains200JSONResponse, 0, len(infos))
	for _, d := range infos {
		if !p.AllowsDomain(d.Name) {
			continue
		}
		sum := gen.DomainSummary{Name: d.Name, Sync: d.Sync, ManagedBy: gen.DomainSummaryManagedBy(d.ManagedBy)}
		if r, ok := last[d.Name]; ok {
			sum.LastRun = &gen.RunBrief{Id: r.ID, Started: r.Started, Outcome: gen.Outcome(r.Outcome)}
		}
		if s.o.NextRun != nil {
			if t, ok := s.o.NextRun(d.Name); ok {
				sum.NextRunAt = &t
			}
		}
		out = append(out, sum)
	}
	return out, nil
}

func (s *server) CheckFilter(ctx context.Context, req gen.CheckFilterRequestObject) (gen.CheckFilterResponseObject, error) {
	d := domainOf(ctx)
	norm, err := s.o.Host.CheckFilter(ctx, d.Policy, req.Body.Filter)
	if err != nil {
		return nil, err
	}
	return gen.CheckFilter200JSONResponse{Normalized: norm}, nil
}

func (s *server) StartRun(ctx context.Context, req gen.StartRunRequestObject) (gen.StartRunResponseObject, error) {
	d := domainOf(ctx)
	var o host.RunOptions
	if b := req.Body; b != nil {
		o.DryRun = b.DryRun != nil && *b.DryRun
		o.ConfirmDeletes = b.ConfirmDeletes != nil && *b.ConfirmDeletes
		o.Full = b.Full != nil && *b.Full
	}
	if o.DryRun {
		// A dry run records nothing and so has no id to answer with: it
		// runs while the request waits. A stop by the guard is its result.
		rep, err := s.o.Host.Run(ctx, d.Name, o)
		var re *host.RunError
		if err != nil && !(rep != nil && errors.As(err, &re) && re.Stage == "guard") {
			return nil, err
		}
		return gen.StartRun200JSONResponse(*rep), nil
	}
	if s.o.RunNow == nil {
		return nil, &problem{Status: http.StatusServiceUnavailable, Detail: "this server starts no runs"}
	}
	id, err := s.o.RunNow(ctx, d.Name, o)
	if err != nil {
		return nil, err
	}
	s.audit(ctx, "run started", d.Name, "run", id, "confirm_deletes", o.ConfirmDeletes)
	return gen.StartRun202JSONResponse{Id: id}, nil
}

// runSummary converts a run record.
func runSummary(r *store.Run) gen.RunSummary {
	out := gen.RunSummary{Id: r.ID, Domain: r.Domain, Started: r.Started, Outcome: gen.Outcome(r.Outcome),
		Counts: r.Counts, Intended: r.Intended, ChangeCount: r.ChangeCount}
	if !r.Ended.IsZero() {
		t := r.Ended
		out.Ended = &t
	}
	if r.Read != "" {
		read := gen.Read(r.Read)
		out.Read = &read
	}
	out.Stage = optional(r.Stage)
	out.Error = optional(r.Error)
	out.Server = optional(r.Server)
	out.Holder = optional(r.Holder)
	if len(r.References) > 0 {
		out.References = &r.References
	}
	if r.SettingsVersion != 0 {
		v := r.SettingsVersion
		out.SettingsVersion = &v
	}
	return out
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (s *server) ListRuns(ctx context.Context, req gen.ListRunsRequestObject) (gen.ListRunsResponseObject, error) {
	limit := 50
	if l := req.Params.Limit; l != nil {
		if *l < 1 || *l > 1000 {
			return nil, badRequest("limit must be between 1 and 1000")
		}
		limit = *l
	}
	var before int64
	if b := req.Params.Before; b != nil {
		if *b < 1 {
			return nil, badRequest("before must be a run id (1 or more)")
		}
		before = *b
	}
	runs, err := s.o.Store.RunsPage(ctx, domainOf(ctx).Name, limit, before)
	if err != nil {
		return nil, err
	}
	page := gen.ListRuns200JSONResponse{Items: make([]gen.RunSummary, 0, len(runs))}
	for i := range runs {
		page.Items = append(page.Items, runSummary(&runs[i]))
	}
	if len(runs) == limit {
		next := runs[len(runs)-1].ID
		page.NextBefore = &next
	}
	return page, nil
}

func (s *server) GetRun(ctx context.Context, req gen.GetRunRequestObject) (gen.GetRunResponseObject, error) {
	offset, limit := 0, 1000
	if o := req.Params.Offset; o != nil {
		if *o < 0 {
			return nil, badRequest("offset must be 0 or more")
		}
		offset = *o
	}
	if l := req.Params.Limit; l != nil {
		if *l < 0 || *l > 10000 {
			return nil, badRequest("limit must be between 0 and 10000")
		}
		limit = *l
	}
	name := domainOf(ctx).Name
	r, err := s.o.Store.Run(ctx, name, req.Id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("no run %d of %s", req.Id, name)
	}
	if err != nil {
		return nil, err
	}
	sum := runSummary(r)
	out := gen.RunDetail{Id: sum.Id, Domain: sum.Domain, Started: sum.Started, Ended: sum.Ended, Outcome: sum.Outcome,
		Read: sum.Read, Stage: sum.Stage, Error: sum.Error, Server: sum.Server, Holder: sum.Holder, Counts: sum.Counts,
		Intended: sum.Intended, References: sum.References, SettingsVersion: sum.SettingsVersion,
		ChangeCount: sum.ChangeCount, ChangesTotal: r.ChangeCount}
	if r.Settings != "" {
		var m map[string]any
		if json.Unmarshal([]byte(r.Settings), &m) == nil {
			out.Settings = &m
		}
	}
	// Only the page asked for is read. limit=0 asks for none (the store's
	// 0 would mean its default page).
	if limit > 0 && offset < r.ChangeCount {
		out.Changes, err = s.o.Store.RunChanges(ctx, name, req.Id, offset, limit)
		if errors.Is(err, store.ErrNotFound) { // pruned since it was read
			return nil, notFound("no run %d of %s", req.Id, name)
		}
		if err != nil {
			return nil, err
		}
	}
	if out.Changes == nil {
		out.Changes = []store.RunChange{}
	}
	return gen.GetRun200JSONResponse(out), nil
}

func (s *server) ListGroups(ctx context.Context, _ gen.ListGroupsRequestObject) (gen.ListGroupsResponseObject, error) {
	name := domainOf(ctx).Name
	groups, err := s.o.Store.Groups(ctx, name)
	if err != nil {
		return nil, err
	}
	mbs, err := s.o.Store.Mailboxes(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make(gen.ListGroups200JSONResponse, 0, len(groups))
	idx := map[string]int{}
	for _, g := range groups {
		idx[g.Name] = len(out)
		out = append(out, gen.Group{Name: g.Name, Source: gen.GroupSource(g.Source), Members: []string{}})
	}
	for _, m := range mbs { // sorted by primary address
		for _, g := range m.Groups {
			if i, ok := idx[g]; ok {
				out[i].Members = append(out[i].Members, m.Primary)
			}
		}
	}
	return out, nil
}

func (s *server) CreateGroup(ctx context.Context, req gen.CreateGroupRequestObject) (gen.CreateGroupResponseObject, error) {
	d := domainOf(ctx)
	g := req.Body.Name
	if err := host.CheckGroupName(g); err != nil {
		return nil, unprocessable("%v", err)
	}
	if err := s.o.Store.AddGroup(ctx, d.Name, g); err != nil {
		return nil, err
	}
	s.audit(ctx, "group added", d.Name, "group", g)
	return gen.CreateGroup201JSONResponse{Name: g, Source: sdk.SourceManual, Members: []string{}}, nil
}

func (s *server) DeleteGroup(ctx context.Context, req gen.DeleteGroupRequestObject) (gen.DeleteGroupResponseObject, error) {
	d := domainOf(ctx)
	if err := s.o.Store.RemoveGroup(ctx, d.Name, req.Name); err != nil {
		return nil, err
	}
	s.audit(ctx, "group removed", d.Name, "group", req.Name)
	return gen.DeleteGroup204Response{}, nil
}

func (s *server) AddGroupMember(ctx context.Context, req gen.AddGroupMemberRequestObject) (gen.AddGroupMemberResponseObject, error) {
	d := domainOf(ctx)
	addr := strings.ToLower(req.Address)
	err := s.o.Store.Assign(ctx, d.Name, req.Name, addr)
	switch {
	case errors.Is(err, store.ErrExists):
		return gen.AddGroupMember204Response{}, nil // PUT: done already
	case err != nil:
		return nil, err
	}
	s.audit(ctx, "mailbox assigned to group", d.Name, "group", req.Name, "address", addr)
	return gen.AddGroupMember204Response{}, nil
}

func (s *server) RemoveGroupMember(ctx context.Context, req gen.RemoveGroupMemberRequestObject) (gen.RemoveGroupMemberResponseObject, error) {
	d := domainOf(ctx)
	addr := strings.ToLower(req.Address)
	if err := s.o.Store.Unassign(ctx, d.Name, req.Name, addr); err != nil {
		return nil, err
	}
	s.audit(ctx, "mailbox removed from group", d.Name, "group", req.Name, "address", addr)
	return gen.RemoveGroupMember204Response{}, nil
}

// mailboxJSON converts a mailbox as `dirsync mailbox list --json` does.
func mailboxJSON(m *store.Mailbox) gen.Mailbox {
	out := gen.Mailbox{Id: m.ID, Address: m.Primary, Kind: gen.MailboxKind(m.Kind), Source: gen.MailboxSource(m.Source),
		Aliases: sorted(m.Aliases), Groups: sorted(m.Groups)}
	out.DisplayName = optional(m.DisplayName)
	out.Dn = optional(m.DN)
	return out
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	slices.Sort(out)
	return out
}

func (s *server) ListMailboxes(ctx context.Context, req gen.ListMailboxesRequestObject) (gen.ListMailboxesResponseObject, error) {
	offset, limit := 0, 100
	if o := req.Params.Offset; o != nil {
		if *o < 0 {
			return nil, badRequest("offset must be 0 or more")
		}
		offset = *o
	}
	if l := req.Params.Limit; l != nil {
		if *l < 1 || *l > 10000 {
			return nil, badRequest("limit must be between 1 and 10000")
		}
		limit = *l
	}
	q := ""
	if req.Params.Q != nil {
		q = strings.ToLower(*req.Params.Q)
	}
	mbs, err := s.o.Store.Mailboxes(ctx, domainOf(ctx).Name)
	if err != nil {
		return nil, err
	}
	page := gen.ListMailboxes200JSONResponse{Items: []gen.Mailbox{}}
	for i := range mbs {
		m := &mbs[i]
		if q != "" && !strings.Contains(m.Primary, q) && !slices.ContainsFunc(m.Aliases, func(a string) bool { return strings.Contains(a, q) }) {
			continue
		}
		if page.Total >= offset && len(page.Items) < limit {
			page.Items = append(page.Items, mailboxJSON(m))
		}
		page.Total++
	}
	return page, nil
}

// checkAddress checks an address a request gives for a mailbox of d.
func checkAddress(d *config.Domain, addr string) error {
	if err := sdk.CheckAddress(addr); err != nil {
		return unprocessable("%q: %v", addr, err)
	}
	if !d.Owns(addr) {
		return unprocessable("%s is not an address of %s or its alias domains", addr, d.Name)
	}
	return nil
}

func (s *server) CreateMailbox(ctx context.Context, req gen.CreateMailboxRequestObject) (gen.CreateMailboxResponseObject, error) {
	d := domainOf(ctx)
	b := req.Body
	m := store.Mailbox{Primary: strings.ToLower(b.Address), Kind: sdk.KindUser, Source: sdk.SourceManual}
	if err := checkAddress(d, m.Primary); err != nil {
		return nil, err
	}
	if b.Kind != nil {
		if !b.Kind.Valid() {
			return nil, unprocessable("kind must be %q or %q", sdk.KindUser, sdk.KindPublicFolder)
		}
		m.Kind = string(*b.Kind)
	}
	if b.DisplayName != nil {
		m.DisplayName = *b.DisplayName
	}
	if b.Aliases != nil {
		for _, a := range *b.Aliases {
			a = strings.ToLower(a)
			if err := checkAddress(d, a); err != nil {
				return nil, err
			}
			m.Aliases = append(m.Aliases, a)
		}
	}
	if b.Groups != nil {
		m.Groups = *b.Groups
	}
	id, err := s.o.Store.AddMailbox(ctx, d.Name, m)
	if errors.Is(err, store.ErrNotFound) { // a group of the body
		return nil, unprocessable("%v", err)
	}
	if err != nil {
		return nil, err
	}
	s.audit(ctx, "mailbox added", d.Name, "address", m.Primary, "id", id, "aliases", m.Aliases, "groups", m.Groups)
	mbs, err := s.o.Store.Mailboxes(ctx, d.Name)
	if err != nil {
		return nil, err
	}
	for i := range mbs {
		if mbs[i].ID == id {
			return gen.CreateMailbox201JSONResponse(mailboxJSON(&mbs[i])), nil
		}
	}
	// Removed again in between: answer with what was made.
	m.ID = id
	return gen.CreateMailbox201JSONResponse(mailboxJSON(&m)), nil
}

func (s *server) DeleteMailbox(ctx context.Context, req gen.DeleteMailboxRequestObject) (gen.DeleteMailboxResponseObject, error) {
	d := domainOf(ctx)
	addr := strings.ToLower(req.Address)
	mbs, err := s.o.Store.Mailboxes(ctx, d.Name)
	if err != nil {
		return nil, err
	}
	for i := range mbs {
		m := &mbs[i]
		if m.Primary == addr && m.Source == sdk.SourceLDAP {
			return nil, conflict("%s comes from the directory: the next sync would make it again; "+
				"remove it from the directory, or change the domain's filter", addr)
		}
		if m.Primary != addr && slices.Contains(m.Aliases, addr) {
			return nil, notFound("no mailbox %s in %s (it is an alias of %s)", addr, d.Name, m.Primary)
		}
	}
	if err := s.o.Store.RemoveMailbox(ctx, d.Name, addr); err != nil {
		return nil, err
	}
	s.audit(ctx, "mailbox removed", d.Name, "address", addr)
	return gen.DeleteMailbox204Response{}, nil
}

func (s *server) ListReportRecipients(ctx context.Context, _ gen.ListReportRecipientsRequestObject) (gen.ListReportRecipientsResponseObject, error) {
	mbs, err := s.o.Store.Mailboxes(ctx, domainOf(ctx).Name)
	if err != nil {
		return nil, err
	}
	out := make(gen.ListReportRecipients200JSONResponse, 0, len(mbs))
	for _, m := range mbs {
		out = append(out, gen.Recipient{Address: m.Primary, Covers: sorted(m.Aliases)})
	}
	return out, nil
}

func (s *server) ResolveAddress(ctx context.Context, req gen.ResolveAddressRequestObject) (gen.ResolveAddressResponseObject, error) {
	addr := strings.ToLower(req.Params.Address)
	if err := sdk.CheckAddress(addr); err != nil {
		return nil, badRequest("address %q: %v", req.Params.Address, err)
	}
	none := notFound("no mailbox has the address %s", addr)
	primary, err := s.o.Store.Resolve(ctx, addr)
	if errors.Is(err, store.ErrNotFound) {
		return nil, none
	}
	if err != nil {
		return nil, err
	}
	if !s.visible(ctx, primary) {
		return nil, none
	}
	return gen.ResolveAddress200JSONResponse{Primary: primary}, nil
}

// visible reports whether the principal may see the mailbox whose primary
// address is primary: whether one of the principal's domains owns it, in
// its name or its alias domains.
func (s *server) visible(ctx context.Context, primary string) bool {
	p := principal(ctx)
	if slices.Contains(p.Domains, "*") {
		return true
	}
	for _, name := range p.Domains {
		set, err := s.o.Host.Settings(ctx, name)
		if err == nil && set.Domain.Owns(primary) {
			return true
		}
	}
	return false
}
