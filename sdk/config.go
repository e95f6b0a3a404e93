package sdk

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// ConfigError is a value of the [policy.config] table that a policy
// refuses. Its message names the key, which is what the operator sees when
// the host refuses to load the policy:
//
//	config key "exclude_disabled" must be a bool (true or false), got the string "yes"
//
// DecodeConfig returns one for every value it refuses; a policy can return
// one for its own checks too.
type ConfigError struct {
	// Key names the value: a key of the table, "table.key" for a key of a
	// table inside it, "key[2]" for an element of a list.
	Key string
	// Reason says what is wrong, as the words that follow the key: "must
	// be a bool (true or false), got the string \"yes\"", "is unknown
	// (known keys: a, b)".
	Reason string
}

// Error returns `config key "<Key>" <Reason>`.
func (e *ConfigError) Error() string {
	return "config key " + strconv.Quote(e.Key) + " " + e.Reason
}

// DecodeConfig stores the [policy.config] table that Configure receives
// into the struct v points to, strictly: a key that no field takes, or a
// value of the wrong type, is a *ConfigError naming the key. Keys are
// checked in sorted order, so that the same bad table always gives the same
// error, and the first bad one is returned.
//
// A field takes the key named by its `config` tag; fields without one (or
// with `config:"-"`) are not settings. Fields of absent keys keep their
// values, so fill v with the defaults first; and decode into a fresh value,
// replacing the settings only when DecodeConfig succeeds, so that a refused
// table changes nothing:
//
//	type settings struct {
//		GroupPrefix     string   `config:"group_prefix"`
//		ExcludeDisabled bool     `config:"exclude_disabled"`
//		Skip            []string `config:"skip"`
//	}
//
//	func (p *Policy) Configure(config map[string]any) error {
//		s := settings{GroupPrefix: "GG-Mail-"} // the defaults
//		if err := sdk.DecodeConfig(config, &s); err != nil {
//			return fmt.Errorf("mypolicy: %w", err)
//		}
//		p.set = s
//		return nil
//	}
//
// Values arrive the way the ABI carries them (a google.protobuf.Struct,
// whatever the runtime), and fields take them so:
//
//	bool                       a TOML boolean
//	string                     a TOML string (or date-time, as RFC 3339 text)
//	int…int64, uint…uint64     a number without a fraction, in the field's range
//	float32, float64           a number
//	[]T                        an array, each element as T
//	map[string]T               a table, each value as T (the key type string itself)
//	a struct                   a table, decoded as strictly as v itself
//	*T                         as T, in a new T (a null value sets nil)
//	any                        the value as it arrives: string, bool, float64, []any, map[string]any
//
// One field of type map[string]any may be tagged `config:",remain"`: it
// receives the keys no other field takes instead of refusing them (nil when
// there are none). A policy that wraps another one uses it to pass the
// other policy's keys on to that policy's Configure.
//
// A v that is not a non-nil pointer to a struct, or a struct with a field
// of another type, is an error (not a *ConfigError) whatever the table
// holds, so a policy's first test with a nil table finds it.
//
// DecodeConfig uses package reflect and no encoding package: it adds about
// 0.13 MB to a WebAssembly module. It takes no time.Duration (an int64 that
// would read a number as nanoseconds): take a string and call
// time.ParseDuration.
func DecodeConfig(config map[string]any, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		name := "<nil>"
		if v != nil {
			name = rv.Type().String()
		}
		return errors.New("sdk.DecodeConfig: v must be a non-nil pointer to a struct, not " + name)
	}
	if err := checkConfigType(rv.Elem().Type(), rv.Elem().Type().String(), map[reflect.Type]bool{}); err != nil {
		return err
	}
	return decodeConfigStruct(config, rv.Elem(), "")
}

var (
	stringType    = reflect.TypeFor[string]()
	remainMapType = reflect.TypeFor[map[string]any]()
)

