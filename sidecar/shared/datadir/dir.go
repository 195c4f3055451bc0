package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/pki"
)

// Secure creates a site's data dir, or tightens it, to 0700
// ([pki.SecureDir]), and logs a tightening.
func Secure(dir string, log logr.Logger) error {
	was, err := pki.SecureDir(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if was != 0 {
		log.Info("data dir was open to other users; tightened it to 0700", "dataDir", dir, "mode", fmt.Sprintf("%#o", was))
	}
	return nil
}

// Missing returns, for each of dirs that does not exist, the outermost
// of it and its parents that does not exist either: what creating it
// creates. Empty and repeated dirs are skipped, and so is a dir whose
// existence cannot be told (it is left alone).
func Missing(dirs ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range dirs {
		if d == "" || !notExist(d) {
			continue
		}
		for p := filepath.Dir(d); p != d && notExist(p); p = filepath.Dir(d) {
			d = p
		}
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

func notExist(path string) bool {
	_, err := os.Lstat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// RemoveCreated removes dirs that a command which failed had created
// (what [Missing] returned before it ran), with what it put there (a new
// CA, a ledger).
func RemoveCreated(dirs []string, log logr.Logger) {
	for _, d := range dirs {
		if notExist(d) {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			log.Error(err, "remove the dir the failed command created", "dir", d)
			continue
		}
		log.Info("command failed; removed the dir it had created", "dir", d)
	}
}
