package sitefile

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// checkLabel checks a site name: a DNS-1123 label. It returns what is
// wrong, or "".
func checkLabel(s string) string {
	if !isLabel(s, false) {
		return fmt.Sprintf("must be a DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit), got %q", s)
	}
	return ""
}

// checkAddress checks a network address: a DNS-1123 subdomain, such as
// "backend" or "db.prod".
func checkAddress(s string) string {
	if s == "" {
		return "must not be empty"
	}
	name := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		// name:port, the form of a Kubernetes site's service port.
		name = s[:i]
		if p, err := strconv.Atoi(s[i+1:]); err != nil || p < 1 || p > 65535 || s[i+1] == '+' || s[i+1] == '0' {
			return fmt.Sprintf("must be a DNS-1123 subdomain, optionally with a port (e.g. backend or backend:8080), got %q", s)
		}
	}
	if name == "" || len(name) > 253 || !allLabels(name, false) {
		return fmt.Sprintf("must be a DNS-1123 subdomain, optionally with a port (lowercase letters, digits, '-' and '.', at most 253 characters, e.g. backend, db.prod or backend:8080), got %q", s)
	}
	return ""
}

// checkHost checks a host: an IP address or a DNS name.
func checkHost(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if !isHost(s) {
		return fmt.Sprintf("must be an IP address or a DNS name, got %q", s)
	}
	return ""
}

// checkHostPort checks a link access address. A bind address may leave the
// host empty or unspecified (all interfaces); an address other sites dial
// may not.
func checkHostPort(s string, bind bool) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("must be host:port, got %q", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port must be between 1 and 65535, got %q in %q", port, s)
	}
	if host == "" {
		if bind {
			return ""
		}
		return fmt.Sprintf("must name a host other sites can dial, got %q", s)
	}
	if !isHost(host) {
		return fmt.Sprintf("host must be an IP address or a DNS name, got %q in %q", host, s)
	}
	if ip := net.ParseIP(host); !bind && ip != nil && ip.IsUnspecified() {
		return fmt.Sprintf("must name a host other sites can dial, not the unspecified address %s", host)
	}
	return ""
}

// isHost reports an IP address or a DNS name (case-insensitive; a
// trailing dot allowed).
func isHost(s string) bool {
	if net.ParseIP(s) != nil {
		return true
	}
	s = strings.TrimSuffix(s, ".")
	return s != "" && len(s) <= 253 && allLabels(s, true)
}

func allLabels(s string, upper bool) bool {
	for label := range strings.SplitSeq(s, ".") {
		if !isLabel(label, upper) {
			return false
		}
	}
	return true
}

// isLabel reports a DNS-1123 label: 1 to 63 letters, digits and '-',
// starting and ending with a letter or digit; lowercase unless upper.
func isLabel(s string, upper bool) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
		case upper && 'A' <= c && c <= 'Z':
		default:
			return false
		}
	}
	return true
}
