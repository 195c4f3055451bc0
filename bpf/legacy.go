package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Before each site had its own pin dir, the one node agent a cluster could
// run pinned its maps and links/ right in LegacyPinDir and attached the
// injected pods of every site. A node agent of this version takes its own
// pods over: it attaches them with its own programs, then detaches their
// legacy links (both redirect into the same sidecar meanwhile: the first
// program to run rewrites the connect, the other sees the sidecar's
// loopback address and passes). Legacy links of cgroups that are gone go
// too, and once no legacy link is left, so do the legacy maps. Another
// site's pods keep their legacy links until that site's agent takes them
// over.

// LegacyAttachments lists the cgroups attached under the legacy pin dir
// dir; Path is "" for a cgroup that is gone. No legacy dir: none.
func LegacyAttachments(dir string) ([]Attachment, error) {
	as, err := attachmentsIn(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return as, err
}

// DetachLegacy detaches the legacy links of the cgroup with this id, if
// it has any, and reports whether it had.
func DetachLegacy(dir string, id uint64) (bool, error) {
	linkDir := filepath.Join(dir, "links", strconv.FormatUint(id, 10))
	if _, err := os.Stat(linkDir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err := unpinLinks(linkDir); err != nil {
		return true, fmt.Errorf("detach legacy links: %w", err)
	}
	return true, nil
}

// RemoveLegacyMaps removes the maps pinned in the legacy pin dir dir once
// no legacy link is left there, and reports whether it removed any. The
// directory itself stays: it holds sites/.
func RemoveLegacyMaps(dir string) (bool, error) {
	links := filepath.Join(dir, "links")
	if ents, err := os.ReadDir(links); err == nil && len(ents) > 0 {
		return false, nil
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("list legacy links: %w", err)
	}
	spec, err := loadRedirect()
	if err != nil {
		return false, err
	}
	removed := false
	var errs []error
	for name := range spec.Maps {
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil || fi.IsDir() {
			errs = append(errs, fmt.Errorf("legacy map %s: not a pinned map (%v)", p, err))
			continue
		}
		if err := os.Remove(p); err != nil {
			errs = append(errs, fmt.Errorf("unpin legacy map %s: %w", p, err))
			continue
		}
		removed = true
	}
	if err := os.Remove(links); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", links, err))
	}
	return removed, errors.Join(errs...)
}
