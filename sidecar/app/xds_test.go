package app

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
)

func TestRouterServices(t *testing.T) {
	services := []model.Service{
		{Address: "backend", Port: 8080, Routing: model.Closest, VIPs: []string{"10.96.0.7"}, Gateway: "10.96.0.7:8080", GatewayListen: ":20001",
			Endpoints: []model.Endpoint{{IP: "10.1.0.2", Port: 80, Ready: true}, {IP: "10.1.0.3", Port: 80}}},
		{Address: "echo", Port: 18080, Network: "echo", Protocol: model.HTTP, Routing: model.Balanced, VIPs: []string{"127.0.0.1"}, Gateway: "127.0.0.1:18080",
			Multicast: model.MulticastSpec{Mode: model.Events}}, // not multicast: not carried
		{Address: "web", Port: 80, Protocol: model.HTTP2, Routing: model.Multicast, Multicast: model.MulticastSpec{Mode: model.Events, Timeout: 2 * time.Second},
			Endpoints: []model.Endpoint{{IP: "10.1.0.4", Port: 80, Ready: true}}},
		{Address: "feed", Port: 80, Protocol: model.HTTP, Routing: model.Multicast}, // the defaults
	}
	sidecar, err := RouterServices(router.RoleSidecar, services)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sidecar, router.Services{
		Listeners:  []router.Listener{{Address: "backend:8080", Host: "10.96.0.7", Port: 8080}, {Address: "echo", Host: "127.0.0.1", Port: 18080}},
		Connectors: []router.Connector{{Address: "backend:8080", Host: "10.1.0.2", Port: 80}, {Address: "web:80", Host: "10.1.0.4", Port: 80}},
		Routing:    map[string]string{"backend:8080": "closest", "echo": "balanced", "web:80": "multicast", "feed:80": "multicast"},
		Protocols:  map[string]model.Protocol{"backend:8080": model.TCP, "echo": model.HTTP, "web:80": model.HTTP2, "feed:80": model.HTTP},
		Multicast:  map[string]model.MulticastSpec{"web:80": {Mode: model.Events, Timeout: 2 * time.Second}, "feed:80": {}},
	}); diff != "" {
		t.Errorf("sidecar (-got +want):\n%s", diff)
	}
	gateway, err := RouterServices(router.RoleGateway, services)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(gateway.Listeners, []router.Listener{{Address: "backend:8080", Host: "", Port: 20001}, {Address: "echo", Host: "127.0.0.1", Port: 18080}}); diff != "" {
		t.Errorf("gateway listeners (-got +want):\n%s", diff)
	}
}

// TestRouterServicesLeavesOutUnservable checks that a service the data
// plane cannot serve (multicast of tcp connections, which a controller or
// a linked site of another version may send) is left out with
// model.CheckRouting's words, and the others are served.
func TestRouterServicesLeavesOutUnservable(t *testing.T) {
	services := []model.Service{
		{Address: "web", Port: 80, Protocol: model.TCP, Routing: model.Multicast, VIPs: []string{"10.96.0.8"},
			Endpoints: []model.Endpoint{{IP: "10.1.0.4", Port: 80, Ready: true}}},
		{Address: "db", Port: 5432, Protocol: model.TCP, Routing: model.Closest, VIPs: []string{"10.96.0.9"}},
	}
	for _, role := range []router.Role{router.RoleSidecar, router.RoleGateway} {
		got, err := RouterServices(role, services)
		want := "service web:80: " + model.CheckRouting(model.TCP, model.Multicast).Error()
		if err == nil || err.Error() != want || !errors.Is(err, model.ErrMulticast) {
			t.Errorf("%v: error %v, want %q", role, err, want)
		}
		if diff := cmp.Diff(got.Routing, map[string]string{"db:5432": "closest"}); diff != "" {
			t.Errorf("%v: routing (-got +want):\n%s", role, diff)
		}
		if len(got.Multicast) != 0 {
			t.Errorf("%v: multicast of a service left out: %+v", role, got.Multicast)
		}
		if len(got.Connectors) != 0 {
			t.Errorf("%v: connectors of a service left out: %+v", role, got.Connectors)
		}
		for _, l := range got.Listeners {
			if l.Address != "db:5432" {
				t.Errorf("%v: listener of a service left out: %+v", role, l)
			}
		}
	}
}

// TestServicesOfMulticast checks that a gateway run from a site file
// serves the multicast modes the file names, as RouterServices serves
// the controller's.
func TestServicesOfMulticast(t *testing.T) {
	site, err := sitefile.Parse("east.yaml", []byte("name: east\nlisteners:\n"+
		"  - {address: web, host: 127.0.0.1, port: 8080, protocol: http, multicast: events, multicastTimeout: 2s}\n"+
		"  - {address: feed, host: 127.0.0.1, port: 8081, protocol: http}\n"+
		"routing:\n  web: multicast\n  feed: multicast\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := servicesOf(site)
	if diff := cmp.Diff(got.Multicast, map[string]model.MulticastSpec{"web": {Mode: model.Events, Timeout: 2 * time.Second}}); diff != "" {
		t.Errorf("multicast (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(got.Routing, map[string]string{"web": "multicast", "feed": "multicast"}); diff != "" {
		t.Errorf("routing (-got +want):\n%s", diff)
	}
}
