package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

// issuingSite writes the site file of a site that accepts links, with its
// data dir at dataDir, into dir.
func issuingSite(t *testing.T, dir, dataDir string) string {
	t.Helper()
	path := filepath.Join(dir, "east.yaml")
	yaml := fmt.Sprintf("name: east\ndataDir: %s\nlinkAccess:\n  bind: 127.0.0.1:55671\n", dataDir)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func issue(siteFile, out string) (*token.Token, error) {
	return IssueToken(TokenOptions{SiteFile: siteFile, Out: out, Expires: time.Minute, Redemptions: 1}, time.Now())
}

// The token holds a private key: it ends up 0600 even over a file that was
// 0644, and nothing else is left beside it.
func TestIssueTokenReplacesOpenFile(t *testing.T) {
	dir := t.TempDir()
	site := issuingSite(t, dir, "east-data")
	outDir := filepath.Join(dir, "out")
	out := filepath.Join(outDir, "west-token.yaml")
	if err := os.Mkdir(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, []byte("an older token\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	tok, err := issue(site, out)
	if err != nil {
		t.Fatalf("IssueToken() error = %v", err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("token file mode %#o, want 0600", got)
	}
	got, err := token.Load(out)
	if err != nil || got.ID != tok.ID {
		t.Errorf("token file holds %v (error %v), want token %s", got, err, tok.ID)
	}
	wantEntries(t, outDir, "west-token.yaml")
	wantEntries(t, filepath.Join(dir, "east-data", token.LedgerDir), tok.ID+".yaml")
}

// A token issue that fails leaves no ledger entry, no half-written token
// and no temporary file, and a data dir it created is gone again.
func TestIssueTokenFailureLeavesNothing(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares dir (the site file's) and returns --out; the
		// site's data dir is dir/east-data.
		setup func(t *testing.T, dir string) string
		// dataDirBefore: the data dir exists before the issue (and so
		// must after it, holding no ledger entry).
		dataDirBefore bool
		wantErr       string
	}{
		{
			name:    "out in a missing dir",
			setup:   func(t *testing.T, dir string) string { return filepath.Join(dir, "missing", "t.yaml") },
			wantErr: "write token",
		},
		{
			name: "out is a dir: the final rename fails",
			setup: func(t *testing.T, dir string) string {
				out := filepath.Join(dir, "t.yaml")
				mkdir(t, out)
				return out
			},
			wantErr: "write token",
		},
		{
			name: "out is a dir, data dir existed: the ledger entry is removed",
			setup: func(t *testing.T, dir string) string {
				mkdir(t, filepath.Join(dir, "east-data"))
				out := filepath.Join(dir, "t.yaml")
				mkdir(t, out)
				return out
			},
			dataDirBefore: true,
			wantErr:       "write token",
		},
		{
			name: "recording fails",
			setup: func(t *testing.T, dir string) string {
				mkdir(t, filepath.Join(dir, "east-data"))
				// A file where the ledger's dir belongs.
				if err := os.WriteFile(filepath.Join(dir, "east-data", token.LedgerDir), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(dir, "t.yaml")
				if err := os.WriteFile(out, []byte("an older token\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				return out
			},
			dataDirBefore: true,
			wantErr:       "open token ledger",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			site := issuingSite(t, dir, "east-data")
			out := tc.setup(t, dir)
			before := entries(t, filepath.Dir(out))
			var old []byte
			if fi, err := os.Stat(out); err == nil && !fi.IsDir() {
				old, _ = os.ReadFile(out)
			}

			_, err := issue(site, out)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("IssueToken() error = %v, want one with %q", err, tc.wantErr)
			}
			dataDir := filepath.Join(dir, "east-data")
			if _, serr := os.Stat(dataDir); tc.dataDirBefore != (serr == nil) {
				t.Errorf("data dir exists: %v, want %v (stat: %v)", serr == nil, tc.dataDirBefore, serr)
			}
			if tc.dataDirBefore {
				if ledger, err := os.ReadDir(filepath.Join(dataDir, token.LedgerDir)); err == nil && len(ledger) > 0 {
					t.Errorf("ledger holds %s after a failed issue, want nothing", ledger[0].Name())
				}
			}
			if _, err := os.Stat(filepath.Dir(out)); err == nil {
				wantEntries(t, filepath.Dir(out), before...) // no temporary file left
			}
			if old != nil {
				if b, _ := os.ReadFile(out); string(b) != string(old) {
					t.Errorf("--out changed to %q, want it as it was", b)
				}
			}
		})
	}
}

// An existing data dir (and the dir the CA is written into) that others
// may enter is tightened to 0700, by the token tool and the gateway alike;
// a CA dir that already holds the CA is only read, so it may be a
// read-only mount.
func TestDataDirTightened(t *testing.T) {
	t.Run("token issue", func(t *testing.T) {
		dir := t.TempDir()
		dataDir := filepath.Join(dir, "east-data")
		mkdirOpen(t, dataDir)
		if _, err := issue(issuingSite(t, dir, "east-data"), filepath.Join(dir, "t.yaml")); err != nil {
			t.Fatal(err)
		}
		wantPerm(t, dataDir, 0o700)
	})
	t.Run("gateway", func(t *testing.T) {
		dir := t.TempDir()
		dataDir, caDir := filepath.Join(dir, "east-data"), filepath.Join(dir, "east-ca")
		mkdirOpen(t, dataDir)
		if _, err := pki.LoadOrCreateCA(caDir, "east"); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(caDir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "east.yaml")
		yaml := "name: east\ndataDir: east-data\ncaDir: east-ca\nlinkAccess:\n  bind: 127.0.0.1:55671\n" // Config binds nothing
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		site, err := sitefile.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Config(site, router.RoleGateway, nil, testr.New(t)); err != nil {
			t.Fatalf("Config() error = %v", err)
		}
		wantPerm(t, dataDir, 0o700)
		wantPerm(t, caDir, 0o755)
	})
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

// mkdirOpen makes dir with mode 0755, whatever the umask.
func mkdirOpen(t *testing.T, dir string) {
	t.Helper()
	mkdir(t, dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func wantPerm(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %#o, want %#o", path, got, want)
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func wantEntries(t *testing.T, dir string, want ...string) {
	t.Helper()
	if got := entries(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s holds %q, want %q", dir, got, want)
	}
}
