package router

import (
	"context"
	"fmt"
	"testing"
	"time"

	tu "github.com/skiff-io/skiff/test/testutil"
)

// TestListenersOutliveTheCallersContext: listeners that an xDS update
// bound keep serving after that update's context (its stream's) ends.
func TestListenersOutliveTheCallersContext(t *testing.T) {
	s := startSite(t, "east", false, nil, Services{})
	port := tu.FreePort(t, "127.0.0.1")
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.r.SetServices(ctx, Services{
		Listeners:  []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}},
		Connectors: []Connector{banner(t, "east")},
	}); err != nil {
		t.Fatal(err)
	}
	cancel() // the xDS stream that brought the update ends
	time.Sleep(50 * time.Millisecond)
	for i := range 5 {
		if got, err := fetch(fmt.Sprintf("127.0.0.1:%d", port)); err != nil || got != "east" {
			t.Fatalf("connection %d after the caller's context ended: %q, %v", i, got, err)
		}
	}
}
