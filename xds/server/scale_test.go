package server

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/test/testutil"
)

// TestScale is the scale benchmark (hack/bench/xds.sh runs it): one
// process serves a table of SKIFF_BENCH_SERVICES services (default
// 10,000) in three sites to SKIFF_BENCH_CLIENTS delta ADS clients
// (default 1,000), which share SKIFF_BENCH_CONNS gRPC connections
// (default 10) to save file descriptors: every client is its own ADS
// stream, as a sidecar's would be, and HTTP/2 multiplexes them.
//
// It measures the initial sync (clients join in batches of
// SKIFF_BENCH_BATCH, default 50), then SKIFF_BENCH_CHANGES (default 20)
// single-service changes one at a time (an endpoint's readiness, so one
// ClusterLoadAssignment changes): for each, the time from Update to the
// last client's ACK of the new version, the process CPU time and RSS;
// then a full resync: the server stops and a new one with the same table
// starts on the same address, and every client reconnects (jittered
// backoff) and gets everything again. The clients run in the same
// process, so CPU and RSS include theirs.
//
// SKIFF_BENCH_ENGINE picks the cache: "fleet" (default) or "snapshot"
// (go-control-plane's SnapshotCache, the baseline).
// SKIFF_BENCH_HEAPPROFILE=path writes a heap profile after the changes.
// The last lines are a RESULT line for scripts and the change latencies.
func TestScale(t *testing.T) {
	if os.Getenv("SKIFF_BENCH") != "1" {
		t.Skip("the scale benchmark runs with SKIFF_BENCH=1 (hack/bench/xds.sh)")
	}
	p := scaleParams{
		services: envInt(t, "SKIFF_BENCH_SERVICES", 10000),
		clients:  envInt(t, "SKIFF_BENCH_CLIENTS", 1000),
		conns:    envInt(t, "SKIFF_BENCH_CONNS", 10),
		batch:    envInt(t, "SKIFF_BENCH_BATCH", 50),
		changes:  envInt(t, "SKIFF_BENCH_CHANGES", 20),
		engine:   os.Getenv("SKIFF_BENCH_ENGINE"),
	}
	if p.engine == "" {
		p.engine = engineFleet
	}
	runScale(t, p)
}

type scaleParams struct {
	services, clients, conns, batch, changes int
	engine                                   string
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return n
}

// scaleTable returns n services: two thirds with three local endpoints,
// two thirds in west (cost 1) and one third in north (cost 2), routing
// balanced or closest.
func scaleTable(n int) *model.Table {
	t := &model.Table{Site: "east", Sites: []model.Site{
		{Name: "east", Links: []model.Link{{Peer: "west", Cost: 1}}},
		{Name: "west", Cost: 1, Links: []model.Link{{Peer: "east", Cost: 1}, {Peer: "north", Cost: 1}}},
		{Name: "north", Cost: 2, Links: []model.Link{{Peer: "west", Cost: 1}}},
	}}
	for i := range n {
		s := model.Service{
			Address:  fmt.Sprintf("svc-%05d.ns-%02d", i, i%50),
			Port:     8080,
			Protocol: []model.Protocol{model.TCP, model.HTTP, model.HTTP2}[i%3],
			Routing:  []model.Pattern{model.Balanced, model.Closest}[i%2],
			VIPs:     []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)},
			Gateway:  "10.96.0.2:8080",
		}
		if i%3 != 2 {
			for e := range 3 {
				s.Endpoints = append(s.Endpoints, model.Endpoint{
					IP: fmt.Sprintf("10.%d.%d.%d", 100+e, i/250, i%250+1), Port: 8080, Ready: true,
					Name: fmt.Sprintf("ns-%02d/svc-%05d-%d", i%50, i, e),
				})
			}
		}
		if i%3 != 0 {
			s.Remote = append(s.Remote, model.RemoteSite{Site: "west", Cost: 1, Endpoints: 2})
		}
		if i%3 == 2 {
			s.Remote = append(s.Remote, model.RemoteSite{Site: "north", Cost: 2, Endpoints: 3})
		}
		t.Services = append(t.Services, s)
	}
	t.Normalize()
	return t
}

