package federation

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// Views of site east's gateway replicas: r1 has links to west and north,
// r2 (started later, its link to north not up yet) reaches north only
// through west, and sees south, which r1 has no path to.
var (
	r1 = netview.Document{
		Version: "r1", Self: "east",
		Sites: []netview.DocumentSite{
			{Name: "east", Links: map[string]int{"west": 3, "north": 5}, Routers: []string{"east-gw-1"}},
			{Name: "north", Cost: 5, Hops: 1, NextHop: "north", Links: map[string]int{"east": 5}, Routers: []string{"north-gw"}},
			{Name: "west", Cost: 3, Hops: 1, NextHop: "west", Links: map[string]int{"east": 3}, Routers: []string{"west-gw"}},
		},
		Unreachable: []string{"south"},
		Addresses: map[string][]netview.Target{
			"echo:9000":    {{Site: "east", Endpoints: 1}, {Site: "west", Endpoints: 2, Cost: 3}},
			"backend:8080": {{Site: "north", Endpoints: 1, Cost: 5}},
		},
		Routing:   map[string]string{"backend:8080": "closest"},
		Conflicts: []netview.Conflict{{Site: "west", Key: "k2", HeldBy: "k1"}},
	}
	r2 = netview.Document{
		Version: "r2", Self: "east",
		Sites: []netview.DocumentSite{
			{Name: "east", Links: map[string]int{"west": 2}, Routers: []string{"east-gw-2"}},
			{Name: "north", Cost: 6, Hops: 2, NextHop: "west", Links: map[string]int{"west": 4}, Routers: []string{"north-gw"}},
			{Name: "south", Cost: 9, Hops: 2, NextHop: "west", Routers: []string{"south-gw"}},
			{Name: "west", Cost: 2, Hops: 1, NextHop: "west", Links: map[string]int{"east": 2, "north": 4, "south": 7}, Routers: []string{"west-gw", "west-gw-b"}},
		},
		Addresses: map[string][]netview.Target{
			"echo:9000":    {{Site: "east", Endpoints: 1}, {Site: "west", Endpoints: 1, Cost: 2}, {Site: "south", Endpoints: 4, Cost: 9}},
			"backend:8080": {{Site: "north", Endpoints: 3, Cost: 6}},
			"db:5432":      {{Site: "south", Endpoints: 1, Cost: 9}},
		},
		Routing:   map[string]string{"backend:8080": "balanced", "echo:9000": "closest"},
		Conflicts: []netview.Conflict{{Site: "north", Key: "k9", HeldBy: "k8"}, {Site: "west", Key: "k2", HeldBy: "k1"}},
	}
)

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name string
		docs []netview.Document
		want netview.Document
	}{
		{
			name: "none",
			want: netview.Document{},
		},
		{
			name: "one replica is its own view",
			docs: []netview.Document{r1},
			want: r1,
		},
		{
			name: "partial views: the union, the lower cost wins, unreachable only when no replica reaches it",
			docs: []netview.Document{r1, r2},
			want: netview.Document{
				Self: "east",
				Sites: []netview.DocumentSite{
					{Name: "east", Links: map[string]int{"west": 2, "north": 5}, Routers: []string{"east-gw-1", "east-gw-2"}},
					{Name: "north", Cost: 5, Hops: 1, NextHop: "north", Links: map[string]int{"east": 5, "west": 4}, Routers: []string{"north-gw"}},
					{Name: "south", Cost: 9, Hops: 2, NextHop: "west", Routers: []string{"south-gw"}},
					{Name: "west", Cost: 2, Hops: 1, NextHop: "west", Links: map[string]int{"east": 2, "north": 4, "south": 7}, Routers: []string{"west-gw", "west-gw-b"}},
				},
				Addresses: map[string][]netview.Target{
					// per site the lowest cost and the most endpoints, by cost then site
					"echo:9000":    {{Site: "east", Endpoints: 1}, {Site: "west", Endpoints: 2, Cost: 2}, {Site: "south", Endpoints: 4, Cost: 9}},
					"backend:8080": {{Site: "north", Endpoints: 3, Cost: 5}},
					"db:5432":      {{Site: "south", Endpoints: 1, Cost: 9}},
				},
				// backend: r1's nearest serving site (north at 5) is nearer than r2's (north at 6)
				Routing:   map[string]string{"backend:8080": "closest", "echo:9000": "closest"},
				Conflicts: []netview.Conflict{{Site: "north", Key: "k9", HeldBy: "k8"}, {Site: "west", Key: "k2", HeldBy: "k1"}},
			},
		},
		{
			name: "a site no replica reaches stays unreachable",
			docs: []netview.Document{
				{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}}, Unreachable: []string{"west"}},
				{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}}, Unreachable: []string{"north", "west"}},
			},
			want: netview.Document{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}}, Unreachable: []string{"north", "west"}},
		},
		{
			name: "equal costs: fewer hops, then the lower next hop, whatever the order",
			docs: []netview.Document{
				{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}, {Name: "west", Cost: 4, Hops: 2, NextHop: "north"}}},
				{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}, {Name: "west", Cost: 4, Hops: 1, NextHop: "west"}}},
				{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}, {Name: "west", Cost: 4, Hops: 1, NextHop: "south"}}},
			},
			want: netview.Document{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}, {Name: "west", Cost: 4, Hops: 1, NextHop: "south"}}},
		},
		{
			name: "a document of another site is left out",
			docs: []netview.Document{
				{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}}},
				{Self: "west", Sites: []netview.DocumentSite{{Name: "west"}, {Name: "north", Cost: 1, Hops: 1, NextHop: "north"}}, Addresses: map[string][]netview.Target{"a:1": {{Site: "west", Endpoints: 1}}}},
			},
			want: netview.Document{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Merge(tc.docs)
			if tc.want.Self != "" {
				tc.want.Version = documentVersion(tc.want)
			}
			if diff := cmp.Diff(got, tc.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Merge (-got +want):\n%s", diff)
			}
		})
	}
}

