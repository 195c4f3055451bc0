package router

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/policy"
	"github.com/skiff-io/skiff/sidecar/shared/token"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// drainGuard bounds waits that only a bug makes long. The drains under
// test have a DrainTimeout of a minute or more, so a router that stopped
// within drainGuard stopped because its streams were done.
const drainGuard = 20 * time.Second

// drainNode is a router of a drain test, with the channel Run's result
// arrives on.
type drainNode struct {
	name string
	ca   *pki.CA
	r    *Router
	done chan error
}

// drainSiteConfig is what startDrainNode needs to know of a router.
type drainSiteConfig struct {
	site, router string
	dir          string // CA and ledger; routers of one site share it
	linkAccess   bool
	links        []LinkSpec
	svc          Services
	drainTimeout time.Duration
	// linkListen is the link port's bind address (default 127.0.0.1:0);
	// siblings are the site's gateways' link addresses (siblings.go).
	linkListen string
	siblings   []string
	// linkValidity shortens the link certificates it issues (renew.go).
	linkValidity time.Duration
	// authority runs the gateway over a pki.Authority, as the app does,
	// so that its CA can be rotated (SetCA).
	authority bool
	// lookupHost resolves the siblings' host names (the default: DNS).
	lookupHost func(ctx context.Context, host string) ([]string, error)
}

func startDrainNode(t *testing.T, c drainSiteConfig) *drainNode {
	t.Helper()
	if c.dir == "" {
		c.dir = t.TempDir()
	}
	ca, err := pki.LoadOrCreateCA(c.dir, c.site)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Site: c.site, Role: RoleGateway, Name: c.router, SiteKey: ca.Key,
		Links: c.links, Services: c.svc, Metrics: NewMetrics(prometheus.NewRegistry()),
		DrainTimeout: c.drainTimeout,
		Log:          testr.NewWithOptions(t, testr.Options{LogTimestamp: true}).WithName(c.router),
	}
	var auth *pki.Authority
	if c.authority {
		auth = pki.NewAuthority(ca)
		cfg.Authority, cfg.SiteKey = auth, nil
	}
	if c.linkAccess {
		ledger, err := token.OpenLedger(c.dir)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.IssueServer(c.site, []string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cfg.LinkListen = cmp.Or(c.linkListen, "127.0.0.1:0")
		cfg.ServerTLS = pki.ServerTLS(ca, cert)
		cfg.Admission = &token.Admission{Ledger: ledger, CA: ca, Site: c.site, LinkValidity: c.linkValidity}
		cfg.Siblings, cfg.SiblingTLS = c.siblings, ca.SiblingTLS(c.site)
		if auth != nil {
			cfg.ServerTLS = auth.ServerTLS(func(ca *pki.CA) (tls.Certificate, error) {
				return ca.IssueServer(c.site, []string{"127.0.0.1"}, time.Hour)
			})
			cfg.Admission = &token.Admission{Ledger: ledger, Authority: auth, Site: c.site, LinkValidity: c.linkValidity}
			cfg.SiblingTLS = auth.SiblingTLS(c.site)
		}
	}
	return runDrainNode(t, c.router, ca, cfg, func(r *Router) {
		if c.lookupHost != nil {
			r.lookupHost = c.lookupHost
		}
	})
}

// runDrainNode runs a router of cfg, with what prepare changes in it
// first.
func runDrainNode(t *testing.T, name string, ca *pki.CA, cfg Config, prepare ...func(*Router)) *drainNode {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prepare {
		p(r)
	}
	n := &drainNode{name: name, ca: ca, r: r, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { n.done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-n.done:
		case <-time.After(drainGuard):
			t.Errorf("%s: Run did not return after its context ended", name)
		}
	})
	// A gateway with siblings may wait for them up to siblingKnownWait
	// before it turns ready (checkSettled): the bound is longer, so a
	// slow host shows what it was linked to when it turned ready (the
	// tests' checks), not a timeout.
	tu.Eventually(t, siblingKnownWait+10*time.Second, name+" ready", func() error {
		if ok, why := r.Readiness(); !ok {
			return errors.New(why)
		}
		return nil
	})
	return n
}

// waitStopped waits (bounded) until the router's Run has returned after
// its drain, and returns what the drain did.
func (n *drainNode) waitStopped(t *testing.T) drainStats {
	t.Helper()
	select {
	case err := <-n.done:
		n.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("%s: Run: %v", n.name, err)
		}
	case <-time.After(drainGuard):
		t.Fatalf("%s: still running %s after its drain began", n.name, drainGuard)
	}
	st := n.r.lastDrain.Load()
	if st == nil {
		t.Fatalf("%s stopped without a drain", n.name)
	}
	return *st
}

