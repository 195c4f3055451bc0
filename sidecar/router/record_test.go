package router

import (
	"fmt"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
)

// TestUpdateLocalFromManyLinkUps: updateLocal called by many link-ups at
// once (as markUp calls it) leaves the site's record with every link that
// is up, whichever call publishes last. A call that read the links before
// another link came up must not publish after the call that read them
// after, or the later link is missing from the record until the next
// change, and its peer sees this site unreachable (the bidirectional
// check): TestHTTPMulticastAggregate waited 10 s for it in CI once.
func TestUpdateLocalFromManyLinkUps(t *testing.T) {
	ca, err := pki.LoadOrCreateCA(t.TempDir(), "hub")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Site: "hub", Role: RoleGateway, Name: "hub-gw-0", SiteKey: ca.Key, Metrics: NewMetrics(prometheus.NewRegistry()), Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	const links, rounds = 16, 40
	for round := range rounds {
		var wg sync.WaitGroup
		for i := range links {
			l := &link{r: r, id: fmt.Sprintf("%d-%d", round, i), peer: fmt.Sprintf("spoke%d", i), router: "gw", role: roleGateway,
				up: true, cost: 1, pending: map[string]netview.Signed{}, kick: make(chan struct{}, 1)}
			wg.Go(func() {
				r.mu.Lock()
				r.setLinkLocked(l)
				r.mu.Unlock()
				r.updateLocal()
			})
		}
		wg.Wait()
		if got := len(r.db.Local().Links); got != links {
			t.Fatalf("round %d: the record lists %d links, %d are up", round, got, links)
		}
		r.mu.Lock()
		for _, l := range r.links {
			r.deleteLinkLocked(l)
		}
		r.mu.Unlock()
		r.updateLocal()
	}
}
