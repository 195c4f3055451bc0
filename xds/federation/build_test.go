package federation

import (
	"testing"

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
			{Address: "echo", Port: 9000, Network: "echo", Protocol: model.TCP, Routing: model.Closest, Gateway: "127.0.0.1:9000",
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
