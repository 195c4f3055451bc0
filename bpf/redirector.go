package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
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
	if err := makePinDir(cfg.PinDir); err != nil {
		return nil, err
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

// OpenPinned opens the maps of the programs pinned under pinDir read-only,
// for status: it loads no program, moves no link and writes no map, so
// looking at a node changes nothing of its redirection (Load would point
// the links at the programs it loads, with the settings of its caller).
// Only Attachments, Services, Probe and Stats may be called on it.
func OpenPinned(pinDir string) (*Redirector, error) {
	r := &Redirector{cfg: Config{PinDir: pinDir}}
	ro := &ebpf.LoadPinOptions{ReadOnly: true}
	for _, m := range []struct {
		name string
		to   **ebpf.Map
	}{
		{redirectMapSettings, &r.objs.Settings},
		{redirectMapServices, &r.objs.Services},
		{redirectMapCounters, &r.objs.Counters},
	} {
		pinned, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, m.name), ro)
		if err != nil {
			r.objs.Close()
			return nil, explain("open pinned map "+m.name, err, pinDir)
		}
		*m.to = pinned
	}
	return r, nil
}

// makePinDir makes pinDir and its links/ on a bpf filesystem. Another
// site's Uninstall removes the shared parents of site pin dirs once they
// are empty (removeEmptyParents): one that goes between the making of a
// parent and of pinDir is made again.
func makePinDir(pinDir string) error {
	var err error
	for range 3 {
		if err = ensureBPFFS(pinDir); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err
		}
		if err = os.MkdirAll(filepath.Join(pinDir, "links"), 0o700); err == nil || !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("create pin dir: %w", err)
	}
	return nil
}

// Config returns the configuration in force, defaults filled in.
func (r *Redirector) Config() Config { return r.cfg }

// Close releases the handles of this process; pinned state stays.
func (r *Redirector) Close() error { return r.objs.Close() }

// writeSettings stores the sidecar address, keeping the pod levels and
// the self-check address that the pinned map already has. A pin dir whose
// self-check is armed for another site is refused: two sites' agents must
// not share maps.
func (r *Redirector) writeSettings() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s redirectSettings
	if err := r.objs.Settings.Lookup(uint32(0), &s); err != nil {
		return explain("read settings", err, r.cfg.PinDir)
	}
	if r.cfg.Site != "" && s.ProbeIp4 != 0 && s.ProbeIp4 != r.probeWord() {
		return fmt.Errorf("pin dir %s holds the programs of another site (their self-check address is %s, site %q's is %s): give each site its own pin dir",
			r.cfg.PinDir, probeAddrOf(s.ProbeIp4), r.cfg.Site, contract.RedirectProbeSiteAddr(r.cfg.Site))
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

// probeWord is the settings' probe_ip4 for the site's self-check address.
func (r *Redirector) probeWord() uint32 {
	return ip4Word(contract.RedirectProbeSiteAddr(r.cfg.Site).Addr())
}

func probeAddrOf(w uint32) netip.AddrPort {
	return netip.AddrPortFrom(wordIP4(w), contract.RedirectProbePort)
}

// ArmProbe makes the programs redirect the sidecar's self-check (a connect
// to contract.RedirectProbeHost:RedirectProbePort, whatever the UID) and
// record it as the site's address, contract.RedirectProbeSiteAddr(Site):
// the sidecars of the site's pods then verify their redirection. Arm it
// once the services map holds the site's table, so that a verified
// sidecar's connections to its site's services are redirected. It stays
// armed across Loads, until Uninstall. It needs Config.Site.
func (r *Redirector) ArmProbe() error {
	if r.cfg.Site == "" {
		return errors.New("arm the self-check: the redirector has no site")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var s redirectSettings
	if err := r.objs.Settings.Lookup(uint32(0), &s); err != nil {
		return explain("read settings", err, r.cfg.PinDir)
	}
	if s.ProbeIp4 == r.probeWord() {
		return nil
	}
	s.ProbeIp4 = r.probeWord()
	if err := r.objs.Settings.Put(uint32(0), &s); err != nil {
		return explain("write settings", err, r.cfg.PinDir)
	}
	return nil
}

// Probe returns the self-check address the programs record, and false
// while the self-check is not armed.
func (r *Redirector) Probe() (netip.AddrPort, bool, error) {
	var s redirectSettings
	if err := r.objs.Settings.Lookup(uint32(0), &s); err != nil {
		return netip.AddrPort{}, false, explain("read settings", err, r.cfg.PinDir)
	}
	if s.ProbeIp4 == 0 {
		return netip.AddrPort{}, false, nil
	}
	return probeAddrOf(s.ProbeIp4), true, nil
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
// pinned maps: redirection by these programs stops (another site's pin
// dir is another matter). pinDir itself goes when nothing else is in it.
func Uninstall(pinDir string) error {
	if !filepath.IsAbs(pinDir) {
		return fmt.Errorf("uninstall: pin dir %q: must be an absolute path", pinDir)
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
	if err := os.Remove(filepath.Join(pinDir, "links")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", filepath.Join(pinDir, "links"), err))
	}
	// The legacy dir holds sites/ below it: it stays then.
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		errs = append(errs, fmt.Errorf("remove %s: %w", pinDir, err))
	}
	removeEmptyParents(pinDir)
	return errors.Join(errs...)
}

// removeEmptyParents removes <bpffs>/skiff/sites and <bpffs>/skiff once
// the last site's pin dir (SitePinDir) is gone from them, so that an
// uninstalled node keeps nothing of skiff's. Directories that still hold
// something (another site, the legacy pins) stay; so does the parent of
// a pin dir of another layout.
func removeEmptyParents(pinDir string) {
	sites := filepath.Dir(pinDir)
	root := filepath.Dir(sites)
	if filepath.Base(sites) != "sites" || filepath.Base(root) != "skiff" {
		return
	}
	if os.Remove(sites) == nil {
		_ = os.Remove(root)
	}
}
