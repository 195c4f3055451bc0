package router

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// webServer is an HTTP endpoint of address "web" that answers with its
// name (header Served-By) and, for a body, its length and SHA-256.
type webServer struct {
	name string
	srv  *http.Server
	ln   net.Listener
	hits atomic.Int64
	// stall makes it answer nothing until the request is cancelled.
	stall atomic.Bool
	// delay, if set, is a wait before each answer (cut short when the
	// request is cancelled).
	delay atomic.Int64
}

func startWeb(t testing.TB, name string, h2 bool) *webServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &webServer{name: name, ln: ln}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(h2)
	w.srv = &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		w.hits.Add(1)
		if w.stall.Load() {
			<-req.Context().Done()
			return
		}
		if d := time.Duration(w.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-req.Context().Done():
				return
			}
		}
		if req.Header.Get("Upgrade") == "echo" {
			c, brw, err := http.NewResponseController(rw).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			_, _ = io.Copy(c, brw)
			return
		}
		h := sha256.New()
		n, _ := io.Copy(h, req.Body)
		rw.Header().Set("Served-By", name)
		rw.Header().Set("Trailer", "Body-Sum")
		fmt.Fprintf(rw, "%s %s %d", name, req.Proto, n)
		rw.Header().Set("Body-Sum", hex.EncodeToString(h.Sum(nil)))
	})}
	go func() { _ = w.srv.Serve(ln) }()
	t.Cleanup(func() { w.srv.Close() })
	return w
}

func (w *webServer) connector() Connector {
	return Connector{Address: "web", Host: "127.0.0.1", Port: w.ln.Addr().(*net.TCPAddr).Port}
}

// httpNet is east, whose clients call web on a listener, and west and
// north, linked to east at the same cost, each with one web endpoint.
type httpNet struct {
	east, west, north *testSite
	webWest, webNorth *webServer
	url               string
}

func newHTTPNet(t *testing.T, routing string, eastWeb *webServer) *httpNet {
	t.Helper()
	n := &httpNet{webWest: startWeb(t, "west", true), webNorth: startWeb(t, "north", true)}
	port := tu.FreePort(t, "127.0.0.1")
	n.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	web := map[string]model.Protocol{"web": model.HTTP}
	svc := Services{Listeners: []Listener{{Address: "web", Host: "127.0.0.1", Port: port}}, Protocols: web, Routing: map[string]string{"web": routing}}
	if eastWeb != nil {
		svc.Connectors = []Connector{eastWeb.connector()}
	}
	n.east = startSite(t, "east", true, nil, svc)
	tok := n.east.issue(t, 2)
	n.west = startSite(t, "west", false, []LinkSpec{specFor(t, tok)}, Services{Connectors: []Connector{n.webWest.connector()}, Protocols: web})
	n.north = startSite(t, "north", false, []LinkSpec{specFor(t, tok)}, Services{Connectors: []Connector{n.webNorth.connector()}, Protocols: web})
	tu.Eventually(t, 10*time.Second, "east sees web in west and north", func() error {
		if got := remoteSites(n.east, "web"); got != 2 {
			return fmt.Errorf("web at %d other sites", got)
		}
		return nil
	})
	return n
}

