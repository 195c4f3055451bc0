package sitefile

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/skiff-io/skiff/sidecar/shared/names"
)

// checkLabel checks a site name: a DNS-1123 label. It returns what is
// wrong, or "".
func checkLabel(s string) string {
	if !isLabel(s, false) {
		return fmt.Sprintf("must be a DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit), got %q", s)
	}
	return ""
}

// checkAddress checks a network address (package names' rules): a
// DNS-1123 subdomain, such as "backend" or "db.prod", optionally with a
// port.
func checkAddress(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if names.CheckAddress(s) != nil {
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

// isLabel reports a DNS-1123 label (package names); upper allows upper
// case, for host names.
func isLabel(s string, upper bool) bool {
	if upper {
		return names.IsHostLabel(s)
	}
	return names.IsLabel(s)
}
