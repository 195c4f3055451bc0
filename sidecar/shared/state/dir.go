package state

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/skiff-io/skiff/sidecar/shared/pki"
)

// Dir is a [Store] in a directory: dir/<bucket>/<name>, files 0600 in
// dirs 0700 ([pki.SecureDir]), each written atomically (a temporary file
// renamed into place). Updates are serialized within a process; two
// processes updating one name at once are not supported (distinct names
// are fine: `skiff-router token issue` records new tokens beside a
// running gateway).
type Dir struct {
	root string
	mu   sync.Mutex
}

// NewDir returns the store in root; buckets are created when first
// written.
func NewDir(root string) *Dir { return &Dir{root: root} }

func (d *Dir) String() string { return d.root }

// Path returns the file of name in bucket (for messages and tests).
func (d *Dir) Path(bucket, name string) string { return filepath.Join(d.root, bucket, name) }

// Get implements [Store].
func (d *Dir) Get(bucket, name string) ([]byte, error) {
	if err := checkName(bucket, name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(d.Path(bucket, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", d.root, err)
	}
	return b, nil
}

// List implements [Store]; files whose names a store would refuse
// (temporary files, strays) are skipped.
func (d *Dir) List(bucket string) (map[string][]byte, error) {
	if err := checkName(bucket, "x"); err != nil {
		return nil, err
	}
	files, err := os.ReadDir(filepath.Join(d.root, bucket))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", d.root, err)
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		name := f.Name()
		if !f.Type().IsRegular() || strings.HasPrefix(name, ".") || checkName(bucket, name) != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d.root, bucket, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("state %s: %w", d.root, err)
		}
		out[name] = b
	}
	return out, nil
}

// Update implements [Store].
func (d *Dir) Update(bucket, name string, fn func(cur []byte) ([]byte, error)) error {
	if err := checkName(bucket, name); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, err := d.Get(bucket, name)
	if err != nil {
		return err
	}
	next, err := fn(cur)
	if err != nil {
		return err
	}
	path := d.Path(bucket, name)
	switch {
	case next == nil && cur == nil:
		return nil
	case next == nil:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("state %s: %w", d.root, err)
		}
		return nil
	case cur != nil && bytes.Equal(cur, next):
		return nil
	}
	if _, err := pki.SecureDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("state %s: %w", d.root, err)
	}
	if err := pki.WriteFile(path, next); err != nil {
		return fmt.Errorf("state %s: %w", d.root, err)
	}
	return nil
}
