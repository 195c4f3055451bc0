package router

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// TestSidecarDrainHTTP: a draining sidecar answers its pod's HTTP
// requests, new connections included, but keeps no connection alive, so
// that its drain ends once the pod is idle rather than at the timeout.
func TestSidecarDrainHTTP(t *testing.T) {
	web := startWeb(t, "local", false)
	c := web.connector()
	c.Address = "backend"
	r, err := New(Config{
		Site: "east", Role: RoleSidecar, Name: "shop/pod-1", SidecarListen: "127.0.0.1:0",
		Services: Services{
			Listeners:  []Listener{{Address: "backend", Host: "10.96.0.10", Port: 80}},
			Connectors: []Connector{c},
			Protocols:  map[string]model.Protocol{"backend": model.HTTP},
		},
		DrainTimeout: time.Minute, DrainIdle: 200 * time.Millisecond,
		Metrics: NewMetrics(prometheus.NewRegistry()),
		Log:     testr.NewWithOptions(t, testr.Options{LogTimestamp: true}).WithName("sidecar"),
	})
	if err != nil {
		t.Fatal(err)
	}
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
	url := "http://" + r.SidecarAddr().String() + "/"
	client, dials := keepAliveClient(false)
	if site, err := get(client, url); err != nil || site != "local" {
		t.Fatalf("before the drain: %q, %v", site, err)
	}
	r.Drain()
	// Drain asks Run's goroutine to drain; a request sent before the drain
	// has begun is kept alive as before (under the race detector, the
	// drain began after all three once in CI). startDrain marks the flows
	// once keep-alives are off.
	tu.Until(t, 10*time.Second, "the drain began", func() bool {
		r.flows.mu.Lock()
		defer r.flows.mu.Unlock()
		return r.flows.draining
	})
	for i := range 3 {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("request %d while draining: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !resp.Close {
			t.Errorf("request %d while draining: %s, close %v; want 200 and Connection: close", i, resp.Status, resp.Close)
		}
	}
	if dials.Load() < 2 {
		t.Errorf("%d connections: the one kept alive before the drain should have been closed", dials.Load())
	}
	st := n.waitStopped(t)
	if st.reason != drainIdle || st.reset != 0 {
		t.Errorf("drain: %+v, want ended idle with none reset", st)
	}
}