func (n *drainNode) running() bool {
	select {
	case err := <-n.done:
		n.done <- err
		return false
	default:
		return true
	}
}

// linkSpecTo is the link spec of a token issued by n for its ledger in
// dir, dialling endpoint.
func linkSpecTo(t *testing.T, n *drainNode, dir, endpoint string) LinkSpec {
	t.Helper()
	tok, err := token.Issue(n.ca, n.r.cfg.Site, endpoint, time.Hour, 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	spec := recordedSpec(t, n, dir, tok)
	spec.Name = "token-" + tok.ID
	return spec
}

// recordedSpec records tok in the ledger in dir and returns the link spec
// of a link made with it to n.
func recordedSpec(t *testing.T, n *drainNode, dir string, tok *token.Token) LinkSpec {
	t.Helper()
	ledger, err := token.OpenLedger(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Record(tok, policy.Policy{}); err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := tok.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	key, err := netview.KeyID(n.ca.Key.Public().(*ecdsa.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return LinkSpec{Endpoint: tok.Endpoint, TLS: tlsCfg, Cost: 1, PeerSite: tok.Site, PeerKey: key}
}

// echoService answers each connection with its name on a line, then
// echoes what it reads, half-closing when the client does.
func echoService(t *testing.T, name string) Connector {
	t.Helper()
	port := serveEach(t, func(c net.Conn) {
		io.WriteString(c, name+"\n")
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
	return Connector{Address: "backend", Host: "127.0.0.1", Port: port}
}

// serveEach listens on a loopback port and runs handle for each
// connection, on a goroutine of its own, closing the connection after;
// the listener closes and the handlers are waited for when the test ends.
// It returns the port.
func serveEach(t *testing.T, handle func(net.Conn)) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// echoConn is a client connection to an echoService through a router.
type echoConn struct {
	c  net.Conn
	br *bufio.Reader
}

// dialEcho connects to addr and returns the connection and the name
// the service answered with.
func dialEcho(addr string) (*echoConn, string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, "", err
	}
	e := &echoConn{c: c, br: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(drainGuard))
	name, err := e.br.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, "", err
	}
	return e, strings.TrimSpace(name), nil
}

// echoAnsweredBy dials addr until a connection is answered by the
// echoService named want (bounded), and returns it open.
func echoAnsweredBy(t *testing.T, addr, want string) *echoConn {
	t.Helper()
	var e *echoConn
	tu.Eventually(t, 10*time.Second, "a connection to "+addr+" answered by "+want, func() error {
		c, name, err := dialEcho(addr)
		if err != nil {
			return err
		}
		if name != want {
			c.c.Close()
			return fmt.Errorf("answered by %q", name)
		}
		e = c
		return nil
	})
	return e
}

// reachEcho is a check (for tu.Eventually) that a connection to addr is
// answered by the echoService named want, and finishes cleanly.
func reachEcho(addr, want string) func() error {
	return func() error {
		e, name, err := dialEcho(addr)
		if err != nil {
			return err
		}
		defer e.c.Close()
		if name != want {
			return fmt.Errorf("answered by %q", name)
		}
		return e.finish()
	}
}

// roundTrip sends a line and reads it back.
func (e *echoConn) roundTrip(msg string) error {
	e.c.SetDeadline(time.Now().Add(drainGuard))
	if _, err := io.WriteString(e.c, msg+"\n"); err != nil {
		return fmt.Errorf("write %q: %w", msg, err)
	}
	got, err := e.br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read back %q: %w", msg, err)
	}
	if strings.TrimSpace(got) != msg {
		return fmt.Errorf("read back %q, want %q", got, msg)
	}
	return nil
}

// finish half-closes, reads to the end and closes, as a client that is
// done does.
func (e *echoConn) finish() error {
	defer e.c.Close()
	if err := e.c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	rest, err := io.ReadAll(e.br)
	if err != nil {
		return fmt.Errorf("read to the end: %w", err)
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected bytes at the end: %q", rest)
	}
	return nil
}

// linkPair is east (accepting links, listening for backend) and west
// (dialling east, serving backend with an echoService).
type linkPair struct {
	east, west *drainNode
	eastLn     string
}

func newLinkPair(t *testing.T, drainTimeout time.Duration) *linkPair {
	t.Helper()
	port := tu.FreePort(t, "127.0.0.1")
	eastDir := t.TempDir()
	p := &linkPair{eastLn: fmt.Sprintf("127.0.0.1:%d", port)}
	p.east = startDrainNode(t, drainSiteConfig{site: "east", router: "east-gw-0", dir: eastDir, linkAccess: true, drainTimeout: drainTimeout,
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}}}})
	spec := linkSpecTo(t, p.east, eastDir, p.east.r.LinkAddr().String())
	p.west = startDrainNode(t, drainSiteConfig{site: "west", router: "west-gw-0", links: []LinkSpec{spec}, drainTimeout: drainTimeout,
		svc: Services{Connectors: []Connector{echoService(t, "west")}}})
	tu.Eventually(t, 10*time.Second, "east reaches west's backend", reachEcho(p.eastLn, "west"))
	return p
}

