package server

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// testServer is a Server serving on a loopback port.
type testServer struct {
	*Server
	addr string
	reg  *prometheus.Registry
	logs *logSink
	stop func() // stops serving and waits for Serve to return
}

// startServer serves a new Server on 127.0.0.1 until stop or the end of
// the test. Debounce is short unless opts says otherwise.
func startServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, lis, opts)
}

func serveOn(t *testing.T, lis net.Listener, opts Options) *testServer {
	t.Helper()
	return serveListeners(t, opts, Listener{Listener: lis})
}

// serveListeners serves a new Server on ls; addr is the first one's.
func serveListeners(t *testing.T, opts Options, ls ...Listener) *testServer {
	t.Helper()
	ts := &testServer{addr: ls[0].Addr().String(), reg: prometheus.NewRegistry(), logs: &logSink{}}
	if opts.Debounce == 0 {
		opts.Debounce = 10 * time.Millisecond
	}
	if opts.MaxDelay == 0 {
		opts.MaxDelay = 100 * time.Millisecond
	}
	opts.Registry = ts.reg
	opts.Log = ts.logs.logger()
	ts.Server = New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.ServeListeners(ctx, ls...) }()
	var once sync.Once
	ts.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(ts.stop)
	return ts
}

// waitVersion waits until the server serves version v.
func (ts *testServer) waitVersion(t *testing.T, v string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for ts.Version() != v {
		if time.Now().After(deadline) {
			t.Fatalf("server version %q, want %q after %v", ts.Version(), v, waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logSink keeps the server's log lines for tests to search.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, prefix+" "+args)
		l.mu.Unlock()
	}, funcr.Options{Verbosity: 0})
}

func (l *logSink) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, substr) {
			n++
		}
	}
	return n
}

func svc(address string, port int, routing model.Pattern, eps ...string) model.Service {
	s := model.Service{Address: address, Port: port, Protocol: model.TCP, Routing: routing, Gateway: "10.96.0.2:" + fmt.Sprint(port)}
	for i, ip := range eps {
		s.Endpoints = append(s.Endpoints, model.Endpoint{IP: ip, Port: port, Ready: true, Name: fmt.Sprintf("%s-%d", address, i)})
	}
	return s
}

// tables v1 and v2: v2 adds cache:6379, removes db:5432 and changes
// backend's routing.
func testTables() (*model.Table, *model.Table) {
	v1 := &model.Table{Site: "east", Services: []model.Service{
		svc("backend", 8080, model.Balanced, "10.244.0.7", "10.244.0.8"),
		svc("db", 5432, model.Closest, "10.244.0.9"),
	}}
	v1.Services[0].Remote = []model.RemoteSite{{Site: "west", Cost: 1, Endpoints: 2}}
	v2 := v1.Clone()
	v2.Services[0].Routing = model.Closest
	v2.Services[1] = svc("cache", 6379, model.Balanced, "10.244.0.10")
	return v1, v2
}

func TestClientsConverge(t *testing.T) {
	for _, engine := range []string{engineFleet, engineSnapshot} {
		t.Run(engine, func(t *testing.T) { testClientsConverge(t, engine) })
	}
}

