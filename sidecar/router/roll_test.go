package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	tu "github.com/skiff-io/skiff/test/testutil"
)

// endpointsLag is how long, in the rolling test, a draining gateway
// goes on receiving new connections from the "Services" in front of it,
// as Kubernetes sends them until the endpoint's removal reaches
// kube-proxy. Its link port is closed: they are refused.
const endpointsLag = time.Second

// TestRollingGatewaysUnderLoad: east runs two gateways, east-1 and
// east-2. West's link dials them through one "Service" (a proxy that
// takes its targets in turn), a sidecar of east through another. The
// gateways roll as a Deployment rolls them, one at a time with a surge:
// east-3 starts and joins the Services, east-1 drains, and the Services
// leave it endpointsLag later; then east-4 and east-2 do the same.
// Meanwhile the sidecar's Service takes the draining gateway in turn with
// the others, and west's sends west to it alone: the sidecar links to
// another gateway while west's only link is still the draining one. A
// client of the sidecar opens a new connection every 10 ms from before
// the roll until after it, and every one reaches west's backend; the
// sidecar's view never loses west.
func TestRollingGatewaysUnderLoad(t *testing.T) {
	t.Parallel() // it mostly waits (timers, drains): beside the other long waits (docs/testing.md)
	if testing.Short() {
		t.Skip("rolls two gateways, about 20 s")
	}
	eastDir := t.TempDir()
	var siblings []string
	for range 4 {
		siblings = append(siblings, fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t, "127.0.0.1")))
	}
	gateway := func(i int) *drainNode {
		return startDrainNode(t, drainSiteConfig{site: "east", router: fmt.Sprintf("east-%d", i+1), dir: eastDir, linkAccess: true,
			linkListen: siblings[i], siblings: siblings, drainTimeout: time.Minute})
	}
	e1, e2 := gateway(0), gateway(1)
	westSvc, sidecarSvc := newSwitchProxy(t, siblings[0]), newSwitchProxy(t, siblings[0])
	startDrainNode(t, drainSiteConfig{site: "west", router: "west-1", links: []LinkSpec{linkSpecTo(t, e1, eastDir, westSvc.addr())},
		svc: Services{Connectors: []Connector{echoService(t, "west-1")}}})
	// The sidecar's view never loses west: when it links to another
	// gateway, its view moves there in one step (netview's Mirror).
	var unreachable atomic.Int32
	log := funcr.New(func(prefix, args string) {
		if strings.Contains(args, `"msg"="site unreachable"`) {
			unreachable.Add(1)
		}
		t.Log(prefix, args)
	}, funcr.Options{LogTimestamp: true})
	sidecar := startSidecarLogged(t, "east", memberSpec(t, e1, eastDir, sidecarSvc.addr()), log)
	tu.Eventually(t, 15*time.Second, "the sidecar reaches west", reachEcho(sidecar, "west-1"))

	load := startEchoLoad(sidecar, "west-1", 10*time.Millisecond, 5000)
	time.Sleep(500 * time.Millisecond)
	// The sidecar and west linked through Services that sent them to
	// east-1, the gateway that drains first; now they take both.
	westSvc.switchTo(siblings[0], siblings[1])
	sidecarSvc.switchTo(siblings[0], siblings[1])
	roll := func(old *drainNode, i int, stay string) {
		t.Helper()
		gateway(i)
		oldAddr := old.r.LinkAddr().String()
		westSvc.switchTo(oldAddr)
		sidecarSvc.switchTo(stay, siblings[i], oldAddr)
		old.r.Drain()
		time.Sleep(endpointsLag)
		westSvc.switchTo(stay, siblings[i])
		sidecarSvc.switchTo(stay, siblings[i])
		old.waitStopped(t)
	}
	roll(e1, 2, siblings[1])
	roll(e2, 3, siblings[2])
	time.Sleep(time.Second)
	sent, failures := load.stop()
	t.Logf("%d connections during the roll, %d failed", sent, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d of %d connections failed during the roll:\n%s", len(failures), sent, strings.Join(failures, "\n"))
	}
	if n := unreachable.Load(); n > 0 {
		t.Errorf("the sidecar's view lost west %d times during the roll", n)
	}
	if sent < 100 {
		t.Errorf("only %d connections were made", sent)
	}
}