// scaleBench counts the clients' ACKs: by round (a new one after the
// restart), type and version.
type scaleBench struct {
	clients int

	mu      sync.Mutex
	round   int
	acks    map[ackKey]int
	last    map[ackKey]time.Time
	waiters map[ackKey]chan struct{}
	sizes   map[int]int // resources in the responses, by count (a histogram)
}

type ackKey struct {
	round   int
	typeURL string
	version string
}

func (b *scaleBench) acked(round int, typeURL, version string, resources int) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	k := ackKey{round, typeURL, version}
	b.acks[k]++
	b.last[k] = now
	b.sizes[resources]++
	if b.acks[k] == b.clients {
		if w := b.waiters[k]; w != nil {
			close(w)
			delete(b.waiters, k)
		}
	}
}

// wait waits until n clients have ACKed version of typeURL in round and
// returns the time of the last ACK.
func (b *scaleBench) wait(t *testing.T, round int, typeURL, version string, limit time.Duration) time.Time {
	t.Helper()
	k := ackKey{round, typeURL, version}
	b.mu.Lock()
	if b.acks[k] >= b.clients {
		last := b.last[k]
		b.mu.Unlock()
		return last
	}
	w := b.waiters[k]
	if w == nil {
		w = make(chan struct{})
		b.waiters[k] = w
	}
	b.mu.Unlock()
	select {
	case <-w:
	case <-time.After(limit):
		b.mu.Lock()
		n := b.acks[k]
		b.mu.Unlock()
		t.Fatalf("%d of %d clients ACKed %s %s after %v", n, b.clients, typeName(typeURL), version, limit)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last[k]
}

func (b *scaleBench) currentRound() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.round
}

// scaleClient is a delta ADS client that ACKs everything and keeps
// nothing but counts, so that a thousand of them fit in the process. Its
// connection decodes responses with envelopeCodec.
type scaleClient struct {
	b    *scaleBench
	node string
	conn *grpc.ClientConn
}

// run keeps a stream open until ctx ends, reconnecting after a jittered
// pause when the server goes away.
func (c *scaleClient) run(ctx context.Context) {
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(c.conn)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			pause := 100*time.Millisecond + rand.N(400*time.Millisecond)
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
		}
		s, err := ads.DeltaAggregatedResources(ctx, grpc.WaitForReady(true))
		if err != nil {
			continue
		}
		round := c.b.currentRound()
		for i, typ := range allTypes {
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ}
			if i == 0 {
				req.Node = &corev3.Node{Id: c.node}
			}
			if err := s.Send(req); err != nil {
				break
			}
		}
		for {
			resp, err := s.Recv()
			if err != nil {
				break
			}
			if err := s.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
				break
			}
			c.b.acked(round, resp.GetTypeUrl(), resp.GetSystemVersionInfo(), len(resp.GetResources()))
		}
	}
}

