package lint

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/skiff-io/skiff/"

// The shared layer: packages every component may import. They import
// nothing of skiff's but each other.
const shared = "sidecar/shared/"

// components by folder: each imports its own packages and the shared
// layer, never another component.
var components = []struct{ dir, name string }{
	{shared, "shared"},
	{"webhook/", "injector"},
	{"sidecar/", "router"}, // after shared, which it contains
	{"xds/", "controller"},
	{"bpf/", "node agent"},
	{"cli/", "cli"},
	{"test/", "tests"},
}

// mainImports: a main imports, of skiff's, only its component's Run (and
// shared/logging).
var mainImports = map[string][]string{
	"webhook/cmd/skiff-injector": {"webhook/app"},
	"sidecar/cmd/skiff-router":   {"sidecar/app"},
	"xds/cmd/skiff-controller":   {"xds/app"},
	"bpf/cmd/skiff-node-agent":   {"bpf/agent"},
	"cli/cmd/skiff":              {"cli/app"},
	"test/cmd/skiff-echo":        {},
	"test/cmd/skiff-loadgen":     {},
}

func component(pkg string) string {
	for _, c := range components {
		if strings.HasPrefix(pkg+"/", c.dir) {
			return c.name
		}
	}
	return ""
}

// layerError says why package pkg (a path inside the module) may not
// import imp (another path inside the module) from a file that is a test
// file or not; "" if it may.
func layerError(pkg, imp string, test bool) string {
	from, to := component(pkg), component(imp)
	switch {
	case from == "":
		return fmt.Sprintf("%s is in no component (a top-level folder of docs/design.md's layout)", pkg)
	case to == "":
		return fmt.Sprintf("%s imports %s, which is in no component", pkg, imp)
	case strings.Contains(pkg, "/cmd/"):
		want, ok := mainImports[pkg]
		if !ok {
			return fmt.Sprintf("main %s is not in mainImports: say what it may import", pkg)
		}
		if imp == shared+"logging" || contains(want, imp) {
			return ""
		}
		return fmt.Sprintf("main %s imports %s: a main imports its component's Run (%v) and %slogging only, and stays thin", pkg, imp, want, shared)
	case to == "tests" && from != "tests" && !test:
		return fmt.Sprintf("%s imports %s: only tests import test/", pkg, imp)
	case test:
		// A test may run any component for real (a real xDS server under
		// the node agent's tests, a real gateway under the controller's).
		return ""
	case from == "shared" && to != "shared":
		return fmt.Sprintf("shared package %s imports %s (%s): the shared layer imports only itself", pkg, imp, to)
	case from != to && to != "shared" && from != "tests":
		return fmt.Sprintf("%s (%s) imports %s (%s): components import the shared layer (%s), never each other", pkg, from, imp, to, shared)
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestLayerRules(t *testing.T) {
	for _, tc := range []struct {
		pkg, imp string
		test     bool
		ok       bool
	}{
		{"sidecar/router", "sidecar/mux", false, true},
		{"sidecar/router", shared + "netview", false, true},
		{"xds/app", shared + "xdsclient", false, true},
		{"bpf/agent", "webhook/inject", false, false},
		{"xds/source/kube", "sidecar/router", false, false},
		{"sidecar/app", "xds/server", false, false},
		{shared + "xdsclient", "xds/server", false, false},
		{shared + "xdsclient", "xds/server", true, true},
		{shared + "token", "sidecar/router", false, false},
		{shared + "token", shared + "pki", false, true},
		{"sidecar/router", "test/testutil", false, false},
		{"sidecar/router", "test/testutil", true, true},
		{"test/linux", "sidecar/app", false, true},
		{"sidecar/cmd/skiff-router", "sidecar/app", false, true},
		{"sidecar/cmd/skiff-router", shared + "logging", false, true},
		{"sidecar/cmd/skiff-router", "sidecar/router", false, false},
		{"sidecar/cmd/skiff-router", shared + "pki", false, false},
		{"xds/cmd/skiff-new", "xds/app", false, false},
		{"tools/x", shared + "pki", false, false},
	} {
		if got := layerError(tc.pkg, tc.imp, tc.test); (got == "") != tc.ok {
			t.Errorf("layerError(%s, %s, test=%v) = %q, want ok=%v", tc.pkg, tc.imp, tc.test, got, tc.ok)
		}
	}
}

// TestLayers: every import of a skiff package in the repository follows
// the layers docs/design.md describes.
func TestLayers(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "bin" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		pkg := filepath.ToSlash(filepath.Dir(rel))
		for _, is := range f.Imports {
			imp, err := strconv.Unquote(is.Path.Value)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(imp, module) {
				continue
			}
			if msg := layerError(pkg, strings.TrimPrefix(imp, module), strings.HasSuffix(path, "_test.go")); msg != "" {
				t.Errorf("%s: %s", rel, msg)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read only %d Go files under %s", files, root)
	}
}
