// Package web is the page dirsync serve shows at /: sign-in with an API
// token, the domain scope picker and the "LDAP Connection" form of a
// domain (the sync switch, the connection, the LDAP filter checked as it
// is typed, "Test connection", "Check valid users and groups", "Apply
// changes", last and next run, "Sync now"), with the domain's other
// pages: Groups (the gateway groups and their members, one-click
// creation of an unmatched directory group), Runs (each run's changes
// before → after) and Mailboxes (search by address).
//
// It is rendered on the server with html/template from files embedded in
// the program; the forms work with JavaScript off, and a small script
// (static/page.js) adds the switch's effect on the fields and the filter
// check as it is typed. A session cookie (HttpOnly, SameSite=Strict,
// Secure under TLS) keeps the signed-in principal; every request that
// changes something passes http.CrossOriginProtection; every answer
// carries a strict Content-Security-Policy.
package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/api"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// DefaultSessionTTL is how long a sign-in lasts unless Options says
// otherwise.
const DefaultSessionTTL = 12 * time.Hour

// maxFormBytes bounds a form's or a filter check's body.
const maxFormBytes = 1 << 20

// CookieName is the session cookie's name.
const CookieName = "dirsync_session"

// Options configure the page.
type Options struct {
	// Acquire returns the Host in use with the config it was made from,
	// and a function to call once the request is done with them
	// (required). A reload of the config gives new ones (new tokens
	// included) to the requests that start after it.
	Acquire func() (*host.Host, *config.Config, func())
	// Store is the host's store: the runs of a domain (required).
	Store store.Store
	// RunNow starts a sync of a domain in the background and returns the
	// run's id ("Sync now"); nil: the page starts no runs.
	RunNow func(ctx context.Context, domain string, o host.RunOptions) (int64, error)
	// NextRun says when a domain runs next (false: not scheduled); may be
	// nil.
	NextRun func(domain string) (time.Time, bool)
	// Logger receives a line for each sign-in, refused sign-in, change and
	// run started; nil discards them. Tokens and passwords are never
	// logged.
	Logger *slog.Logger
	// SessionTTL is how long a sign-in lasts (DefaultSessionTTL if 0).
	SessionTTL time.Duration
}

// server is the page's handler.
type server struct {
	o     Options
	log   *slog.Logger
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]*session
}

// session is a signed-in browser: the SHA-256 of the token it signed in
// with (checked against the tokens of the config in use on every
// request, so that a token removed by a reload signs it out) and when it
// ends.
type session struct {
	sum     [sha256.Size]byte
	expires time.Time
}

// New returns the page as an http.Handler for every path but those of
// the API and the service's endpoints: `dirsync serve` mounts it at /.
func New(o Options) http.Handler {
	if o.Acquire == nil || o.Store == nil {
		panic("web.New: Options.Acquire and Options.Store are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	s := &server{o: o, log: o.Logger, pages: parsePages(), sessions: map[string]*session{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("POST /signin", s.signIn)
	mux.HandleFunc("POST /signout", s.signOut)
	mux.HandleFunc("GET /domains", s.pick)
	mux.HandleFunc("GET /domains/{domain}", s.domainPage)
	mux.HandleFunc("POST /domains/{domain}", s.domainPost)
	mux.HandleFunc("POST /domains/{domain}/runs", s.syncNow)
	mux.HandleFunc("GET /domains/{domain}/runs", s.runsPage)
	mux.HandleFunc("GET /domains/{domain}/runs/{id}", s.runPage)
	mux.HandleFunc("GET /domains/{domain}/groups", s.groupsPage)
	mux.HandleFunc("POST /domains/{domain}/groups", s.createGroup)
	mux.HandleFunc("POST /domains/{domain}/groups/remove", s.removeGroup)
	mux.HandleFunc("POST /domains/{domain}/groups/members", s.memberPost)
	mux.HandleFunc("GET /domains/{domain}/mailboxes", s.mailboxesPage)
	mux.HandleFunc("GET /domains/{domain}/valid", s.validPage)
	mux.HandleFunc("POST /ui/domains/{domain}/filter-check", s.filterCheck)
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusNotFound, "message", &page{Title: "Not found", Message: "There is no page at " + r.URL.Path + "."})
	})
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Info("page: cross-origin request refused", "method", r.Method, "path", r.URL.Path,
			"origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		s.render(w, r, http.StatusForbidden, "message", &page{Title: "Refused",
			Message: "This request came from another site, so it was refused."})
	}))
	return securityHeaders(cop.Handler(limitBody(mux)))
}

// csp allows the page's own files and nothing inline.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// request is what a handler works with: the Host and config in use and
// the signed-in principal (nil when none).
type request struct {
	h       *host.Host
	cfg     *config.Config
	p       *api.Principal
	release func()
}

// begin takes the Host in use and finds the request's principal.
func (s *server) begin(r *http.Request) *request {
	h, cfg, release := s.o.Acquire()
	q := &request{h: h, cfg: cfg, release: release}
	if c, err := r.Cookie(CookieName); err == nil {
		s.mu.Lock()
		sess := s.sessions[c.Value]
		if sess != nil && time.Now().After(sess.expires) {
			delete(s.sessions, c.Value)
			sess = nil
		}
		s.mu.Unlock()
		if sess != nil {
			q.p = principalOf(sess.sum, cfg.API.Tokens)
		}
	}
	return q
}

