package linux_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/app"
	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
	"github.com/skiff-io/skiff/test/testutil"
)

// siteSpec describes one site of a test network. Sites with accept listen
// for links on host; links name the sites this one dials.
type siteSpec struct {
	name       string
	host       string // 127.0.0.x for link access and listeners
	accept     bool
	links      []linkTo
	listeners  []string          // addresses with a listener on host (port chosen)
	connectors []string          // "address=host:port"
	routing    map[string]string // address -> pattern
	protocols  map[string]string // address -> protocol, on its listeners and connectors
	multicast  map[string]string // address -> multicast mode, on its listeners and connectors
}

type linkTo struct {
	site string
	cost int
	via  string // "proxy": dial through a tcpProxy the test can cut (network.proxy)
}

// network runs a set of in-process gateways built from real site files and
// real tokens, exactly as `skiff-router gateway --site-file` does.
type network struct {
	t     *testing.T
	dir   string
	specs map[string]*siteSpec
	sites map[string]*siteRun
	ports map[string]int // "site/address" -> listener port
	link  map[string]int // site -> link port
	proxy *tcpProxy      // set when a link has via: "proxy"
}

type siteRun struct {
	name   string
	file   string
	r      *router.Router
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func newNetwork(t *testing.T, specs ...*siteSpec) *network {
	t.Helper()
	n := &network{t: t, dir: t.TempDir(), specs: map[string]*siteSpec{}, sites: map[string]*siteRun{}, ports: map[string]int{}, link: map[string]int{}}
	for _, s := range specs {
		n.specs[s.name] = s
		if s.accept {
			n.link[s.name] = testutil.FreePort(t, s.host)
		}
		for _, a := range s.listeners {
			n.ports[s.name+"/"+a] = testutil.FreePort(t, s.host)
		}
	}
	// Sites that accept links first get a bare site file so they can issue
	// tokens; then every site gets its full file.
	for _, s := range specs {
		if s.accept {
			n.writeSiteFile(s, nil)
		}
	}
	for _, s := range specs {
		var tokens []string
		for i, l := range s.links {
			tok := filepath.Join(n.dir, fmt.Sprintf("%s-to-%s-%d.yaml", s.name, l.site, i))
			if _, err := app.IssueToken(app.TokenOptions{SiteFile: n.siteFile(l.site), Out: tok, Expires: 15 * time.Minute, Redemptions: 1}, time.Now()); err != nil {
				t.Fatalf("issue token %s -> %s: %v", s.name, l.site, err)
			}
			if l.via == "proxy" {
				n.proxy = newTCPProxy(t, net.JoinHostPort(n.specs[l.site].host, fmt.Sprint(n.link[l.site])))
				rewriteEndpoint(t, tok, n.proxy.addr())
			}
			tokens = append(tokens, tok)
		}
		n.writeSiteFile(s, tokens)
	}
	for _, s := range specs {
		n.start(s.name)
	}
	t.Cleanup(func() {
		for name := range n.sites {
			n.stop(name)
		}
	})
	return n
}

// protocolField is the ", protocol: X" and ", multicast: Y" of an entry
// for address, those s names.
func protocolField(s *siteSpec, address string) string {
	f := ""
	if p := s.protocols[address]; p != "" {
		f += ", protocol: " + p
	}
	if m := s.multicast[address]; m != "" {
		f += ", multicast: " + m
	}
	return f
}

func (n *network) siteFile(name string) string { return filepath.Join(n.dir, name+".yaml") }

func (n *network) writeSiteFile(s *siteSpec, tokens []string) {
	n.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\ndataDir: %s-data\n", s.name, s.name)
	if s.accept {
		addr := net.JoinHostPort(s.host, fmt.Sprint(n.link[s.name]))
		fmt.Fprintf(&b, "linkAccess:\n  bind: %s\n  advertise: %s\n", addr, addr)
	}
	if len(tokens) > 0 {
		b.WriteString("links:\n")
		for i, tok := range tokens {
			fmt.Fprintf(&b, "  - token: %s\n    cost: %d\n", filepath.Base(tok), s.links[i].cost)
		}
	}
	if len(s.listeners) > 0 {
		b.WriteString("listeners:\n")
		for _, a := range s.listeners {
			fmt.Fprintf(&b, "  - {address: %s, host: %s, port: %d%s}\n", a, s.host, n.ports[s.name+"/"+a], protocolField(s, a))
		}
	}
	if len(s.connectors) > 0 {
		b.WriteString("connectors:\n")
		for _, c := range s.connectors {
			addr, hp, _ := strings.Cut(c, "=")
			h, p, _ := net.SplitHostPort(hp)
			fmt.Fprintf(&b, "  - {address: %s, host: %s, port: %s%s}\n", addr, h, p, protocolField(s, addr))
		}
	}
	if len(s.routing) > 0 {
		b.WriteString("routing:\n")
		for a, p := range s.routing {
			fmt.Fprintf(&b, "  %s: %s\n", a, p)
		}
	}
	if err := os.WriteFile(n.siteFile(s.name), []byte(b.String()), 0o600); err != nil {
		n.t.Fatal(err)
	}
}

// rewriteEndpoint makes a site dial a link through another endpoint (a
// test proxy that can cut the link). Tokens are signed, so the token file
// stays as issued; start reads this side file and overrides the dial
// address in the router's link spec.
func rewriteEndpoint(t *testing.T, tok, via string) {
	t.Helper()
	if err := os.WriteFile(tok+".via", []byte(via), 0o600); err != nil {
		t.Fatal(err)
	}
}

// start runs a site's gateway in-process.
func (n *network) start(name string) {
	n.t.Helper()
	site, err := sitefile.Load(n.siteFile(name))
	if err != nil {
		n.t.Fatalf("load site %s: %v", name, err)
	}
	log := testr.NewWithOptions(n.t, testr.Options{LogTimestamp: true}).WithName(name)
	cfg, err := app.Config(site, router.RoleGateway, nil, log)
	if err != nil {
		n.t.Fatalf("config %s: %v", name, err)
	}
	for i := range cfg.Links {
		if via, err := os.ReadFile(cfg.Links[i].Name + ".via"); err == nil {
			cfg.Links[i].Endpoint = string(via)
		}
	}
	reg := prometheus.NewRegistry()
	cfg.Metrics = router.NewMetrics(reg)
	r, err := router.New(cfg)
	if err != nil {
		n.t.Fatalf("router %s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	n.sites[name] = &siteRun{name: name, file: n.siteFile(name), r: r, reg: reg, cancel: cancel, done: done}
	testutil.Eventually(n.t, 10*time.Second, name+" ready", func() error {
		select {
		case err := <-done:
			return fmt.Errorf("router exited: %v", err)
		default:
		}
		if !r.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
}

// stop stops a site's gateway and waits for it.
func (n *network) stop(name string) {
	s := n.sites[name]
	if s == nil {
		return
	}
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		n.t.Errorf("site %s did not stop", name)
	}
	delete(n.sites, name)
}

// waitEndpoints waits until from's view has an address at the given sites.
func (n *network) waitEndpoints(from, address string, sites ...string) {
	n.t.Helper()
	testutil.Eventually(n.t, 15*time.Second, fmt.Sprintf("%s sees %s at %v", from, address, sites), func() error {
		got := map[string]bool{}
		for _, tg := range n.sites[from].r.View().Addresses[address] {
			got[tg.Site] = true
		}
		for _, s := range sites {
			if !got[s] {
				return fmt.Errorf("%s not at %s (view %v)", address, s, n.sites[from].r.View().Addresses[address])
			}
		}
		return nil
	})
}

func (n *network) addr(site, address string) string {
	return net.JoinHostPort(n.specs[site].host, fmt.Sprint(n.ports[site+"/"+address]))
}

func (n *network) url(site, address string) string { return "http://" + n.addr(site, address) + "/" }

// get sends count requests, each on a new connection, and counts answers.
func get(t *testing.T, url string, count int) map[string]int {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	counts := map[string]int{}
	for range count {
		resp, err := c.Get(url)
		if err != nil {
			counts["error"]++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		counts[strings.TrimSpace(string(b))]++
	}
	return counts
}

func getOne(url string) (string, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// tcpProxy forwards connections to target and can cut them all, to break
// a link without stopping either gateway.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	down   bool
	frozen bool // blackhole: bytes are read and dropped, connections stay open
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { p.pipe(u, c); u.Close(); c.Close() }()
			go func() { p.pipe(c, u); u.Close(); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut(true) })
	return p
}

// pipe copies src to dst, dropping bytes while the proxy is frozen.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			frozen := p.frozen
			p.mu.Unlock()
			if !frozen {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// freeze turns the proxy into a blackhole: a peer that is silently gone.
func (p *tcpProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

// cut closes every forwarded connection; with stayDown new ones are refused.
func (p *tcpProxy) cut(stayDown bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = stayDown
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
