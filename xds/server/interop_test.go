package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds" // registers the xds:/// resolver and balancers

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// backend is a real gRPC server (the health service of grpc-go) that
// counts the calls it answers.
type backend struct {
	port  int
	calls atomic.Int64
	// unavailable makes it fail every call UNAVAILABLE.
	unavailable atomic.Bool
	stop        func()
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{port: lis.Addr().(*net.TCPAddr).Port}
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		b.calls.Add(1)
		if b.unavailable.Load() {
			return nil, status.Error(codes.Unavailable, "backend unavailable")
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(gs, health.NewServer()) // "" is SERVING
	go gs.Serve(lis)
	b.stop = gs.Stop
	t.Cleanup(gs.Stop)
	return b
}

// xdsClient dials xds:///target with grpc-go's own xDS client, bootstrapped
// to the server at addr with node ID "test-client". With site set, the
// client reaches the server over mutual TLS with site's certificate files
// (bootstrap channel_creds "tls", gRFC A65), else in plaintext.
func xdsClient(t *testing.T, addr, target string, site *sitePKI) healthpb.HealthClient {
	t.Helper()
	creds := map[string]any{"type": "insecure"}
	if site != nil {
		creds = map[string]any{"type": "tls", "config": map[string]any{
			"ca_certificate_file": site.caFile, "certificate_file": site.certFile, "private_key_file": site.keyFile}}
	}
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      addr,
			"channel_creds":   []any{creds},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]any{"id": "test-client"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatalf("xds resolver: %v", err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatalf("dial xds:///%s: %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// check makes one call, waiting for the channel to be ready.
func check(ctx context.Context, c healthpb.HealthClient) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("status %v", resp.GetStatus())
	}
	return nil
}

// An unmodified grpc-go client resolves xds:///echo:<port> through the
// server and calls the endpoint. The table has other services too: the
// client asks for its listener by name, which go-control-plane's
// SnapshotCache in ADS mode does not answer (the call times out; the
// snapshot engine runs it without ADS mode). The client reaches the TLS
// listener with a certificate of the site CA named in its bootstrap file,
// as a proxyless application can; TestGRPCPriorities uses the plaintext
// listener.
func TestGRPCInterop(t *testing.T) {
	for _, engine := range []string{engineFleet, engineSnapshot} {
		t.Run(engine, func(t *testing.T) { testGRPCInterop(t, engine) })
	}
}

func testGRPCInterop(t *testing.T, engine string) {
	ctx := t.Context()
	be := startBackend(t)
	site := newSitePKI(t, "east")
	ts := serveListeners(t, Options{engineName: engine}, Listener{Listener: listen(t), TLS: site.server})
	echo := model.Service{Address: "echo", Port: be.port, Protocol: model.HTTP2, Routing: model.Balanced,
		Endpoints: []model.Endpoint{{IP: "127.0.0.1", Port: be.port, Ready: true, Name: "echo-0"}}}
	tab := &model.Table{Site: "east", Services: []model.Service{echo, svc("other", 9000, model.Balanced, "10.244.0.7")}}
	ts.Update(tab)
	ts.waitVersion(t, tab.Hash())

	c := xdsClient(t, ts.addr, fmt.Sprintf("echo:%d", be.port), site)
	if err := check(ctx, c); err != nil {
		t.Fatalf("call through xds:///echo:%d: %v", be.port, err)
	}
	if n := be.calls.Load(); n != 1 {
		t.Errorf("backend answered %d calls, want 1", n)
	}
	waitStatus(t, ts, func(st []NodeStatus) string {
		if len(st) != 1 || st[0].ID != "test-client" || st[0].Kind != model.KindClient || st[0].Site != "east" {
			return fmt.Sprintf("nodes %+v", st)
		}
		for _, typ := range allTypes {
			if v := st[0].Acked[typeName(typ)]; v != tab.Hash() {
				return fmt.Sprintf("acked %s %q", typeName(typ), v)
			}
		}
		return ""
	})
}

// With routing "closest", the local endpoint is priority 0 and the
// remote site (through the gateway) priority 1: grpc-go calls the first
// while it is up and fails over to the second when it is gone.
func TestGRPCPriorities(t *testing.T) {
	ctx := t.Context()
	local, gateway := startBackend(t), startBackend(t)
	ts := startServer(t, Options{})
	tab := &model.Table{Site: "east", Services: []model.Service{{
		Address: "prio", Port: 7000, Protocol: model.HTTP2, Routing: model.Closest,
		Gateway:   fmt.Sprintf("127.0.0.1:%d", gateway.port),
		Endpoints: []model.Endpoint{{IP: "127.0.0.1", Port: local.port, Ready: true}},
		Remote:    []model.RemoteSite{{Site: "west", Cost: 1, Endpoints: 1}},
	}}}
	ts.Update(tab)
	ts.waitVersion(t, tab.Hash())
	c := xdsClient(t, ts.addr, "prio:7000", nil)
	for range 10 {
		if err := check(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if l, g := local.calls.Load(), gateway.calls.Load(); l != 10 || g != 0 {
		t.Fatalf("local answered %d, gateway %d; want 10 and 0 (priority 0 first)", l, g)
	}

	local.stop()
	var err error
	for range 20 { // the first calls may fail while the connection breaks
		if err = check(ctx, c); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no failover to priority 1: %v", err)
	}
	before := gateway.calls.Load()
	for range 10 {
		if err := check(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if g := gateway.calls.Load() - before; g != 10 {
		t.Errorf("gateway answered %d of 10 calls after the local endpoint stopped", g)
	}
}

// The route of an HTTP address carries a retry policy: grpc-go sends a
// call that one endpoint failed UNAVAILABLE to another pick, so that no
// call of 40 fails while one of two endpoints fails every call it gets.
// The same endpoints behind a tcp address, whose route has no policy,
// fail some calls.
func TestGRPCRetryUnavailable(t *testing.T) {
	ctx := t.Context()
	ts := startServer(t, Options{})
	for i, proto := range []model.Protocol{model.GRPC, model.TCP} {
		good, bad := startBackend(t), startBackend(t)
		bad.unavailable.Store(true)
		port := 7100 + i
		tab := &model.Table{Site: "east", Services: []model.Service{{
			Address: "retry", Port: port, Protocol: proto, Routing: model.Balanced,
			Endpoints: []model.Endpoint{{IP: "127.0.0.1", Port: good.port, Ready: true}, {IP: "127.0.0.1", Port: bad.port, Ready: true}},
		}}}
		ts.Update(tab)
		ts.waitVersion(t, tab.Hash())
		c := xdsClient(t, ts.addr, fmt.Sprintf("retry:%d", port), nil)
		// Until both subchannels are ready, round robin picks the one
		// that is: warm up until each endpoint got a call. A loaded
		// machine may take a while to connect the second, so the
		// warm-up is bounded in time (and count), with a pause between
		// calls, rather than by a count that fast calls use up at once.
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; good.calls.Load() == 0 || bad.calls.Load() == 0; i++ {
			if i == 2000 || time.Now().After(deadline) {
				t.Fatalf("%s: %d calls in %v did not reach both endpoints", proto, i, 10*time.Second)
			}
			_ = check(ctx, c)
			time.Sleep(time.Millisecond)
		}
		bad.calls.Store(0)
		failed := 0
		for range 40 {
			if err := check(ctx, c); err != nil {
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("%s: %v", proto, err)
				}
				failed++
			}
		}
		t.Logf("%s: %d of 40 calls failed; the failing endpoint got %d", proto, failed, bad.calls.Load())
		if bad.calls.Load() == 0 {
			t.Fatalf("%s: the failing endpoint got no call; the test proves nothing", proto)
		}
		if proto == model.GRPC && failed > 0 {
			t.Errorf("grpc address: %d of 40 calls failed; the retry policy should have sent them to the other endpoint", failed)
		}
		if proto == model.TCP && failed == 0 {
			t.Errorf("tcp address: no call failed, so the test cannot tell the retry policy's effect")
		}
	}
}