// principalOf returns the principal of the token whose SHA-256 is sum, or
// nil. Every token's hash is compared, in constant time.
func principalOf(sum [sha256.Size]byte, tokens []config.Token) *api.Principal {
	match := -1
	for i, t := range tokens {
		b, err := hex.DecodeString(t.SHA256)
		if err != nil || len(b) != sha256.Size {
			continue
		}
		eq := subtle.ConstantTimeCompare(sum[:], b)
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return nil
	}
	t := tokens[match]
	domains := make([]string, len(t.Domains))
	for i, d := range t.Domains {
		domains[i] = strings.ToLower(d)
	}
	return &api.Principal{Name: t.Name, Role: api.Role(t.Role), Domains: domains}
}

func mayWrite(p *api.Principal) bool { return p != nil && p.Role == api.RoleAdmin }

// signIn checks an API token and starts a session.
func (s *server) signIn(w http.ResponseWriter, r *http.Request) {
	q := s.begin(r)
	defer q.release()
	token := strings.TrimSpace(r.PostFormValue("token"))
	// The API's own check of a bearer token, over the config in use.
	fake := &http.Request{Header: http.Header{"Authorization": {"Bearer " + token}}}
	p, err := api.NewTokenAuthorizer(q.cfg.API.Tokens).Authorize(fake)
	if err != nil || p == nil {
		s.log.Info("page: sign-in refused", "remote", r.RemoteAddr, "err", err)
		s.render(w, r, http.StatusUnauthorized, "signin", &page{Title: "Sign in",
			Error: "That is not one of the configured API tokens."})
		return
	}
	id, err := newSessionID()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := time.Now()
	s.mu.Lock()
	for k, v := range s.sessions {
		if now.After(v.expires) {
			delete(s.sessions, k)
		}
	}
	s.sessions[id] = &session{sum: sha256.Sum256([]byte(token)), expires: now.Add(s.o.SessionTTL)}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, Expires: now.Add(s.o.SessionTTL), MaxAge: int(s.o.SessionTTL.Seconds())})
	s.log.Info("page: signed in", "principal", p.Name, "role", p.Role, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func newSessionID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// signOut ends the session.
func (s *server) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(CookieName); err == nil {
		s.mu.Lock()
		delete(s.sessions, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// domainItem is a domain of the scope picker.
type domainItem struct {
	Name      string
	Sync      bool
	ManagedBy string
	Current   bool
}

// domains lists the principal's domains.
func (s *server) domains(ctx context.Context, q *request, current string) ([]domainItem, error) {
	infos, err := q.h.Domains(ctx)
	if err != nil {
		return nil, err
	}
	var out []domainItem
	for _, d := range infos {
		if q.p.AllowsDomain(d.Name) {
			out = append(out, domainItem{Name: d.Name, Sync: d.Sync, ManagedBy: d.ManagedBy, Current: d.Name == current})
		}
	}
	return out, nil
}

// index is the sign-in form, or the list of the principal's domains.
func (s *server) index(w http.ResponseWriter, r *http.Request) {
	q := s.begin(r)
	defer q.release()
	if q.p == nil {
		s.render(w, r, http.StatusOK, "signin", &page{Title: "Sign in"})
		return
	}
	list, err := s.domains(r.Context(), q, "")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "domains", &page{Title: "Domains", Principal: q.p, Domains: list})
}

// pick is the scope picker's target: GET /domains?domain=NAME.
func (s *server) pick(w http.ResponseWriter, r *http.Request) {
	name := strings.ToLower(strings.TrimSpace(r.URL.Query().Get("domain")))
	if name == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/domains/"+url.PathEscape(name), http.StatusSeeOther)
}

// render writes a page.
func (s *server) render(w http.ResponseWriter, r *http.Request, code int, name string, p *page) {
	t := s.pages[name]
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		s.log.Error("page: rendering failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprint(w, b.String())
}

// fail answers an unexpected error.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("page: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	s.render(w, r, http.StatusInternalServerError, "message", &page{Title: "Error", Message: "Something went wrong: " + err.Error()})
}

// filterCheck is the filter check as it is typed: POST a JSON
// {"filter": "..."}; the answer is {"normalized": "..."} (200) or
// {"position": N, "reason": "..."} (422).
func (s *server) filterCheck(w http.ResponseWriter, r *http.Request) {
	q := s.begin(r)
	defer q.release()
	name := strings.ToLower(r.PathValue("domain"))
	if q.p == nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "signed out: sign in again"})
		return
	}
	if !q.p.AllowsDomain(name) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such domain"})
		return
	}
	var body struct {
		Filter string `json:"filter"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "the body must be {\"filter\": \"...\"}"})
		return
	}
	set, err := q.h.Settings(r.Context(), name)
	if errors.Is(err, host.ErrUnknownDomain) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such domain"})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	norm, err := q.h.CheckFilter(r.Context(), set.Policy, strings.TrimSpace(body.Filter))
	if fe := filterError(err); fe != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"position": fe.Position, "reason": fe.Reason})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"normalized": norm})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
