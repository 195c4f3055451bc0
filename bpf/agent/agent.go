package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/bpf"
	"github.com/skiff-io/skiff/sidecar/shared/names"
)

// Options are the flags of every command; each command uses some.
type Options struct {
	Site         string
	PinDir       string
	Cgroup       string
	Services     []string // --service IP:PORT, repeatable
	ServicesFile string
	ExcludePorts string // comma-separated
	ExcludeCIDRs string // comma-separated
	SidecarPort  uint
}

// AddFlags registers the options cmd uses.
func (o *Options) AddFlags(fs *flag.FlagSet, cmd string) {
	fs.StringVar(&o.Site, "site", "", "the site whose pods (and sidecars) the programs serve: names the pin dir and the self-check address (required by attach and services; the others need it or --pin-dir)")
	fs.StringVar(&o.PinDir, "pin-dir", "", "bpffs directory for the site's pinned maps and links (default "+bpf.DefaultBPFFS+"/skiff/sites/<site>)")
	switch cmd {
	case "attach", "detach":
		fs.StringVar(&o.Cgroup, "cgroup", "", "cgroup v2 directory of the processes (and their sidecar)")
	}
	switch cmd {
	case "attach", "services":
		fs.Func("service", "a service IP:PORT to redirect (repeatable); replaces the site's set", func(s string) error {
			o.Services = append(o.Services, s)
			return nil
		})
		fs.StringVar(&o.ServicesFile, "services", "", "file of service IP:PORT lines (# comments); replaces the site's set")
		fs.UintVar(&o.SidecarPort, "sidecar-port", 0, "sidecar outbound port (default 15001)")
	}
	if cmd == "attach" {
		fs.StringVar(&o.ExcludePorts, "exclude-ports", "", "destination ports never redirected from this cgroup, comma-separated")
		fs.StringVar(&o.ExcludeCIDRs, "exclude-cidrs", "", "destination CIDRs never redirected from this cgroup, comma-separated")
	}
}

// Validate reports missing or malformed options for cmd.
func (o *Options) Validate(cmd string) error {
	var errs []error
	switch {
	case o.Site != "":
		if err := names.CheckSite(o.Site); err != nil {
			errs = append(errs, fmt.Errorf("--site: %w", err))
		}
	case cmd == "attach" || cmd == "services":
		errs = append(errs, errors.New("--site is required: the self-check of the site's sidecars needs it"))
	case o.PinDir == "":
		errs = append(errs, errors.New("--site or --pin-dir is required"))
	}
	if o.PinDir != "" && !filepath.IsAbs(o.PinDir) {
		errs = append(errs, fmt.Errorf("--pin-dir %q: must be an absolute path", o.PinDir))
	}
	if (cmd == "attach" || cmd == "detach") && o.Cgroup == "" {
		errs = append(errs, errors.New("--cgroup is required"))
	}
	if cmd == "services" && len(o.Services) == 0 && o.ServicesFile == "" {
		errs = append(errs, errors.New("--service or --services is required"))
	}
	if o.SidecarPort > 65535 {
		errs = append(errs, fmt.Errorf("--sidecar-port %d: not a port", o.SidecarPort))
	}
	for _, s := range o.Services {
		if _, err := netip.ParseAddrPort(s); err != nil {
			errs = append(errs, fmt.Errorf("--service %q: want IP:PORT ([IPv6]:PORT): %w", s, err))
		}
	}
	if _, err := o.exclusions(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (o *Options) config() bpf.Config {
	return bpf.Config{Site: o.Site, PinDir: o.PinDir, SidecarPort: uint16(o.SidecarPort)}
}

// pinDir is --pin-dir, or the site's directory on the default bpffs.
func (o *Options) pinDir() string {
	if o.PinDir != "" {
		return o.PinDir
	}
	dir, _ := bpf.SitePinDir(bpf.DefaultBPFFS, o.Site) // Validate checked the site
	return dir
}

func (o *Options) exclusions() (bpf.Exclusions, error) {
	var ex bpf.Exclusions
	var errs []error
	for _, f := range splitList(o.ExcludePorts) {
		p, err := strconv.ParseUint(f, 10, 16)
		if err != nil || p == 0 {
			errs = append(errs, fmt.Errorf("--exclude-ports: %q is not a port", f))
			continue
		}
		ex.Ports = append(ex.Ports, uint16(p))
	}
	for _, f := range splitList(o.ExcludeCIDRs) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("--exclude-cidrs: %w", err))
			continue
		}
		ex.CIDRs = append(ex.CIDRs, p)
	}
	return ex, errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// services returns the services named by the flags, or nil when none are.
