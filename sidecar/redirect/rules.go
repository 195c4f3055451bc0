package redirect

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
)

// The nftables objects Install writes.
const (
	TableName = "skiff" // family inet
	ChainName = "output"
	// ChainPriority is the output chain's priority, dstnat.
	ChainPriority = -100
)

// ErrNotSupported is wrapped by the errors of Install and Remove when the
// kernel (or the platform) lacks what the rules need; the error names it.
var ErrNotSupported = errors.New("not supported by this kernel")

// Rules says where the pod's outbound TCP connections go and which stay
// untouched.
type Rules struct {
	// OutboundPort is the sidecar's outbound port; connections are
	// redirected to it on loopback (127.0.0.1, or ::1 for IPv6).
	OutboundPort int
	// ProxyUID is the sidecar's UID; its own connections are never
	// redirected, but for its self-check (contract.RedirectProbePort).
	ProxyUID uint32
	// ExcludePorts are destination ports that are never redirected.
	ExcludePorts []uint16
	// ExcludeCIDRs are destination prefixes, IPv4 or IPv6, that are never
	// redirected. An IPv4-mapped prefix (::ffff:10.0.0.0/104) stands for
	// its IPv4 prefix, since such connections leave as IPv4.
	ExcludeCIDRs []netip.Prefix
}

// Validate reports every field out of range.
func (r Rules) Validate() error {
	var errs []error
	switch {
	case r.OutboundPort < 1 || r.OutboundPort > 65535:
		errs = append(errs, fmt.Errorf("outbound port %d: want 1 to 65535", r.OutboundPort))
	case r.OutboundPort == contract.RedirectProbePort:
		errs = append(errs, fmt.Errorf("outbound port %d: that is the sidecar's redirect self-check port", r.OutboundPort))
	}
	if r.ProxyUID == 0 {
		errs = append(errs, errors.New("proxy UID 0: every process running as root would bypass the sidecar"))
	}
	for _, p := range r.ExcludePorts {
		if p == 0 {
			errs = append(errs, errors.New("excluded port 0: want 1 to 65535"))
		}
	}
	for _, p := range r.ExcludeCIDRs {
		switch {
		case !p.IsValid():
			errs = append(errs, fmt.Errorf("excluded CIDR %s: not a valid prefix", p))
		case p != p.Masked():
			errs = append(errs, fmt.Errorf("excluded CIDR %s: host bits set, want %s", p, p.Masked()))
		}
	}
	return errors.Join(errs...)
}

// NumRules is the number of rules in the chain.
func (r Rules) NumRules() int { return len(r.rules()) }

// String lists the table as `nft list table inet skiff` prints it.
func (r Rules) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n\tchain %s {\n", TableName, ChainName)
	fmt.Fprintf(&b, "\t\ttype nat hook output priority %d; policy accept;\n", ChainPriority)
	for _, rl := range r.rules() {
		fmt.Fprintf(&b, "\t\t%s\n", rl)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// ruleKind is what a rule matches.
type ruleKind int

const (
	redirectProbe ruleKind = iota // ip daddr and tcp dport: redirect to the port
	matchUID                      // meta skuid: return
	matchOIFName                  // oifname: return
	matchDaddr                    // ip or ip6 daddr: return
	matchDport                    // tcp dport: return
	redirectToTCP                 // any TCP: redirect to the port
)

// rule is one rule of the chain, the single description that both the
// listing and the netlink expressions are made from.
type rule struct {
	kind   ruleKind
	uid    uint32
	ifname string
	prefix netip.Prefix // IPv4 for ip daddr, IPv6 for ip6 daddr; masked
	dport  uint16       // the destination port matched
	port   uint16       // the redirect's port
}

// probeAddr is the sidecar's redirect self-check: a connect there is
// redirected whatever the UID, so that the sidecar can tell the rules are
// in place (contract.RedirectProbePort).
var probeAddr = netip.AddrPortFrom(netip.MustParseAddr(contract.RedirectProbeHost), contract.RedirectProbePort)

func (r Rules) rules() []rule {
	rs := []rule{
		{kind: redirectProbe, prefix: netip.PrefixFrom(probeAddr.Addr(), 32), dport: probeAddr.Port(), port: uint16(r.OutboundPort)},
		{kind: matchUID, uid: r.ProxyUID},
		{kind: matchOIFName, ifname: "lo"},
		{kind: matchDaddr, prefix: netip.MustParsePrefix("127.0.0.0/8")},
		{kind: matchDaddr, prefix: netip.MustParsePrefix("::1/128")},
	}
	for _, p := range r.ExcludePorts {
		rs = append(rs, rule{kind: matchDport, dport: p})
	}
	for _, p := range r.ExcludeCIDRs {
		rs = append(rs, rule{kind: matchDaddr, prefix: unmap(p.Masked())})
	}
	return append(rs, rule{kind: redirectToTCP, port: uint16(r.OutboundPort)})
}

// unmap turns an IPv4-mapped IPv6 prefix into its IPv4 prefix.
func unmap(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// String is the rule as nft lists it.
func (rl rule) String() string {
	switch rl.kind {
	case redirectProbe:
		return fmt.Sprintf("ip daddr %s tcp dport %d redirect to :%d", rl.prefix.Addr(), rl.dport, rl.port)
	case matchUID:
		return fmt.Sprintf("meta skuid %d return", rl.uid)
	case matchOIFName:
		return fmt.Sprintf("oifname %q return", rl.ifname)
	case matchDaddr:
		family, match := "ip", "ip daddr"
		if rl.prefix.Addr().Is6() {
			family, match = "ipv6", "ip6 daddr"
		}
		switch {
		case rl.prefix.Bits() == 0:
			if family == "ip" {
				family = "ipv4"
			}
			return "meta nfproto " + family + " return"
		case rl.prefix.IsSingleIP():
			return fmt.Sprintf("%s %s return", match, rl.prefix.Addr())
		}
		return fmt.Sprintf("%s %s return", match, rl.prefix)
	case matchDport:
		return fmt.Sprintf("tcp dport %d return", rl.dport)
	case redirectToTCP:
		return fmt.Sprintf("meta l4proto tcp redirect to :%d", rl.port)
	}
	panic(fmt.Sprintf("redirect: unknown rule kind %d", rl.kind))
}