// usage is the process's CPU time so far.
func usage(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatus returns a field of /proc/self/status in MiB (VmRSS, VmHWM).
func procStatus(t *testing.T, field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

func runScale(t *testing.T, p scaleParams) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	tab := scaleTable(p.services)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	// The production debounce, so that the figures are end to end.
	opts := Options{engineName: p.engine, Debounce: DefaultDebounce, MaxDelay: DefaultMaxDelay}
	start := time.Now()
	ts := serveOn(t, lis, opts)
	ts.Update(tab)
	v0 := tab.Hash()
	ts.waitVersion(t, v0)
	firstPush := time.Since(start)
	t.Logf("engine %s: %d services, %d delta clients on %d connections; first push %v", p.engine, p.services, p.clients, p.conns, firstPush.Round(time.Millisecond))

	b := &scaleBench{clients: p.clients, acks: map[ackKey]int{}, last: map[ackKey]time.Time{}, waiters: map[ackKey]chan struct{}{}, sizes: map[int]int{}}
	conns := make([]*grpc.ClientConn, p.conns)
	for i := range conns {
		conns[i], err = grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.ForceCodecV2(envelopeCodec{})),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}}),
		)
		if err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// Initial sync, in batches.
	cpu0 := usage(t)
	start = time.Now()
	limit := 10 * time.Minute
	for first := 0; first < p.clients; first += p.batch {
		n := min(p.batch, p.clients-first)
		for i := first; i < first+n; i++ {
			c := &scaleClient{b: b, node: fmt.Sprintf("sidecar~east~bench/c-%04d", i), conn: conns[i%p.conns]}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.run(ctx)
			}()
		}
		// Wait for this batch: the count of ACKs reaches first+n.
		waitCount(t, b, ackKey{0, allTypes[len(allTypes)-1], v0}, first+n, limit)
	}
	for _, typ := range allTypes {
		b.wait(t, 0, typ, v0, limit)
	}
	initial := time.Since(start)
	initialCPU := usage(t) - cpu0
	t.Logf("initial sync: %v (CPU %v), RSS %.0f MiB", initial.Round(time.Millisecond), initialCPU.Round(time.Millisecond), procStatus(t, "VmRSS"))

	// Single-service changes.
	type change struct {
		latency, cpu time.Duration
		rss          float64
	}
	var changes []change
	cur := tab
	for k := range p.changes {
		next := cur.Clone()
		i := (k*3701 + 1) % len(next.Services)
		for len(next.Services[i].Endpoints) == 0 {
			i = (i + 1) % len(next.Services)
		}
		next.Services[i].Endpoints[0].Ready = !next.Services[i].Endpoints[0].Ready
		v := next.Hash()
		cpu0 := usage(t)
		start := time.Now()
		ts.Update(next)
		last := b.wait(t, 0, allTypes[3], v, limit) // endpoints
		changes = append(changes, change{latency: last.Sub(start), cpu: usage(t) - cpu0, rss: procStatus(t, "VmRSS")})
		cur = next
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	live := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	rtmetrics.Read(live)
	goMem := fmt.Sprintf("Go heap: live %d MiB, in use %d MiB, free but not returned to the OS %d MiB; stacks %d MiB; %d goroutines",
		live[0].Value.Uint64()>>20, ms.HeapInuse>>20, (ms.HeapIdle-ms.HeapReleased)>>20, ms.StackInuse>>20, runtime.NumGoroutine())
	if path := os.Getenv("SKIFF_BENCH_HEAPPROFILE"); path != "" {
		writeHeapProfile(t, path)
	}
	var lat, cpu []time.Duration
	var rss []float64
	for _, c := range changes {
		lat, cpu, rss = append(lat, c.latency), append(cpu, c.cpu), append(rss, c.rss)
	}

	// Full resync: a new server, same table, same address. (The old one
	// is let go, as a restarted process would be.)
	debounce := ts.opts.Debounce
	ts.stop()
	ts = nil
	b.mu.Lock()
	b.round++
	b.mu.Unlock()
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	cpu0 = usage(t)
	start = time.Now()
	ts2 := serveOn(t, lis2, opts)
	ts2.Update(cur)
	for _, typ := range allTypes {
		b.wait(t, 1, typ, cur.Hash(), limit)
	}
	resync := time.Since(start)
	resyncCPU := usage(t) - cpu0

	fmt.Printf("\nxDS scale benchmark (engine %s, GOMAXPROCS %s)\n", p.engine, os.Getenv("GOMAXPROCS"))
	fmt.Printf("  services %d, delta clients %d on %d gRPC connections, debounce %v\n", p.services, p.clients, p.conns, debounce)
	fmt.Printf("  first push (translate + set)      %v\n", firstPush.Round(time.Millisecond))
	fmt.Printf("  initial sync (batches of %d)      %v, CPU %v\n", p.batch, initial.Round(time.Millisecond), initialCPU.Round(time.Millisecond))
	fmt.Printf("  change: Update -> last ACK   p50  %v  p99 %v  max %v\n", testutil.Percentile(lat, 0.5).Round(time.Millisecond), testutil.Percentile(lat, 0.99).Round(time.Millisecond), slices.Max(lat).Round(time.Millisecond))
	fmt.Printf("  change: CPU time             p50  %v  p99 %v\n", testutil.Percentile(cpu, 0.5).Round(time.Millisecond), testutil.Percentile(cpu, 0.99).Round(time.Millisecond))
	fmt.Printf("  RSS after changes                 %.0f MiB (max %.0f MiB), peak (VmHWM) %.0f MiB\n", rss[len(rss)-1], slices.Max(rss), procStatus(t, "VmHWM"))
	fmt.Printf("  (%s)\n", goMem)
	fmt.Printf("  full resync (restart, same table) %v, CPU %v\n", resync.Round(time.Millisecond), resyncCPU.Round(time.Millisecond))
	fmt.Printf("RESULT engine=%s services=%d clients=%d change_p50_ms=%d change_p99_ms=%d change_cpu_p50_ms=%d rss_mib=%.0f peak_rss_mib=%.0f initial_s=%.1f resync_s=%.1f\n",
		p.engine, p.services, p.clients, testutil.Percentile(lat, 0.5).Milliseconds(), testutil.Percentile(lat, 0.99).Milliseconds(), testutil.Percentile(cpu, 0.5).Milliseconds(),
		rss[len(rss)-1], procStatus(t, "VmHWM"), initial.Seconds(), resync.Seconds())
	t.Logf("change latencies: %v", lat)
	fmt.Println()
}

