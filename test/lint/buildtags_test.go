package lint

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/test/testutil"
)

// The binaries skiff ships link no package whose reflection defeats the
// linker's dead-code elimination (text/template and html/template call
// methods by computed name, so every exported method of every reachable
// type stays in the binary), built with the tags of hack/go-tags as `make
// build`, the images and the tests build them. gRPC reaches html/template
// through golang.org/x/net/trace unless built with grpcnotrace; with it,
// skiff-router is 24 MB instead of 35, and a sidecar's idle RSS, most of
// it the binary's pages, shrinks with it.
func TestShippedBinariesLeaveOutTemplates(t *testing.T) {
	tags, err := testutil.GoTags()
	if err != nil {
		t.Fatal(err)
	}
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmds := []string{"./sidecar/cmd/...", "./xds/cmd/...", "./webhook/cmd/...", "./bpf/cmd/...", "./cli/cmd/...", "./test/cmd/..."}
	list := exec.Command("go", append([]string{"list", "-tags=" + tags, "-deps", "-f", "{{.ImportPath}}: {{join .Imports \" \"}}"}, cmds...)...)
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	banned := map[string]bool{"text/template": true, "html/template": true, "golang.org/x/net/trace": true}
	for _, line := range strings.Split(string(out), "\n") {
		pkg, imports, _ := strings.Cut(line, ": ")
		for _, imp := range strings.Fields(imports) {
			if banned[imp] && !banned[pkg] {
				t.Errorf("%s imports %s (with -tags=%s): the shipped binaries must not link it", pkg, imp, tags)
			}
		}
	}

	// make build passes the same tags.
	mk := exec.Command("make", "-n", "build")
	mk.Dir = root
	plan, err := mk.Output()
	if err != nil {
		t.Fatalf("make -n build: %v", err)
	}
	if !strings.Contains(string(plan), "-tags="+tags) {
		t.Errorf("make build does not pass -tags=%s:\n%s", tags, plan)
	}
}
