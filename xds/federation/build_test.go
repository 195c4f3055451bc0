package federation

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

func TestBuild(t *testing.T) {
	doc := &netview.Document{
		Version: "v1", Self: "east",
		Sites: []netview.DocumentSite{{Name: "east", Links: map[string]int{"west": 2}}, {Name: "west", Cost: 2, Hops: 1, NextHop: "west", Links: map[string]int{"east": 2}}},
		Addresses: map[string][]netview.Target{
			"echo":         {{Site: "east", Endpoints: 1}, {Site: "west", Endpoints: 3, Cost: 2}},
			"backend:8080": {{Site: "west", Endpoints: 2, Cost: 2}},
			"legacy":       {{Site: "west", Endpoints: 1, Cost: 2}}, // no port, no local entry: unreachable here
		},
		Routing: map[string]string{"echo": "closest", "backend:8080": "closest"},
	}
	local := []model.Service{
		{Address: "echo", Port: 9000, Network: "echo", Gateway: "127.0.0.1:9000", Endpoints: []model.Endpoint{{IP: "127.0.0.1", Port: 9090, Ready: true}}},
	}
	got := Build("east", local, doc)
	want := &model.Table{
		Site: "east",
		Services: []model.Service{
			{Address: "backend", Port: 8080, Protocol: model.TCP, Routing: model.Closest, Remote: []model.RemoteSite{{Site: "west", Cost: 2, Endpoints: 2}}},
			{Address: "echo", Port: 9000, Network: "echo", Protocol: model.TCP, Routing: model.Balanced, Gateway: "127.0.0.1:9000",
				Endpoints: []model.Endpoint{{IP: "127.0.0.1", Port: 9090, Ready: true}}, Remote: []model.RemoteSite{{Site: "west", Cost: 2, Endpoints: 3}}},
		},
		Sites: []model.Site{{Name: "east", Links: []model.Link{{Peer: "west", Cost: 2}}}, {Name: "west", Cost: 2, Links: []model.Link{{Peer: "east", Cost: 2}}}},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Build (-got +want):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("built table invalid: %v", err)
	}
	// A locally declared pattern wins over the network's.
	local[0].Routing = model.Multicast
	if p := Build("east", local, doc).Service("echo", 9000).Routing; p != model.Multicast {
		t.Errorf("local routing lost: %s", p)
	}
	// A service the site only reaches (a listener, no endpoint of its
	// own) takes the network's pattern; one it serves keeps its own
	// balanced, whatever its own gateway declared before (the e2e found
	// a site stuck on closest after its Service went back to balanced).
	listenerOnly := []model.Service{{Address: "echo", Port: 9000, Network: "echo", Gateway: "127.0.0.1:9000"}}
	if p := Build("east", listenerOnly, doc).Service("echo", 9000).Routing; p != model.Closest {
		t.Errorf("listener-only echo routed %s, want the network's closest", p)
	}
	local[0].Routing = model.Balanced
	if p := Build("east", local, doc).Service("echo", 9000).Routing; p != model.Balanced {
		t.Errorf("served echo routed %s, want its own balanced", p)
	}
	// Without a view: the local services only, the site alone.
	alone := Build("east", local, nil)
	if len(alone.Services) != 1 || len(alone.Sites) != 1 || alone.Services[0].Remote != nil {
		t.Errorf("Build without a view: %+v", alone)
	}
	if local[0].Remote != nil {
		t.Error("Build changed its input")
	}
}

func TestSplitName(t *testing.T) {
	for name, want := range map[string]bool{"backend:8080": true, "echo": false, "a:0": false, ":80": false, "a:99999": false, "db.prod:5432": true} {
		if _, _, ok := SplitName(name); ok != want {
			t.Errorf("SplitName(%q) ok=%v, want %v", name, ok, want)
		}
	}
}

