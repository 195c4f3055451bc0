package redirect

import (
	"strings"
	"testing"

	"github.com/skiff-io/skiff/sidecar/shared/exclude"
)

// FuzzRules: any exclusion lists the shared parser accepts (the injector's
// annotations, iptables-init's flags) make valid rules whose listing has
// one line per rule.
func FuzzRules(f *testing.F) {
	f.Add("53,5432", "10.96.0.0/12,fd00::/8")
	f.Add("", "::ffff:10.0.0.1/128,0.0.0.0/0")
	f.Add("0,65536", "10.0.0.1/8")
	f.Add("080, 1", "FD00::/8,,fe80::%eth0/64")
	f.Fuzz(func(t *testing.T, ports, cidrs string) {
		ps, perr := exclude.ParsePorts(ports)
		cs, cerr := exclude.ParseCIDRs(cidrs)
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
