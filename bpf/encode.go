package bpf

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// The programs keep every address as 16 bytes in network order, IPv4 as
// ::ffff:a.b.c.d, read as four native-endian 32-bit words; ports in host
// order. These helpers are the Go half of that encoding.

func ipWords(a netip.Addr) [4]uint32 {
	b := a.As16() // IPv4 becomes ::ffff:a.b.c.d
	var w [4]uint32
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

func wordsIP(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	return netip.AddrFrom16(b).Unmap()
}

func ip4Word(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func wordIP4(w uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], w)
	return netip.AddrFrom4(b)
}

// checkService refuses what the programs would never redirect.
func checkService(s netip.AddrPort) error {
	a := s.Addr()
	switch {
	case !s.IsValid():
		return fmt.Errorf("service %s: not an address and port", s)
	case a.Zone() != "":
		return fmt.Errorf("service %s: zoned addresses are not supported", s)
	case a.Unmap().IsLoopback() || a.IsUnspecified() || a.Unmap().IsUnspecified():
		return fmt.Errorf("service %s: loopback and unspecified destinations are never redirected", s)
	case s.Port() == 0:
		return fmt.Errorf("service %s: port 0", s)
	}
	return nil
}

func serviceKey(s netip.AddrPort) redirectSvcKey {
	return redirectSvcKey{Ip: ipWords(s.Addr().Unmap()), Port: s.Port()}
}

func serviceOf(k redirectSvcKey) netip.AddrPort {
	return netip.AddrPortFrom(wordsIP(k.Ip), k.Port)
}

// cidrKey is the LPM trie key of an excluded prefix of a pod: the whole
// 64-bit cgroup id, then the prefix of the 128-bit (mapped) address.
func cidrKey(cgroup uint64, p netip.Prefix) redirectCidrKey {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	return redirectCidrKey{
		Prefixlen: uint32(64 + bits),
		Cgroup:    [2]uint32{uint32(cgroup), uint32(cgroup >> 32)},
		Ip:        ipWords(p.Addr()),
	}
}

func prefixOf(k redirectCidrKey) (cgroup uint64, p netip.Prefix) {
	cgroup = uint64(k.Cgroup[0]) | uint64(k.Cgroup[1])<<32
	addr := wordsIP(k.Ip)
	bits := int(k.Prefixlen) - 64
	if addr.Is4() {
		bits -= 96
	}
	return cgroup, netip.PrefixFrom(addr, bits)
}

func portKey(cgroup uint64, port uint16) redirectPortKey {
	return redirectPortKey{Cgroup: cgroup, Port: port}
}

// origDst decodes a saved original destination.
func origDst(v redirectOrigDst) netip.AddrPort {
	return netip.AddrPortFrom(wordsIP(v.Ip), v.Port)
}
