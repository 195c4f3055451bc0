package model

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func table() *Table {
	return &Table{
		Site: "east",
		Services: []Service{
			{Address: "web", Port: 80, Protocol: HTTP, Routing: Closest, VIPs: []string{"10.0.0.2", "10.0.0.1"},
				Endpoints: []Endpoint{{IP: "10.1.0.9", Port: 8080, Ready: true}, {IP: "10.1.0.3", Port: 8080}},
				Remote:    []RemoteSite{{Site: "west", Cost: 3, Endpoints: 2}, {Site: "north", Cost: 1, Endpoints: 1}}},
			{Address: "db", Port: 5432, Protocol: TCP, Routing: Balanced},
		},
		Sites: []Site{{Name: "west", Cost: 3}, {Name: "east"}, {Name: "north", Cost: 1, Links: []Link{{Peer: "west", Cost: 2}, {Peer: "east", Cost: 1}}}},
	}
}

func TestNormalizeAndHash(t *testing.T) {
	a := table()
	b := table()
	b.Normalize()
	if a.Hash() != b.Hash() {
		t.Fatalf("hash depends on order: %s vs %s", a.Hash(), b.Hash())
	}
	if got, want := b.Services[0].Address, "db"; got != want {
		t.Errorf("first service %q, want %q", got, want)
	}
	if diff := cmp.Diff(b.Services[1].VIPs, []string{"10.0.0.1", "10.0.0.2"}); diff != "" {
		t.Errorf("VIPs (-got +want):\n%s", diff)
	}
	if got := []string{b.Sites[0].Name, b.Sites[1].Name, b.Sites[2].Name}; !cmp.Equal(got, []string{"east", "north", "west"}) {
		t.Errorf("sites order %v", got)
	}
	c := table()
	c.Services[0].Endpoints[1].Ready = true
	if c.Hash() == a.Hash() {
		t.Error("hash did not change with readiness")
	}
	if a.Services[0].Address != "web" {
		t.Error("Hash normalized its receiver")
	}
	if got := b.Service("web", 80).ReadyEndpoints(); got != 1 {
		t.Errorf("ready endpoints %d, want 1", got)
	}
}

func TestCloneIsDeep(t *testing.T) {
	a := table()
	c := a.Clone()
	c.Services[0].Endpoints[0].Ready = false
	c.Services[0].VIPs[0] = "x"
	c.Sites[2].Links[0].Cost = 9
	if diff := cmp.Diff(a, table()); diff != "" {
		t.Errorf("clone shares memory (-got +want):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*Table)
		wants []string
	}{
		{"ok", func(*Table) {}, nil},
		{"no site", func(t *Table) { t.Site = "" }, []string{"site is empty"}},
		{"bad port", func(t *Table) { t.Services[1].Port = 0 }, []string{"db:0: port 0 out of range"}},
		{"duplicate", func(t *Table) { t.Services[1] = t.Services[0] }, []string{"web:80: listed twice"}},
		{"protocol", func(t *Table) { t.Services[0].Protocol = "udp" }, []string{`unknown protocol "udp"`}},
		{"routing", func(t *Table) { t.Services[0].Routing = "" }, []string{`unknown routing ""`}},
		{"names as written", func(t *Table) { t.Services[0].Protocol, t.Services[0].Routing = "HTTP", "Closest" }, []string{`unknown protocol "HTTP"`, `unknown routing "Closest"`}},
		// A peer may declare multicast: the table holds it, routers decide.
		{"multicast", func(t *Table) { t.Services[1].Routing = Multicast }, nil},
		{"vip", func(t *Table) { t.Services[0].VIPs = []string{"10.0.0"} }, []string{`virtual IP "10.0.0"`}},
		{"endpoint", func(t *Table) { t.Services[0].Endpoints[0].IP = "pod" }, []string{`endpoint IP "pod"`}},
		{"remote local", func(t *Table) { t.Services[0].Remote[0].Site = "east" }, []string{`remote site "east" is empty or local`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := table()
			tc.edit(tb)
			err := tb.Validate()
			if len(tc.wants) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseNodeID(t *testing.T) {
	for _, tc := range []struct {
		id      string
		want    Node
		wantErr bool
	}{
		{"sidecar~east~shop/client-1", Node{KindSidecar, "east", "shop/client-1"}, false},
		{"gateway~west~gw-0", Node{KindGateway, "west", "gw-0"}, false},
		{"grpc-app", Node{KindClient, "east", "grpc-app"}, false},
		{"other~a~b", Node{KindClient, "east", "other~a~b"}, false},
		{"sidecar~~x", Node{}, true},
	} {
		got, err := ParseNodeID(tc.id, "east")
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v", tc.id, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: got %+v want %+v", tc.id, got, tc.want)
		}
		if !tc.wantErr && got.Kind != KindClient && got.ID() != tc.id {
			t.Errorf("%s: ID() = %s", tc.id, got.ID())
		}
	}
}
