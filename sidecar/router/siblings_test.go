package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/shared/token"

	tu "github.com/skiff-io/skiff/test/testutil"
)

// A site with two gateways (east-1, east-2) that find each other and link
// at cost 0; west links to the site through its "Service" (a proxy to
// east-1). A client of east-2 reaches west's backend through its sibling,
// which holds the link. When east-1 stops, west's link comes back through
// the Service on east-2, with the link certificate east-1 issued (the
// gateways share the site's ledger), and east-2's clients reach west
// again.
func TestSiblings(t *testing.T) {
	t.Parallel() // it mostly waits (timers, drains): beside the other long waits (docs/testing.md)
	eastDir := t.TempDir()
	p1, p2 := tu.FreePort(t, "127.0.0.1"), tu.FreePort(t, "127.0.0.1")
	siblings := []string{fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)}
	l1, l2 := tu.FreePort(t, "127.0.0.1"), tu.FreePort(t, "127.0.0.1")
	e1 := startDrainNode(t, drainSiteConfig{site: "east", router: "east-1", dir: eastDir, linkAccess: true, linkListen: siblings[0], siblings: siblings,
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: l1}}}})
	e2 := startDrainNode(t, drainSiteConfig{site: "east", router: "east-2", dir: eastDir, linkAccess: true, linkListen: siblings[1], siblings: siblings,
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: l2}}}})
	tu.Eventually(t, 15*time.Second, "east-1 and east-2 link as siblings", func() error {
		for _, n := range []*drainNode{e1, e2} {
			if got := n.r.View().Routers["east"]; !slices.Equal(got, []string{"east-1", "east-2"}) {
				return fmt.Errorf("%s sees east's gateways %v", n.name, got)
			}
		}
		return nil
	})

	svc := newSwitchProxy(t, e1.r.LinkAddr().String())
	startDrainNode(t, drainSiteConfig{site: "west", router: "west-1", links: []LinkSpec{linkSpecTo(t, e1, eastDir, svc.addr())},
		svc: Services{Connectors: []Connector{echoService(t, "west-1")}}})
	reach := func(port int) func() error { return reachEcho(fmt.Sprintf("127.0.0.1:%d", port), "west-1") }
	tu.Eventually(t, 15*time.Second, "a client of east-2 reaches west through east-1", reach(l2))
	// A sidecar of east attached to east-2 reaches west too.
	sidecar := startSiblingSidecar(t, e2, eastDir)
	tu.Eventually(t, 15*time.Second, "a sidecar attached to east-2 reaches west", reachEcho(sidecar, "west-1"))
	rt := e2.r.View().Routes["west"]
	if rt.NextHop != "east/east-1" || rt.Cost != 1 {
		t.Errorf("east-2's route to west = %+v, want through east/east-1 at cost 1", rt)
	}

	// east-1 goes; the Service sends west's next connection to east-2.
	svc.switchTo(e2.r.LinkAddr().String())
	e1.r.Drain() // no drain timeout: it stops at once
	e1.waitStopped(t)
	tu.Eventually(t, 15*time.Second, "after east-1 stopped, a client of east-2 reaches west over west's new link", reach(l2))
	if rt := e2.r.View().Routes["west"]; rt.NextHop != "west/west-1" {
		t.Errorf("east-2's route to west = %+v, want direct", rt)
	}
}

// startSiblingSidecar starts a sidecar of gw's site attached to gw with a
// member token, whose every connection is for backend (as if redirected
// from its VIP); it returns the sidecar's outbound address.
func startSiblingSidecar(t *testing.T, gw *drainNode, dir string) string {
	t.Helper()
	return startSidecar(t, gw.r.cfg.Site, memberSpec(t, gw, dir, gw.r.LinkAddr().String()))
}