// configFields returns the keyed fields of a struct type (the field index
// by key), the keys sorted, and the index of its remain field (-1 for
// none).
func configFields(t reflect.Type) (fields map[string]int, keys []string, remain int, err error) {
	remain = -1
	fields = map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := configTag(f.Tag)
		if !ok || tag == "-" {
			continue
		}
		where := t.String() + "." + f.Name
		if !f.IsExported() {
			return nil, nil, 0, errors.New("sdk.DecodeConfig: field " + where + " has a config tag but is not exported")
		}
		name, opt, _ := strings.Cut(tag, ",")
		switch {
		case opt == "remain" && name == "":
			if f.Type != remainMapType {
				return nil, nil, 0, errors.New("sdk.DecodeConfig: field " + where + " tagged \",remain\" must be a map[string]any")
			}
			if remain >= 0 {
				return nil, nil, 0, errors.New("sdk.DecodeConfig: " + t.String() + " has two fields tagged \",remain\"")
			}
			remain = i
			continue
		case opt != "" || name == "":
			return nil, nil, 0, errors.New("sdk.DecodeConfig: field " + where + ": bad config tag " + strconv.Quote(tag) + " (want `config:\"key\"` or `config:\",remain\"`)")
		}
		if _, dup := fields[name]; dup {
			return nil, nil, 0, errors.New("sdk.DecodeConfig: " + t.String() + " has two fields for the key " + strconv.Quote(name))
		}
		fields[name] = i
		keys = append(keys, name)
	}
	slices.Sort(keys)
	return fields, keys, remain, nil
}

