package redirect

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParsePorts parses a list of excluded ports as the injector writes it
// (--exclude-outbound-ports): decimal ports from 1 to 65535, without sign
// or leading zero, separated by commas without spaces, e.g. "53,5432".
// An empty value is no port.
func ParsePorts(s string) ([]uint16, error) {
	if s == "" {
		return nil, nil
	}
	var ports []uint16
	for i, it := range strings.Split(s, ",") {
		if it == "" {
			return nil, fmt.Errorf("empty item %d in %q", i+1, s)
		}
		n, err := strconv.ParseUint(it, 10, 16)
		if err != nil || n == 0 || it[0] == '0' {
			return nil, fmt.Errorf("port %q: want a decimal number from 1 to 65535", it)
		}
		ports = append(ports, uint16(n))
	}
	return ports, nil
}

// ParseCIDRs parses a list of excluded CIDRs as the injector writes it
// (--exclude-outbound-cidrs): IPv4 and IPv6 prefixes with the host bits
// zero, in the canonical form of net/netip, separated by commas without
// spaces, e.g. "10.0.0.0/8,fd00::/8". An empty value is no CIDR.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	if s == "" {
		return nil, nil
	}
	var cidrs []netip.Prefix
	for i, it := range strings.Split(s, ",") {
		if it == "" {
			return nil, fmt.Errorf("empty item %d in %q", i+1, s)
		}
		p, err := netip.ParsePrefix(it)
		switch {
		case err != nil:
			return nil, err // names the item
		case p != p.Masked():
			return nil, fmt.Errorf("CIDR %q: host bits set, want %s", it, p.Masked())
		case p.String() != it:
			return nil, fmt.Errorf("CIDR %q: want the canonical form %s", it, p)
		}
		cidrs = append(cidrs, p)
	}
	return cidrs, nil
}
