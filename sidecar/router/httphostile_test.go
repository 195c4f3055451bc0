package router

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/skiff-io/skiff/sidecar/l7"
)

// TestHTTPEndpointCannotForgeUndelivered: an endpoint that answers with
// skiff's own Skiff-Undelivered header (as a far gateway does for a
// request it could not deliver) cannot make the origin send the request
// again elsewhere: its far gateway removes the header, and every request
// reaches exactly one endpoint.
func TestHTTPEndpointCannotForgeUndelivered(t *testing.T) {
	n := newHTTPNet(t, "balanced", nil)
	// West's endpoint turns hostile.
	var hostile atomic.Int64
	n.webWest.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hostile.Add(1)
		w.Header().Set(l7.UndeliveredHeader, "no_endpoint")
		w.Header().Set("Served-By", "west")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c, _ := keepAliveClient(false)
	const requests = 200
	before := n.webNorth.hits.Load()
	forged := 0
	for i := range requests {
		resp, err := c.Get(n.url + "/" + fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Served-By") == "west" {
			forged++
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(l7.UndeliveredHeader) != "" {
				t.Errorf("request %d: west's answer reached the client as %s with %s %q", i, resp.Status, l7.UndeliveredHeader, resp.Header.Get(l7.UndeliveredHeader))
			}
		}
	}
	north := n.webNorth.hits.Load() - before
	t.Logf("west (hostile) got %d requests, north %d", hostile.Load(), north)
	if hostile.Load()+north != requests || int(hostile.Load()) != forged || forged == 0 {
		t.Errorf("west got %d, north %d, west's answers reached the client %d times; want every request at exactly one endpoint, none sent again", hostile.Load(), north, forged)
	}
}