// TestDrainLetsOpenStreamsFinish: a stream is open from a client of
// east's listener across the link to west's backend, and one of the two
// gateways drains. It turns unready with the reason "draining"; the
// stream goes on carrying bytes both ways; once the client closes it, the
// router stops, well within its minute of drain timeout, with nothing
// reset. Draining east (origin, accepting side), a new connection to its
// listener and one to its link port are refused. Draining west (delivery,
// dialling side), east keeps the link and its route to west while the
// stream is open, and sees that west's connections go away.
func TestDrainLetsOpenStreamsFinish(t *testing.T) {
	t.Parallel() // it mostly waits (timers, drains): beside the other long waits (docs/testing.md)
	for _, which := range []string{"east", "west"} {
		t.Run(which, func(t *testing.T) {
			p := newLinkPair(t, time.Minute)
			draining, other := p.east, p.west
			if which == "west" {
				draining, other = p.west, p.east
			}
			e, name, err := dialEcho(p.eastLn)
			if err != nil || name != "west" {
				t.Fatalf("open a stream: %q, %v", name, err)
			}
			if err := e.roundTrip("before the drain"); err != nil {
				t.Fatal(err)
			}

			draining.r.Drain()
			tu.Eventually(t, drainGuard, which+" unready while draining", func() error {
				if ok, why := draining.r.Readiness(); ok || why != "draining" {
					return fmt.Errorf("readiness %v, %q", ok, why)
				}
				return nil
			})
			if which == "east" {
				for what, addr := range map[string]string{"listener": p.eastLn, "link port": p.east.r.LinkAddr().String()} {
					tu.Eventually(t, drainGuard, "a new connection to east's "+what+" refused", func() error {
						c, err := net.DialTimeout("tcp", addr, 2*time.Second)
						if err == nil {
							c.Close()
							return errors.New("accepted")
						}
						if !errors.Is(err, syscall.ECONNREFUSED) {
							return fmt.Errorf("dial: %w, want connection refused", err)
						}
						return nil
					})
				}
			} else {
				tu.Eventually(t, drainGuard, "east sees west's GOAWAY", func() error {
					l, err := p.east.r.anyLink("west")
					if err != nil {
						return err
					}
					if !l.peerDraining() {
						return errors.New("link not draining")
					}
					return nil
				})
				if _, ok := p.east.r.View().NextHop("west"); !ok {
					t.Error("east dropped its route to west while west drains with a stream open")
				}
			}
			for i := range 5 {
				if err := e.roundTrip(fmt.Sprintf("during the drain %d", i)); err != nil {
					t.Fatalf("the open stream, %d: %v", i, err)
				}
			}
			if !draining.running() {
				t.Fatal("the draining router stopped while a stream was open")
			}
			if err := e.finish(); err != nil {
				t.Fatalf("close the stream: %v", err)
			}
			st := draining.waitStopped(t)
			if st.reason != drainDone || st.open < 1 || st.finished < 1 || st.reset != 0 {
				t.Errorf("drain: %+v, want ended with %q, the stream open at its start and finished, none reset", st, drainDone)
			}
			if !other.running() {
				t.Error("the other router stopped")
			}
		})
	}
}