// A remote service takes the protocol the network declares for it (tcp
// when none, or one this controller does not know); a local service keeps
// its own.
func TestBuildProtocols(t *testing.T) {
	doc := &netview.Document{
		Version: "v1", Self: "east",
		Sites: []netview.DocumentSite{{Name: "east"}, {Name: "west", Cost: 2, Hops: 1, NextHop: "west"}},
		Addresses: map[string][]netview.Target{
			"web:80":       {{Site: "west", Endpoints: 2, Cost: 2}},
			"api:8080":     {{Site: "west", Endpoints: 1, Cost: 2}},
			"rpc:9000":     {{Site: "west", Endpoints: 1, Cost: 2}},
			"db:5432":      {{Site: "west", Endpoints: 1, Cost: 2}},
			"future:7000":  {{Site: "west", Endpoints: 1, Cost: 2}},
			"fanout:6000":  {{Site: "west", Endpoints: 1, Cost: 2}},
			"echo:9001":    {{Site: "east", Endpoints: 1}, {Site: "west", Endpoints: 1, Cost: 2}},
			"metrics:9100": {{Site: "east", Endpoints: 1}, {Site: "west", Endpoints: 1, Cost: 2}},
			"shop:80":      {{Site: "west", Endpoints: 1, Cost: 2}},
			"legacy:81":    {{Site: "west", Endpoints: 1, Cost: 2}},
		},
		Routing: map[string]string{"fanout:6000": "multicast"},
		Protocols: map[string]string{
			"web:80": "http", "api:8080": "http2", "rpc:9000": "grpc", "future:7000": "h3", "fanout:6000": "http",
			"echo:9001": "http", "metrics:9100": "grpc", "shop:80": "http", "legacy:81": "http",
		},
	}
	local := []model.Service{
		{Address: "echo", Port: 9001, Endpoints: []model.Endpoint{{IP: "10.0.0.1", Port: 9001, Ready: true}}},
		{Address: "metrics", Port: 9100, Protocol: model.HTTP, Endpoints: []model.Endpoint{{IP: "10.0.0.2", Port: 9100, Ready: true}}},
		// Reached only, through a proxy Service or a listener: without a
		// protocol of its own it takes the declared one.
		{Address: "shop", Port: 80, VIPs: []string{"10.96.0.10"}, GatewayListen: ":20080"},
		{Address: "legacy", Port: 81, Protocol: model.TCP, VIPs: []string{"10.96.0.11"}, GatewayListen: ":20081"},
	}
	got := Build("east", local, doc)
	if err := got.Validate(); err != nil {
		t.Fatalf("built table invalid: %v", err)
	}
	for _, tc := range []struct {
		name    string
		address string
		port    int
		want    model.Protocol
		routing model.Pattern
	}{
		{"remote http", "web", 80, model.HTTP, model.Balanced},
		{"remote http2", "api", 8080, model.HTTP2, model.Balanced},
		{"reached through a proxy Service, naming none: the declared one", "shop", 80, model.HTTP, model.Balanced},
		{"reached through a listener naming tcp: its own", "legacy", 81, model.TCP, model.Balanced},
		{"remote grpc", "rpc", 9000, model.GRPC, model.Balanced},
		{"remote, none declared", "db", 5432, model.TCP, model.Balanced},
		{"remote, a protocol this controller does not know", "future", 7000, model.TCP, model.Balanced},
		{"remote multicast: the pair as declared", "fanout", 6000, model.HTTP, model.Multicast},
		{"local, naming none: its own", "echo", 9001, model.TCP, model.Balanced},
		{"local, naming one: its own", "metrics", 9100, model.HTTP, model.Balanced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := got.Service(tc.address, tc.port)
			if s == nil {
				t.Fatalf("no service %s:%d in %+v", tc.address, tc.port, got.Services)
			}
			if s.Protocol != tc.want || s.Routing != tc.routing {
				t.Errorf("service %s:%d is %s/%s, want %s/%s", tc.address, tc.port, s.Protocol, s.Routing, tc.want, tc.routing)
			}
		})
	}
	// A remote multicast address declared http is served by the routers;
	// had the network declared no protocol for it (tcp), they would refuse
	// it.
	fanout := got.Service("fanout", 6000)
	if err := model.CheckRouting(fanout.Protocol, fanout.Routing); err != nil {
		t.Errorf("CheckRouting(%s, %s) = %v, want nil", fanout.Protocol, fanout.Routing, err)
	}
	if err := model.CheckRouting(model.TCP, fanout.Routing); !errors.Is(err, model.ErrMulticast) {
		t.Errorf("CheckRouting(tcp, %s) = %v, want %v", fanout.Routing, err, model.ErrMulticast)
	}
}