func testClientsConverge(t *testing.T, engine string) {
	ctx := t.Context()
	ts := startServer(t, Options{engineName: engine})
	v1, v2 := testTables()

	// One client of each kind connects before the first table, one after.
	early := newClient(t, "sidecar~east~shop/early", false)
	early.connect(ctx, ts.addr)
	earlyDelta := newClient(t, "gateway~east~gw-0", true)
	earlyDelta.connect(ctx, ts.addr)

	ts.Update(v1)
	e1 := expect(t, v1)
	ts.waitVersion(t, e1.version)
	late := newClient(t, "sidecar~east~shop/late", false)
	late.connect(ctx, ts.addr)
	lateDelta := newClient(t, "proxyless-app", true)
	lateDelta.connect(ctx, ts.addr)
	clients := []*adsClient{early, earlyDelta, late, lateDelta}
	for _, c := range clients {
		c.waitHolds(e1)
	}

	ts.Update(v2)
	e2 := expect(t, v2)
	for _, c := range clients {
		c.waitHolds(e2)
	}
	// Delta clients were told that db:5432 went, in every type.
	for _, c := range []*adsClient{earlyDelta, lateDelta} {
		want := map[string][]string{}
		for _, typ := range allTypes {
			want[typ] = []string{"db:5432"}
		}
		if diff := cmp.Diff(c.removed(), want); diff != "" {
			t.Errorf("%s: removed resources (-got +want):\n%s", c.node, diff)
		}
	}

	// Status: every node, its kind, and all four types ACKed at v2 (a
	// delta node's route type did not change from v1 to v2: the route of
	// backend:8080 is the same, and the one of cache:6379 is new, so it
	// moved too).
	waitStatus(t, ts, func(st []NodeStatus) string {
		if len(st) != 4 {
			return fmt.Sprintf("%d nodes", len(st))
		}
		for _, n := range st {
			for _, typ := range allTypes {
				if v := n.Acked[typeName(typ)]; v != e2.version {
					return fmt.Sprintf("node %s acked %s %q", n.ID, typeName(typ), v)
				}
			}
		}
		return ""
	})
	st := ts.Status()
	var kinds []string
	for _, n := range st {
		kinds = append(kinds, fmt.Sprintf("%s %s %s %s delta=%v", n.ID, n.Kind, n.Site, n.Name, n.Delta))
	}
	want := []string{
		"gateway~east~gw-0 gateway east gw-0 delta=true",
		"proxyless-app client east proxyless-app delta=true",
		"sidecar~east~shop/early sidecar east shop/early delta=false",
		"sidecar~east~shop/late sidecar east shop/late delta=false",
	}
	if diff := cmp.Diff(kinds, want); diff != "" {
		t.Errorf("status (-got +want):\n%s", diff)
	}
	if n := ts.Nodes(); n != 4 {
		t.Errorf("Nodes() = %d, want 4", n)
	}
	if got := value(ts.metrics.clients); got != 4 {
		t.Errorf("skiff_xds_connected_clients = %v, want 4", got)
	}
	if got := value(ts.metrics.pushes); got != 2 {
		t.Errorf("skiff_xds_pushes_total = %v, want 2", got)
	}

	// The same table again pushes nothing.
	ts.Update(v2.Clone())
	ts.Update(v1)
	ts.Update(v2.Clone())
	ts.waitVersion(t, e2.version)
	for _, c := range clients {
		c.waitHolds(e2)
	}
	if got := value(ts.metrics.pushes); got > 3 {
		t.Errorf("skiff_xds_pushes_total = %v after re-updates ending at the served table, want at most 3", got)
	}
}

