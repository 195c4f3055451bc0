// Package exclude reads and writes the lists of destinations a pod's
// outbound connections are never redirected to: the
// config.skiff.io/exclude-outbound-ports and -cidrs annotations, which
// the injector reads, the node agent reads for the eBPF maps, and the
// injector passes on as skiff-router iptables-init flags. One parser, so
// that a list means the same to all three.
package exclude

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// MaxItems bounds a list, so that a pod cannot make the node agent or the
// nftables ruleset hold more than a page of entries for it.
const MaxItems = 64

// ParsePorts reads a comma-separated list of destination ports from 1 to
// 65535 ("53, 5432"); spaces around items are allowed, empty items are
// not. An empty value is no port. The result is ascending and without
// duplicates, the form FormatPorts writes.
func ParsePorts(v string) ([]uint16, error) {
	items, err := split(v)
	if err != nil || items == nil {
		return nil, err
	}
	ports := make([]uint16, 0, len(items))
	for _, it := range items {
		n, err := strconv.ParseUint(it, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port %q: want a number from 1 to 65535", it)
		}
		ports = append(ports, uint16(n))
	}
	slices.Sort(ports)
	return slices.Compact(ports), nil
}

// FormatPorts writes ports as ParsePorts reads them, without spaces.
func FormatPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// ParseCIDRs reads a comma-separated list of IPv4 and IPv6 prefixes
// ("10.0.0.0/8, fd00::/8") and bare addresses (a single host); spaces
// around items are allowed, empty items and zones are not. Host bits are
// masked off. An empty value is no prefix. The result keeps the order
// given, without duplicates.
func ParseCIDRs(v string) ([]netip.Prefix, error) {
	items, err := split(v)
	if err != nil || items == nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, it := range items {
		var p netip.Prefix
		if strings.Contains(it, "/") {
			p, err = netip.ParsePrefix(it)
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(it)
			if err == nil && a.Zone() != "" {
				return nil, fmt.Errorf("address %q: zones are not allowed", it)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			return nil, err // netip's errors name the item
		}
		p = p.Masked()
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// FormatCIDRs writes prefixes as ParseCIDRs reads them, in net/netip's
// canonical form, without spaces.
func FormatCIDRs(cidrs []netip.Prefix) string {
	s := make([]string, len(cidrs))
	for i, p := range cidrs {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// split splits a comma-separated list of at most MaxItems items, trimmed;
// "" is no item.
func split(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	if n := strings.Count(v, ",") + 1; n > MaxItems {
		return nil, fmt.Errorf("%d items: at most %d", n, MaxItems)
	}
	items := strings.Split(v, ",")
	for i, it := range items {
		it = strings.TrimSpace(it)
		if it == "" {
			return nil, fmt.Errorf("empty item %d in comma-separated list", i+1)
		}
		items[i] = it
	}
	return items, nil
}