// A multicast address takes the mode the network declares for it (the
// defaults when none, or one this controller cannot parse) wherever it
// takes the network's pattern; a service routed by the site's own pattern
// keeps its own mode, as it keeps its own routing.
func TestBuildMulticast(t *testing.T) {
	remote := func(cost int) []netview.Target { return []netview.Target{{Site: "west", Endpoints: 1, Cost: cost}} }
	both := []netview.Target{{Site: "east", Endpoints: 1}, {Site: "west", Endpoints: 1, Cost: 2}}
	doc := &netview.Document{
		Version: "v1", Self: "east",
		Sites: []netview.DocumentSite{{Name: "east"}, {Name: "west", Cost: 2, Hops: 1, NextHop: "west"}},
		Addresses: map[string][]netview.Target{
			"fan:80":       remote(2),
			"agg:81":       remote(2),
			"future:82":    remote(2),
			"long:83":      remote(2),
			"plain:84":     remote(2),
			"served:85":    both,
			"servedbal:86": both,
			"listen:87":    remote(2),
			"listenown:88": remote(2),
			"listencl:89":  remote(2),
		},
		Routing: map[string]string{
			"fan:80": "multicast", "agg:81": "multicast", "future:82": "multicast", "long:83": "multicast", "plain:84": "closest",
			"served:85": "multicast", "servedbal:86": "multicast", "listen:87": "multicast", "listenown:88": "multicast", "listencl:89": "multicast",
		},
		Protocols: map[string]string{"fan:80": "http", "agg:81": "http", "future:82": "http", "long:83": "grpc", "plain:84": "http"},
		Multicast: map[string]string{
			"fan:80": "events-250ms", "future:82": "quorum-5000ms", "long:83": "aggregate-900000ms", "plain:84": "events-250ms",
			"served:85": "events-250ms", "servedbal:86": "events-250ms", "listen:87": "events-100ms", "listenown:88": "events-100ms", "listencl:89": "events-100ms",
		},
	}
	ep := []model.Endpoint{{IP: "10.0.0.1", Port: 8000, Ready: true}}
	own := model.MulticastSpec{Mode: model.Aggregate, Timeout: 2 * time.Second}
	local := []model.Service{
		{Address: "served", Port: 85, Protocol: model.HTTP, Routing: model.Multicast, Multicast: own, Endpoints: ep},
		{Address: "servedbal", Port: 86, Protocol: model.HTTP, Endpoints: ep},
		{Address: "listen", Port: 87, Protocol: model.HTTP},
		{Address: "listenown", Port: 88, Protocol: model.HTTP, Routing: model.Multicast, Multicast: own},
		{Address: "listencl", Port: 89, Protocol: model.HTTP, Routing: model.Closest},
	}
	got := Build("east", local, doc)
	if err := got.Validate(); err != nil {
		t.Fatalf("built table invalid: %v", err)
	}
	for _, tc := range []struct {
		name      string
		address   string
		port      int
		routing   model.Pattern
		multicast model.MulticastSpec
	}{
		{"remote: the declared mode", "fan", 80, model.Multicast, model.MulticastSpec{Mode: model.Events, Timeout: 250 * time.Millisecond}},
		{"remote, none declared: the defaults", "agg", 81, model.Multicast, model.MulticastSpec{}},
		{"remote, a mode this controller does not know: the defaults", "future", 82, model.Multicast, model.MulticastSpec{}},
		{"remote, a deadline this controller refuses: the defaults", "long", 83, model.Multicast, model.MulticastSpec{}},
		{"remote, not multicast: no mode", "plain", 84, model.Closest, model.MulticastSpec{}},
		{"served, multicast of its own: its own mode", "served", 85, model.Multicast, own},
		{"served, balanced of its own: no mode", "servedbal", 86, model.Balanced, model.MulticastSpec{}},
		{"listener only, naming no pattern: the network's pattern and mode", "listen", 87, model.Multicast, model.MulticastSpec{Mode: model.Events, Timeout: 100 * time.Millisecond}},
		{"listener only, multicast of its own: its own mode", "listenown", 88, model.Multicast, own},
		{"listener only, closest of its own: no mode", "listencl", 89, model.Closest, model.MulticastSpec{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := got.Service(tc.address, tc.port)
			if s == nil {
				t.Fatalf("no service %s:%d in %+v", tc.address, tc.port, got.Services)
			}
			if s.Routing != tc.routing {
				t.Errorf("service %s:%d routed %s, want %s", tc.address, tc.port, s.Routing, tc.routing)
			}
			if diff := cmp.Diff(s.Multicast, tc.multicast); diff != "" {
				t.Errorf("service %s:%d multicast (-got +want):\n%s", tc.address, tc.port, diff)
			}
		})
	}
	if local[2].Multicast != (model.MulticastSpec{}) {
		t.Error("Build changed its input")
	}
}