// anyLink returns an up link to peer.
func (r *Router) anyLink(peer string) (*link, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.links {
		if l.peer == peer && l.isUp() {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no link up to %s", peer)
}

// TestDrainTimeoutResetsStreams: when the drain timeout passes with a
// stream still open, the router stops and resets it: east's client sees
// a reset (not an end of data it could take for a complete answer), and
// west's end of the stream goes too.
func TestDrainTimeoutResetsStreams(t *testing.T) {
	p := newLinkPair(t, 500*time.Millisecond)
	e, name, err := dialEcho(p.eastLn)
	if err != nil || name != "west" {
		t.Fatalf("open a stream: %q, %v", name, err)
	}
	defer e.c.Close()
	if err := e.roundTrip("before the drain"); err != nil {
		t.Fatal(err)
	}
	p.east.r.Drain()
	st := p.east.waitStopped(t)
	// open may count the connection of newLinkPair's check too, if it had
	// not quite ended: it finishes by itself.
	if st.reason != drainTimeout || st.reset != 1 || st.finished != st.open-1 {
		t.Errorf("drain: %+v, want ended by the timeout with the one stream reset", st)
	}
	e.c.SetReadDeadline(time.Now().Add(drainGuard))
	if _, err := e.br.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("east's client read %v, want connection reset", err)
	}
	tu.Eventually(t, drainGuard, "west's end of the stream gone", func() error {
		p.west.r.flows.mu.Lock()
		defer p.west.r.flows.mu.Unlock()
		if n := len(p.west.r.flows.open); n != 0 {
			return fmt.Errorf("%d flows open", n)
		}
		return nil
	})
}

// switchProxy forwards connections to targets that the test can change,
// taking them in turn: a Service that sends new connections to its pods.
type switchProxy struct {
	ln      net.Listener
	mu      sync.Mutex
	targets []string
	next    int
	wg      sync.WaitGroup
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, targets: []string{target}}
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		p.wg.Wait()
	})
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			target := p.targets[p.next%len(p.targets)]
			p.next++
			p.mu.Unlock()
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close() // as a Service with no endpoint there
				continue
			}
			conns.Store(c, true)
			conns.Store(u, true)
			pipe := func(dst, src net.Conn) {
				io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			p.wg.Go(func() { pipe(u, c) })
			p.wg.Go(func() { pipe(c, u) })
		}
	})
	return p
}

func (p *switchProxy) addr() string { return p.ln.Addr().String() }

func (p *switchProxy) switchTo(targets ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets = targets
}

// TestDrainPeerRedials: site west runs two gateways, west-1 and west-2
// (one CA and ledger: replicas, or a pod and its successor), behind one
// address (a proxy standing in for the Service) that first sends
// connections to west-1. East dials west there. With a stream open
// through west-1, west-1 drains and the address moves to west-2: east
// sees the GOAWAY, dials a replacement that reaches west-2 and sends new
// connections there, while the stream through west-1 goes on until its
// client closes it, after which west-1 stops.
func TestDrainPeerRedials(t *testing.T) {
	t.Parallel() // it mostly waits (timers, drains): beside the other long waits (docs/testing.md)
	westDir := t.TempDir()
	w1 := startDrainNode(t, drainSiteConfig{site: "west", router: "west-1", dir: westDir, linkAccess: true, drainTimeout: time.Minute,
		svc: Services{Connectors: []Connector{echoService(t, "west-1")}}})
	w2 := startDrainNode(t, drainSiteConfig{site: "west", router: "west-2", dir: westDir, linkAccess: true, drainTimeout: time.Minute,
		svc: Services{Connectors: []Connector{echoService(t, "west-2")}}})
	svc := newSwitchProxy(t, w1.r.LinkAddr().String())
	port := tu.FreePort(t, "127.0.0.1")
	eastLn := fmt.Sprintf("127.0.0.1:%d", port)
	startDrainNode(t, drainSiteConfig{site: "east", router: "east-gw-0", links: []LinkSpec{linkSpecTo(t, w1, westDir, svc.addr())},
		svc: Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}}}})
	reach := func(want string) func() error { return reachEcho(eastLn, want) }
	tu.Eventually(t, 10*time.Second, "east reaches west-1", reach("west-1"))

	e, name, err := dialEcho(eastLn)
	if err != nil || name != "west-1" {
		t.Fatalf("open a stream: %q, %v", name, err)
	}
	svc.switchTo(w2.r.LinkAddr().String())
	w1.r.Drain()
	// No new connection fails: those east opens before it hears of the
	// GOAWAY reach west-1 (or are refused there and opened again), the
	// later ones wait for the replacement link and reach west-2, and once
	// one has, all do.
	var answers []string
	for i := 0; len(answers) == 0 || answers[len(answers)-1] != "west-2" || i < 10; i++ {
		if i == 500 {
			t.Fatalf("no connection reached west-2: %v", answers)
		}
		e, name, err := dialEcho(eastLn)
		if err != nil {
			t.Fatalf("new connection %d during west-1's drain: %v (answers before: %v)", i, err, answers)
		}
		if err := e.finish(); err != nil {
			t.Fatalf("new connection %d: %v", i, err)
		}
		if len(answers) > 0 && answers[len(answers)-1] == "west-2" && name != "west-2" {
			t.Fatalf("connection %d answered by %s after one reached west-2", i, name)
		}
		answers = append(answers, name)
		time.Sleep(5 * time.Millisecond)
	}
	for i := range 3 {
		if err := e.roundTrip(fmt.Sprintf("through west-1 %d", i)); err != nil {
			t.Fatalf("the stream through the draining west-1: %v", err)
		}
	}
	if !w1.running() {
		t.Fatal("west-1 stopped while a stream was open")
	}
	if err := e.finish(); err != nil {
		t.Fatal(err)
	}
	if st := w1.waitStopped(t); st.reason != drainDone || st.reset != 0 {
		t.Errorf("west-1's drain: %+v, want ended with %q, none reset", st, drainDone)
	}
	if err := reach("west-2")(); err != nil {
		t.Errorf("after west-1 stopped: %v", err)
	}
}

