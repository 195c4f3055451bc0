//go:build !linux

package redirect

import "fmt"

// Install is only available on Linux.
func Install(r Rules) error {
	return fmt.Errorf("install table inet %s: %w: nftables is Linux only", TableName, ErrNotSupported)
}

// Remove is only available on Linux.
func Remove() error {
	return fmt.Errorf("remove table inet %s: %w: nftables is Linux only", TableName, ErrNotSupported)
}
