package contract

import (
	"crypto/sha256"
	"net/netip"
)

// RedirectProbeSiteAddr is the original destination that eBPF redirection
// records for the self-check of a pod of site: the sidecar dials
// RedirectProbeHost:RedirectProbePort, the programs of the node agent of
// the pod's site send that connect to the sidecar, and its
// SO_ORIGINAL_DST reads back as this address instead, so the sidecar can
// tell its own site's programs (and their services) from another site's.
//
// The address is 127.x.y.z at RedirectProbePort, with x.y.z taken from a
// SHA-256 of the site name and x at least 128: never RedirectProbeHost,
// and two sites on one node share it with a chance of one in 2^23. The
// node agent and the sidecar both compute it; docs/ebpf.md has the
// details.
func RedirectProbeSiteAddr(site string) netip.AddrPort {
	h := sha256.Sum256([]byte("skiff redirect probe\x00" + site))
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0x80 | h[0], h[1], h[2]}), RedirectProbePort)
}