// TestSidecarDrainServesItsPod: a draining sidecar goes on serving its
// pod's outbound port, new connections included, and stops once no
// connection has been open for its idle time; one that stays open past
// the drain timeout is reset.
func TestSidecarDrainServesItsPod(t *testing.T) {
	start := func(t *testing.T, drainTimeout time.Duration) (*drainNode, string) {
		cfg := Config{
			Site: "east", Role: RoleSidecar, Name: "shop/pod-1", SidecarListen: "127.0.0.1:0",
			Services: Services{
				Listeners:  []Listener{{Address: "backend", Host: "10.96.0.10", Port: 80}},
				Connectors: []Connector{echoService(t, "local")},
			},
			DrainTimeout: drainTimeout, DrainIdle: 200 * time.Millisecond,
			Metrics: NewMetrics(prometheus.NewRegistry()),
			Log:     testr.NewWithOptions(t, testr.Options{LogTimestamp: true}).WithName("sidecar"),
		}
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// As if every connection had been redirected from the VIP.
		r.originalDst = func(net.Conn) (*net.TCPAddr, error) {
			return &net.TCPAddr{IP: net.IPv4(10, 96, 0, 10), Port: 80}, nil
		}
		n := &drainNode{name: "sidecar", r: r, done: make(chan error, 1)}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { n.done <- r.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-n.done })
		tu.Eventually(t, 10*time.Second, "sidecar ready", func() error {
			if !r.Ready() {
				return errors.New("not ready")
			}
			return nil
		})
		return n, r.SidecarAddr().String()
	}

	t.Run("serves until idle", func(t *testing.T) {
		n, addr := start(t, time.Minute)
		first, name, err := dialEcho(addr)
		if err != nil || name != "local" {
			t.Fatalf("connect: %q, %v", name, err)
		}
		n.r.Drain()
		tu.Eventually(t, drainGuard, "sidecar draining", func() error {
			if ok, why := n.r.Readiness(); ok || why != "draining" {
				return fmt.Errorf("readiness %v, %q", ok, why)
			}
			return nil
		})
		// The app's last calls on its way out still go through.
		for i := range 3 {
			e, name, err := dialEcho(addr)
			if err != nil || name != "local" {
				t.Fatalf("new connection %d while draining: %q, %v", i, name, err)
			}
			if err := e.roundTrip("last call"); err != nil {
				t.Fatal(err)
			}
			if err := e.finish(); err != nil {
				t.Fatal(err)
			}
		}
		if err := first.roundTrip("still here"); err != nil {
			t.Fatal(err)
		}
		if !n.running() {
			t.Fatal("the sidecar stopped with a connection open")
		}
		if err := first.finish(); err != nil {
			t.Fatal(err)
		}
		if st := n.waitStopped(t); st.reason != drainIdle || st.reset != 0 || st.finished != 4 {
			t.Errorf("drain: %+v, want ended idle with 4 connections finished, none reset", st)
		}
	})
	t.Run("timeout resets", func(t *testing.T) {
		n, addr := start(t, 300*time.Millisecond)
		e, _, err := dialEcho(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer e.c.Close()
		n.r.Drain()
		if st := n.waitStopped(t); st.reason != drainTimeout || st.reset != 1 {
			t.Errorf("drain: %+v, want ended by the timeout with one connection reset", st)
		}
		e.c.SetReadDeadline(time.Now().Add(drainGuard))
		if _, err := e.br.ReadByte(); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client read %v, want connection reset", err)
		}
	})
}
