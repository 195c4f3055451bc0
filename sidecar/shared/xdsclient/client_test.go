package xdsclient_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/xds/server"
)

// waitLimit bounds every wait; it is a failure guard, not a measurement.
const waitLimit = 20 * time.Second

func table(addresses ...string) *model.Table {
	tab := &model.Table{Site: "east"}
	for i, a := range addresses {
		tab.Services = append(tab.Services, model.Service{Address: a, Port: 8080, Protocol: model.TCP, Routing: model.Balanced,
			Endpoints: []model.Endpoint{{IP: fmt.Sprintf("10.244.0.%d", i+7), Port: 8080, Ready: true}}})
	}
	return tab
}

// controller is a real xDS server (xds/server) on a plaintext loopback
// port; a restart serves a new server on a new port, which the clients
// of dial reach through their dialer.
type controller struct {
	t    *testing.T
	addr atomic.Pointer[string]
	srv  *server.Server
	stop func()
}

// startController serves tab until stop or the end of the test.
func startController(t *testing.T, tab *model.Table) *controller {
	t.Helper()
	c := &controller{t: t}
	c.start(tab)
	return c
}

func (c *controller) start(tab *model.Table) {
	c.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	addr := lis.Addr().String()
	c.addr.Store(&addr)
	srv := server.New(server.Options{Log: testr.New(c.t).WithName("controller"), Debounce: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
	srv.Update(tab)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				c.t.Errorf("serve: %v", err)
			}
		})
	}
	c.t.Cleanup(stop)
	c.srv, c.stop = srv, stop
}

// restart stops the controller and serves tab from a new one.
func (c *controller) restart(tab *model.Table) {
	c.t.Helper()
	c.stop()
	c.start(tab)
}

// dial reaches the controller wherever it serves now.
func (c *controller) dial() grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", *c.addr.Load())
	})
}

// recorder is a client's user: it records how many services every call
// of Apply carried, and refuses the calls that refuse says to.
type recorder struct {
	mu     sync.Mutex
	calls  []int
	refuse func(call int) bool
}

func (r *recorder) apply(_ context.Context, s []model.Service) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, len(s))
	if r.refuse != nil && r.refuse(len(r.calls)) {
		return errors.New("refused by the test")
	}
	return nil
}

func (r *recorder) got() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// run runs a new client of the controller until the test ends; opts
// change its options.
func (c *controller) run(t *testing.T, r *recorder, opts ...func(*xdsclient.Options)) *xdsclient.Client {
	t.Helper()
	o := xdsclient.Options{Addr: "passthrough:///controller", Node: model.Node{Kind: model.KindNode, Site: "east", Name: "node-1"},
		Log: testr.New(t).WithName("client"), Apply: r.apply, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		DialOptions: []grpc.DialOption{c.dial()}}
	for _, f := range opts {
		f(&o)
	}
	cl, err := xdsclient.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("Run did not return %s after its context ended", waitLimit)
		}
	})
	return cl
}

// waitAnswered waits until the client has answered (ACKed or NACKed) n
// responses. Apply is called before the answer, so every call those
// responses caused is recorded by then.
func waitAnswered(t *testing.T, cl *xdsclient.Client, n int64) {
	t.Helper()
	testutil.Eventually(t, waitLimit, fmt.Sprintf("%d responses answered", n), func() error {
		if s := cl.Stats(); s.Applied+s.Nacked < n {
			return fmt.Errorf("%d accepted, %d refused", s.Applied, s.Nacked)
		}
		return nil
	})
}

// The first table a new client hands to its user is the controller's
// whole table: the client follows two types (listeners and assignments)
// and calls Apply only once the first response of each has arrived. A
// controller without services gets its empty table delivered, once.
func TestFirstTableComplete(t *testing.T) {
	for _, tc := range []struct {
		name string
		tab  *model.Table
		want []int
	}{
		{"one service", table("backend"), []int{1}},
		{"two services", table("backend", "frontend"), []int{2}},
		{"no service", table(), []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctl := startController(t, tc.tab)
			r := &recorder{}
			cl := ctl.run(t, r)
			waitAnswered(t, cl, 2) // one response per type
			if got := r.got(); !slices.Equal(got, tc.want) {
				t.Fatalf("services per Apply call %v, want %v", got, tc.want)
			}
			if s := cl.Stats(); s.Applied != 2 || s.Nacked != 0 {
				t.Errorf("%d responses accepted, %d refused; want 2 and 0", s.Applied, s.Nacked)
			}
		})
	}
}

// Once the client has delivered a table, a new stream (the controller
// restarted) does not withhold updates again: the client keeps what it
// holds, as gRPC's xDS client keeps its cached resources, and delivers
// each response as it comes (here one empty response per type, the
// controller having restarted with the same table).
func TestReconnectDoesNotWithhold(t *testing.T) {
	ctl := startController(t, table("backend"))
	r := &recorder{}
	cl := ctl.run(t, r)
	waitAnswered(t, cl, 2)

	ctl.restart(table("backend"))
	waitAnswered(t, cl, 4)
	if got, want := r.got(), []int{1, 1, 1}; !slices.Equal(got, want) {
		t.Fatalf("services per Apply call %v, want %v", got, want)
	}
	if s := cl.Stats(); s.Streams < 2 {
		t.Errorf("%d streams, want a reconnect", s.Streams)
	}

	ctl.srv.Update(table("backend", "frontend"))
	testutil.Eventually(t, waitLimit, "the change after the restart applied", func() error {
		got := r.got()
		if got[len(got)-1] != 2 {
			return fmt.Errorf("services per Apply call %v", got)
		}
		return nil
	})
	if got := r.got(); slices.Min(got) != 1 {
		t.Errorf("services per Apply call %v: a table lost the service it held", got)
	}
}

// A user that refuses the first full table NACKs it and has no table; the
// client withholds again until both types are held (the refused response
// is not), and delivers the controller's next table whole.
func TestFirstTableRefused(t *testing.T) {
	ctl := startController(t, table("backend"))
	r := &recorder{refuse: func(call int) bool { return call == 1 }}
	cl := ctl.run(t, r)
	waitAnswered(t, cl, 2)
	if got, want := r.got(), []int{1}; !slices.Equal(got, want) {
		t.Fatalf("services per Apply call %v, want %v", got, want)
	}
	if s := cl.Stats(); s.Applied != 1 || s.Nacked != 1 {
		t.Errorf("%d responses accepted, %d refused; want 1 and 1", s.Applied, s.Nacked)
	}

	ctl.srv.Update(table("backend", "frontend"))
	testutil.Eventually(t, waitLimit, "the next table applied", func() error {
		got := r.got()
		if got[len(got)-1] != 2 {
			return fmt.Errorf("services per Apply call %v", got)
		}
		return nil
	})
	if got := r.got(); slices.Min(got) == 0 {
		t.Errorf("services per Apply call %v: an empty table was delivered", got)
	}
}