func waitStatus(t *testing.T, ts *testServer, cond func([]NodeStatus) string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		why := cond(ts.Status())
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %s after %v", why, waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNack(t *testing.T) {
	ctx := t.Context()
	ts := startServer(t, Options{})
	v1, v2 := testTables()
	v3 := v2.Clone()
	v3.Services[0].Endpoints[0].Ready = false
	e1, e2, e3 := expect(t, v1), expect(t, v2), expect(t, v3)

	good := newClient(t, "sidecar~east~good", false)
	goodDelta := newClient(t, "sidecar~east~good-delta", true)
	bad := newClient(t, "sidecar~east~bad", false)
	badDelta := newClient(t, "sidecar~east~bad-delta", true)
	// The bad clients reject v2's clusters.
	rejectV2 := func(typ, v string) bool { return typ == resource.ClusterType && v == e2.version }
	bad.reject, badDelta.reject = rejectV2, rejectV2
	clients := []*adsClient{good, goodDelta, bad, badDelta}
	for _, c := range clients {
		c.connect(ctx, ts.addr)
	}
	ts.Update(v1)
	for _, c := range clients {
		c.waitHolds(e1)
	}

	ts.Update(v2)
	good.waitHolds(e2)
	goodDelta.waitHolds(e2)
	waitStatus(t, ts, func(st []NodeStatus) string {
		for _, n := range st {
			if !strings.Contains(n.ID, "bad") {
				continue
			}
			r, ok := n.Rejected["cluster"]
			if !ok || r.Version != e2.version || !strings.Contains(r.Reason, "rejects") {
				return fmt.Sprintf("%s: rejected %+v", n.ID, n.Rejected)
			}
			if v := n.Acked["cluster"]; v != e1.version {
				return fmt.Sprintf("%s: acked cluster %q, want %q (the version before the NACK)", n.ID, v, e1.version)
			}
			if v := n.Acked["listener"]; v != e2.version {
				return fmt.Sprintf("%s: acked listener %q, want %q", n.ID, v, e2.version)
			}
		}
		return ""
	})
	// The rejecting clients keep v1's clusters.
	for _, c := range []*adsClient{bad, badDelta} {
		c.waitFor("keep v1 clusters", func() string {
			if got := c.types[resource.ClusterType].version; got != e1.version {
				return "clusters at " + got
			}
			return ""
		})
	}
	if got := value(ts.metrics.nacks.WithLabelValues("cluster")); got != 2 {
		t.Errorf("skiff_xds_nacks_total{type=cluster} = %v, want 2", got)
	}
	if n := ts.logs.count("client rejected a response"); n != 2 {
		t.Errorf("%d NACK log lines, want 2:\n%s", n, strings.Join(ts.logs.lines, "\n"))
	}

	// The next table reaches everyone, and the rejected version was sent
	// once only: it was not sent again while nothing changed.
	ts.Update(v3)
	for _, c := range clients {
		c.waitHolds(e3)
	}
	for _, c := range []*adsClient{bad, badDelta} {
		if n := c.responses(resource.ClusterType, e2.version); n != 1 {
			t.Errorf("%s received v2 clusters %d times, want once", c.node, n)
		}
	}
	waitStatus(t, ts, func(st []NodeStatus) string {
		for _, n := range st {
			if len(n.Rejected) != 0 {
				return fmt.Sprintf("%s still lists rejections %v", n.ID, n.Rejected)
			}
		}
		return ""
	})
	// The metric is registered under its name.
	n, err := series(ts.reg, "skiff_xds_nacks_total")
	if err != nil || n != 4 {
		t.Errorf("gather skiff_xds_nacks_total: %d series, %v; want 4 (one per type)", n, err)
	}
}

func TestDebounce(t *testing.T) {
	ts := startServer(t, Options{Debounce: 50 * time.Millisecond, MaxDelay: 5 * time.Second})
	c := newClient(t, "sidecar~east~c", true)
	c.connect(t.Context(), ts.addr)
	var last *model.Table
	for i := range 50 {
		tab := &model.Table{Site: "east", Services: []model.Service{svc("backend", 8080, model.Balanced, "10.244.0.7")}}
		tab.Services[0].Endpoints[0].Port = 1000 + i
		ts.Update(tab)
		last = tab
	}
	e := expect(t, last)
	ts.waitVersion(t, e.version)
	c.waitHolds(e)
	pushes := value(ts.metrics.pushes)
	if pushes < 1 || pushes > 5 {
		t.Errorf("50 updates in a burst: %v pushes, want 1 to 5", pushes)
	}
	if n := c.responses(resource.EndpointType, e.version); n != 1 {
		t.Errorf("client got the last version's endpoints %d times, want once", n)
	}
}

// A burst that never goes quiet is pushed after MaxDelay all the same.
func TestMaxDelay(t *testing.T) {
	ts := startServer(t, Options{Debounce: time.Hour, MaxDelay: 20 * time.Millisecond})
	v1, _ := testTables()
	ts.Update(v1)
	ts.waitVersion(t, v1.Hash())
}

// An invalid table is not served; the previous one stays.
func TestInvalidTableKeepsVersion(t *testing.T) {
	ts := startServer(t, Options{})
	v1, _ := testTables()
	ts.Update(v1)
	ts.waitVersion(t, v1.Hash())
	bad := v1.Clone()
	bad.Services = append(bad.Services, bad.Services[0]) // listed twice
	ts.Update(bad)
	deadline := time.Now().Add(waitLimit)
	for value(ts.metrics.translateErrors) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no translate error counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if v := ts.Version(); v != v1.Hash() {
		t.Errorf("version %s after an invalid table, want %s", v, v1.Hash())
	}
}

