package redirect

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// FuzzParse: parsing never panics; what it accepts is exactly what the
// injector writes (formatting the result gives the input back), and makes
// valid rules whose listing has one line per rule.
func FuzzParse(f *testing.F) {
	f.Add("53,5432", "10.96.0.0/12,fd00::/8")
	f.Add("", "::ffff:10.0.0.1/128,0.0.0.0/0")
	f.Add("0,65536", "10.0.0.1/8")
	f.Add("080, 1", "FD00::/8,,fe80::%eth0/64")
	f.Fuzz(func(t *testing.T, ports, cidrs string) {
		ps, perr := ParsePorts(ports)
		if perr == nil {
			if got := formatPorts(ps); got != ports {
				t.Errorf("ParsePorts(%q) = %v, formats as %q", ports, ps, got)
			}
		}
		cs, cerr := ParseCIDRs(cidrs)
		if cerr == nil {
			if got := formatCIDRs(cs); got != cidrs {
				t.Errorf("ParseCIDRs(%q) = %v, formats as %q", cidrs, cs, got)
			}
		}
		if perr != nil || cerr != nil {
			return
		}
		r := Rules{OutboundPort: 15001, ProxyUID: 1337, ExcludePorts: ps, ExcludeCIDRs: cs}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed rules %+v do not validate: %v", r, err)
		}
		// The self-check, UID, lo, 127.0.0.0/8, ::1, the excludes, the redirect.
		if n := strings.Count(r.String(), "\n") - 5; n != 6+len(ps)+len(cs) {
			t.Errorf("listing of %+v has %d rules, want %d", r, n, 6+len(ps)+len(cs))
		}
	})
}

// formatPorts writes ports as the injector does.
func formatPorts(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// formatCIDRs writes prefixes as the injector does.
func formatCIDRs(cidrs []netip.Prefix) string {
	s := make([]string, len(cidrs))
	for i, p := range cidrs {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
