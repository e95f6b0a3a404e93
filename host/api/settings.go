package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/dirsync/dirsync/host"
	"github.com/dirsync/dirsync/host/api/internal/gen"
	"github.com/dirsync/dirsync/host/config"
	"github.com/dirsync/dirsync/host/store"
	"github.com/dirsync/dirsync/sdk"
)

// settingsJSON converts a domain's settings to their answer: the keys of
// a [[domain]] table, defaults filled in, and never a password. The
// password_file and password_env of a domain of dirsync.toml are shown:
// they name a file or a variable and hold no secret.
func settingsJSON(set *host.Settings) gen.DomainSettings {
	d, l, sf := &set.Domain, &set.Domain.LDAP, &set.Domain.Safety
	out := gen.DomainSettings{
		Name:         d.Name,
		Sync:         d.Sync,
		Policy:       d.Policy,
		AliasDomains: orEmpty(d.AliasDomains),
		Interval:     d.Interval.String(),
		FullInterval: d.FullInterval.String(),
		Live:         d.Live,
		ManagedBy:    gen.DomainSettingsManagedBy(set.ManagedBy),
		Version:      set.Version,
		Ldap: gen.LDAPSettings{
			Urls:               orEmpty(l.URLs),
			BindDn:             l.BindDN,
			BaseDn:             l.BaseDN,
			Filter:             l.Filter,
			StartTls:           l.StartTLS,
			CaFile:             l.CAFile,
			InsecureSkipVerify: l.InsecureSkipVerify,
			PageSize:           l.PageSize,
			Timeout:            l.Timeout.String(),
			ConnectTimeout:     l.ConnectTimeout.String(),
			MaxEntries:         l.MaxEntries,
			AllowCleartextBind: l.AllowCleartextBind,
			PasswordSet:        set.PasswordSet,
		},
		Safety: gen.SafetySettings{MaxDeletes: sf.MaxDeletes, MaxDeletePercent: sf.MaxDeletePercent, PercentFloor: sf.PercentFloor},
	}
	switch set.ManagedBy {
	case host.ManagedByConfig:
		out.Ldap.PasswordFile = optional(l.PasswordFile)
		out.Ldap.PasswordEnv = optional(l.PasswordEnv)
	case host.ManagedByStore:
		out.Author = optional(set.Author)
		if !set.Saved.IsZero() {
			t := set.Saved
			out.Saved = &t
		}
	}
	return out
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// input is a settings body as a request sends it.
type input struct {
	// d holds the body's keys over the defaults of a new domain.
	d config.Domain
	// password is ldap.password: nil when left out or null.
	password *string
	// version is the version a PUT sends back: nil when left out.
	version *int64
}

// answerKeys are the keys that only answers carry: a request may send
// them back (what a GET answered, changed) and they are ignored.
var answerKeys = map[string]bool{"managed_by": true, "author": true, "saved": true, "ldap.password_set": true}

var durationType = reflect.TypeFor[config.Duration]()

// decodeSettings decodes a settings body over config.NewDomain: a key
// left out keeps its default. Each key is decoded on its own, so that a
// value that does not fit is refused naming its key (422), and so is a key
// that is not a setting.
func decodeSettings(raw []byte) (*input, error) {
	in := &input{d: config.NewDomain("")}
	if err := in.decode(raw, reflect.ValueOf(&in.d).Elem(), ""); err != nil {
		return nil, err
	}
	return in, nil
}

func (in *input) decode(raw []byte, v reflect.Value, prefix string) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		if prefix == "" {
			return badRequest("the body must be a JSON object of settings")
		}
		return invalidSetting(strings.TrimSuffix(prefix, "."), "must be an object")
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		val, key := obj[k], prefix+k
		null := bytes.Equal(bytes.TrimSpace(val), []byte("null"))
		switch {
		case key == "ldap.password":
			if !null {
				var pw string
				if json.Unmarshal(val, &pw) != nil {
					return invalidSetting(key, "must be a string") // the value is not repeated
				}
				in.password = &pw
			}
			continue
		case key == "version":
			if !null {
				var n int64
				if json.Unmarshal(val, &n) != nil || n < 0 {
					return invalidSetting(key, "must be a settings version (a whole number, 0 or more)")
				}
				in.version = &n
			}
			continue
		case answerKeys[key]:
			continue
		}
		f, ok := fieldByTag(v, k)
		if !ok {
			return invalidSetting(key, "unknown key")
		}
		if f.Kind() == reflect.Struct && f.Type() != durationType {
			if null {
				continue
			}
			if err := in.decode(val, f, key+"."); err != nil {
				return err
			}
			continue
		}
		if err := json.Unmarshal(val, f.Addr().Interface()); err != nil {
			return invalidSetting(key, "%s", valueError(f.Type(), err))
		}
	}
	return nil
}

