package contract

import (
	"fmt"
	"net/netip"
	"testing"
)

// The node agent and the sidecar compute the same address from the site
// name; it is loopback in 127.128.0.0/9, at the self-check port, never the
// self-check host, and differs between sites. Values are pinned: an
// agent and a sidecar of different versions must agree.
func TestRedirectProbeSiteAddr(t *testing.T) {
	upper := netip.MustParsePrefix("127.128.0.0/9")
	seen := map[netip.Addr]string{}
	for i := range 1000 {
		site := fmt.Sprintf("site-%d", i)
		a := RedirectProbeSiteAddr(site)
		if !upper.Contains(a.Addr()) || a.Port() != RedirectProbePort || a.Addr() == netip.MustParseAddr(RedirectProbeHost) {
			t.Fatalf("%s: %s, want an address in %s at port %d", site, a, upper, RedirectProbePort)
		}
		if other, ok := seen[a.Addr()]; ok {
			t.Errorf("%s and %s share %s", site, other, a)
		}
		seen[a.Addr()] = site
	}
	for site, want := range map[string]string{"east": "127.182.8.64:15002", "west": "127.138.211.196:15002"} {
		if got := RedirectProbeSiteAddr(site).String(); got != want {
			t.Errorf("%s: %s, want %s (changing the derivation breaks agents and sidecars of different versions)", site, got, want)
		}
	}
}
