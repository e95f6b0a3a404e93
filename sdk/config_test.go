package sdk_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dirsync/dirsync/sdk"
	"github.com/dirsync/dirsync/sdk/abi"
)

type inner struct {
	Name  string `config:"name"`
	Count int    `config:"count"`
}

type settings struct {
	Flag     bool              `config:"flag"`
	Prefix   string            `config:"prefix"`
	Small    int8              `config:"small"`
	Big      int64             `config:"big"`
	Port     uint16            `config:"port"`
	Ratio    float64           `config:"ratio"`
	Ratio32  float32           `config:"ratio32"`
	Names    []string          `config:"names"`
	Limits   map[string]int    `config:"limits"`
	Inner    inner             `config:"inner"`
	Inners   []inner           `config:"inners"`
	Optional *bool             `config:"optional"`
	Raw      any               `config:"raw"`
	Ignored  string            // not a setting
	Skipped  string            `config:"-"`
	Deep     map[string][]bool `config:"deep"`
}

// abiConfig gives a table the value types a policy receives over the ABI
// (numbers float64, lists []any, tables map[string]any), as the host does.
func abiConfig(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	n, err := abi.NormalizeConfig(m)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDecodeConfig(t *testing.T) {
	yes := true
	defaults := settings{Prefix: "GG-", Ratio: 0.5, Ignored: "kept", Skipped: "kept"}
	full := map[string]any{
		"flag": true, "prefix": "Mail-", "small": -128, "big": int64(1) << 53, "port": 8425,
		"ratio": 0.25, "ratio32": 1.5,
		"names": []string{"a", "b"}, "limits": map[string]any{"x": 1, "y": -2},
		"inner":    map[string]any{"name": "n", "count": 3},
		"inners":   []any{map[string]any{"name": "m"}},
		"optional": true, "raw": []any{"x", 1.0},
		"deep": map[string]any{"k": []any{true, false}},
	}
	want := settings{
		Flag: true, Prefix: "Mail-", Small: -128, Big: 1 << 53, Port: 8425, Ratio: 0.25, Ratio32: 1.5,
		Names: []string{"a", "b"}, Limits: map[string]int{"x": 1, "y": -2},
		Inner: inner{Name: "n", Count: 3}, Inners: []inner{{Name: "m"}}, Optional: &yes, Raw: []any{"x", 1.0},
		Ignored: "kept", Skipped: "kept", Deep: map[string][]bool{"k": {true, false}},
	}
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		want settings
	}{
		{"nil keeps the defaults", nil, defaults},
		{"empty keeps the defaults", map[string]any{}, defaults},
		{"every type", abiConfig(t, full), want},
		{"Go number types too", map[string]any{"small": int(5), "port": uint8(7), "ratio": float32(2), "big": int64(-9)},
			settings{Prefix: "GG-", Small: 5, Port: 7, Ratio: 2, Big: -9, Ignored: "kept", Skipped: "kept"}},
		{"integral float", map[string]any{"small": 127.0}, settings{Prefix: "GG-", Ratio: 0.5, Small: 127, Ignored: "kept", Skipped: "kept"}},
		{"null pointer and any", map[string]any{"optional": nil, "raw": nil}, defaults},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := defaults
			if err := sdk.DecodeConfig(tc.cfg, &got); err != nil {
				t.Fatalf("DecodeConfig: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		want string // the whole message
	}{
		{"unknown key", map[string]any{"prefx": "x"},
			`config key "prefx" is unknown (known keys: big, deep, flag, inner, inners, limits, names, optional, port, prefix, ratio, ratio32, raw, small)`},
		{"untagged field is no key", map[string]any{"Ignored": "x"}, `config key "Ignored" is unknown`},
		{"first bad key in sorted order", map[string]any{"zzz": 1, "flag": "yes", "aaa": 2}, `config key "aaa" is unknown`},
		{"bool as string", map[string]any{"flag": "yes"}, `config key "flag" must be a bool (true or false), got the string "yes"`},
		{"bool as number", map[string]any{"flag": 0.0}, `config key "flag" must be a bool (true or false), got the number 0`},
		{"bool as null", map[string]any{"flag": nil}, `config key "flag" must be a bool (true or false), got nothing`},
		{"string as number", map[string]any{"prefix": 7.0}, `config key "prefix" must be a string, got the number 7`},
		{"string as list", map[string]any{"prefix": []any{"a"}}, `config key "prefix" must be a string, got a list`},
		{"string as table", map[string]any{"prefix": map[string]any{}}, `config key "prefix" must be a string, got a table`},
		{"string as bool", map[string]any{"prefix": true}, `config key "prefix" must be a string, got the bool true`},
		{"fraction", map[string]any{"small": 1.5}, `config key "small" must be an integer, got the number 1.5`},
		{"integer as string", map[string]any{"big": "1"}, `config key "big" must be an integer, got the string "1"`},
		{"int8 too big", map[string]any{"small": 128.0}, `config key "small" must be an integer from -128 to 127, got the number 128`},
		{"int8 too small", map[string]any{"small": -129.0}, `config key "small" must be an integer from -128 to 127, got the number -129`},
		{"int64 too big", map[string]any{"big": 1e19}, `config key "big" must be an integer from -9223372036854775808 to 9223372036854775807, got the number 1e+19`},
		{"negative uint", map[string]any{"port": -1.0}, `config key "port" must be an integer from 0 to 65535, got the number -1`},
		{"uint too big", map[string]any{"port": 65536.0}, `config key "port" must be an integer from 0 to 65535, got the number 65536`},
		{"float32 overflow", map[string]any{"ratio32": 1e39}, `config key "ratio32" must be a number, got the number 1e+39`},
		{"number as string", map[string]any{"ratio": "0.5"}, `config key "ratio" must be a number, got the string "0.5"`},
		{"list element", map[string]any{"names": []any{"a", 2.0}}, `config key "names[1]" must be a string, got the number 2`},
		{"list as string", map[string]any{"names": "a,b"}, `config key "names" must be a list, got the string "a,b"`},
		{"map value", map[string]any{"limits": map[string]any{"b": 1.0, "a": "x"}}, `config key "limits.a" must be an integer, got the string "x"`},
		{"nested unknown key", map[string]any{"inner": map[string]any{"nme": "x"}}, `config key "inner.nme" is unknown (known keys: count, name)`},
		{"nested bad value", map[string]any{"inners": []any{map[string]any{"count": "3"}}}, `config key "inners[0].count" must be an integer, got the string "3"`},
		{"table as list", map[string]any{"inner": []any{}}, `config key "inner" must be a table, got a list`},
		{"pointer element", map[string]any{"optional": "yes"}, `config key "optional" must be a bool (true or false), got the string "yes"`},
		{"deep", map[string]any{"deep": map[string]any{"k": []any{true, 1.0}}}, `config key "deep.k[1]" must be a bool (true or false), got the number 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := settings{Prefix: "GG-"}
			err := sdk.DecodeConfig(tc.cfg, &s)
			var ce *sdk.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("DecodeConfig(%v) = %v, want a *sdk.ConfigError", tc.cfg, err)
			}
			if got := err.Error(); got != tc.want && !(strings.HasSuffix(tc.want, "unknown") && strings.HasPrefix(got, tc.want)) {
				t.Errorf("error\n got  %s\n want %s", got, tc.want)
			}
		})
	}
}

type name string

type withRemain struct {
	Own  string         `config:"own"`
	Rest map[string]any `config:",remain"`
}

func TestDecodeConfigRemain(t *testing.T) {
	var s withRemain
	if err := sdk.DecodeConfig(map[string]any{"own": "x", "b": true, "a": 1.0}, &s); err != nil {
		t.Fatal(err)
	}
	if want := (withRemain{Own: "x", Rest: map[string]any{"a": 1.0, "b": true}}); !reflect.DeepEqual(s, want) {
		t.Errorf("got %+v, want %+v", s, want)
	}
	s = withRemain{Rest: map[string]any{"old": 1}}
	if err := sdk.DecodeConfig(map[string]any{"own": "y"}, &s); err != nil || s.Rest != nil {
		t.Errorf("no other keys: Rest = %v, %v; want nil", s.Rest, err)
	}
	if err := sdk.DecodeConfig(map[string]any{"own": 1.0, "x": 1}, &s); err == nil || err.Error() != `config key "own" must be a string, got the number 1` {
		t.Errorf("bad own key: %v", err)
	}
}

func TestDecodeConfigProgrammingErrors(t *testing.T) {
	var notStruct int
	var nilPtr *settings
	type unexported struct {
		x bool `config:"x"`
	}
	type badType struct {
		C chan int `config:"c"`
	}
	type badNested struct {
		In []struct {
			F func() `config:"f"`
		} `config:"in"`
	}
	type badTag struct {
		X bool `config:"x,omitempty"`
	}
	type dupKey struct {
		A bool `config:"x"`
		B bool `config:"x"`
	}
	type badRemain struct {
		R map[string]string `config:",remain"`
	}
	type mapKey struct {
		M map[int]bool `config:"m"`
	}
	type namedKey struct {
		M map[name]bool `config:"m"`
	}
	type duration struct {
		D time.Duration `config:"d"`
	}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{settings{}, "must be a non-nil pointer to a struct, not sdk_test.settings"},
		{&notStruct, "not *int"},
		{nilPtr, "not *sdk_test.settings"},
		{nil, "not <nil>"},
		{&unexported{}, "field sdk_test.unexported.x has a config tag but is not exported"},
		{&badType{}, "field sdk_test.badType.C: a config value cannot be a chan int"},
		{&badNested{}, "a config value cannot be a func()"},
		{&badTag{}, `bad config tag "x,omitempty"`},
		{&dupKey{}, `two fields for the key "x"`},
		{&badRemain{}, `must be a map[string]any`},
		{&mapKey{}, "cannot be a map[int]bool"},
		{&namedKey{}, "cannot be a map[sdk_test.name]bool"},
		{&duration{}, "field sdk_test.duration.D: a config value cannot be a time.Duration; take a string and call time.ParseDuration"},
	} {
		err := sdk.DecodeConfig(nil, tc.v)
		var ce *sdk.ConfigError
		if err == nil || errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeConfig(nil, %T) = %v, want a plain error containing %q", tc.v, err, tc.want)
		}
	}
	_ = unexported{}.x
}

// A policy's Configure: defaults first, decode into a fresh value, keep it
// only when the whole table is valid.
func ExampleDecodeConfig() {
	type settings struct {
		GroupPrefix     string   `config:"group_prefix"`
		ExcludeDisabled bool     `config:"exclude_disabled"`
		Skip            []string `config:"skip"`
	}
	for _, table := range []map[string]any{
		nil,
		{"group_prefix": "Mail-", "skip": []any{"svc-", "test-"}},
		{"exclude_disabled": "yes"},
		{"group_prefx": "Mail-"},
	} {
		s := settings{GroupPrefix: "GG-Mail-"}
		if err := sdk.DecodeConfig(table, &s); err != nil {
			fmt.Println("mypolicy:", err)
			continue
		}
		fmt.Printf("%+v\n", s)
	}
	// Output:
	// {GroupPrefix:GG-Mail- ExcludeDisabled:false Skip:[]}
	// {GroupPrefix:Mail- ExcludeDisabled:false Skip:[svc- test-]}
	// mypolicy: config key "exclude_disabled" must be a bool (true or false), got the string "yes"
	// mypolicy: config key "group_prefx" is unknown (known keys: exclude_disabled, group_prefix, skip)
}

// TestDecodeConfigTags checks that the config key is found among the other
// keys of a struct tag.
func TestDecodeConfigTags(t *testing.T) {
	var s struct {
		A string `json:"a,omitempty" config:"a"`
		B string `myconfig:"x" config:"b"`
		C string `json:"say \"hi\"" config:"c" toml:"c"`
		D string `config:"d"`
		E string `xml:"e"`
		F string `config:"f\\g"` // an escape: no key
	}
	err := sdk.DecodeConfig(map[string]any{"a": "1", "b": "2", "c": "3", "d": "4"}, &s)
	if err != nil || s.A != "1" || s.B != "2" || s.C != "3" || s.D != "4" {
		t.Errorf("DecodeConfig: %+v, %v", s, err)
	}
	for _, k := range []string{"x", "e", "f\\g", "f"} {
		if err := sdk.DecodeConfig(map[string]any{k: "1"}, &s); err == nil || !strings.Contains(err.Error(), "is unknown (known keys: a, b, c, d)") {
			t.Errorf("key %q: %v", k, err)
		}
	}
}