// fieldByTag returns the field of struct v whose JSON name is name.
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if tag == name && tag != "-" {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// valueError says why a value does not fit a setting of type t.
func valueError(t reflect.Type, err error) string {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err.Error() // a duration's own: it says what is accepted
	}
	switch {
	case t == durationType:
		return `must be a duration such as "30s"`
	case t.Kind() == reflect.String:
		return "must be a string"
	case t.Kind() == reflect.Bool:
		return "must be true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "must be a whole number"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "must be a number"
	case t.Kind() == reflect.Slice:
		return "must be an array of strings"
	}
	return "has the wrong type"
}

// forDomain decodes a settings body for the path's domain: a name in the
// body must be the path's.
func forDomain(name string, raw []byte) (*input, error) {
	in, err := decodeSettings(raw)
	if err != nil {
		return nil, err
	}
	if in.d.Name != "" && !strings.EqualFold(in.d.Name, name) {
		return nil, invalidSetting("name", "the body is for domain %q, the path for %q (a domain cannot be renamed)", in.d.Name, name)
	}
	in.d.Name = name
	return in, nil
}

// settingsProblem answers the errors of checking settings: a refused key
// (422 naming it), an invalid filter (422 with its position), a domain of
// dirsync.toml (409). A run's error (of a preview) and any other error
// pass as they are.
func settingsProblem(err error) error {
	var (
		fe *sdk.FilterError
		re *host.RunError
		ce *config.Error
	)
	switch {
	case errors.As(err, &fe):
		p := filterProblem(fe)
		p.Key = "ldap.filter"
		return p
	case errors.As(err, &re):
		return err
	case errors.As(err, &ce) && ce.Key != "":
		return invalidSetting(strings.TrimPrefix(ce.Key, "domain."), "%s", ce.Msg)
	case errors.As(err, &ce):
		return &problem{Type: typeSettings, Title: "Invalid settings", Status: http.StatusUnprocessableEntity, Detail: ce.Msg}
	case errors.Is(err, host.ErrManagedByConfig):
		return managedByConfig("")
	}
	return err
}

// saveProblem is settingsProblem for a save, where a password without a
// key to seal it with is refused.
func saveProblem(err error) error {
	if errors.Is(err, host.ErrNoSecretsKey) {
		return invalidSetting("ldap.password", "%v", err)
	}
	return settingsProblem(err)
}

func (s *server) GetSettings(ctx context.Context, _ gen.GetSettingsRequestObject) (gen.GetSettingsResponseObject, error) {
	return gen.GetSettings200JSONResponse(settingsJSON(settingsOf(ctx))), nil
}

func (s *server) CreateDomain(ctx context.Context, req gen.CreateDomainRequestObject) (gen.CreateDomainResponseObject, error) {
	p := principal(ctx)
	in, err := decodeSettings(*req.Body)
	if err != nil {
		return nil, err
	}
	name := strings.ToLower(in.d.Name)
	if name == "" {
		return nil, invalidSetting("name", "required key is missing")
	}
	if strings.Contains(name, "@") {
		return nil, invalidSetting("name", "%q is not a domain name", name)
	}
	if err := sdk.CheckAddress("postmaster@" + name); err != nil {
		return nil, invalidSetting("name", "%q is not a domain name: %v", name, err)
	}
	in.d.Name = name
	if !p.AllowsDomain(name) {
		s.log.Info("api: request refused: the principal's domains do not include the name", "principal", p.Name,
			"method", http.MethodPost, "domain", name)
		return nil, &problem{Status: http.StatusForbidden, Detail: "the token's domains do not include " + name}
	}
	if cur, err := s.o.Host.Settings(ctx, name); err == nil {
		where := "it is set in dirsync.toml"
		if cur.ManagedBy == host.ManagedByStore {
			where = "it is kept in the store; change it with PUT …/settings"
		}
		return nil, &problem{Type: typeDomainExists, Title: "Domain exists", Status: http.StatusConflict,
			Detail: fmt.Sprintf("domain %s exists: %s", name, where)}
	} else if !errors.Is(err, host.ErrUnknownDomain) {
		return nil, err
	}
	v, err := s.o.Host.SaveSettings(ctx, in.d, in.password, p.Name, 0)
	switch {
	case errors.Is(err, store.ErrConflict): // made in the meantime
		return nil, &problem{Type: typeDomainExists, Title: "Domain exists", Status: http.StatusConflict,
			Detail: fmt.Sprintf("domain %s exists: it was made while this request ran", name)}
	case err != nil:
		return nil, saveProblem(err)
	}
	set, err := s.o.Host.Settings(ctx, name)
	if err != nil {
		return nil, err
	}
	def := config.NewDomain(name)
	s.auditSettings(ctx, "domain created", name, v, &def, &set.Domain, in.password)
	return gen.CreateDomain201JSONResponse(settingsJSON(set)), nil
}

