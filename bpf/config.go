package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/names"
)

// DefaultBPFFS is where the bpf filesystem is mounted.
const DefaultBPFFS = "/sys/fs/bpf"

// SitePinDir is where the maps and links of a site's programs are pinned:
// <bpffs>/skiff/sites/<site>. Every site on a node has its own programs,
// maps and links (docs/ebpf.md, "Several sites on one node"). site must
// be a site name (a DNS label, package names), which is safe in a path.
func SitePinDir(bpffs, site string) (string, error) {
	if err := names.CheckSite(site); err != nil {
		return "", err
	}
	return filepath.Join(bpffs, "skiff", "sites", site), nil
}

// LegacyPinDir is where skiff pinned everything before each site had its
// own directory: the maps and links/ right in <bpffs>/skiff, for the one
// site whose node agent ran. Load never uses it; the node agent takes
// its own pods' attachments over from it (legacy.go).
func LegacyPinDir(bpffs string) string { return filepath.Join(bpffs, "skiff") }

// Config says where redirected connections go, whose they are and where
// state is pinned. Besides Site or PinDir, the zero value is the
// contract: 127.0.0.1:15001 and [::1]:15001, UID 1337 never redirected.
type Config struct {
	// Site is the site whose pods the programs redirect (the pods whose
	// sidecars have this site's service table). It names the default pin
	// dir and the site's self-check address (ArmProbe). Empty: PinDir is
	// required, and a pin dir that has a site keeps it.
	Site string
	// PinDir is a directory on a bpf filesystem for maps and links;
	// default SitePinDir(DefaultBPFFS, Site). Load mounts bpffs on
	// /sys/fs/bpf when PinDir is below it and nothing is mounted there.
	PinDir string
	// SidecarIPv4 receives connects to IPv4 services, including IPv4-mapped
	// destinations of dual-stack sockets (as ::ffff:SidecarIPv4).
	SidecarIPv4 netip.Addr
	// SidecarIPv6 receives connects to IPv6 services. The sidecar must
	// listen there too; see docs/ebpf.md.
	SidecarIPv6 netip.Addr
	// SidecarPort is the sidecar's outbound port.
	SidecarPort uint16
	// ExcludeUID is never redirected (the sidecar's own connections), but
	// for the sidecar's self-check to 127.0.0.1:contract.RedirectProbePort.
	// 0 means the default, contract.SidecarUID.
	ExcludeUID uint32
	// MaxServices bounds the services map (default 65536). Changing it
	// after maps were pinned needs `skiff-node-agent uninstall`.
	MaxServices uint32
	// MaxConnections bounds the LRU maps of original destinations
	// (default 65536): connections being set up, not open connections.
	MaxConnections uint32
}

func (c *Config) setDefaults() {
	if c.PinDir == "" && c.Site != "" {
		c.PinDir, _ = SitePinDir(DefaultBPFFS, c.Site) // Validate reports a bad site
	}
	if !c.SidecarIPv4.IsValid() {
		c.SidecarIPv4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if !c.SidecarIPv6.IsValid() {
		c.SidecarIPv6 = netip.IPv6Loopback()
	}
	if c.SidecarPort == 0 {
		c.SidecarPort = contract.SidecarOutboundPort
	}
	if c.ExcludeUID == 0 {
		c.ExcludeUID = contract.SidecarUID
	}
}

// Validate reports a configuration Load cannot use.
func (c Config) Validate() error {
	var errs []error
	if c.Site != "" {
		if err := names.CheckSite(c.Site); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case c.PinDir == "" && c.Site == "":
		errs = append(errs, errors.New("a pin dir or a site is required"))
	case c.PinDir != "" && !filepath.IsAbs(c.PinDir):
		errs = append(errs, fmt.Errorf("pin dir %q: must be an absolute path", c.PinDir))
	}
	if c.SidecarIPv4.IsValid() && !c.SidecarIPv4.Is4() {
		errs = append(errs, fmt.Errorf("sidecar IPv4 address %s: not an IPv4 address", c.SidecarIPv4))
	}
	if c.SidecarIPv6.IsValid() && (!c.SidecarIPv6.Is6() || c.SidecarIPv6.Is4In6() || c.SidecarIPv6.Zone() != "") {
		errs = append(errs, fmt.Errorf("sidecar IPv6 address %s: not a plain IPv6 address", c.SidecarIPv6))
	}
	if c.MaxServices > 1<<24 || c.MaxConnections > 1<<24 {
		errs = append(errs, errors.New("map sizes above 16777216 entries are refused"))
	}
	return errors.Join(errs...)
}
