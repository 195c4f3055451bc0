package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Redirector owns the loaded programs and the pinned maps. Closing it
// releases this process's handles only: pinned maps and links stay, and
// redirection goes on without the process.
type Redirector struct {
	cfg  Config
	objs redirectObjects
	mu   sync.Mutex // serialises map writers in this process

	index map[uint64]*podEntries // pod maps by cgroup id; nil until read
}

// Load loads the programs, opens the maps pinned under cfg.PinDir (or
// creates and pins them) and points every link pinned there at the newly
// loaded programs. It needs CAP_BPF and CAP_NET_ADMIN (or root).
func Load(cfg Config) (*Redirector, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bpf config: %w", err)
	}
	if missing := missingCaps(); len(missing) > 0 {
		return nil, fmt.Errorf("load eBPF programs: missing %s (running as uid %d; the node agent needs CAP_BPF and CAP_NET_ADMIN, or root)", strings.Join(missing, " and "), os.Geteuid())
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, explain("raise the memlock limit (kernels before 5.11 charge BPF memory to it)", err, cfg.PinDir)
	}
	if err := ensureBPFFS(cfg.PinDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.PinDir, "links"), 0o700); err != nil {
		return nil, fmt.Errorf("create link pin dir: %w", err)
	}
	spec, err := loadRedirect()
	if err != nil {
		return nil, err
	}
	if cfg.MaxServices > 0 {
		spec.Maps[redirectMapServices].MaxEntries = cfg.MaxServices
	}
	if cfg.MaxConnections > 0 {
		spec.Maps[redirectMapCookieOrig].MaxEntries = cfg.MaxConnections
		spec.Maps[redirectMapPairOrig].MaxEntries = cfg.MaxConnections
	}
	r := &Redirector{cfg: cfg}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: cfg.PinDir}}
	if err := spec.LoadAndAssign(&r.objs, opts); err != nil {
		return nil, explain("load eBPF programs", err, cfg.PinDir)
	}
	if err := r.writeSettings(); err != nil {
		r.objs.Close()
		return nil, err
	}
	if err := r.updateLinks(); err != nil {
		r.objs.Close()
		return nil, err
	}
	return r, nil
}

// Config returns the configuration in force, defaults filled in.
func (r *Redirector) Config() Config { return r.cfg }

// Close releases the handles of this process; pinned state stays.
func (r *Redirector) Close() error { return r.objs.Close() }

// writeSettings stores the sidecar address, keeping the pod levels that
// the pinned map already has.
func (r *Redirector) writeSettings() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s redirectSettings
	if err := r.objs.Settings.Lookup(uint32(0), &s); err != nil {
		return explain("read settings", err, r.cfg.PinDir)
	}
	s.SidecarIp4 = ip4Word(r.cfg.SidecarIPv4)
	s.SidecarIp6 = ipWords(r.cfg.SidecarIPv6)
	s.SidecarPort = r.cfg.SidecarPort
	s.ExcludeUid = r.cfg.ExcludeUID
	if err := r.objs.Settings.Put(uint32(0), &s); err != nil {
		return explain("write settings", err, r.cfg.PinDir)
	}
	return nil
}

// programs lists each attach type with its program and pin name.
func (r *Redirector) programs() []hook {
	return []hook{
		{"connect4", ebpf.AttachCGroupInet4Connect, r.objs.SkiffConnect4},
		{"connect6", ebpf.AttachCGroupInet6Connect, r.objs.SkiffConnect6},
		{"sockops", ebpf.AttachCGroupSockOps, r.objs.SkiffSockops},
		{"getsockopt", ebpf.AttachCGroupGetsockopt, r.objs.SkiffGetsockopt},
	}
}

type hook struct {
	name   string
	attach ebpf.AttachType
	prog   *ebpf.Program
}

// updateLinks points the links pinned by an earlier Load at this Load's
// programs, so an upgraded agent's programs take over without a gap.
func (r *Redirector) updateLinks() error {
	dirs, err := os.ReadDir(filepath.Join(r.cfg.PinDir, "links"))
	if err != nil {
		return fmt.Errorf("list pinned links: %w", err)
	}
	var errs []error
	for _, d := range dirs {
		for _, h := range r.programs() {
			p := filepath.Join(r.cfg.PinDir, "links", d.Name(), h.name)
			l, err := link.LoadPinnedLink(p, nil)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				errs = append(errs, explain("open pinned link "+p, err, r.cfg.PinDir))
				continue
			}
			if err := l.Update(h.prog); errors.Is(err, unix.ENOLINK) {
				// Severed: its cgroup is gone (the pod ended while no
				// agent ran). Nothing left to redirect; drop the pin.
				if err := l.Unpin(); err != nil {
					errs = append(errs, explain("unpin severed link "+p, err, r.cfg.PinDir))
				}
			} else if err != nil {
				errs = append(errs, explain("update pinned link "+p, err, r.cfg.PinDir))
			}
			l.Close()
		}
		_ = os.Remove(filepath.Join(r.cfg.PinDir, "links", d.Name())) // only if now empty
	}
	return errors.Join(errs...)
}

// Uninstall detaches every cgroup attached under pinDir and removes the
// pinned maps: redirection stops everywhere. pinDir "" is DefaultPinDir.
func Uninstall(pinDir string) error {
	if pinDir == "" {
		pinDir = DefaultPinDir
	}
	dirs, err := os.ReadDir(filepath.Join(pinDir, "links"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("list pinned links: %w", err)
	}
	var errs []error
	for _, d := range dirs {
		if err := unpinLinks(filepath.Join(pinDir, "links", d.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	spec, err := loadRedirect()
	if err != nil {
		return err
	}
	for name := range spec.Maps {
		if err := os.Remove(filepath.Join(pinDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unpin map %s: %w", name, err))
		}
	}
	for _, d := range []string{filepath.Join(pinDir, "links"), pinDir} {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