// The merged version is a content hash: the same views in any order give
// the same version, a change gives another, and the inputs are left as
// they were.
func TestMergeVersion(t *testing.T) {
	a, b := Merge([]netview.Document{r1, r2}), Merge([]netview.Document{r2, r1})
	if a.Version == "" || a.Version != b.Version {
		t.Errorf("versions of one merge in two orders: %q, %q", a.Version, b.Version)
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("merge depends on the order (-r1,r2 +r2,r1):\n%s", diff)
	}
	changed := r2
	changed.Addresses = map[string][]netview.Target{"db:5432": {{Site: "south", Endpoints: 2, Cost: 9}}}
	if c := Merge([]netview.Document{r1, changed}); c.Version == a.Version {
		t.Errorf("a change kept version %q", c.Version)
	}
	// The replica's own version plays no part: a replica that restarts
	// with the same view changes nothing.
	same := r2
	same.Version = "other"
	if c := Merge([]netview.Document{r1, same}); c.Version != a.Version {
		t.Errorf("a replica's version changed the merge: %q, want %q", c.Version, a.Version)
	}
	if r1.Sites[0].Links["west"] != 3 || len(r1.Sites[0].Routers) != 1 || r2.Addresses["backend:8080"][0].Endpoints != 3 {
		t.Error("Merge changed its input")
	}
}

// One replica's document merges into itself, version included: the merge
// normalizes and hashes as netview does.
func TestMergeOneIsNetviewDocument(t *testing.T) {
	db := netview.NewDB("east", 1, netview.WithRouter("east-gw-0"))
	db.SetLocal(nil, map[string]int{"echo:9000": 2, "backend:8080": 1})
	db.SetLocalRouting(map[string]string{"echo:9000": "closest"})
	db.SetLocalProtocols(map[string]string{"echo:9000": "http"})
	db.SetLocalMulticast(map[string]string{"backend:8080": "events-250ms"})
	d := db.Document()
	got := Merge([]netview.Document{d})
	if diff := cmp.Diff(got, d, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Merge of one netview document (-got +want):\n%s", diff)
	}
}

