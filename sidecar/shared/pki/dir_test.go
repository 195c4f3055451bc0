package pki

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestSecureDir(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) // nil: dir does not exist
		wantWas fs.FileMode
	}{
		{"missing, with a missing parent", nil, 0},
		{"0755 is tightened", mkdirMode(0o755), 0o755},
		{"0750 is tightened", mkdirMode(0o750), 0o750},
		{"0701 is tightened", mkdirMode(0o701), 0o701},
		{"0777 is tightened", mkdirMode(0o777), 0o777},
		{"0700 is left alone", mkdirMode(0o700), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "parent", "data")
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			was, err := SecureDir(dir)
			if err != nil {
				t.Fatalf("SecureDir() error = %v", err)
			}
			if was != tc.wantWas {
				t.Errorf("SecureDir() = %#o, want %#o", was, tc.wantWas)
			}
			wantMode(t, dir, 0o700)
			if tc.setup == nil {
				wantMode(t, filepath.Dir(dir), 0o700) // parents made for secrets are private too
			}
		})
	}
}

func TestSecureDirNotADir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := SecureDir(path); err == nil {
		t.Fatal("SecureDir(a file) = nil, want an error")
	}
}

// A dir that already holds the CA is only read, whatever its mode (a
// Kubernetes Secret mount); a dir the CA is about to be written into is
// made private first.
func TestLoadOrCreateCADirModes(t *testing.T) {
	t.Run("holding a CA", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "site")
		if _, err := LoadOrCreateCA(dir, "east"); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateCA(dir, "east"); err != nil {
			t.Fatalf("LoadOrCreateCA(existing CA, dir 0755) error = %v", err)
		}
		wantMode(t, dir, 0o755)
	})
	t.Run("empty", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "site")
		mkdirMode(0o755)(t, dir)
		if _, err := LoadOrCreateCA(dir, "east"); err != nil {
			t.Fatalf("LoadOrCreateCA(empty dir 0755) error = %v", err)
		}
		wantMode(t, dir, 0o700)
	})
}

// mkdirMode returns a setup that makes dir (and its parents) with mode
// perm, whatever the umask.
func mkdirMode(perm fs.FileMode) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, perm); err != nil {
			t.Fatal(err)
		}
	}
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %#o, want %#o", path, got, want)
	}
}
