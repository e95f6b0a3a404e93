package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/internal/secrets"
	"github.com/dirsync/dirsync/host/store"
)

// Where a domain's settings live.
const (
	ManagedByConfig = "config" // declared in dirsync.toml: read-only here
	ManagedByStore  = "store"  // kept in the store, versioned, changed through the host
)

// Errors of the settings of store-kept domains.
var (
	// ErrManagedByConfig: the domain is declared in dirsync.toml, whose
	// settings the host does not change.
	ErrManagedByConfig = errors.New("the domain is set in dirsync.toml; change it there")
	// ErrNoSecretsKey: a bind password cannot be stored without
	// [secrets] key_file.
	ErrNoSecretsKey = errors.New("no [secrets] key_file is configured, so no bind password can be stored")
	// ErrSettingsConflict: the settings changed since the version the
	// caller read (store.ErrConflict).
	ErrSettingsConflict = store.ErrConflict
)

// DomainInfo describes a domain the host knows: declared in the config or
// kept in the store.
type DomainInfo struct {
	Name     string        `json:"name"`
	Sync     bool          `json:"sync"`
	Interval time.Duration `json:"-"`
	// Live says that dirsync serve keeps a live search open for the
	// domain (Host.Live).
	Live bool `json:"-"`
	// ManagedBy is ManagedByConfig or ManagedByStore.
	ManagedBy string `json:"managed_by"`
	// Version is the settings version of a store-kept domain (0 for one of
	// the config).
	Version int64 `json:"version,omitempty"`
}

// Settings are a domain's settings as the host uses them.
type Settings struct {
	config.Domain
	ManagedBy string `json:"managed_by"`
	// Version is the store's settings version (0 for the config's).
	Version int64     `json:"version"`
	Author  string    `json:"author,omitempty"`
	Saved   time.Time `json:"saved,omitzero"`
	// PasswordSet says whether a bind password is set; the password itself
	// is never returned.
	PasswordSet bool `json:"password_set"`
}

