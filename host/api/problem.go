package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"syscall"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/internal/ldapfetch"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// problem is an RFC 9457 problem detail; as an error it is the answer to a
// request that failed.
type problem struct {
	// Type is a "urn:dirsync:problem:..." name, or "" for about:blank.
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Position and Reason are those of an invalid filter.
	Position *int   `json:"position,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Key names a refused setting as DomainSettings names it
	// ("ldap.urls").
	Key string `json:"key,omitempty"`
	// CurrentVersion is, on a version conflict, the settings version now.
	CurrentVersion *int64 `json:"current_version,omitempty"`
}

func (p *problem) Error() string { return strconv.Itoa(p.Status) + " " + p.Detail }

// Problem types beyond about:blank.
const (
	typeInvalidFilter = "urn:dirsync:problem:invalid-filter"
	typeDomainBusy    = "urn:dirsync:problem:domain-busy"
	typeFromDirectory = "urn:dirsync:problem:from-directory"
	typeSettings      = "urn:dirsync:problem:invalid-settings"
	typeStale         = "urn:dirsync:problem:stale-version"
	typeManagedConfig = "urn:dirsync:problem:managed-by-config"
	typeDomainExists  = "urn:dirsync:problem:domain-exists"
)

func writeProblem(w http.ResponseWriter, p *problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	b, err := json.Marshal(p)
	if err != nil { // cannot happen: strings and ints
		b = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		p.Status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(p.Status)
	w.Write(append(b, '\n'))
}

// noDomain is the answer for a domain that does not exist and for one the
// principal may not see: the same, byte for byte.
func noDomain(name string) *problem {
	return &problem{Status: http.StatusNotFound, Detail: fmt.Sprintf("no domain %q", name)}
}

func tooLarge(limit int64) *problem {
	return &problem{Status: http.StatusRequestEntityTooLarge,
		Detail: fmt.Sprintf("the request body is larger than %d bytes", limit)}
}

func badRequest(format string, args ...any) *problem {
	return &problem{Status: http.StatusBadRequest, Detail: fmt.Sprintf(format, args...)}
}

func unprocessable(format string, args ...any) *problem {
	return &problem{Status: http.StatusUnprocessableEntity, Detail: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *problem {
	return &problem{Status: http.StatusNotFound, Detail: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) *problem {
	return &problem{Status: http.StatusConflict, Detail: fmt.Sprintf(format, args...)}
}

// filterProblem is the answer for an invalid filter.
func filterProblem(fe *sdk.FilterError) *problem {
	pos := fe.Position
	return &problem{Type: typeInvalidFilter, Title: "Invalid LDAP filter", Status: http.StatusUnprocessableEntity,
		Detail: fe.Error(), Position: &pos, Reason: fe.Reason}
}

// requestError answers a request whose parameters or body cannot be
// read: 413 for a body over the limit, else 400.
func (s *server) requestError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeProblem(w, tooLarge(mbe.Limit))
		return
	}
	writeProblem(w, badRequest("%v", err))
}

// responseError answers a request whose handler failed: a *problem as it
// is, the errors of the host and the store by what they mean, anything
// else with 500 (the error goes to the log, not to the client).
func (s *server) responseError(w http.ResponseWriter, r *http.Request, err error) {
	// A client that went away (its request cancelled, or the connection
	// gone while the answer was written) gets no answer and is no server
	// error.
	if r.Context().Err() != nil || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		s.log.Debug("api: the client went away", "method", r.Method, "path", r.URL.Path, "err", err)
		return
	}
	p := s.classify(err)
	if p.Status >= 500 {
		s.log.Error("api: request failed", "principal", principal(r.Context()).Name, "method", r.Method,
			"path", r.URL.Path, "status", p.Status, "err", err)
	}
	writeProblem(w, p)
}

func (s *server) classify(err error) *problem {
	var (
		p   *problem
		fe  *sdk.FilterError
		re  *host.RunError
		le  *ldapfetch.Error
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &fe):
		return filterProblem(fe)
	case errors.As(err, &mbe):
		return tooLarge(mbe.Limit)
	case errors.Is(err, host.ErrDomainBusy):
		return &problem{Type: typeDomainBusy, Title: "Domain busy", Status: http.StatusConflict, Detail: err.Error()}
	case errors.As(err, &re) && re.Stage == "fetch":
		return &problem{Type: typeFromDirectory, Title: "The directory could not be read", Status: http.StatusBadGateway,
			Detail: err.Error()}
	case errors.As(err, &re) && !errors.Is(err, context.Canceled):
		// The host's run errors are written for operators and carry no
		// secret.
		return &problem{Status: http.StatusInternalServerError, Detail: err.Error()}
	case errors.As(err, &le) && le.Op == "config":
		// Settings the directory client refuses (a URL without a host).
		return &problem{Type: typeSettings, Title: "Invalid settings", Status: http.StatusUnprocessableEntity,
			Detail: le.Error()}
	case errors.As(err, &le) && !errors.Is(err, context.Canceled):
		// A connection test's: the message names the server and never
		// holds the password.
		return &problem{Type: typeFromDirectory, Title: "The directory could not be read", Status: http.StatusBadGateway,
			Detail: le.Error()}
	case errors.Is(err, host.ErrManagedByConfig):
		return managedByConfig("")
	case errors.Is(err, store.ErrNotFound):
		return notFound("%v", err)
	case errors.Is(err, store.ErrExists):
		return conflict("%v", err)
	}
	return &problem{Status: http.StatusInternalServerError, Detail: "the server failed; its log says why"}
}

// invalidSetting is the answer for a refused setting, key named as
// DomainSettings names it.
func invalidSetting(key, format string, args ...any) *problem {
	return &problem{Type: typeSettings, Title: "Invalid settings", Status: http.StatusUnprocessableEntity,
		Detail: key + ": " + fmt.Sprintf(format, args...), Key: key}
}

// managedByConfig is the answer for a change of a domain of dirsync.toml.
func managedByConfig(name string) *problem {
	what := "the domain"
	if name != "" {
		what = "domain " + name
	}
	return &problem{Type: typeManagedConfig, Title: "Set in dirsync.toml", Status: http.StatusConflict,
		Detail: what + " is set in dirsync.toml; change it there"}
}
