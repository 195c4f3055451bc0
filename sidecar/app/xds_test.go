package app

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/xds/model"
)

func TestRouterServices(t *testing.T) {
	services := []model.Service{
		{Address: "backend", Port: 8080, Routing: model.Closest, VIPs: []string{"10.96.0.7"}, Gateway: "10.96.0.7:8080", GatewayListen: ":20001",
			Endpoints: []model.Endpoint{{IP: "10.1.0.2", Port: 80, Ready: true}, {IP: "10.1.0.3", Port: 80}}},
		{Address: "echo", Port: 18080, Network: "echo", Routing: model.Balanced, VIPs: []string{"127.0.0.1"}, Gateway: "127.0.0.1:18080"},
	}
	sidecar := RouterServices(router.RoleSidecar, services)
	if diff := cmp.Diff(sidecar, router.Services{
		Listeners:  []router.Listener{{Address: "backend:8080", Host: "10.96.0.7", Port: 8080}, {Address: "echo", Host: "127.0.0.1", Port: 18080}},
		Connectors: []router.Connector{{Address: "backend:8080", Host: "10.1.0.2", Port: 80}},
		Routing:    map[string]string{"backend:8080": "closest", "echo": "balanced"},
	}); diff != "" {
		t.Errorf("sidecar (-got +want):\n%s", diff)
	}
	gateway := RouterServices(router.RoleGateway, services)
	if diff := cmp.Diff(gateway.Listeners, []router.Listener{{Address: "backend:8080", Host: "", Port: 20001}, {Address: "echo", Host: "127.0.0.1", Port: 18080}}); diff != "" {
		t.Errorf("gateway listeners (-got +want):\n%s", diff)
	}
}
