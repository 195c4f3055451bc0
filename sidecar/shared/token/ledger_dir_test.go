package token

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// An existing ledger dir that others may enter is tightened to 0700.
func TestOpenLedgerTightensDir(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, LedgerDir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLedger(dataDir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("ledger dir mode %#o, want 0700", got)
	}
}

func TestLedgerRemove(t *testing.T) {
	dataDir := t.TempDir()
	l, err := OpenLedger(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	const id = "cfb70b50954b906dfeb5236b20ee6fd4"
	path := filepath.Join(dataDir, LedgerDir, id+".yaml")
	if err := os.WriteFile(path, []byte("id: "+id+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(id); err != nil {
		t.Fatalf("Remove() error = %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("entry after Remove: stat error %v, want not exist", err)
	}
	if err := l.Remove(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove(removed id) error = %v, want not exist", err)
	}
	if err := l.Remove("../" + id); err == nil {
		t.Error("Remove(path, not an id) = nil, want an error")
	}
}