// configTag returns the value of the config key of a struct tag, as
// reflect.StructTag.Lookup does for values without escapes (a value with a
// backslash is not found; it is no config key name).
func configTag(tag reflect.StructTag) (string, bool) {
	const key = `config:"`
	for s := string(tag); s != ""; {
		s = strings.TrimLeft(s, " ")
		i := strings.IndexByte(s, ':')
		if i <= 0 || i+1 >= len(s) || s[i+1] != '"' {
			return "", false
		}
		name := s[:i]
		rest := s[i+2:]
		j := strings.IndexByte(rest, '"')
		for j > 0 && rest[j-1] == '\\' { // an escaped quote: skip the value
			k := strings.IndexByte(rest[j+1:], '"')
			if k < 0 {
				return "", false
			}
			j += 1 + k
		}
		if j < 0 {
			return "", false
		}
		if name+`:"` == key {
			v := rest[:j]
			return v, !strings.Contains(v, `\`)
		}
		s = rest[j+1:]
	}
	return "", false
}

// checkConfigType refuses a field type DecodeConfig cannot fill.
func checkConfigType(t reflect.Type, where string, seen map[reflect.Type]bool) error {
	if t.PkgPath() == "time" && t.Name() == "Duration" {
		// An int64, which would take a number of nanoseconds.
		return errors.New("sdk.DecodeConfig: field " + where + ": a config value cannot be a time.Duration; take a string and call time.ParseDuration")
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return nil
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return nil
		}
	case reflect.Pointer, reflect.Slice:
		return checkConfigType(t.Elem(), where, seen)
	case reflect.Map:
		if t.Key() == stringType {
			return checkConfigType(t.Elem(), where, seen)
		}
	case reflect.Struct:
		if seen[t] {
			return nil
		}
		seen[t] = true
		fields, keys, _, err := configFields(t)
		if err != nil {
			return err
		}
		for _, k := range keys {
			sf := t.Field(fields[k])
			if err := checkConfigType(sf.Type, t.String()+"."+sf.Name, seen); err != nil {
				return err
			}
		}
		return nil
	}
	return errors.New("sdk.DecodeConfig: field " + where + ": a config value cannot be a " + t.String())
}

func joinConfigKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func decodeConfigStruct(m map[string]any, sv reflect.Value, path string) error {
	fields, keys, remain, err := configFields(sv.Type())
	if err != nil {
		return err
	}
	var rest map[string]any
	for _, k := range sortedKeys(m) {
		key := joinConfigKey(path, k)
		i, found := fields[k]
		if !found {
			if remain < 0 {
				known := "none"
				if len(keys) > 0 {
					known = strings.Join(keys, ", ")
				}
				return &ConfigError{Key: key, Reason: "is unknown (known keys: " + known + ")"}
			}
			if rest == nil {
				rest = map[string]any{}
			}
			rest[k] = m[k]
			continue
		}
		if err := decodeConfigValue(m[k], sv.Field(i), key); err != nil {
			return err
		}
	}
	if remain >= 0 {
		sv.Field(remain).Set(reflect.ValueOf(rest))
	}
	return nil
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func decodeConfigValue(x any, dst reflect.Value, key string) error {
	bad := func(want string) error {
		return &ConfigError{Key: key, Reason: "must be " + want + ", got " + describeConfigValue(x)}
	}
	t := dst.Type()
	switch t.Kind() {
	case reflect.Pointer:
		if x == nil {
			dst.SetZero()
			return nil
		}
		p := reflect.New(t.Elem())
		if err := decodeConfigValue(x, p.Elem(), key); err != nil {
			return err
		}
		dst.Set(p)
	case reflect.Interface:
		if x == nil {
			dst.SetZero()
		} else {
			dst.Set(reflect.ValueOf(x))
		}
	case reflect.Bool:
		b, ok := x.(bool)
		if !ok {
			return bad("a bool (true or false)")
		}
		dst.SetBool(b)
	case reflect.String:
		s, ok := x.(string)
		if !ok {
			return bad("a string")
		}
		dst.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f, ok := configNumber(x)
		if !ok || f != math.Trunc(f) {
			return bad("an integer")
		}
		lo := int64(-1) << (t.Bits() - 1)
		if f < float64(lo) || f >= -float64(lo) {
			return bad("an integer from " + strconv.FormatInt(lo, 10) + " to " + strconv.FormatInt(-(lo+1), 10))
		}
		dst.SetInt(int64(f))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		f, ok := configNumber(x)
		if !ok || f != math.Trunc(f) {
			return bad("an integer")
		}
		if f < 0 || f >= math.Ldexp(1, t.Bits()) {
			return bad("an integer from 0 to " + strconv.FormatUint(math.MaxUint64>>(64-t.Bits()), 10))
		}
		dst.SetUint(uint64(f))
	case reflect.Float32, reflect.Float64:
		f, ok := configNumber(x)
		if !ok || dst.OverflowFloat(f) {
			return bad("a number")
		}
		dst.SetFloat(f)
	case reflect.Slice:
		l, ok := x.([]any)
		if !ok {
			return bad("a list")
		}
		s := reflect.MakeSlice(t, len(l), len(l))
		for i, e := range l {
			if err := decodeConfigValue(e, s.Index(i), key+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
		dst.Set(s)
	case reflect.Map:
		m, ok := x.(map[string]any)
		if !ok {
			return bad("a table")
		}
		out := reflect.MakeMapWithSize(t, len(m))
		for _, k := range sortedKeys(m) {
			e := reflect.New(t.Elem()).Elem()
			if err := decodeConfigValue(m[k], e, joinConfigKey(key, k)); err != nil {
				return err
			}
			out.SetMapIndex(reflect.ValueOf(k), e)
		}
		dst.Set(out)
	case reflect.Struct:
		m, ok := x.(map[string]any)
		if !ok {
			return bad("a table")
		}
		return decodeConfigStruct(m, dst, key)
	}
	return nil
}

// configNumber returns a config number as a float64, the way the ABI carries
// numbers; other Go number types are taken too, for tests that pass them.
func configNumber(x any) (float64, bool) {
	switch n := x.(type) {
	case float64:
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	case nil, bool, string:
		return 0, false
	}
	v := reflect.ValueOf(x)
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(v.Uint()), true
	case reflect.Float32:
		return configNumber(v.Float())
	}
	return 0, false
}

// describeConfigValue names a config value and its type for an error.
func describeConfigValue(x any) string {
	switch v := x.(type) {
	case nil:
		return "nothing"
	case string:
		return "the string " + strconv.Quote(v)
	case bool:
		return "the bool " + strconv.FormatBool(v)
	case float64:
		return "the number " + strconv.FormatFloat(v, 'g', -1, 64)
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	if f, ok := configNumber(x); ok {
		return "the number " + strconv.FormatFloat(f, 'g', -1, 64)
	}
	return "a " + reflect.TypeOf(x).String()
}