// Restart: the server goes away under connected clients, which keep what
// they hold; a new server with the same table serves the same version.
//
// On the resync (documented in docs/xds.md), a delta client presents its
// resource versions (initial_resource_versions) and gets one empty
// response per type: nothing to send. A SotW client's first requests
// present its versions: go-control-plane's SnapshotCache sends every type
// again (same version, same resources), because a new stream has no
// record of what was sent; the fleet engine takes the client at its word
// (versions are content hashes) and sends nothing until the table
// changes.
func TestRestart(t *testing.T) {
	for _, engine := range []string{engineFleet, engineSnapshot} {
		t.Run(engine, func(t *testing.T) { testRestart(t, engine) })
	}
}

func testRestart(t *testing.T, engine string) {
	ctx := t.Context()
	ts := startServer(t, Options{engineName: engine})
	v1, v2 := testTables()
	e1, e2 := expect(t, v1), expect(t, v2)
	ts.Update(v1)
	sotw := newClient(t, "sidecar~east~s", false)
	delta := newClient(t, "sidecar~east~d", true)
	for _, c := range []*adsClient{sotw, delta} {
		c.connect(ctx, ts.addr)
		c.waitHolds(e1)
	}
	before := map[*adsClient]int{sotw: len(sotw.history), delta: len(delta.history)}

	ts.stop()
	for _, c := range []*adsClient{sotw, delta} {
		c.mu.Lock()
		ended := c.ended
		c.mu.Unlock()
		select {
		case <-ended:
		case <-time.After(waitLimit):
			t.Fatalf("%s: stream still open after the server stopped", c.node)
		}
		c.mu.Lock()
		if why := c.holds(e1); why != "" {
			t.Errorf("%s after the server stopped: %s", c.node, why)
		}
		c.mu.Unlock()
	}

	ts2 := startServer(t, Options{engineName: engine})
	ts2.Update(v1)
	ts2.waitVersion(t, e1.version)
	for _, c := range []*adsClient{sotw, delta} {
		c.connect(ctx, ts2.addr)
	}
	delta.waitFor("resync", func() string {
		if n := len(delta.history) - before[delta]; n < len(allTypes) {
			return fmt.Sprintf("%d responses since the restart", n)
		}
		return ""
	})
	delta.mu.Lock()
	for _, r := range delta.history[before[delta]:] {
		if len(r.names) != 0 || len(r.removed) != 0 || r.version != e1.version {
			t.Errorf("delta resync: %s at %s sent %v, removed %v; want nothing at %s", typeName(r.typeURL), r.version, r.names, r.removed, e1.version)
		}
	}
	delta.mu.Unlock()
	waitStatus(t, ts2, func(st []NodeStatus) string {
		if len(st) != 2 {
			return fmt.Sprintf("%d nodes", len(st))
		}
		for _, n := range st {
			if !n.Delta && n.Acked["listener"] != e1.version {
				return fmt.Sprintf("%s acked %v", n.ID, n.Acked)
			}
		}
		return ""
	})

	if engine == engineSnapshot {
		sotw.waitFor("resync", func() string {
			if n := len(sotw.history) - before[sotw]; n < len(allTypes) {
				return fmt.Sprintf("%d responses since the restart", n)
			}
			return ""
		})
		sotw.mu.Lock()
		for _, r := range sotw.history[before[sotw]:] {
			if r.version != e1.version || len(r.names) != len(v1.Services) {
				t.Errorf("SotW resync: %s version %s with %d resources, want %s with %d", typeName(r.typeURL), r.version, len(r.names), e1.version, len(v1.Services))
			}
		}
		sotw.mu.Unlock()
		return
	}
	// Fleet: nothing until the table changes; then the new version only.
	ts2.Update(v2)
	sotw.waitHolds(e2)
	sotw.mu.Lock()
	for _, r := range sotw.history[before[sotw]:] {
		if r.version != e2.version {
			t.Errorf("SotW after the restart: %s at %s, want only %s", typeName(r.typeURL), r.version, e2.version)
		}
	}
	sotw.mu.Unlock()
}
