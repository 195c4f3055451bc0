package datadir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/names"
)

// A token copy is written 0600 into links/ (0700), never over another,
// and undo takes it back with the dirs it created; a name that is not a
// label is refused before anything is written.
func TestSaveLinkToken(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "west-data")
	path, undo, err := SaveLinkToken(dataDir, "link-to-east", []byte("token"), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dataDir, "links", "link-to-east.token.yaml"); path != want {
		t.Errorf("path %s, want %s", path, want)
	}
	for p, perm := range map[string]fs.FileMode{path: 0o600, filepath.Dir(path): 0o700, dataDir: 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != perm {
			t.Errorf("%s: %v %v, want mode %#o", p, fi, err, perm)
		}
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "token" {
		t.Errorf("copy holds %q, %v", b, err)
	}
	if _, _, err := SaveLinkToken(dataDir, "link-to-east", []byte("other"), logr.Discard()); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second SaveLinkToken() = %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "token" {
		t.Errorf("a refused copy replaced the first: %q", b)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("links/ holds %v, want the copy alone (no temporary file)", entries)
	}
	undo()
	if _, err := os.Stat(dataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("undo left the data dir it created: %v", err)
	}
	for _, bad := range []string{"../ca", "a/b", "", "Link"} {
		if _, _, err := SaveLinkToken(dataDir, bad, []byte("t"), logr.Discard()); !errors.Is(err, names.ErrInvalid) {
			t.Errorf("SaveLinkToken(%q) = %v, want names.ErrInvalid", bad, err)
		}
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused names created the data dir: %v", err)
	}
}

// Only the copies SaveLinkToken writes are removed; a link certificate
// beside them or a token elsewhere stays.
func TestRemoveLinkToken(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "west-data")
	copied, _, err := SaveLinkToken(dataDir, "link-to-east", []byte("t"), logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dataDir, "links", "0abc.crt")
	mine := filepath.Join(dir, "east.token.yaml")
	for _, f := range []string{cert, mine} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for path, want := range map[string]bool{copied: true, cert: false, mine: false} {
		removed, err := RemoveLinkToken(dataDir, path)
		_, serr := os.Stat(path)
		if err != nil || removed != want || (serr == nil) == want {
			t.Errorf("RemoveLinkToken(%s) = %v, %v (stat: %v); want removed %v", path, removed, err, serr, want)
		}
	}
	if removed, err := RemoveLinkToken(dataDir, copied); !removed || err != nil {
		t.Errorf("RemoveLinkToken of a copy already gone = %v, %v; want true, nil", removed, err)
	}
}
