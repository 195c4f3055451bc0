package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/cilium/ebpf/link"
)

// Attach attaches the four programs to the cgroup v2 directory at
// cgroupPath, which then covers every process in it and below it. The
// links are pinned under PinDir/links/<cgroup id>, so they stay when this
// process exits; the returned Closer detaches them (as Detach does).
// Attaching an attached cgroup again changes nothing.
//
// The sidecar's accepted sockets must be covered by getsockopt, so the
// cgroup must hold the sidecar as well as the application (or the sidecar's
// cgroup must be attached too).
func (r *Redirector) Attach(cgroupPath string) (io.Closer, error) {
	cg, err := statCgroup(cgroupPath)
	if err != nil {
		return nil, err
	}
	dir := r.linkDir(cg.id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create link pin dir: %w", err)
	}
	var made []link.Link
	undo := func() {
		for _, l := range made {
			l.Unpin()
			l.Close()
		}
	}
	for _, h := range r.programs() {
		pin := filepath.Join(dir, h.name)
		if _, err := os.Stat(pin); err == nil {
			continue // attached before, maybe by an earlier agent
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cg.path, Attach: h.attach, Program: h.prog})
		if err != nil {
			undo()
			return nil, explain(fmt.Sprintf("attach %s to %s", h.name, cg.path), err, r.cfg.PinDir)
		}
		made = append(made, l)
		if err := l.Pin(pin); err != nil {
			undo()
			return nil, explain(fmt.Sprintf("pin %s link of %s", h.name, cg.path), err, r.cfg.PinDir)
		}
	}
	for _, l := range made {
		l.Close() // the pin holds the link
	}
	return detacher{r: r, id: cg.id}, nil
}

type detacher struct {
	r  *Redirector
	id uint64
}

func (d detacher) Close() error { return d.r.DetachID(d.id) }

// Detach removes the programs from the cgroup at cgroupPath and forgets its
// exclusions. Connections already redirected keep going.
func (r *Redirector) Detach(cgroupPath string) error {
	cg, err := statCgroup(cgroupPath)
	if err != nil {
		return err
	}
	return r.DetachID(cg.id)
}

// CgroupID returns the id of the cgroup v2 directory at cgroupPath, as
// Attachment.CgroupID and DetachID know it.
func CgroupID(cgroupPath string) (uint64, error) {
	cg, err := statCgroup(cgroupPath)
	return cg.id, err
}

// DetachID is Detach for a cgroup known by id, which may have been removed.
func (r *Redirector) DetachID(id uint64) error {
	err := unpinLinks(r.linkDir(id))
	return errors.Join(err, r.clearExclusions(id))
}

func (r *Redirector) linkDir(id uint64) string {
	return filepath.Join(r.cfg.PinDir, "links", strconv.FormatUint(id, 10))
}

// unpinLinks unpins and so detaches the links pinned in dir, then removes
// dir.
func unpinLinks(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			// Not a link (or unreadable): remove the pin all the same.
			if rmErr := os.Remove(p); rmErr != nil {
				errs = append(errs, fmt.Errorf("remove pin %s: %w (open: %v)", p, rmErr, err))
			}
			continue
		}
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin %s: %w", p, err))
		}
		// Closing the last handle of an unpinned link detaches it; Detach
		// does so even if another process still holds the link open.
		_ = l.Detach()
		l.Close()
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// Attachment is a cgroup the programs are attached to.
type Attachment struct {
	CgroupID uint64   `json:"cgroupID"`
	Path     string   `json:"path"` // "" when the cgroup no longer exists
	Programs []string `json:"programs"`
}

// Attachments lists the attached cgroups, from the links pinned under
// PinDir.
func (r *Redirector) Attachments() ([]Attachment, error) {
	return attachmentsIn(r.cfg.PinDir)
}

func attachmentsIn(pinDir string) ([]Attachment, error) {
	dirs, err := os.ReadDir(filepath.Join(pinDir, "links"))
	if err != nil {
		return nil, fmt.Errorf("list pinned links: %w", err)
	}
	paths := cgroupPaths()
	var out []Attachment
	for _, d := range dirs {
		id, err := strconv.ParseUint(d.Name(), 10, 64)
		if err != nil {
			continue
		}
		a := Attachment{CgroupID: id, Path: paths[id]}
		progs, _ := os.ReadDir(filepath.Join(pinDir, "links", d.Name()))
		for _, p := range progs {
			a.Programs = append(a.Programs, p.Name())
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Attachment) int { return cmpUint(a.CgroupID, b.CgroupID) })
	return out, nil
}

// Prune detaches the cgroups that no longer exist and returns their ids.
func (r *Redirector) Prune() ([]uint64, error) {
	as, err := r.Attachments()
	if err != nil {
		return nil, err
	}
	var gone []uint64
	var errs []error
	for _, a := range as {
		if a.Path != "" {
			continue
		}
		if err := r.DetachID(a.CgroupID); err != nil {
			errs = append(errs, err)
			continue
		}
		gone = append(gone, a.CgroupID)
	}
	return gone, errors.Join(errs...)
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