func (s *server) PutSettings(ctx context.Context, req gen.PutSettingsRequestObject) (gen.PutSettingsResponseObject, error) {
	cur := settingsOf(ctx)
	name := cur.Name
	if cur.ManagedBy == host.ManagedByConfig {
		return nil, managedByConfig(name)
	}
	in, err := forDomain(name, *req.Body)
	if err != nil {
		return nil, err
	}
	if in.version == nil {
		return nil, invalidSetting("version", "required key is missing: send the version of the settings read (%d now)", cur.Version)
	}
	v, err := s.o.Host.SaveSettings(ctx, in.d, in.password, principal(ctx).Name, *in.version)
	switch {
	case errors.Is(err, store.ErrConflict):
		now, err := s.o.Host.Settings(ctx, name)
		if errors.Is(err, host.ErrUnknownDomain) {
			return nil, noDomain(name)
		}
		if err != nil {
			return nil, err
		}
		return nil, &problem{Type: typeStale, Title: "Settings changed since they were read", Status: http.StatusConflict,
			Detail: fmt.Sprintf("the settings of %s are at version %d, not %d: read them again and apply the changes to them",
				name, now.Version, *in.version),
			CurrentVersion: &now.Version}
	case errors.Is(err, host.ErrManagedByConfig):
		return nil, managedByConfig(name)
	case err != nil:
		return nil, saveProblem(err)
	}
	now, err := s.o.Host.Settings(ctx, name)
	if err != nil {
		return nil, err
	}
	s.auditSettings(ctx, "settings changed", name, v, &cur.Domain, &now.Domain, in.password)
	return gen.PutSettings200JSONResponse(settingsJSON(now)), nil
}

func (s *server) DeleteDomain(ctx context.Context, _ gen.DeleteDomainRequestObject) (gen.DeleteDomainResponseObject, error) {
	cur := settingsOf(ctx)
	if cur.ManagedBy == host.ManagedByConfig {
		return nil, managedByConfig(cur.Name)
	}
	err := s.o.Host.RemoveDomain(ctx, cur.Name, principal(ctx).Name)
	switch {
	case errors.Is(err, host.ErrManagedByConfig):
		return nil, managedByConfig(cur.Name)
	case errors.Is(err, store.ErrNotFound): // removed in the meantime
		return nil, noDomain(cur.Name)
	case err != nil:
		return nil, err
	}
	s.audit(ctx, "domain removed", cur.Name, "version", cur.Version)
	return gen.DeleteDomain204Response{}, nil
}

func (s *server) TestConnection(ctx context.Context, req gen.TestConnectionRequestObject) (gen.TestConnectionResponseObject, error) {
	cur := settingsOf(ctx)
	d, password := cur.Domain, (*string)(nil)
	if hasBody(req.Body) {
		in, err := s.draft(ctx, cur, *req.Body)
		if err != nil {
			return nil, err
		}
		d, password = in.d, in.password
	}
	res, err := s.o.Host.TestConnection(ctx, d, password)
	if err != nil {
		return nil, settingsProblem(err)
	}
	return gen.TestConnection200JSONResponse(*res), nil
}

func (s *server) PreviewDomain(ctx context.Context, req gen.PreviewDomainRequestObject) (gen.PreviewDomainResponseObject, error) {
	cur := settingsOf(ctx)
	if !hasBody(req.Body) {
		rep, err := s.o.Host.Preview(ctx, cur.Name)
		if err != nil {
			return nil, err
		}
		return gen.PreviewDomain200JSONResponse(*rep), nil
	}
	in, err := s.draft(ctx, cur, *req.Body)
	if err != nil {
		return nil, err
	}
	rep, err := s.o.Host.PreviewSettings(ctx, in.d, in.password)
	if err != nil {
		return nil, settingsProblem(err)
	}
	return gen.PreviewDomain200JSONResponse(*rep), nil
}