// Domains lists the config's domains and the store's, sorted by name. A
// name in both is an error naming it.
func (h *Host) Domains(ctx context.Context) ([]DomainInfo, error) {
	var out []DomainInfo
	for _, d := range h.cfg.Domains {
		out = append(out, DomainInfo{Name: d.Name, Sync: d.Sync, Interval: d.Interval.Duration, Live: d.Live, ManagedBy: ManagedByConfig})
	}
	if h.store != nil {
		kept, err := h.store.StoredDomains(ctx)
		if err != nil {
			return nil, err
		}
		for _, v := range kept {
			if h.cfg.Domain(v.Domain) != nil {
				return out, fmt.Errorf("domain %q is both declared in %s and kept in the store: remove one", v.Domain, h.cfg.Path)
			}
			d, err := decodeSettings(&v)
			if err != nil {
				return out, err
			}
			out = append(out, DomainInfo{Name: d.Name, Sync: d.Sync, Interval: d.Interval.Duration, Live: d.Live, ManagedBy: ManagedByStore, Version: v.Version})
		}
	}
	slices.SortFunc(out, func(a, b DomainInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Settings returns a domain's current settings.
func (h *Host) Settings(ctx context.Context, name string) (*Settings, error) {
	r, err := h.resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	s := &Settings{Domain: *r.d, ManagedBy: r.managedBy, Version: r.version}
	if r.saved != nil {
		s.Author, s.Saved, s.PasswordSet = r.saved.Author, r.saved.Created, len(r.saved.Secret) > 0
	} else {
		s.PasswordSet = r.d.LDAP.PasswordFile != "" || r.d.LDAP.PasswordEnv != ""
	}
	return s, nil
}

// SaveSettings checks d (the keys, the filter through the domain's
// policy) and saves it as the next settings version of a store-kept
// domain, used from the domain's next run on (R11). expect is the version
// the caller read (0 to create the domain); a newer one gives
// ErrSettingsConflict. password nil keeps the stored bind password, ""
// clears it, anything else replaces it (sealed with the [secrets] key).
// It returns the new version.
func (h *Host) SaveSettings(ctx context.Context, d config.Domain, password *string, author string, expect int64) (int64, error) {
	if err := h.checkSettings(ctx, &d); err != nil {
		return 0, err
	}
	if d.LDAP.PasswordFile != "" || d.LDAP.PasswordEnv != "" {
		return 0, &config.Error{Key: "domain.ldap.password_file", Msg: "a store-kept domain keeps its password in the store (ldap.password), not in a file or variable"}
	}
	v := &store.SettingsVersion{Domain: d.Name, Author: author}
	var err error
	if v.Settings, err = json.Marshal(&d); err != nil {
		return 0, err
	}
	switch {
	case password == nil:
		if prev, err := h.store.Settings(ctx, d.Name, 0); err == nil {
			v.Secret = prev.Secret
		} else if !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
	case *password != "":
		key, err := h.secretsKey()
		if err != nil {
			return 0, err
		}
		if v.Secret, err = secrets.Seal(key, []byte(*password), d.Name); err != nil {
			return 0, err
		}
	}
	if err := h.store.PutSettings(ctx, v, expect); err != nil {
		return 0, err
	}
	h.log.Info("settings saved", "domain", d.Name, "version", v.Version, "by", author)
	return v.Version, nil
}

// RemoveDomain stops keeping a domain's settings in the store (no run
// starts for it any more); its mailboxes, groups and runs stay.
func (h *Host) RemoveDomain(ctx context.Context, name, author string) error {
	name = strings.ToLower(name)
	if h.cfg.Domain(name) != nil {
		return ErrManagedByConfig
	}
	if err := h.store.RemoveSettings(ctx, name, author); err != nil {
		return err
	}
	h.log.Info("domain removed from the store's domains", "domain", name, "by", author)
	return nil
}

// checkSettings normalizes d and checks it as a run would: the keys, the
// policy, and the filter through that policy (*sdk.FilterError with its
// position). A domain of the config is refused.
func (h *Host) checkSettings(ctx context.Context, d *config.Domain) error {
	if err := d.Check(); err != nil {
		return err
	}
	if h.cfg.Domain(d.Name) != nil {
		return ErrManagedByConfig
	}
	if err := h.checkPolicy(d); err != nil {
		return err
	}
	p, err := h.Policy(ctx, d.Policy)
	if err != nil {
		return err
	}
	_, err = checkFilter(ctx, p, d.LDAP.Filter)
	return err
}

// checkPolicy refuses a policy the manifest does not declare.
func (h *Host) checkPolicy(d *config.Domain) error {
	if h.cfg.Manifest == nil || h.cfg.Manifest.Policy(d.Policy) == nil {
		return &config.Error{Key: "domain.policy", Msg: fmt.Sprintf("policy %q is not declared in the policy manifest", d.Policy)}
	}
	return nil
}

func (h *Host) secretsKey() ([]byte, error) {
	if h.cfg.Secrets.KeyFile == "" {
		return nil, ErrNoSecretsKey
	}
	return secrets.LoadKey(h.cfg.Secrets.KeyFile)
}

// resolved is a domain's settings ready for a run.
type resolved struct {
	d         *config.Domain
	managedBy string
	version   int64
	saved     *store.SettingsVersion // the store's version, nil for the config's
	// unsaved holds the password of settings that are not saved (a
	// preview of a form); nil to use the saved one.
	unsaved *string
}

// resolve finds a domain in the config, else in the store.
func (h *Host) resolve(ctx context.Context, name string) (*resolved, error) {
	if d := h.cfg.Domain(strings.ToLower(name)); d != nil {
		return &resolved{d: d, managedBy: ManagedByConfig}, nil
	}
	if h.store != nil {
		v, err := h.store.Settings(ctx, strings.ToLower(name), 0)
		switch {
		case err == nil:
			d, err := decodeSettings(v)
			if err != nil {
				return nil, err
			}
			return &resolved{d: d, managedBy: ManagedByStore, version: v.Version, saved: v}, nil
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
	}
	_, err := h.cfg.Lookup(name) // the config's error, listing its domains
	return nil, err
}

// resolveUnsaved checks settings that are not saved (a form) and makes
// them ready for a preview or a connection test. A domain of the config
// keeps its own password source; password nil uses the stored password
// of a store-kept domain.
func (h *Host) resolveUnsaved(ctx context.Context, d config.Domain, password *string) (*resolved, error) {
	r := &resolved{d: &d, managedBy: ManagedByStore, unsaved: password}
	if cur := h.cfg.Domain(strings.ToLower(d.Name)); cur != nil {
		r.managedBy = ManagedByConfig
		d.LDAP.PasswordFile, d.LDAP.PasswordEnv = cur.LDAP.PasswordFile, cur.LDAP.PasswordEnv
		if err := d.Check(); err != nil {
			return nil, err
		}
		if err := h.checkPolicy(&d); err != nil {
			return nil, err
		}
	} else if err := h.checkSettings(ctx, &d); err != nil {
		return nil, err
	}
	if password == nil && r.managedBy == ManagedByStore && h.store != nil {
		v, err := h.store.Settings(ctx, d.Name, 0)
		switch {
		case err == nil:
			r.saved = v
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
	}
	return r, nil
}

// password returns the bind password of a resolved domain.
func (h *Host) password(r *resolved) (string, error) {
	switch {
	case r.unsaved != nil:
		return *r.unsaved, nil
	case r.saved == nil:
		return h.cfg.Password(r.d)
	case len(r.saved.Secret) == 0:
		return "", nil
	}
	key, err := h.secretsKey()
	if err != nil {
		return "", fmt.Errorf("domain %q: its bind password is stored sealed: %w", r.d.Name, err)
	}
	pw, err := secrets.Open(key, r.saved.Secret, r.d.Name)
	if err != nil {
		return "", fmt.Errorf("domain %q: %w", r.d.Name, err)
	}
	return string(pw), nil
}

// decodeSettings reads a stored settings version as a checked domain.
func decodeSettings(v *store.SettingsVersion) (*config.Domain, error) {
	var d config.Domain
	if err := json.Unmarshal(v.Settings, &d); err != nil {
		return nil, fmt.Errorf("domain %q: settings version %d: %w", v.Domain, v.Version, err)
	}
	if err := d.Check(); err != nil {
		return nil, fmt.Errorf("domain %q: settings version %d: %w", v.Domain, v.Version, err)
	}
	return &d, nil
}
