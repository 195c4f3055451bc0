package sitefile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrChanged is returned by [Replace] when the site file no longer holds
// what the caller read.
var ErrChanged = errors.New("site file changed meanwhile")

// Replace writes data, the edited contents of the site file at path, over
// it, and returns the site it describes. old is what the caller read and
// edited: a file that no longer holds it is left alone ([ErrChanged]),
// and so is one whose new contents do not validate ([Parse]; the error
// names the file and the line as [Load] would).
//
// The write is atomic: a temporary file in the same directory, with the
// file's mode, synced, then renamed over the file (the file a symbolic
// link points to, if path is one), so that a reader such as a gateway's
// [Watch] sees the old file or the new one, never half of one. On any
// error the file is as it was and no temporary file is left.
func Replace(path string, old, data []byte) (*Site, error) {
	site, err := Parse(path, data)
	if err != nil {
		return nil, fmt.Errorf("the edited site file would not load, so %s is left as it was: %w", path, err)
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("site file: %w", err)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return nil, fmt.Errorf("site file: %w", err)
	}
	cur, err := os.ReadFile(target)
	if err != nil {
		return nil, fmt.Errorf("site file: %w", err)
	}
	if !bytes.Equal(cur, old) {
		return nil, fmt.Errorf("%s: %w while it was edited; run the command again", path, ErrChanged)
	}
	if err := writeOver(target, data, fi.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("write site file %s: %w", path, err)
	}
	return site, nil
}

// writeOver writes data to a temporary file beside path with mode perm,
// synced, and renames it over path.
func writeOver(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The file is replaced: a dir that cannot be synced costs durability
	// across a crash only, and is no reason to report a failure.
	_ = syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
