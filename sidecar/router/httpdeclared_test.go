package router

import (
	"fmt"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// declaredNet is httpNet with east's listener for web naming the given
// protocols (nil: none): only west and north, which serve web, name its
// protocol, and declare it in their site records.
func newDeclaredNet(t *testing.T, eastProtocols map[string]model.Protocol) *httpNet {
	t.Helper()
	n := &httpNet{webWest: startWeb(t, "west", true), webNorth: startWeb(t, "north", true)}
	port := tu.FreePort(t, "127.0.0.1")
	n.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	web := map[string]model.Protocol{"web": model.HTTP}
	n.east = startSite(t, "east", true, nil, Services{Listeners: []Listener{{Address: "web", Host: "127.0.0.1", Port: port}}, Protocols: eastProtocols})
	tok := n.east.issue(t, 2)
	n.west = startSite(t, "west", false, []LinkSpec{specFor(t, tok)}, Services{Connectors: []Connector{n.webWest.connector()}, Protocols: web})
	n.north = startSite(t, "north", false, []LinkSpec{specFor(t, tok)}, Services{Connectors: []Connector{n.webNorth.connector()}, Protocols: web})
	tu.Eventually(t, 10*time.Second, "east sees web in west and north, declared http", func() error {
		if got := remoteSites(n.east, "web"); got != 2 {
			return fmt.Errorf("web at %d other sites", got)
		}
		if got := n.east.r.db.View().Protocols["web"]; got != string(model.HTTP) {
			return fmt.Errorf("web declared %q", got)
		}
		return nil
	})
	return n
}

// TestHTTPDeclaredProtocol: a listener that names no protocol for an
// address routes its requests one by one when the sites serving it
// declare an HTTP protocol in their site records, so one keep-alive
// connection's requests are spread over both sites; a listener whose own
// configuration names tcp carries the connection whole, to one site.
func TestHTTPDeclaredProtocol(t *testing.T) {
	tests := []struct {
		name       string
		protocols  map[string]model.Protocol // east's own
		h2         bool
		want       model.Protocol // what east routes web as
		wantSpread bool
	}{
		{name: "names none, HTTP/1.1", h2: false, want: model.HTTP, wantSpread: true},
		{name: "names none, HTTP/2", h2: true, want: model.HTTP, wantSpread: true},
		{name: "names tcp", protocols: map[string]model.Protocol{"web": model.TCP}, want: model.TCP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newDeclaredNet(t, tt.protocols)
			r := n.east.r
			if got := r.protocol(r.services.Load(), "web"); got != tt.want {
				t.Errorf("east routes web as %s, want %s", got, tt.want)
			}
			c, dials := keepAliveClient(tt.h2)
			const requests = 400
			by := map[string]int{}
			for i := range requests {
				site, err := get(c, n.url+"/item/"+fmt.Sprint(i))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				by[site]++
			}
			t.Logf("answered by %v over %d connection(s)", by, dials.Load())
			if dials.Load() != 1 {
				t.Errorf("client made %d connections, want 1 (keep-alive)", dials.Load())
			}
			if !tt.wantSpread {
				if by["west"] != requests && by["north"] != requests {
					t.Errorf("answers %v; a connection carried whole is answered by one site", by)
				}
				return
			}
			for _, site := range []string{"west", "north"} {
				if share := float64(by[site]) / requests; share < 0.4 || share > 0.6 {
					t.Errorf("%s answered %.0f%% of the requests, want 40-60%%", site, 100*share)
				}
			}
		})
	}
}
