package host

import (
	"context"
	"crypto/x509"

	"github.com/dirsync/dirsync/host/config"
)

// Credentials gives the host what it needs to bind to a domain's
// directory: the bind password and the CAs that may sign the server's
// certificate. Set Options.Credentials when the program keeps these itself
// (a multi-tenant panel with secrets in its own database); by default the
// host reads the settings' password_file or password_env (a store-kept
// domain: the password sealed in the store) and ca_file.
//
// The host asks on every run, preview and connection test, so a changed
// secret is used from the next one on. A password typed into a form and
// not saved yet (PreviewSettings, TestConnection with a password) is used
// as given, without asking.
type Credentials interface {
	// BindPassword returns the bind password of the domain whose settings
	// are d ("" to bind without one). An error fails the run at its
	// config stage, with the error's text.
	BindPassword(ctx context.Context, d *config.Domain) (string, error)
	// RootCAs returns the CAs that may sign the directory's certificate,
	// or nil for ca_file if the settings name one, else the system's.
	RootCAs(ctx context.Context, d *config.Domain) (*x509.CertPool, error)
}

// bind is what a directory read needs besides the settings.
type bind struct {
	password string
	roots    *x509.CertPool
}

// credentials returns the bind password and CAs of a resolved domain.
func (h *Host) credentials(ctx context.Context, r *resolved) (bind, error) {
	if h.creds == nil || r.unsaved != nil {
		pw, err := h.password(r)
		return bind{password: pw}, err
	}
	pw, err := h.creds.BindPassword(ctx, r.d)
	if err != nil {
		return bind{}, err
	}
	roots, err := h.creds.RootCAs(ctx, r.d)
	if err != nil {
		return bind{}, err
	}
	return bind{password: pw, roots: roots}, nil
}

// FileCredentials is the default form of Credentials for the domains of a
// config: the bind password from the settings' password_file (relative to
// the config's folder) or password_env, the CAs from ca_file. A program
// that keeps some secrets itself can fall back to it for the others. It
// does not open a store-kept domain's sealed password: the host does that
// itself when Options.Credentials is nil.
type FileCredentials struct{ Config *config.Config }

// BindPassword reads d's password_file or password_env ("" if neither).
func (f FileCredentials) BindPassword(_ context.Context, d *config.Domain) (string, error) {
	return f.Config.Password(d)
}

// RootCAs returns nil: the host then reads d's ca_file itself, as it
// does without Credentials.
func (FileCredentials) RootCAs(context.Context, *config.Domain) (*x509.CertPool, error) {
	return nil, nil
}