// Protocols merge as routing patterns do: per address the protocol of
// the replica whose cheapest site serving the address is the cheapest.
func TestMergeProtocols(t *testing.T) {
	doc := func(addresses map[string][]netview.Target, protocols map[string]string) netview.Document {
		return netview.Document{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}}, Addresses: addresses, Protocols: protocols}
	}
	west := func(cost int) []netview.Target { return []netview.Target{{Site: "west", Endpoints: 1, Cost: cost}} }
	north := func(cost int) []netview.Target { return []netview.Target{{Site: "north", Endpoints: 1, Cost: cost}} }
	for _, tc := range []struct {
		name string
		docs []netview.Document
		want map[string]string
	}{
		{
			name: "none declared",
			docs: []netview.Document{doc(map[string][]netview.Target{"web:80": west(2)}, nil)},
		},
		{
			name: "one replica declares: it counts",
			docs: []netview.Document{
				doc(map[string][]netview.Target{"web:80": west(2)}, nil),
				doc(map[string][]netview.Target{"web:80": west(2)}, map[string]string{"web:80": "http"}),
			},
			want: map[string]string{"web:80": "http"},
		},
		{
			name: "the replica with the cheaper serving site wins",
			docs: []netview.Document{
				doc(map[string][]netview.Target{"web:80": west(4)}, map[string]string{"web:80": "grpc"}),
				doc(map[string][]netview.Target{"web:80": north(3)}, map[string]string{"web:80": "http2"}),
			},
			want: map[string]string{"web:80": "http2"},
		},
		{
			name: "equal costs: the lower site, then the lower protocol",
			docs: []netview.Document{
				doc(map[string][]netview.Target{"web:80": west(3), "rpc:90": west(3)}, map[string]string{"web:80": "http", "rpc:90": "http2"}),
				doc(map[string][]netview.Target{"web:80": north(3), "rpc:90": west(3)}, map[string]string{"web:80": "grpc", "rpc:90": "grpc"}),
			},
			want: map[string]string{"web:80": "grpc", "rpc:90": "grpc"},
		},
		{
			name: "a replica that sees no serving site loses to one that does",
			docs: []netview.Document{
				doc(nil, map[string]string{"web:80": "grpc"}),
				doc(map[string][]netview.Target{"web:80": west(9)}, map[string]string{"web:80": "http"}),
			},
			want: map[string]string{"web:80": "http"},
		},
		{
			name: "routing and protocols are chosen apart",
			docs: []netview.Document{
				{Self: "east", Addresses: map[string][]netview.Target{"web:80": west(2)}, Routing: map[string]string{"web:80": "closest"}},
				{Self: "east", Addresses: map[string][]netview.Target{"web:80": west(5)}, Protocols: map[string]string{"web:80": "http"}},
			},
			want: map[string]string{"web:80": "http"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backward := slices.Clone(tc.docs)
			slices.Reverse(backward)
			for _, docs := range [][]netview.Document{tc.docs, backward} {
				got := Merge(docs)
				if diff := cmp.Diff(got.Protocols, tc.want); diff != "" {
					t.Errorf("merged protocols (-got +want):\n%s", diff)
				}
			}
		})
	}
	// The protocols are part of the merged version.
	without := Merge([]netview.Document{r1})
	declared := r1
	declared.Protocols = map[string]string{"echo:9000": "http"}
	if with := Merge([]netview.Document{declared}); with.Version == without.Version {
		t.Errorf("declaring a protocol kept version %q", with.Version)
	}
}

