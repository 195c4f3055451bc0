package redirect

import (
	"flag"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/test/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func prefixes(s ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(s))
	for i, v := range s {
		ps[i] = netip.MustParsePrefix(v)
	}
	return ps
}

// goldenRules are the rule sets whose listing (testdata/NAME.nft) and
// netlink expressions (testdata/NAME.netlink, Linux) are golden-tested.
var goldenRules = []struct {
	name  string
	rules Rules
}{
	{"defaults", Rules{OutboundPort: 15001, ProxyUID: 1337}},
	// What the injector writes for exclude-outbound-ports "5432, 53" and
	// exclude-outbound-cidrs "10.96.0.0/12,fd00::1/8".
	{"injector-excludes", Rules{OutboundPort: 15001, ProxyUID: 1337,
		ExcludePorts: []uint16{53, 5432}, ExcludeCIDRs: prefixes("10.96.0.0/12", "fd00::/8")}},
	// Every shape of prefix: whole bytes, a mask, single addresses, /0,
	// and IPv4-mapped ones, which match as IPv4.
	{"prefix-shapes", Rules{OutboundPort: 8080, ProxyUID: 4242, ExcludePorts: []uint16{1, 65535},
		ExcludeCIDRs: prefixes("10.0.0.0/8", "172.16.0.0/12", "192.0.2.7/32", "0.0.0.0/0",
			"2001:db8::/32", "2001:db8:8000::/33", "fd00::1/128", "::/0",
			"::ffff:10.1.0.0/112", "::ffff:192.0.2.1/128", "::ffff:0:0/96")}},
}

func TestString(t *testing.T) {
	for _, tc := range goldenRules {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.rules.Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			got := tc.rules.String()
			if n := strings.Count(got, "\n") - 5; n != tc.rules.NumRules() {
				t.Errorf("listing has %d rules, NumRules() = %d", n, tc.rules.NumRules())
			}
			testutil.Golden(t, filepath.Join("testdata", tc.name+".nft"), got, *update)
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Rules{OutboundPort: 15001, ProxyUID: 1337}
	for _, tc := range []struct {
		name string
		mod  func(*Rules)
		want string // substring of the error; "" for none
	}{
		{"defaults", func(*Rules) {}, ""},
		{"IPv4 and IPv6 mixed", func(r *Rules) {
			r.ExcludePorts = []uint16{53, 65535}
			r.ExcludeCIDRs = prefixes("10.0.0.0/8", "fd00::/8", "::ffff:10.0.0.0/104", "0.0.0.0/0")
		}, ""},
		{"outbound port 0", func(r *Rules) { r.OutboundPort = 0 }, "outbound port 0: want 1 to 65535"},
		{"outbound port too big", func(r *Rules) { r.OutboundPort = 65536 }, "outbound port 65536: want 1 to 65535"},
		{"outbound port negative", func(r *Rules) { r.OutboundPort = -1 }, "outbound port -1"},
		{"outbound port is the self-check's", func(r *Rules) { r.OutboundPort = 15002 }, "outbound port 15002: that is the sidecar's redirect self-check port"},
		{"proxy UID 0", func(r *Rules) { r.ProxyUID = 0 }, "proxy UID 0"},
		{"excluded port 0", func(r *Rules) { r.ExcludePorts = []uint16{80, 0} }, "excluded port 0"},
		{"invalid CIDR", func(r *Rules) { r.ExcludeCIDRs = []netip.Prefix{{}} }, "not a valid prefix"},
		{"host bits", func(r *Rules) { r.ExcludeCIDRs = prefixes("10.1.2.3/8") }, "excluded CIDR 10.1.2.3/8: host bits set, want 10.0.0.0/8"},
		{"all at once", func(r *Rules) { r.OutboundPort, r.ProxyUID = 0, 0 }, "want 1 to 65535\nproxy UID 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.mod(&r)
			err := r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