// echoLoad opens a new connection to an echoService through addr every
// interval, at most max of them, and keeps what went wrong.
type echoLoad struct {
	stopc    chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	sent     int
	failures []string
}

func startEchoLoad(addr, want string, interval time.Duration, max int) *echoLoad {
	l := &echoLoad{stopc: make(chan struct{})}
	l.wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; i < max; i++ {
			select {
			case <-l.stopc:
				return
			case <-tick.C:
			}
			l.wg.Go(func() {
				start := time.Now()
				err := reachEcho(addr, want)()
				l.mu.Lock()
				defer l.mu.Unlock()
				l.sent++
				if err != nil {
					l.failures = append(l.failures, fmt.Sprintf("%s (+%s): %v", start.Format("15:04:05.000"), time.Since(start).Round(time.Millisecond), err))
				}
			})
		}
	})
	return l
}

// stop ends the load, waits for the connections under way, and returns
// how many were made and what failed.
func (l *echoLoad) stop() (int, []string) {
	close(l.stopc)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sent, l.failures
}

// TestDrainHoldsLinksForStrandedSites: east runs east-1 and east-2; west
// links to east-1 alone, through a "Service" that goes on sending it to
// east-1 after east-1 began to drain. East-1 keeps its links past
// gatewayDrainHold while west reaches east only through it, and east-2's
// route to west (through east-1, avoided by new streams) stays in its
// view; once the Service sends west to east-2 and west links there,
// east-1 stops, with nothing reset, and east-2 reaches west directly.
func TestDrainHoldsLinksForStrandedSites(t *testing.T) {
	t.Parallel() // it mostly waits (timers, drains): beside the other long waits (docs/testing.md)
	eastDir := t.TempDir()
	siblings := []string{fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t, "127.0.0.1")), fmt.Sprintf("127.0.0.1:%d", tu.FreePort(t, "127.0.0.1"))}
	port := tu.FreePort(t, "127.0.0.1")
	e1 := startDrainNode(t, drainSiteConfig{site: "east", router: "east-1", dir: eastDir, linkAccess: true, linkListen: siblings[0], siblings: siblings, drainTimeout: time.Minute})
	e2 := startDrainNode(t, drainSiteConfig{site: "east", router: "east-2", dir: eastDir, linkAccess: true, linkListen: siblings[1], siblings: siblings, drainTimeout: time.Minute,
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}}}})
	westSvc := newSwitchProxy(t, siblings[0])
	startDrainNode(t, drainSiteConfig{site: "west", router: "west-1", links: []LinkSpec{linkSpecTo(t, e1, eastDir, westSvc.addr())},
		svc: Services{Connectors: []Connector{echoService(t, "west-1")}}})
	east2 := fmt.Sprintf("127.0.0.1:%d", port)
	tu.Eventually(t, 15*time.Second, "east-2 reaches west through east-1", reachEcho(east2, "west-1"))

	e1.r.Drain()
	tu.Eventually(t, 5*time.Second, "east-2 sees east-1 draining", func() error {
		if rec, ok := e2.r.db.Record("east/east-1"); !ok || !rec.Draining {
			return errors.New("east-1's record does not say it drains")
		}
		return nil
	})
	time.Sleep(gatewayDrainHold + time.Second)
	if !e1.running() {
		t.Fatal("east-1 stopped while west reached east only through it")
	}
	if got := e1.r.stranded(); !slices.Equal(got, []string{"west"}) {
		t.Errorf("east-1's stranded sites = %v, want [west]", got)
	}
	if rt, ok := e2.r.View().Routes["west"]; !ok || rt.NextHop != "east/east-1" {
		t.Errorf("east-2's route to west = %+v (%v), want through east-1", rt, ok)
	}

	westSvc.switchTo(siblings[1])
	if st := e1.waitStopped(t); st.reason != drainDone || st.reset != 0 {
		t.Errorf("east-1's drain: %+v, want ended with %q, none reset", st, drainDone)
	}
	tu.Eventually(t, 10*time.Second, "east-2 reaches west over west's new link", reachEcho(east2, "west-1"))
	if rt := e2.r.View().Routes["west"]; rt.NextHop != "west/west-1" {
		t.Errorf("east-2's route to west = %+v, want direct", rt)
	}
}

