package app

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/skiff-io/skiff/sidecar/token"
)

func TestLinkCertStore(t *testing.T) {
	dir := t.TempDir()
	s := newLinkCertStore(dir, &token.Token{ID: "1f2e"})
	if s.load() != nil {
		t.Fatal("load() before any save returned a certificate")
	}
	for _, pem := range []string{"first\n", "second\n"} {
		if err := s.save([]byte(pem)); err != nil {
			t.Fatalf("save: %v", err)
		}
		if got := string(s.load()); got != pem {
			t.Fatalf("load() = %q, want %q", got, pem)
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
}
