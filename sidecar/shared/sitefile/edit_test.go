package sitefile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// newToken is the link AddLink adds in the golden tests: where skiff
// link create copies a token, relative to the site file.
const newToken = "west-data/links/link-to-east.token.yaml"

// TestEditGolden golden-tests AddLink and RemoveLink on the files of
// testdata/edit: NAME.yaml edited is NAME.OP.golden. Comments stay with
// what they describe; the result loads, with the link added or gone. Run
// with -update to rewrite them, then review the diff.
func TestEditGolden(t *testing.T) {
	add := func(path string, data []byte) ([]byte, error) { return AddLink(data, newToken, 2) }
	remove := func(token string) func(string, []byte) ([]byte, error) {
		return func(path string, data []byte) ([]byte, error) { return RemoveLink(path, data, abs(t, path, token)) }
	}
	tests := []struct {
		file, op string
		edit     func(path string, data []byte) ([]byte, error)
		want     []string // the links' tokens after the edit, relative to testdata/edit
	}{
		{"commented", "add", add, []string{"north-token.yaml", "/etc/skiff/south-token.yaml", newToken}},
		{"no-links", "add", add, []string{newToken}},
		{"no-services", "add", add, []string{newToken}},
		{"links-null", "add", add, []string{newToken}},
		{"links-empty", "add", add, []string{newToken}},
		{"flow-entries", "add", add, []string{"north-token.yaml", "tokens/south-token.yaml", newToken}},
		{"commented", "remove", remove("/etc/skiff/south-token.yaml"), []string{"north-token.yaml"}},
		{"commented", "remove-first", remove("north-token.yaml"), []string{"/etc/skiff/south-token.yaml"}},
		{"flow-entries", "remove", remove("tokens/south-token.yaml"), []string{"north-token.yaml"}},
		{"one-link", "remove", remove(newToken), nil},
	}
	for _, tc := range tests {
		t.Run(tc.file+"."+tc.op, func(t *testing.T) {
			path := filepath.Join("testdata", "edit", tc.file+".yaml")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.edit(path, data)
			if err != nil {
				t.Fatalf("edit: %v", err)
			}
			golden(t, filepath.Join("testdata", "edit", tc.file+"."+tc.op+".golden"), string(got))
			site, err := Parse(path, got)
			if err != nil {
				t.Fatalf("the edited file does not load: %v\n%s", err, got)
			}
			var tokens, want []string
			for _, l := range site.Links {
				tokens = append(tokens, l.Token)
			}
			for _, w := range tc.want {
				want = append(want, abs(t, path, w))
			}
			if diff := cmp.Diff(tokens, want); diff != "" {
				t.Errorf("links after the edit (-got +want):\n%s", diff)
			}
		})
	}
}

// abs is token as Site.Links holds it: resolved against the directory of
// the site file at path.
func abs(t *testing.T, path, token string) string {
	t.Helper()
	if filepath.IsAbs(token) {
		return token
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, token)
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(got, string(want)); diff != "" {
		t.Errorf("%s differs (-got +want):\n%s", path, diff)
	}
}

// What the editor will not change is refused with what to do.
func TestEditRefused(t *testing.T) {
	tests := []struct {
		name, data string
		remove     bool // RemoveLink of /x.yaml, else AddLink
		want       string
	}{
		{"links an alias", "name: west\nx: &l []\nlinks: *l\n", false, "links is an alias (*l): edit the site file by hand"},
		{"links anchored", "name: west\nlinks: &l\n  - token: a.yaml\n", false, "links has an anchor (&l)"},
		{"links a mapping", "name: west\nlinks: {token: a.yaml}\n", false, "links is a mapping, not a list"},
		{"two documents", "name: west\n---\nname: east\n", false, "more than one YAML document"},
		{"not a mapping", "- name: west\n", false, "not a YAML mapping"},
		{"bad YAML", "name: [west\n", false, "invalid YAML"},
		{"no such link", "name: west\nlinks:\n  - token: a.yaml\n", true, "no links entry dials /x.yaml"},
		{"no links", "name: west\n", true, "no links entry dials /x.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.remove {
				_, err = RemoveLink("west.yaml", []byte(tc.data), "/x.yaml")
				if !errors.Is(err, ErrNoLink) {
					t.Errorf("RemoveLink() = %v, want ErrNoLink", err)
				}
			} else {
				_, err = AddLink([]byte(tc.data), "b.yaml", 1)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Replace writes the edited file in one rename, keeping its mode (and
// the symbolic link to it); an edit that does not validate, or a file
// changed meanwhile, leaves the file as it was. No temporary file stays.
func TestReplace(t *testing.T) {
	const old = "name: west # the site\n"
	setup := func(t *testing.T) (dir, path string) {
		dir = t.TempDir()
		path = filepath.Join(dir, "west.yaml")
		if err := os.WriteFile(path, []byte(old), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, 0o640); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return dir, path
	}
	t.Run("written", func(t *testing.T) {
		dir, path := setup(t)
		link := filepath.Join(dir, "site.yaml")
		if err := os.Symlink("west.yaml", link); err != nil {
			t.Fatal(err)
		}
		next, err := AddLink([]byte(old), "t.yaml", 3)
		if err != nil {
			t.Fatal(err)
		}
		site, err := Replace(link, []byte(old), next)
		if err != nil || len(site.Links) != 1 || site.Links[0].Cost != 3 {
			t.Fatalf("Replace() = %+v, %v; want the site with its link", site, err)
		}
		wantFile(t, path, string(next), 0o640)
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is no longer a symbolic link: %v %v", link, fi, err)
		}
		wantDir(t, dir, "site.yaml", "west.yaml")
	})
	t.Run("invalid edit refused", func(t *testing.T) {
		dir, path := setup(t)
		_, err := Replace(path, []byte(old), []byte("name: west\nlinks:\n  - {token: t.yaml, cost: 0}\n"))
		if err == nil || !strings.Contains(err.Error(), "is left as it was") || !strings.Contains(err.Error(), "west.yaml:3: links[0].cost: must be >= 1") {
			t.Errorf("Replace(invalid) = %v, want the validation error", err)
		}
		wantFile(t, path, old, 0o640)
		wantDir(t, dir, "west.yaml")
	})
	t.Run("changed meanwhile", func(t *testing.T) {
		dir, path := setup(t)
		_, err := Replace(path, []byte("name: east\n"), []byte("name: west\n"))
		if !errors.Is(err, ErrChanged) {
			t.Errorf("Replace(stale) = %v, want ErrChanged", err)
		}
		wantFile(t, path, old, 0o640)
		wantDir(t, dir, "west.yaml")
	})
}

func wantFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || string(b) != content {
		t.Errorf("%s holds %q (%v), want %q", path, b, err, content)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != perm {
		t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, perm)
	}
}

func wantDir(t *testing.T, dir string, want ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}