// siblingDNS stands in for the headless Service the gateways of a site
// resolve to find each other: a gateway is published a while after it
// started, as a DNS answer cached for a few seconds shows it.
type siblingDNS struct {
	mu    sync.Mutex
	hosts []string
}

func (d *siblingDNS) lookupHost(context.Context, string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.hosts), nil
}

func (d *siblingDNS) publish(host string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hosts = append(d.hosts, host)
}

// TestRollWithSlowSiblingDiscovery: a Deployment rolls east's gateways a
// and b: c starts, turns ready, a drains and d starts at once; once d is
// ready, b drains. A gateway appears in the site's sibling DNS only
// siblingDNSLag after it started, so d finds a and b there but not c, and
// c never finds d while both run on b (as the end-to-end scenario saw on
// 2026-12-06: 534 requests lost when b drained). West's link moves from
// a to c, the sidecar's from a to b and then to d. d stays unready until
// it is linked to c, whose record reached it through b; b, draining,
// holds its links while c and d, or west and d, hang together only by
// it. A client of the sidecar opens a new connection every 10 ms
// throughout, and every one reaches west.
func TestRollWithSlowSiblingDiscovery(t *testing.T) {
	t.Parallel() // it mostly waits (timers, drains): beside the other long waits (docs/testing.md)
	if testing.Short() {
		t.Skip("rolls two gateways, about 20 s")
	}
	const siblingDNSLag = 5 * time.Second
	eastDir := t.TempDir()
	port := tu.FreePort(t, "127.0.0.1")
	dns := &siblingDNS{}
	host := func(i int) string { return fmt.Sprintf("127.0.0.%d", i+2) }
	addr := func(i int) string { return fmt.Sprintf("%s:%d", host(i), port) }
	gateway := func(i int) *drainNode {
		return startDrainNode(t, drainSiteConfig{site: "east", router: string(rune('a' + i)), dir: eastDir, linkAccess: true, linkListen: addr(i),
			siblings: []string{fmt.Sprintf("east-gateways:%d", port)}, lookupHost: dns.lookupHost, drainTimeout: time.Minute})
	}
	dns.publish(host(0))
	dns.publish(host(1))
	a, b := gateway(0), gateway(1)
	westSvc, sidecarSvc := newSwitchProxy(t, addr(0)), newSwitchProxy(t, addr(0))
	startDrainNode(t, drainSiteConfig{site: "west", router: "west-1", links: []LinkSpec{linkSpecTo(t, a, eastDir, westSvc.addr())},
		svc: Services{Connectors: []Connector{echoService(t, "west-1")}}})
	sidecar := startSidecar(t, "east", memberSpec(t, a, eastDir, sidecarSvc.addr()))
	tu.Eventually(t, 15*time.Second, "the sidecar reaches west", reachEcho(sidecar, "west-1"))
	load := startEchoLoad(sidecar, "west-1", 10*time.Millisecond, 5000)
	time.Sleep(500 * time.Millisecond)

	time.AfterFunc(siblingDNSLag, func() { dns.publish(host(2)) })
	gateway(2) // ready once a and b have found it and linked to it
	westSvc.switchTo(addr(2))
	sidecarSvc.switchTo(addr(1))
	a.r.Drain()
	started := time.Now()
	time.AfterFunc(siblingDNSLag, func() { dns.publish(host(3)) })
	d := gateway(3) // ready once linked to b and c
	if linked := d.r.siblingLink("c"); linked == nil {
		t.Errorf("d turned ready %s after it started without a link to c", time.Since(started).Round(time.Millisecond))
	}
	sidecarSvc.switchTo(addr(3))
	b.r.Drain()
	a.waitStopped(t)
	b.waitStopped(t)
	time.Sleep(time.Second)
	sent, failures := load.stop()
	t.Logf("%d connections during the roll, %d failed", sent, len(failures))
	if len(failures) > 0 {
		t.Errorf("%d of %d connections failed during the roll:\n%s", len(failures), sent, strings.Join(failures, "\n"))
	}
	if err := reachEcho(sidecar, "west-1")(); err != nil {
		t.Errorf("after the roll: %v", err)
	}
}
