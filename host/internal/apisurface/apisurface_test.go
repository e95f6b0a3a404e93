// Package apisurface holds the test that keeps the public API of the host
// and the sdk free of internal types: an embedder or a policy author can
// name every type that an exported identifier hands them.
package apisurface

import (
	"fmt"
	"go/types"
	"slices"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

// internalPath says whether an import path is an internal package, which
// code outside this module cannot import.
func internalPath(path string) bool {
	return strings.Contains(path, "/internal/") || strings.HasSuffix(path, "/internal")
}

// TestNoInternalTypesInPublicAPI walks every exported identifier of the
// module's public packages (functions, methods, struct fields, variables,
// constants, interface methods, type parameters) and fails on each that
// mentions a type of an internal package.
func TestNoInternalTypesInPublicAPI(t *testing.T) {
	pkgs, err := packages.Load(&packages.Config{Mode: packages.NeedName | packages.NeedTypes},
		"github.com/dirsync/dirsync/...")
	if err != nil {
		t.Fatal(err)
	}
	var problems []string
	checked := 0
	for _, p := range pkgs {
		if internalPath(p.PkgPath) || p.Name == "main" {
			continue
		}
		for _, e := range p.Errors {
			t.Errorf("%s: %v", p.PkgPath, e)
		}
		if p.Types == nil {
			continue
		}
		checked++
		w := walker{pkg: p.PkgPath, seen: map[types.Type]bool{}}
		scope := p.Types.Scope()
		for _, name := range scope.Names() {
			obj := scope.Lookup(name)
			if !obj.Exported() {
				continue
			}
			w.object(p.PkgPath+"."+name, obj)
		}
		problems = append(problems, w.problems...)
	}
	if checked < 5 {
		t.Fatalf("only %d public packages found", checked)
	}
	slices.Sort(problems)
	for _, p := range slices.Compact(problems) {
		t.Errorf("%s", p)
	}
}

type walker struct {
	pkg      string
	seen     map[types.Type]bool
	problems []string
}

func (w *walker) object(where string, obj types.Object) {
	switch o := obj.(type) {
	case *types.Func:
		w.typ(where, o.Type())
	case *types.Var, *types.Const:
		w.typ(where, o.Type())
	case *types.TypeName:
		if o.IsAlias() {
			w.typ(where, types.Unalias(o.Type()))
			return
		}
		named, ok := o.Type().(*types.Named)
		if !ok {
			return
		}
		if tps := named.TypeParams(); tps != nil {
			for i := range tps.Len() {
				w.typ(where+"["+tps.At(i).Obj().Name()+"]", tps.At(i).Constraint())
			}
		}
		w.structure(where, named.Underlying())
		for i := range named.NumMethods() {
			m := named.Method(i)
			if m.Exported() {
				w.typ(where+"."+m.Name(), m.Type())
			}
		}
	}
}

// structure walks what a declared type of the package shows: exported
// fields of a struct, methods of an interface, or the type it is made of.
func (w *walker) structure(where string, u types.Type) {
	switch u := u.(type) {
	case *types.Struct:
		for i := range u.NumFields() {
			f := u.Field(i)
			if f.Exported() || f.Embedded() {
				w.typ(where+"."+f.Name(), f.Type())
			}
		}
	case *types.Interface:
		for i := range u.NumExplicitMethods() {
			m := u.ExplicitMethod(i)
			if m.Exported() {
				w.typ(where+"."+m.Name(), m.Type())
			}
		}
		for i := range u.NumEmbeddeds() {
			w.typ(where, u.EmbeddedType(i))
		}
	default:
		w.typ(where, u)
	}
}

// typ reports the internal named types t mentions. A named type of a
// public package is that package's to check; its type arguments are not.
func (w *walker) typ(where string, t types.Type) {
	if t == nil || w.seen[t] {
		return
	}
	switch t := t.(type) {
	case *types.Alias:
		w.typ(where, types.Unalias(t))
	case *types.Named:
		if pkg := t.Obj().Pkg(); pkg != nil && internalPath(pkg.Path()) {
			w.problems = append(w.problems, fmt.Sprintf("%s mentions the internal type %s.%s", where, pkg.Path(), t.Obj().Name()))
		}
		if args := t.TypeArgs(); args != nil {
			for i := range args.Len() {
				w.typ(where, args.At(i))
			}
		}
	case *types.Pointer:
		w.typ(where, t.Elem())
	case *types.Slice:
		w.typ(where, t.Elem())
	case *types.Array:
		w.typ(where, t.Elem())
	case *types.Map:
		w.typ(where, t.Key())
		w.typ(where, t.Elem())
	case *types.Chan:
		w.typ(where, t.Elem())
	case *types.Signature:
		for i := range t.Params().Len() {
			w.typ(where, t.Params().At(i).Type())
		}
		for i := range t.Results().Len() {
			w.typ(where, t.Results().At(i).Type())
		}
	case *types.Struct:
		w.seen[t] = true
		w.structure(where, t)
	case *types.Interface:
		w.seen[t] = true
		w.structure(where, t)
	case *types.Union:
		for i := range t.Len() {
			w.typ(where, t.Term(i).Type())
		}
	case *types.TypeParam:
		// Its constraint is checked where it is declared.
	}
}

// TestImportRules keeps the imports running one way (design: layout):
// the sdk and the policies of plugins/ and examples/ import nothing of the
// host, the host library links no particular policy (only its commands
// do), and nothing imports examples/. One exception: sdk/policytest, the
// test kit, loads a built module through the host's runtimes (Load); a
// policy's own build never imports it.
func TestImportRules(t *testing.T) {
	const mod = "github.com/dirsync/dirsync"
	pkgs, err := packages.Load(&packages.Config{Mode: packages.NeedName | packages.NeedImports | packages.NeedDeps}, mod+"/...")
	if err != nil {
		t.Fatal(err)
	}
	under := func(path, dir string) bool { return path == mod+"/"+dir || strings.HasPrefix(path, mod+"/"+dir+"/") }
	checked := 0
	for _, p := range pkgs {
		var rule string
		var forbidden func(string) bool
		switch {
		case p.PkgPath == mod+"/sdk/policytest":
			rule, forbidden = "links a policy", func(dep string) bool { return under(dep, "plugins") || under(dep, "examples") }
		case under(p.PkgPath, "sdk"), under(p.PkgPath, "plugins"),
			under(p.PkgPath, "examples") && strings.HasPrefix(strings.TrimPrefix(p.PkgPath, mod+"/examples/"), "policy-"):
			rule, forbidden = "imports the host", func(dep string) bool { return under(dep, "host") }
		case under(p.PkgPath, "host") && !strings.Contains(p.PkgPath, "/cmd/") && !strings.Contains(p.PkgPath, "/internal/testpolicy"):
			rule, forbidden = "links a policy", func(dep string) bool { return under(dep, "plugins") || under(dep, "examples") }
		default:
			rule, forbidden = "imports an example", func(dep string) bool { return under(dep, "examples") && !under(p.PkgPath, "examples") }
		}
		checked++
		for _, dep := range deps(p) {
			if forbidden(dep) {
				t.Errorf("%s %s: %s", p.PkgPath, rule, dep)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("only %d packages checked", checked)
	}
}

// deps lists every package p imports, directly or not.
func deps(p *packages.Package) []string {
	seen := map[string]bool{}
	var walk func(*packages.Package)
	walk = func(p *packages.Package) {
		for path, q := range p.Imports {
			if !seen[path] {
				seen[path] = true
				walk(q)
			}
		}
	}
	walk(p)
	out := make([]string, 0, len(seen))
	for path := range seen {
		out = append(out, path)
	}
	slices.Sort(out)
	return out
}
