package router

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// grpcServer is grpc-go's interop test service, counting the calls it
// served.
type grpcServer struct {
	addr  string
	calls atomic.Int64
}

func startGRPC(t *testing.T) *grpcServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &grpcServer{addr: ln.Addr().String()}
	s := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			g.calls.Add(1)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			g.calls.Add(1)
			return h(srv, ss)
		}))
	testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return g
}

func (g *grpcServer) connector() Connector {
	host, port, _ := net.SplitHostPort(g.addr)
	var p int
	fmt.Sscan(port, &p)
	return Connector{Address: "api", Host: host, Port: p}
}

// TestGRPCAcrossSites: grpc-go's own interop cases (unary, client,
// server and bidirectional streaming, cancellation, metadata, status)
// pass through east to endpoints in west and north, and one channel's
// unary calls are spread over both, per call.
func TestGRPCAcrossSites(t *testing.T) {
	west, north := startGRPC(t), startGRPC(t)
	api := map[string]model.Protocol{"api": model.GRPC}
	port := tu.FreePort(t, "127.0.0.1")
	east := startSite(t, "east", true, nil, Services{Listeners: []Listener{{Address: "api", Host: "127.0.0.1", Port: port}}, Protocols: api})
	tok := east.issue(t, 2)
	startSite(t, "west", false, []LinkSpec{specFor(t, tok)}, Services{Connectors: []Connector{west.connector()}, Protocols: api})
	startSite(t, "north", false, []LinkSpec{specFor(t, tok)}, Services{Connectors: []Connector{north.connector()}, Protocols: api})
	tu.Eventually(t, 10*time.Second, "east sees api in west and north", func() error {
		if got := remoteSites(east, "api"); got != 2 {
			return fmt.Errorf("api at %d other sites", got)
		}
		return nil
	})

	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Each fails the test binary (grpclog.Fatal) with what went wrong.
	interop.DoEmptyUnaryCall(ctx, tc)
	interop.DoLargeUnaryCall(ctx, tc)
	interop.DoClientStreaming(ctx, tc)
	interop.DoServerStreaming(ctx, tc)
	interop.DoPingPong(ctx, tc)
	interop.DoEmptyStream(ctx, tc)
	interop.DoTimeoutOnSleepingServer(ctx, tc)
	interop.DoCancelAfterBegin(ctx, tc)
	interop.DoCancelAfterFirstResponse(ctx, tc)
	interop.DoCustomMetadata(ctx, tc)
	interop.DoStatusCodeAndMessage(ctx, tc)
	interop.DoSpecialStatusMessage(ctx, tc)

	beforeW, beforeN := west.calls.Load(), north.calls.Load()
	const calls = 400
	for range calls {
		interop.DoEmptyUnaryCall(ctx, tc)
	}
	w, n := west.calls.Load()-beforeW, north.calls.Load()-beforeN
	t.Logf("%d unary calls on one channel: west served %d, north %d", calls, w, n)
	if w+n != calls {
		t.Fatalf("served %d calls, want %d", w+n, calls)
	}
	for name, got := range map[string]int64{"west": w, "north": n} {
		if share := float64(got) / calls; share < 0.4 || share > 0.6 {
			t.Errorf("%s served %.0f%% of the calls, want 40-60%%", name, 100*share)
		}
	}
}