func (o *Options) services() ([]netip.AddrPort, error) {
	if len(o.Services) == 0 && o.ServicesFile == "" {
		return nil, nil
	}
	var out []netip.AddrPort
	for _, s := range o.Services {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return nil, fmt.Errorf("--service %q: %w", s, err)
		}
		out = append(out, ap)
	}
	if o.ServicesFile != "" {
		fromFile, err := ReadServices(o.ServicesFile)
		if err != nil {
			return nil, err
		}
		out = append(out, fromFile...)
	}
	return out, nil
}

// ReadServices reads a services file: one IP:PORT ([IPv6]:PORT) per line,
// blank lines and # comments ignored.
func ReadServices(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("services file: %w", err)
	}
	defer f.Close()
	return parseServices(f, path)
}

func parseServices(r io.Reader, name string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	var errs []error
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		ap, err := netip.ParseAddrPort(line)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: want IP:PORT ([IPv6]:PORT), got %q", name, n, line))
			continue
		}
		out = append(out, ap)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return out, errors.Join(errs...)
}

// Attach loads (or reloads) the site's programs, replaces the services
// when any are given, arms the self-check, sets the cgroup's exclusions
// and attaches it.
func Attach(o Options, log logr.Logger) error {
	svcs, err := o.services()
	if err != nil {
		return err
	}
	ex, err := o.exclusions()
	if err != nil {
		return err
	}
	if err := bpf.CheckCgroup(o.Cgroup); err != nil {
		return err // before Load pins anything
	}
	r, err := bpf.Load(o.config())
	if err != nil {
		return err
	}
	defer r.Close()
	if svcs != nil {
		if err := r.SetServices(svcs); err != nil {
			return err
		}
		log.Info("services set", "count", len(svcs))
	}
	if err := r.ArmProbe(); err != nil {
		return err
	}
	if err := r.SetExclusions(o.Cgroup, ex); err != nil {
		return err
	}
	if _, err := r.Attach(o.Cgroup); err != nil {
		return err
	}
	log.Info("attached", "cgroup", o.Cgroup, "excludedPorts", len(ex.Ports), "excludedCIDRs", len(ex.CIDRs))
	return nil
}

// SetServices replaces the site's services and arms the self-check.
func SetServices(o Options, log logr.Logger) error {
	svcs, err := o.services()
	if err != nil {
		return err
	}
	r, err := bpf.Load(o.config())
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.SetServices(svcs); err != nil {
		return err
	}
	if err := r.ArmProbe(); err != nil {
		return err
	}
	log.Info("services set", "count", len(svcs))
	return nil
}

// Detach detaches the cgroup and forgets its exclusions.
func Detach(o Options, log logr.Logger) error {
	r, err := bpf.Load(o.config())
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Detach(o.Cgroup); err != nil {
		return err
	}
	log.Info("detached", "cgroup", o.Cgroup)
	return nil
}

// Uninstall detaches the site's pods and removes its pinned maps; other
// sites' pin dirs stay as they are.
func Uninstall(o Options, log logr.Logger) error {
	if err := bpf.Uninstall(o.pinDir()); err != nil {
		return err
	}
	log.Info("uninstalled", "pinDir", o.pinDir())
	return nil
}

// Status is what `skiff-node-agent status` prints.
type Status struct {
	PinDir      string           `json:"pinDir"`
	Loaded      bool             `json:"loaded"` // maps are pinned
	Attachments []bpf.Attachment `json:"attachments"`
	Services    int              `json:"services"`
	// Probe is the address the site's sidecars' self-check reads back;
	// empty until the self-check is armed.
	Probe    string    `json:"probe"`
	Counters bpf.Stats `json:"counters"`
}

// GetStatus reads the pinned state; it loads nothing when nothing is
// pinned.
func GetStatus(o Options) (Status, error) {
	st := Status{PinDir: o.pinDir(), Attachments: []bpf.Attachment{}}
	if _, err := os.Stat(filepath.Join(st.PinDir, "settings")); errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	r, err := bpf.OpenPinned(st.PinDir) // only looks: Load would replace the programs
	if err != nil {
		return st, err
	}
	defer r.Close()
	st.Loaded = true
	if st.Attachments, err = r.Attachments(); err != nil {
		return st, err
	}
	if st.Attachments == nil {
		st.Attachments = []bpf.Attachment{}
	}
	svcs, err := r.Services()
	if err != nil {
		return st, err
	}
	st.Services = len(svcs)
	if probe, armed, err := r.Probe(); err != nil {
		return st, err
	} else if armed {
		st.Probe = probe.String()
	}
	st.Counters, err = r.Stats()
	return st, err
}

// PrintStatus writes the status as indented JSON.
func PrintStatus(o Options, w io.Writer) error {
	st, err := GetStatus(o)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}
