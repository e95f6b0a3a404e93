package abi

import (
	"encoding/base64"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"time"
	"unicode/utf8"

	pb "github.com/dirsync/dirsync/sdk/proto/syncpolicy/v1"
	"google.golang.org/protobuf/types/known/structpb"
)

// maxExactInt is the largest integer magnitude a float64 holds exactly.
const maxExactInt = 1 << 53

// ConfigToProto converts the manifest's [policy.config] table into a
// google.protobuf.Struct.
//
// Accepted values are those a TOML or JSON decoder produces: nil, bool,
// strings, every integer and float type, time.Time (sent as an RFC 3339
// string), []byte (sent as base64), and slices, arrays and maps with string
// keys of accepted values. Integers must fit a float64 exactly (|n| ≤ 2^53).
// Anything else is an error naming the key. A nil table gives nil.
func ConfigToProto(config map[string]any) (*structpb.Struct, error) {
	if config == nil {
		return nil, nil
	}
	return structOf(config, "")
}

// ConfigFromProto converts a Struct back to a config table, the way
// encoding/json decodes into map[string]any: numbers are float64, lists are
// []any, tables are map[string]any. nil gives nil.
func ConfigFromProto(s *structpb.Struct) map[string]any {
	if s == nil {
		return nil
	}
	return s.AsMap()
}

// NormalizeConfig gives config the form a policy receives over the ABI
// (ConfigFromProto(ConfigToProto(config))). A runtime that hands the table
// to a policy directly can normalize it first, so that a policy sees the
// same value types whatever runtime serves it.
func NormalizeConfig(config map[string]any) (map[string]any, error) {
	s, err := ConfigToProto(config)
	if err != nil {
		return nil, err
	}
	return ConfigFromProto(s), nil
}

// ConfigureRequestToProto converts the config table into a ConfigureRequest.
func ConfigureRequestToProto(config map[string]any) (*pb.ConfigureRequest, error) {
	s, err := ConfigToProto(config)
	if err != nil {
		return nil, err
	}
	return &pb.ConfigureRequest{Config: s}, nil
}

// ConfigureRequestFromProto returns the config table of a ConfigureRequest.
func ConfigureRequestFromProto(m *pb.ConfigureRequest) map[string]any {
	return ConfigFromProto(m.GetConfig())
}

func structOf(m map[string]any, path string) (*structpb.Struct, error) {
	if m == nil {
		return &structpb.Struct{}, nil
	}
	s := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(m))}
	// Sorted, so that of several bad values the error always names the same.
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		p := joinKey(path, k)
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("config key %q: invalid UTF-8", p)
		}
		val, err := valueOf(v, p)
		if err != nil {
			return nil, err
		}
		s.Fields[k] = val
	}
	return s, nil
}

func valueOf(v any, path string) (*structpb.Value, error) {
	switch v := v.(type) {
	case nil:
		return structpb.NewNullValue(), nil
	case bool:
		return structpb.NewBoolValue(v), nil
	case string:
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("config key %q: invalid UTF-8 in string", path)
		}
		return structpb.NewStringValue(v), nil
	case []byte:
		return structpb.NewStringValue(base64.StdEncoding.EncodeToString(v)), nil
	case time.Time:
		return structpb.NewStringValue(v.Format(time.RFC3339Nano)), nil
	case map[string]any:
		s, err := structOf(v, path)
		if err != nil {
			return nil, err
		}
		return structpb.NewStructValue(s), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := rv.Int()
		if n > maxExactInt || n < -maxExactInt {
			return nil, fmt.Errorf("config key %q: integer %d does not fit a float64 exactly", path, n)
		}
		return structpb.NewNumberValue(float64(n)), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n := rv.Uint()
		if n > maxExactInt {
			return nil, fmt.Errorf("config key %q: integer %d does not fit a float64 exactly", path, n)
		}
		return structpb.NewNumberValue(float64(n)), nil
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			// protobuf's JSON form cannot carry them, and no policy needs them.
			return nil, fmt.Errorf("config key %q: %v is not a finite number", path, f)
		}
		return structpb.NewNumberValue(f), nil
	case reflect.String:
		return valueOf(rv.String(), path)
	case reflect.Bool:
		return structpb.NewBoolValue(rv.Bool()), nil
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return structpb.NewListValue(&structpb.ListValue{}), nil
		}
		l := &structpb.ListValue{Values: make([]*structpb.Value, rv.Len())}
		for i := range rv.Len() {
			x, err := valueOf(rv.Index(i).Interface(), fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			l.Values[i] = x
		}
		return structpb.NewListValue(l), nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("config key %q: map keys must be strings, not %s", path, rv.Type().Key())
		}
		m := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			m[it.Key().String()] = it.Value().Interface()
		}
		return valueOf(m, path)
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return structpb.NewNullValue(), nil
		}
		return valueOf(rv.Elem().Interface(), path)
	}
	return nil, fmt.Errorf("config key %q: unsupported value type %T", path, v)
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