// hasBody reports whether an optional JSON body was sent (null counts as
// none).
func hasBody(b *json.RawMessage) bool {
	return b != nil && !bytes.Equal(bytes.TrimSpace(*b), []byte("null"))
}

// draft reads the settings body of a connection test or a preview: a form
// of the path's domain, not saved. A body without ldap.password binds
// with the domain's own password; a principal that may not write may then
// not point the connection elsewhere (403), as that would hand the
// password to another server.
func (s *server) draft(ctx context.Context, cur *host.Settings, raw []byte) (*input, error) {
	in, err := forDomain(cur.Name, raw)
	if err != nil {
		return nil, err
	}
	if l := &in.d.LDAP; cur.ManagedBy == host.ManagedByStore && (l.PasswordFile != "" || l.PasswordEnv != "") {
		key := "ldap.password_file"
		if l.PasswordFile == "" {
			key = "ldap.password_env"
		}
		return nil, invalidSetting(key, "a store-kept domain keeps its password in the store (ldap.password), not in a file or variable")
	}
	if p := principal(ctx); !p.mayWrite() && in.password == nil {
		if key := rerouted(&cur.Domain, &in.d); key != "" {
			s.log.Info("api: request refused: the principal may not send the domain's password elsewhere",
				"principal", p.Name, "domain", cur.Name, "key", key)
			return nil, &problem{Status: http.StatusForbidden, Detail: fmt.Sprintf(
				"the token's role (%s) may test and preview settings that keep the saved connection, and %s differs; "+
					"give ldap.password to bind with another connection", p.Role, key)}
		}
	}
	return in, nil
}

// rerouted returns the first key in which a form's connection differs
// from the saved one so that the domain's password would go to another
// server, or be sent less safely: a server not among the saved ones,
// another bind DN or CA file, TLS turned off or its checks loosened. ""
// if none.
func rerouted(saved, form *config.Domain) string {
	a, b := &saved.LDAP, &form.LDAP
	for _, u := range b.URLs {
		if !slices.Contains(a.URLs, u) {
			return "ldap.urls"
		}
	}
	switch {
	case b.BindDN != a.BindDN:
		return "ldap.bind_dn"
	case b.CAFile != a.CAFile:
		return "ldap.ca_file"
	case a.StartTLS && !b.StartTLS:
		return "ldap.start_tls"
	case b.InsecureSkipVerify && !a.InsecureSkipVerify:
		return "ldap.insecure_skip_verify"
	case b.AllowCleartextBind && !a.AllowCleartextBind:
		return "ldap.allow_cleartext_bind"
	}
	return ""
}

// auditSettings logs a change of a domain's settings: the new version,
// the keys that changed with their new values, and whether the password
// changed (never the password).
func (s *server) auditSettings(ctx context.Context, msg, domain string, version int64, before, after *config.Domain, password *string) {
	attrs := []any{"version", version}
	if password != nil {
		what := "changed"
		if *password == "" {
			what = "cleared"
		}
		attrs = append(attrs, "password", what)
	}
	b, a := flatSettings(before), flatSettings(after)
	var changed []any
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if a[k].json != b[k].json {
			changed = append(changed, slog.Any(k, a[k].value))
		}
	}
	attrs = append(attrs, slog.Group("set", changed...))
	s.audit(ctx, msg, domain, attrs...)
}

// setting is the value of one key of a domain's settings.
type setting struct {
	value any    // as JSON decodes it
	json  string // as an answer shows it
}

// flatSettings returns the keys of a domain's settings ("ldap.filter")
// with their values, as an answer shows them.
func flatSettings(d *config.Domain) map[string]setting {
	out := map[string]setting{}
	b, err := json.Marshal(settingsJSON(&host.Settings{Domain: *d}))
	if err != nil {
		return out
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return out
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			j, _ := json.Marshal(v)
			out[prefix+k] = setting{value: v, json: string(j)}
		}
	}
	walk("", m)
	for _, k := range []string{"managed_by", "version", "ldap.password_set"} {
		delete(out, k)
	}
	return out
}
