package app

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/sidecar/shared/model"
)

func TestRouterServices(t *testing.T) {
	services := []model.Service{
		{Address: "backend", Port: 8080, Routing: model.Closest, VIPs: []string{"10.96.0.7"}, Gateway: "10.96.0.7:8080", GatewayListen: ":20001",
			Endpoints: []model.Endpoint{{IP: "10.1.0.2", Port: 80, Ready: true}, {IP: "10.1.0.3", Port: 80}}},
		{Address: "echo", Port: 18080, Network: "echo", Protocol: model.HTTP, Routing: model.Balanced, VIPs: []string{"127.0.0.1"}, Gateway: "127.0.0.1:18080"},
	}
	sidecar, err := RouterServices(router.RoleSidecar, services)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sidecar, router.Services{
		Listeners:  []router.Listener{{Address: "backend:8080", Host: "10.96.0.7", Port: 8080}, {Address: "echo", Host: "127.0.0.1", Port: 18080}},
		Connectors: []router.Connector{{Address: "backend:8080", Host: "10.1.0.2", Port: 80}},
		Routing:    map[string]string{"backend:8080": "closest", "echo": "balanced"},
		Protocols:  map[string]model.Protocol{"backend:8080": model.TCP, "echo": model.HTTP},
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
// plane cannot serve (multicast, which a controller or a linked site of
// another version may send) is left out with model.CheckRouting's words,
// and the others are served.
func TestRouterServicesLeavesOutUnservable(t *testing.T) {
	services := []model.Service{
		{Address: "web", Port: 80, Protocol: model.HTTP, Routing: model.Multicast, VIPs: []string{"10.96.0.8"},
			Endpoints: []model.Endpoint{{IP: "10.1.0.4", Port: 80, Ready: true}}},
		{Address: "db", Port: 5432, Protocol: model.TCP, Routing: model.Closest, VIPs: []string{"10.96.0.9"}},
	}
	for _, role := range []router.Role{router.RoleSidecar, router.RoleGateway} {
		got, err := RouterServices(role, services)
		want := "service web:80: " + model.CheckRouting(model.HTTP, model.Multicast).Error()
		if err == nil || err.Error() != want || !errors.Is(err, model.ErrMulticast) {
			t.Errorf("%v: error %v, want %q", role, err, want)
		}
		if diff := cmp.Diff(got.Routing, map[string]string{"db:5432": "closest"}); diff != "" {
			t.Errorf("%v: routing (-got +want):\n%s", role, diff)
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
