package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// DirMode is the mode of the directories skiff keeps keys and ledgers in.
const DirMode fs.FileMode = 0o700

// ErrOpenDir reports a directory for secrets that other users may enter
// and that skiff cannot make private: it belongs to another user, or its
// file system is read-only.
var ErrOpenDir = errors.New("directory open to other users")

// SecureDir makes dir fit to hold secrets. A missing dir is created, with
// its missing parents, mode 0700; an existing dir whose group or others
// have any permission (0755, say) is tightened to 0700, and the mode it
// had is returned so that the caller can log the change (0 when nothing
// changed). A dir that cannot be tightened is [ErrOpenDir], with what to
// do about it.
//
// Call it only on dirs skiff writes into: a dir that is only read (a site
// CA on a read-only Secret mount) may be as open as its mount makes it.
func SecureDir(dir string) (was fs.FileMode, err error) {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return 0, fmt.Errorf("create %s: %w", dir, err)
	}
	// Stat after MkdirAll, not before: a dir that existed, or that another
	// process created meanwhile with its own mode, is checked all the same.
	fi, err := os.Stat(dir)
	if err != nil {
		return 0, err
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return 0, nil
	}
	if err := os.Chmod(dir, DirMode); err != nil {
		return 0, fmt.Errorf("%s is mode %#o and cannot be tightened to %#o (%w); make it private (chmod %o %s, as its owner) or use a directory that user %d owns: %w",
			dir, perm, DirMode, err, DirMode, dir, os.Geteuid(), ErrOpenDir)
	}
	return perm, nil
}
