package datadir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/state"
)

// LinksDir is the dir of the data dir that holds what the site keeps for
// the links it dials: the link certificates its peers issued
// (<token id>.crt, [state.Links]) and the copies of link tokens
// (<name>.token.yaml, [SaveLinkToken]).
const LinksDir = state.Links

// tokenSuffix ends the name of a token copy, apart from the link
// certificates beside it.
const tokenSuffix = ".token.yaml"

// LinkTokenPath returns where the copy of the link token named name is
// kept: dataDir/links/<name>.token.yaml. The name must be a DNS-1123
// label ([names.CheckSite]), so that it is one path element and nothing
// else; another is an error wrapping [names.ErrInvalid].
func LinkTokenPath(dataDir, name string) (string, error) {
	if err := names.CheckSite(name); err != nil {
		return "", fmt.Errorf("link name: %w", err)
	}
	return filepath.Join(dataDir, LinksDir, name+tokenSuffix), nil
}

// IsLinkTokenCopy reports whether path names a token copy that
// [SaveLinkToken] writes into dataDir: <name>.token.yaml right in
// dataDir/links/.
func IsLinkTokenCopy(dataDir, path string) bool {
	name, ok := strings.CutSuffix(filepath.Base(path), tokenSuffix)
	return ok && names.IsLabel(name) && filepath.Clean(filepath.Dir(path)) == filepath.Join(dataDir, LinksDir)
}

// SaveLinkToken writes data, a link token, to [LinkTokenPath](dataDir,
// name), mode 0600, creating the data dir and links/ (0700) if they are
// missing. It never replaces a file: a copy of that name already there is
// an error wrapping [fs.ErrExist]. The copy is written to a temporary
// file and linked into place, so it is whole or absent.
//
// undo removes the copy again, and the dirs this call created: for a
// caller whose next step fails.
func SaveLinkToken(dataDir, name string, data []byte, log logr.Logger) (path string, undo func(), err error) {
	path, err = LinkTokenPath(dataDir, name)
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Dir(path)
	created := Missing(dataDir, dir)
	undo = func() {
		os.Remove(path)
		RemoveCreated(created, log)
	}
	defer func() {
		if err != nil {
			RemoveCreated(created, log)
		}
	}()
	if err := Secure(dataDir, log); err != nil {
		return "", nil, err
	}
	if _, err := pki.SecureDir(dir); err != nil {
		return "", nil, fmt.Errorf("link token copy: %w", err)
	}
	if err := linkNew(dir, path, data); err != nil {
		return "", nil, fmt.Errorf("link token copy %s: %w", path, err)
	}
	return path, undo, nil
}

// linkNew writes data to a temporary file (mode 0600) in dir, synced, and
// links it to path, which must not exist.
func linkNew(dir, path string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Link(f.Name(), path)
}

// RemoveLinkToken removes path if it is a token copy of dataDir
// ([IsLinkTokenCopy]) and reports whether it did; a token file anywhere
// else is the user's and stays. A copy that is gone already is no error.
func RemoveLinkToken(dataDir, path string) (bool, error) {
	if !IsLinkTokenCopy(dataDir, path) {
		return false, nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("remove the link token copy %s: %w", path, err)
	}
	return true, nil
}