// Multicast modes merge as routing patterns do: per address the mode of
// the replica whose cheapest site serving the address is the cheapest.
func TestMergeMulticast(t *testing.T) {
	doc := func(addresses map[string][]netview.Target, multicast map[string]string) netview.Document {
		return netview.Document{Self: "east", Sites: []netview.DocumentSite{{Name: "east"}}, Addresses: addresses, Multicast: multicast}
	}
	west := func(cost int) []netview.Target { return []netview.Target{{Site: "west", Endpoints: 1, Cost: cost}} }
	north := func(cost int) []netview.Target { return []netview.Target{{Site: "north", Endpoints: 1, Cost: cost}} }
	for _, tc := range []struct {
		name string
		docs []netview.Document
		want map[string]string
	}{
		{
			name: "none declared",
			docs: []netview.Document{doc(map[string][]netview.Target{"fan:80": west(2)}, nil)},
		},
		{
			name: "one replica declares: it counts",
			docs: []netview.Document{
				doc(map[string][]netview.Target{"fan:80": west(2)}, nil),
				doc(map[string][]netview.Target{"fan:80": west(2)}, map[string]string{"fan:80": "events-250ms"}),
			},
			want: map[string]string{"fan:80": "events-250ms"},
		},
		{
			name: "the replica with the cheaper serving site wins",
			docs: []netview.Document{
				doc(map[string][]netview.Target{"fan:80": west(4)}, map[string]string{"fan:80": "aggregate-5000ms"}),
				doc(map[string][]netview.Target{"fan:80": north(3)}, map[string]string{"fan:80": "events-250ms"}),
			},
			want: map[string]string{"fan:80": "events-250ms"},
		},
		{
			name: "equal costs: the lower site, then the lower text",
			docs: []netview.Document{
				doc(map[string][]netview.Target{"fan:80": west(3), "hook:90": west(3)}, map[string]string{"fan:80": "events-1ms", "hook:90": "events-1ms"}),
				doc(map[string][]netview.Target{"fan:80": north(3), "hook:90": west(3)}, map[string]string{"fan:80": "events-9ms", "hook:90": "aggregate-5000ms"}),
			},
			want: map[string]string{"fan:80": "events-9ms", "hook:90": "aggregate-5000ms"},
		},
		{
			name: "a replica that sees no serving site loses to one that does",
			docs: []netview.Document{
				doc(nil, map[string]string{"fan:80": "aggregate-5000ms"}),
				doc(map[string][]netview.Target{"fan:80": west(9)}, map[string]string{"fan:80": "events-250ms"}),
			},
			want: map[string]string{"fan:80": "events-250ms"},
		},
		{
			name: "a mode this controller cannot parse is merged as declared",
			docs: []netview.Document{doc(map[string][]netview.Target{"fan:80": west(2)}, map[string]string{"fan:80": "quorum-5000ms"})},
			want: map[string]string{"fan:80": "quorum-5000ms"},
		},
		{
			name: "routing, protocols and multicast are chosen apart",
			docs: []netview.Document{
				{Self: "east", Addresses: map[string][]netview.Target{"fan:80": west(2)}, Routing: map[string]string{"fan:80": "multicast"}, Protocols: map[string]string{"fan:80": "http"}},
				{Self: "east", Addresses: map[string][]netview.Target{"fan:80": west(5)}, Multicast: map[string]string{"fan:80": "events-250ms"}},
			},
			want: map[string]string{"fan:80": "events-250ms"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backward := slices.Clone(tc.docs)
			slices.Reverse(backward)
			for _, docs := range [][]netview.Document{tc.docs, backward} {
				got := Merge(docs)
				if diff := cmp.Diff(got.Multicast, tc.want); diff != "" {
					t.Errorf("merged multicast (-got +want):\n%s", diff)
				}
			}
		})
	}
	// The multicast modes are part of the merged version.
	without := Merge([]netview.Document{r1})
	declared := r1
	declared.Multicast = map[string]string{"echo:9000": "events-250ms"}
	if with := Merge([]netview.Document{declared}); with.Version == without.Version {
		t.Errorf("declaring a multicast mode kept version %q", with.Version)
	}
}
