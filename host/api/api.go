// Package api is dirsync's admin API: JSON over HTTP for the domains of a
// host, their settings, gateway groups and hand-made mailboxes, filter
// checks, connection tests, previews and runs. New returns it as an
// http.Handler that serves the paths under /api/v1/; `dirsync serve`
// mounts it at /api/, and a gateway vendor can mount it in their own
// control panel behind their own authentication (an Authorizer).
//
// The contract is the OpenAPI document openapi.yaml, served as JSON at
// GET /api/v1/openapi.json. Errors are RFC 9457 problem details
// (application/problem+json). Every call needs a Principal from the
// Authorizer: none is 401; a domain outside the principal's list is
// answered exactly as one that does not exist (404); a viewer that asks
// for a change gets 403.
package api

//go:generate go tool oapi-codegen -config oapi-codegen.yaml openapi.yaml

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/api/internal/gen"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
)

// DefaultMaxBodyBytes is the largest request body New accepts unless
// Options.MaxBodyBytes says otherwise.
const DefaultMaxBodyBytes = 1 << 20

// Options configure the API handler.
type Options struct {
	// Host runs previews, dry runs and filter checks and knows the
	// domains (required).
	Host *host.Host
	// Store is the host's store, for groups, mailboxes and runs
	// (required).
	Store store.Store
	// Config is the host's config. Its [[api.token]] entries make the
	// Authorizer when Authorizer is nil.
	Config *config.Config
	// Authorizer names the principal of each request. Nil: a token
	// authorizer over Config.API.Tokens.
	Authorizer Authorizer
	// RunNow starts a sync of domain in the background and returns the
	// run's id once the run holds the domain and its start is recorded
	// (see host.RunOptions.OnStart). ctx is the request's: it bounds the
	// wait for the start, never the run. An error that errors.Is
	// host.ErrDomainBusy is answered with 409. Nil: the API starts no runs
	// (503).
	RunNow func(ctx context.Context, domain string, o host.RunOptions) (int64, error)
	// NextRun, if set, says when the scheduler runs a domain next (false:
	// not scheduled).
	NextRun func(domain string) (time.Time, bool)
	// Logger receives a line for every change made through the API (at
	// Info, with the principal's name, the domain and what changed), for
	// every request refused with 401 or 403 and for every one that failed
	// (5xx); nil discards them. Tokens and passwords are never logged: a
	// bind password's change is logged as password="changed" or "cleared".
	Logger *slog.Logger
	// MaxBodyBytes is the largest request body accepted; a larger one is
	// answered with 413. 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// New returns the API as an http.Handler for the paths under /api/v1/. It
// panics if Host or Store is nil, or if both Authorizer and Config are.
func New(o Options) http.Handler {
	if o.Host == nil || o.Store == nil {
		panic("api.New: Options.Host and Options.Store are required")
	}
	if o.Authorizer == nil {
		if o.Config == nil {
			panic("api.New: Options.Authorizer or Options.Config is required")
		}
		o.Authorizer = NewTokenAuthorizer(o.Config.API.Tokens)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	s := &server{o: o, log: o.Logger}
	mux := http.NewServeMux()
	mux.HandleFunc("/", s.noRoute)
	s.mux = mux
	strict := gen.NewStrictHandlerWithOptions(s, nil, gen.StrictHTTPServerOptions{
		RequestErrorHandlerFunc:  s.requestError,
		ResponseErrorHandlerFunc: s.responseError,
	})
	gen.HandlerWithOptions(strict, gen.StdHTTPServerOptions{
		BaseRouter:       mux,
		Middlewares:      []gen.MiddlewareFunc{s.scope},
		ErrorHandlerFunc: s.requestError,
	})
	return s
}

// server is the API handler.
type server struct {
	o   Options
	log *slog.Logger
	mux *http.ServeMux
}

type ctxKey int

const (
	principalKey ctxKey = iota
	domainKey
)

// ServeHTTP authenticates the request, bounds its body and routes it.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, err := s.o.Authorizer.Authorize(r)
	if err != nil || p == nil {
		if err == nil {
			err = errors.New("the authorizer named no principal")
		}
		s.log.Info("api: request refused: not authenticated", "method", r.Method, "path", r.URL.Path,
			"remote", r.RemoteAddr, "err", err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="dirsync"`)
		writeProblem(w, &problem{Status: http.StatusUnauthorized,
			Detail: "this call needs valid credentials, such as an API token (Authorization: Bearer TOKEN)"})
		return
	}
	if r.ContentLength > s.o.MaxBodyBytes {
		writeProblem(w, tooLarge(s.o.MaxBodyBytes))
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.o.MaxBodyBytes)
	}
	s.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey, p)))
}

// readOnlyPosts are the operations sent with POST that only read: a
// viewer may call them.
var readOnlyPosts = map[string]bool{
	"POST /api/v1/domains/{domain}/filter-check":    true,
	"POST /api/v1/domains/{domain}/connection-test": true,
	"POST /api/v1/domains/{domain}/preview":         true,
}

// scope runs after routing, before the body is read: it checks that the
// principal may see the path's domain (404 as for a domain that does not
// exist) and that a viewer only reads (403), and puts the domain's
// settings in the request's context.
func (s *server) scope(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principal(r.Context())
		ctx := r.Context()
		if strings.Contains(r.Pattern, "{domain}") {
			name := strings.ToLower(r.PathValue("domain"))
			// The principal's list is checked first, so that a domain it
			// may not see costs no lookup: the answer does not tell, by
			// its body or its time, whether the domain exists.
			if !p.AllowsDomain(name) {
				writeProblem(w, noDomain(name))
				return
			}
			set, err := s.o.Host.Settings(ctx, name)
			if errors.Is(err, host.ErrUnknownDomain) {
				writeProblem(w, noDomain(name))
				return
			}
			if err != nil {
				s.responseError(w, r, err)
				return
			}
			ctx = context.WithValue(ctx, domainKey, set)
		}
		if !p.mayWrite() && r.Method != http.MethodGet && r.Method != http.MethodHead && !readOnlyPosts[r.Pattern] {
			s.log.Info("api: request refused: the principal may only read", "principal", p.Name,
				"method", r.Method, "path", r.URL.Path)
			writeProblem(w, &problem{Status: http.StatusForbidden,
				Detail: "the token's role (" + string(p.Role) + ") may read, check filters, test connections and preview, not change anything"})
			return
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// noRoute answers a path the API does not serve (404), or serves with
// other methods (405).
func (s *server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := s.mux.Handler(r2); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeProblem(w, &problem{Status: http.StatusMethodNotAllowed,
			Detail: r.Method + " is not served here; use " + strings.Join(allow, ", ")})
		return
	}
	writeProblem(w, &problem{Status: http.StatusNotFound, Detail: "no such API path: " + r.URL.Path})
}

// principal returns the request's principal (ServeHTTP put it there).
func principal(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey).(*Principal)
	if p == nil {
		return &Principal{}
	}
	return p
}

// settingsOf returns the settings of the path's domain as the request
// found them (scope put them there).
func settingsOf(ctx context.Context) *host.Settings {
	s, _ := ctx.Value(domainKey).(*host.Settings)
	return s
}

// domainOf returns the path's domain (scope put it there).
func domainOf(ctx context.Context) *config.Domain {
	return &settingsOf(ctx).Domain
}

// audit logs a change made through the API.
func (s *server) audit(ctx context.Context, msg, domain string, attrs ...any) {
	s.log.Info("api: "+msg, append([]any{"principal", principal(ctx).Name, "domain", domain}, attrs...)...)
}