// memberSpec is the link spec of a sidecar of gw's site, with a member
// token issued by gw (recorded in the ledger in dir), dialling endpoint.
func memberSpec(t *testing.T, gw *drainNode, dir, endpoint string) LinkSpec {
	t.Helper()
	tok, err := token.IssueMember(gw.ca, gw.r.cfg.Site, endpoint, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	spec := recordedSpec(t, gw, dir, tok)
	spec.Name = "gateway"
	return spec
}

// startSidecar starts a sidecar of site with its link to the gateway,
// whose every connection is for backend (as if redirected from its VIP);
// it returns the sidecar's outbound address.
func startSidecar(t *testing.T, site string, spec LinkSpec) string {
	t.Helper()
	return startSidecarLogged(t, site, spec, testr.NewWithOptions(t, testr.Options{LogTimestamp: true}))
}

// startSidecarLogged is startSidecar with the sidecar's logger.
func startSidecarLogged(t *testing.T, site string, spec LinkSpec, log logr.Logger) string {
	t.Helper()
	cfg := Config{
		Site: site, Role: RoleSidecar, Name: "shop/pod-1", SidecarListen: "127.0.0.1:0",
		Links:    []LinkSpec{spec},
		Services: Services{Listeners: []Listener{{Address: "backend", Host: "10.96.0.10", Port: 80}}},
		Metrics:  NewMetrics(prometheus.NewRegistry()),
		Log:      log.WithName("sidecar"),
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.originalDst = func(net.Conn) (*net.TCPAddr, error) {
		return &net.TCPAddr{IP: net.IPv4(10, 96, 0, 10), Port: 80}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	tu.Eventually(t, 10*time.Second, "sidecar ready", func() error {
		if addr := r.SidecarAddr(); addr == nil || !r.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	return r.SidecarAddr().String()
}

// A sidecar asks its link's ClientTLS before every dial: after its
// credential was renewed and the old one revoked, it reconnects to a
// restarted gateway with the new one.
func TestSidecarCredentialRenewed(t *testing.T) {
	dir := t.TempDir()
	linkAddr := fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t, "127.0.0.1"))
	gwCfg := drainSiteConfig{site: "east", router: "east-1", dir: dir, linkAccess: true, linkListen: linkAddr,
		svc: Services{Connectors: []Connector{echoService(t, "east-1")}}}
	gw := startDrainNode(t, gwCfg)
	member := func() (*token.Token, LinkSpec) {
		tok, err := token.IssueMember(gw.ca, "east", linkAddr, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok, recordedSpec(t, gw, dir, tok)
	}
	oldTok, spec := member()
	var mu sync.Mutex
	current := spec.TLS
	spec.ClientTLS = func() (*tls.Config, error) { mu.Lock(); defer mu.Unlock(); return current, nil }
	addr := startSidecar(t, "east", spec)
	reach := reachEcho(addr, "east-1")
	tu.Eventually(t, 10*time.Second, "the sidecar reaches the gateway's backend", reach)

	// Renewed: the sidecar's file now holds a new token; the old one is
	// revoked, and the gateway restarts.
	_, renewed := member()
	mu.Lock()
	current = renewed.TLS
	mu.Unlock()
	ledger, err := token.OpenLedger(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Remove(oldTok.ID); err != nil {
		t.Fatal(err)
	}
	gw.r.Drain()
	gw.waitStopped(t)
	gwCfg.router = "east-2"
	startDrainNode(t, gwCfg)
	tu.Eventually(t, 15*time.Second, "with the renewed credential, the sidecar reaches the restarted gateway", reach)
}

// A sidecar whose gateway drains moves to the site's other gateway (its
// Service sends the replacement link there) and keeps reaching west: its
// view is rooted at the new gateway from then on, whatever the draining
// one still sends (the e2e found a sidecar left with the old gateway's
// links as its own, and no route).
func TestSidecarMovesToSibling(t *testing.T) {
	t.Parallel() // it mostly waits (timers, drains): beside the other long waits (docs/testing.md)
	eastDir := t.TempDir()
	p1, p2 := tu.FreePort(t, "127.0.0.1"), tu.FreePort(t, "127.0.0.1")
	siblings := []string{fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)}
	e1 := startDrainNode(t, drainSiteConfig{site: "east", router: "east-1", dir: eastDir, linkAccess: true, linkListen: siblings[0], siblings: siblings, drainTimeout: time.Minute})
	e2 := startDrainNode(t, drainSiteConfig{site: "east", router: "east-2", dir: eastDir, linkAccess: true, linkListen: siblings[1], siblings: siblings})
	westSvc := newSwitchProxy(t, e1.r.LinkAddr().String())
	startDrainNode(t, drainSiteConfig{site: "west", router: "west-1", links: []LinkSpec{linkSpecTo(t, e1, eastDir, westSvc.addr())},
		svc: Services{Connectors: []Connector{echoService(t, "west-1")}}})
	// The sidecar dials east's "Service", which sends it to east-1.
	sidecarSvc := newSwitchProxy(t, e1.r.LinkAddr().String())
	addr := startSidecar(t, "east", memberSpec(t, e1, eastDir, sidecarSvc.addr()))
	reach := reachEcho(addr, "west-1")
	tu.Eventually(t, 15*time.Second, "the sidecar reaches west through east-1", reach)

	// east-1 drains; both Services now send new connections to east-2.
	westSvc.switchTo(e2.r.LinkAddr().String())
	sidecarSvc.switchTo(e2.r.LinkAddr().String())
	e1.r.Drain()
	tu.Eventually(t, 15*time.Second, "the sidecar reaches west through east-2", reach)
	e1.waitStopped(t)
	for i := range 5 {
		if err := reach(); err != nil {
			t.Fatalf("connection %d after east-1 stopped: %v", i, err)
		}
	}
}
