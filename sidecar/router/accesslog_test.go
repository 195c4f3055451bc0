package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/l7"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// accessLogBuffer is an access log in memory: one entry per Write.
type accessLogBuffer struct {
	mu     sync.Mutex
	writes []string
}

func (b *accessLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes = append(b.writes, string(p))
	return len(p), nil
}

// lines decodes the lines written so far; every Write must be one.
func (b *accessLogBuffer) lines(t *testing.T) []l7.AccessLine {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]l7.AccessLine, 0, len(b.writes))
	for _, w := range b.writes {
		var l l7.AccessLine
		if strings.Count(w, "\n") != 1 || !strings.HasSuffix(w, "\n") || json.Unmarshal([]byte(w), &l) != nil {
			t.Fatalf("access log write %q is not one JSON line", w)
		}
		out = append(out, l)
	}
	return out
}

// wait returns the lines once there are at least n: a line is written
// once its answer ended, which may be just after the client read it.
func (b *accessLogBuffer) wait(t *testing.T, n int) []l7.AccessLine {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := b.lines(t)
		if len(lines) >= n || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(time.Millisecond)
	}
}

// startLoggingGateway starts gateway east, whose access log is w, with
// the links and services given (it dials out; it takes no links).
func startLoggingGateway(t *testing.T, w io.Writer, links []LinkSpec, svc Services) *testSite {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir(), "east")
	if err != nil {
		t.Fatal(err)
	}
	s := &testSite{name: "east", ca: ca, reg: prometheus.NewRegistry()}
	s.r, err = New(Config{
		Site: "east", Role: RoleGateway, Name: "east-gw-0", SiteKey: ca.Key,
		Links: links, Services: svc, Metrics: NewMetrics(s.reg), AccessLog: w,
		Log: testr.NewWithInterface(t, testr.Options{LogTimestamp: true}).WithName("east"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.r.Run(ctx) }()
	s.stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(s.stop)
	tu.Eventually(t, 10*time.Second, "east ready", func() error {
		if !s.r.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	return s
}

// TestAccessLogGatewayListeners: east's listener of web with AccessLog
// writes one line per request, naming the site that answered (west or
// north) and the status; its listener of web without writes none, until
// a new service table turns it on; a request no site can take is logged
// as skiff's 503.
func TestAccessLogGatewayListeners(t *testing.T) {
	webWest, webNorth := startWeb(t, "west", true), startWeb(t, "north", true)
	web := map[string]model.Protocol{"web": model.HTTP, "gone": model.HTTP}
	west := startSite(t, "west", true, nil, Services{Connectors: []Connector{webWest.connector()}, Protocols: web})
	north := startSite(t, "north", true, nil, Services{Connectors: []Connector{webNorth.connector()}, Protocols: web})
	logged, quiet, gone := tu.FreePort(t, "127.0.0.1"), tu.FreePort(t, "127.0.0.1"), tu.FreePort(t, "127.0.0.1")
	svc := Services{
		Listeners: []Listener{
			{Address: "web", Host: "127.0.0.1", Port: logged, AccessLog: true},
			{Address: "web", Host: "127.0.0.1", Port: quiet},
			{Address: "gone", Host: "127.0.0.1", Port: gone, AccessLog: true},
		},
		Protocols: web,
	}
	alog := &accessLogBuffer{}
	east := startLoggingGateway(t, alog, []LinkSpec{specFor(t, west.issue(t, 1)), specFor(t, north.issue(t, 1))}, svc)
	tu.Eventually(t, 10*time.Second, "east sees web in west and north", func() error {
		if got := remoteSites(east, "web"); got != 2 {
			return fmt.Errorf("web at %d other sites", got)
		}
		return nil
	})

	const requests = 100
	for _, h2 := range []bool{false, true} {
		c, _ := keepAliveClient(h2)
		for i := range requests {
			if _, err := get(c, fmt.Sprintf("http://127.0.0.1:%d/quiet/%d", quiet, i)); err != nil {
				t.Fatalf("quiet listener, request %d: %v", i, err)
			}
		}
	}
	if n := len(alog.lines(t)); n != 0 {
		t.Fatalf("a listener without AccessLog wrote %d lines", n)
	}

	by := map[string]int{}
	sent := 0
	for _, h2 := range []bool{false, true} {
		c, _ := keepAliveClient(h2)
		for i := range requests {
			site, err := get(c, fmt.Sprintf("http://127.0.0.1:%d/item/%d?q=%d", logged, i, i))
			if err != nil {
				t.Fatalf("logged listener, request %d: %v", i, err)
			}
			by[site]++
			sent++
			lines := alog.wait(t, sent)
			if len(lines) != sent {
				t.Fatalf("after %d requests, %d lines", sent, len(lines))
			}
			l := lines[len(lines)-1]
			proto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]
			if l.Site != site || l.Status != 200 || l.Address != "web" || l.Method != "GET" ||
				l.Path != fmt.Sprintf("/item/%d", i) || l.Proto != proto || l.BytesOut == 0 {
				t.Fatalf("request %d (h2 %v) answered by %s: line %+v", i, h2, site, l)
			}
		}
	}
	t.Logf("answered by %v; a line: %s", by, strings.TrimSpace(alog.writes[0]))
	if by["west"] == 0 || by["north"] == 0 {
		t.Errorf("answers %v; want both west and north", by)
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/x", gone))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	lines := alog.wait(t, sent+1)
	if l := lines[len(lines)-1]; resp.StatusCode != 503 || l.Status != 503 || l.Site != "none" || l.Address != "gone" {
		t.Errorf("a request for gone: %s, line %+v; want 503 from skiff (site none)", resp.Status, l)
	}

	// The quiet listener, still bound, logs the connections it accepts
	// once the service table says so.
	svc.Listeners[1].AccessLog = true
	if err := east.r.SetServices(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	before := len(alog.lines(t))
	c, _ := keepAliveClient(false)
	if _, err := get(c, fmt.Sprintf("http://127.0.0.1:%d/now-logged", quiet)); err != nil {
		t.Fatal(err)
	}
	if lines := alog.wait(t, before+1); len(lines) != before+1 || lines[before].Path != "/now-logged" {
		t.Errorf("after AccessLog was turned on: %d new lines", len(lines)-before)
	}
}

// TestAccessLogSidecar: a sidecar with SidecarAccessLog logs every HTTP
// request of its pod; one without logs none.
func TestAccessLogSidecar(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("SidecarAccessLog=%v", on), func(t *testing.T) {
			w := startWeb(t, "local", false)
			alog := &accessLogBuffer{}
			r, err := New(Config{
				Site: "east", Role: RoleSidecar, Name: "shop/pod-1", SidecarListen: "127.0.0.1:0",
				Services: Services{
					Listeners:  []Listener{{Address: "web", Host: "10.96.0.10", Port: 80}},
					Connectors: []Connector{w.connector()},
					Protocols:  map[string]model.Protocol{"web": model.HTTP},
				},
				AccessLog: alog, SidecarAccessLog: on,
				Metrics: NewMetrics(prometheus.NewRegistry()),
				Log:     testr.NewWithOptions(t, testr.Options{LogTimestamp: true}).WithName("sidecar"),
			})
			if err != nil {
				t.Fatal(err)
			}
			r.originalDst = func(net.Conn) (*net.TCPAddr, error) { // as if redirected from web's VIP
				return &net.TCPAddr{IP: net.IPv4(10, 96, 0, 10), Port: 80}, nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			tu.Eventually(t, 10*time.Second, "sidecar ready", func() error {
				if r.SidecarAddr() == nil || !r.Ready() {
					return errors.New("not ready")
				}
				return nil
			})
			c, _ := keepAliveClient(false)
			for i := range 10 {
				if site, err := get(c, fmt.Sprintf("http://%s/pod/%d", r.SidecarAddr(), i)); err != nil || site != "local" {
					t.Fatalf("request %d: %q, %v", i, site, err)
				}
			}
			lines := alog.lines(t)
			if on {
				lines = alog.wait(t, 10)
			}
			if !on {
				if len(lines) != 0 {
					t.Errorf("%d lines without SidecarAccessLog", len(lines))
				}
				return
			}
			if len(lines) != 10 {
				t.Fatalf("%d lines, want 10", len(lines))
			}
			for i, l := range lines {
				if l.Site != "east" || l.Status != 200 || l.Path != fmt.Sprintf("/pod/%d", i) {
					t.Errorf("line %d: %+v", i, l)
				}
			}
		})
	}
}
