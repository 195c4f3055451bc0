package app

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	tu "github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/xds/server"
)

// TestControllerServesTheLastTable: rebuilds that run at once (a new view
// and new local services come on goroutines of their own) reach the xDS
// server in the order they built their tables, so that it serves the
// table the controller holds. When the older table could be handed over
// last, the server kept serving it until the next change.
func TestControllerServesTheLastTable(t *testing.T) {
	srv := server.New(server.Options{Debounce: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var served sync.WaitGroup
	served.Go(func() { _ = srv.Serve(ctx, ln) })
	t.Cleanup(func() { cancel(); served.Wait() })
	c := NewController("east", srv, testr.New(t))
	services := func(n int) []model.Service {
		out := make([]model.Service, n)
		for i := range out {
			out[i] = model.Service{Address: fmt.Sprintf("svc-%d", i), Port: 8080, Gateway: fmt.Sprintf("127.0.0.1:%d", 10000+i),
				Endpoints: []model.Endpoint{{IP: "127.0.0.1", Port: 9090, Ready: true}}}
		}
		return out
	}
	const rounds, writers = 20, 8
	for round := range rounds {
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() { c.SetLocal(services(1 + (round*writers+i)%50)) })
		}
		wg.Wait()
		_, want := c.Current()
		tu.Until(t, 5*time.Second, fmt.Sprintf("round %d: the server serves the controller's table", round), func() bool { return srv.Version() == want })
	}
}
