package app

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiff-io/skiff/sidecar/shared/state"
)

func TestLinkCertStore(t *testing.T) {
	dir := t.TempDir()
	s := linkCertStore{store: state.NewDir(dir), tokenID: "1f2e"}
	if b, err := s.load(); b != nil || err != nil {
		t.Fatalf("load() before any save = %q, %v; want nothing", b, err)
	}
	for _, pem := range []string{"first\n", "second\n"} {
		if err := s.save([]byte(pem)); err != nil {
			t.Fatalf("save: %v", err)
		}
		if got, err := s.load(); string(got) != pem || err != nil {
			t.Fatalf("load() = %q, %v; want %q", got, err, pem)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "links", "1f2e.crt"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("certificate file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Join(dir, "links"))
	if err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("links dir: %v, mode %v; want 0700", err, di.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "links")); len(entries) != 1 {
		t.Errorf("links dir holds %d files, want the certificate only (no temporary files left)", len(entries))
	}
	// A token id is hex; anything else never becomes a file name.
	bad := linkCertStore{store: state.NewDir(dir), tokenID: "../x"}
	if err := bad.save([]byte("x")); !errors.Is(err, state.ErrInvalidName) {
		t.Errorf("save under ../x = %v, want ErrInvalidName", err)
	}
}