// keepAliveClient speaks HTTP/1.1, or HTTP/2 with prior knowledge, over
// one connection, and counts the connections it made.
func keepAliveClient(h2 bool) (*http.Client, *atomic.Int64) {
	var p http.Protocols
	if h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	var dials atomic.Int64
	tr := &http.Transport{Protocols: &p, MaxConnsPerHost: 1, DisableCompression: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, &dials
}

func get(c *http.Client, url string) (servedBy string, err error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return resp.Header.Get("Served-By"), nil
}

// TestHTTPPerRequest: one keep-alive connection's requests to a balanced
// HTTP address are spread over the endpoints of two sites of equal cost,
// over HTTP/1.1 and over HTTP/2.
func TestHTTPPerRequest(t *testing.T) {
	n := newHTTPNet(t, "balanced", nil)
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			c, dials := keepAliveClient(h2)
			const requests = 1000
			by := map[string]int{}
			for i := range requests {
				site, err := get(c, n.url+"/item/"+fmt.Sprint(i))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				by[site]++
			}
			t.Logf("answered by %v over %d connection(s)", by, dials.Load())
			if dials.Load() != 1 {
				t.Errorf("client made %d connections, want 1 (keep-alive)", dials.Load())
			}
			for _, site := range []string{"west", "north"} {
				if share := float64(by[site]) / requests; share < 0.4 || share > 0.6 {
					t.Errorf("%s answered %.0f%% of the requests, want 40-60%%", site, 100*share)
				}
			}
		})
	}
	req := n.east.r.m.HTTP.Requests
	west, north := counterValue(req.WithLabelValues("web", "west", "2xx", "")), counterValue(req.WithLabelValues("web", "north", "2xx", ""))
	if west+north != 2000 {
		t.Errorf("skiff_http_requests_total{class=2xx}: west %v, north %v; want 2000 in all", west, north)
	}
	// West counts the requests it delivered as east's (origin), not as
	// its own clients'.
	if got := counterValue(n.west.r.m.HTTP.Requests.WithLabelValues("web", "west", "2xx", "east")); got != west {
		t.Errorf("west's skiff_http_requests_total{origin=east} = %v, want the %v east sent it", got, west)
	}
	if got := counterValue(n.west.r.m.HTTP.Requests.WithLabelValues("web", "west", "2xx", "")); got != 0 {
		t.Errorf("west's skiff_http_requests_total{origin=\"\"} = %v, want 0: its clients sent none", got)
	}
}

// TestHTTPBodiesAndTrailers: bodies of every size reach the far endpoint
// intact, and the answer's trailers come back.
func TestHTTPBodiesAndTrailers(t *testing.T) {
	n := newHTTPNet(t, "closest", nil)
	for _, h2 := range []bool{false, true} {
		c, _ := keepAliveClient(h2)
		for _, size := range []int{0, 1, 100 << 10, 8 << 20} {
			body := strings.Repeat("x", size)
			sum := sha256.Sum256([]byte(body))
			resp, err := c.Post(n.url+"/upload", "application/octet-stream", strings.NewReader(body))
			if err != nil {
				t.Fatalf("h2=%v: POST %d bytes: %v", h2, size, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasSuffix(string(got), fmt.Sprintf(" %d", size)) {
				t.Errorf("h2=%v: POST %d bytes: answer %q", h2, size, got)
			}
			if resp.Trailer.Get("Body-Sum") != hex.EncodeToString(sum[:]) {
				t.Errorf("h2=%v: POST %d bytes: trailer Body-Sum %q", h2, size, resp.Trailer.Get("Body-Sum"))
			}
		}
	}
}

// TestHTTPFailover: under closest, the near endpoint's server dies in the
// middle of a keep-alive client's requests; not one request fails, and
// the rest are answered by the next site.
func TestHTTPFailover(t *testing.T) {
	eastWeb := startWeb(t, "east", false)
	n := newHTTPNet(t, "closest", eastWeb)
	c, _ := keepAliveClient(false)
	by := map[string]int{}
	for i := range 600 {
		if i == 200 {
			eastWeb.srv.Close() // its listener and every connection
		}
		site, err := get(c, n.url+"/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		by[site]++
		if i < 200 && site != "east" {
			t.Fatalf("request %d answered by %s before east's endpoint died; closest is east", i, site)
		}
	}
	t.Logf("answered by %v", by)
	if by["east"] != 200 || by["west"]+by["north"] != 400 {
		t.Errorf("answers %v; want 200 from east, then 400 from west or north", by)
	}
}

// TestHTTPUpgrade: a request that upgrades its connection is carried as
// a connection to one endpoint, in another site.
func TestHTTPUpgrade(t *testing.T) {
	n := newHTTPNet(t, "closest", nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(n.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s, want 101", resp.Status)
	}
	got := make([]byte, len("hello"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "hello" {
		t.Fatalf("after the upgrade: %q, %v", got, err)
	}
}

// remoteSites counts the other sites s's view has address at.
func remoteSites(s *testSite, address string) int {
	n := 0
	for _, tg := range s.r.db.View().Addresses[address] {
		if tg.Site != s.name {
			n++
		}
	}
	return n
}