// waitCount waits until k has n ACKs.
func waitCount(t *testing.T, b *scaleBench, k ackKey, n int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		b.mu.Lock()
		got := b.acks[k]
		b.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d ACKs of %s after %v", got, n, typeName(k.typeURL), limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkPush measures a push of a one-endpoint change to a table of
// 10,000 services with no clients: the Translator (reusing the unchanged
// services) and the engine marshalling what changed and diffing.
func BenchmarkPush(b *testing.B) {
	for _, engine := range []string{engineFleet, engineSnapshot} {
		b.Run(engine, func(b *testing.B) {
			s := New(Options{engineName: engine})
			tabs := [2]*model.Table{scaleTable(10000), scaleTable(10000)}
			tabs[1].Services[0].Endpoints[0].Ready = false
			s.Update(tabs[1])
			s.push(b.Context())
			b.ResetTimer()
			for i := range b.N {
				s.Update(tabs[i%2])
				s.push(b.Context())
			}
		})
	}
}

// envelopeCodec is the benchmark clients' codec: requests are marshalled
// as usual, but a DeltaDiscoveryResponse is decoded only as far as the
// clients need (version, type, nonce, removed names, and the number of
// resources: Resources gets that many nil entries), so that the process's
// CPU time and memory are mostly the server's. Real clients decode the
// resources, on their own machines.
type envelopeCodec struct{}

func (envelopeCodec) Name() string { return "proto" }

func (envelopeCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message))
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (envelopeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	resp, ok := v.(*discoveryv3.DeltaDiscoveryResponse)
	if !ok {
		return proto.Unmarshal(data.Materialize(), v.(proto.Message))
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	n := 0
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		var s []byte
		if typ == protowire.BytesType {
			s, l = protowire.ConsumeBytes(b)
		} else {
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		switch num {
		case 1:
			resp.SystemVersionInfo = string(s)
		case 2:
			n++
		case 4:
			resp.TypeUrl = string(s)
		case 5:
			resp.Nonce = string(s)
		case 6:
			resp.RemovedResources = append(resp.RemovedResources, string(s))
		}
	}
	resp.Resources = make([]*discoveryv3.Resource, n)
	return nil
}

func writeHeapProfile(t *testing.T, path string) {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Fatal(err)
	}
}
