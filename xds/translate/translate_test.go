package translate

import (
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// tables are the golden cases; each is written to testdata/<name>.json.
var tables = []struct {
	name  string
	table model.Table
}{
	{"empty", model.Table{Site: "east"}},
	{"one-local", model.Table{Site: "east", Services: []model.Service{{
		Address: "backend", Port: 8080, Protocol: model.TCP, Routing: model.Balanced,
		VIPs: []string{"10.96.0.10"}, Gateway: "10.96.0.2:8080",
		Endpoints: []model.Endpoint{
			{IP: "10.244.0.7", Port: 8080, Ready: true, Name: "shop/backend-1"},
			{IP: "10.244.0.8", Port: 8080, Ready: false, Name: "shop/backend-2"},
		},
	}}}},
	{"multi-port", model.Table{Site: "east", Services: []model.Service{
		{
			Address: "backend", Port: 9090, Protocol: model.HTTP2, Routing: model.Balanced,
			VIPs: []string{"10.96.0.10"}, Gateway: "10.96.0.2:9090",
			Endpoints: []model.Endpoint{{IP: "10.244.0.7", Port: 9090, Ready: true}},
		},
		{
			Address: "backend", Port: 8080, Protocol: model.TCP, Routing: model.Balanced,
			VIPs: []string{"10.96.0.10"}, Gateway: "10.96.0.2:8080",
			Endpoints: []model.Endpoint{{IP: "10.244.0.7", Port: 8080, Ready: true}},
		},
	}}},
	{"closest", model.Table{Site: "east", Services: []model.Service{{
		Address: "db", Port: 5432, Protocol: model.TCP, Routing: model.Closest,
		Gateway: "skiff-gateway.skiff:5432",
		// The local endpoint is not ready: the local locality goes last.
		Endpoints: []model.Endpoint{{IP: "10.244.0.9", Port: 5432, Ready: false, Name: "shop/db-0"}},
		Remote: []model.RemoteSite{
			{Site: "north", Cost: 3, Endpoints: 1},
			{Site: "west", Cost: 1, Endpoints: 2},
			{Site: "south", Cost: 1, Endpoints: 1},
			{Site: "empty", Cost: 2, Endpoints: 0},
		},
	}}}},
	{"balanced-weights", model.Table{Site: "east", Services: []model.Service{{
		Address: "backend", Port: 8080, Protocol: model.TCP, Routing: model.Balanced,
		Gateway: "10.96.0.2:8080",
		Endpoints: []model.Endpoint{
			{IP: "10.244.0.7", Port: 8080, Ready: true},
			{IP: "10.244.0.8", Port: 8080, Ready: true},
			{IP: "10.244.0.9", Port: 8080, Ready: true},
		},
		Remote: []model.RemoteSite{
			{Site: "west", Cost: 1, Endpoints: 2},   // 2×100/2 = 100
			{Site: "north", Cost: 2, Endpoints: 5},  // 5×100/3 = 166.7 → 167
			{Site: "far", Cost: 1000, Endpoints: 1}, // 100/1001 → 0 → 1
		},
	}}}},
	{"http", model.Table{Site: "east", Services: []model.Service{{
		Address: "web", Port: 80, Protocol: model.HTTP, Routing: model.Multicast,
		Multicast: model.MulticastSpec{Mode: model.Events, Timeout: 2 * time.Second},
		VIPs:      []string{"10.96.0.20", "fd00::20"}, Gateway: "10.96.0.2:80", GatewayListen: ":8080", Network: "web.shop:80",
		Endpoints: []model.Endpoint{{IP: "10.244.1.3", Port: 8080, Ready: true, Name: "web-0"}},
		Remote:    []model.RemoteSite{{Site: "west", Cost: 1, Endpoints: 1}},
	}}}},
	{"no-gateway", model.Table{Site: "east", Services: []model.Service{{
		Address: "backend", Port: 8080, Protocol: model.TCP, Routing: model.Closest,
		Endpoints: []model.Endpoint{{IP: "10.244.0.7", Port: 8080, Ready: true}},
		// Without a gateway remote sites cannot be reached: left out.
		Remote: []model.RemoteSite{{Site: "west", Cost: 1, Endpoints: 2}},
	}}}},
}

func TestTranslateGolden(t *testing.T) {
	for _, tc := range tables {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := Translate(&tc.table)
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			got := snapshotJSON(t, snap)
			path := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(got), string(want)); diff != "" {
				t.Errorf("%s mismatch (-got +want; run with -update to accept):\n%s", path, diff)
			}
		})
	}
}

// snapshotJSON renders a snapshot as stable, indented JSON: the version and
// each type's resources sorted by name.
func snapshotJSON(t *testing.T, snap *cache.Snapshot) []byte {
	t.Helper()
	out := struct {
		Version   string            `json:"version"`
		Listeners []json.RawMessage `json:"listeners"`
		Routes    []json.RawMessage `json:"routes"`
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
	}{Version: snap.GetVersion(resource.ListenerType)}
	for _, typ := range []struct {
		url string
		dst *[]json.RawMessage
	}{
		{resource.ListenerType, &out.Listeners},
		{resource.RouteType, &out.Routes},
		{resource.ClusterType, &out.Clusters},
		{resource.EndpointType, &out.Endpoints},
	} {
		if v := snap.GetVersion(typ.url); v != out.Version {
			t.Errorf("version of %s = %q, want %q", typ.url, v, out.Version)
		}
		res := snap.GetResources(typ.url)
		*typ.dst = []json.RawMessage{}
		for _, name := range slices.Sorted(maps.Keys(res)) {
			b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(res[name])
			if err != nil {
				t.Fatalf("marshal %s: %v", name, err)
			}
			*typ.dst = append(*typ.dst, b)
		}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func TestTranslateDeterministic(t *testing.T) {
	for _, tc := range tables {
		a, err := Translate(&tc.table)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// The same table with its lists shuffled (reversed) must give the
		// same resources and version.
		rev := tc.table.Clone()
		slices.Reverse(rev.Services)
		for i := range rev.Services {
			slices.Reverse(rev.Services[i].Endpoints)
			slices.Reverse(rev.Services[i].Remote)
			slices.Reverse(rev.Services[i].VIPs)
		}
		b, err := Translate(rev)
		if err != nil {
			t.Fatalf("%s reversed: %v", tc.name, err)
		}
		if diff := cmp.Diff(string(snapshotJSON(t, a)), string(snapshotJSON(t, b))); diff != "" {
			t.Errorf("%s: translation depends on list order (-got +want):\n%s", tc.name, diff)
		}
		if a.GetVersion(resource.ClusterType) != b.GetVersion(resource.ClusterType) {
			t.Errorf("%s: versions differ: %s, %s", tc.name, a.GetVersion(resource.ClusterType), b.GetVersion(resource.ClusterType))
		}
	}
}

func TestVersionChangesWithTable(t *testing.T) {
	base := tables[1].table // one-local
	changes := map[string]func(*model.Table){
		"endpoint readiness": func(t *model.Table) { t.Services[0].Endpoints[1].Ready = true },
		"routing":            func(t *model.Table) { t.Services[0].Routing = model.Closest },
		"new service": func(t *model.Table) {
			t.Services = append(t.Services, model.Service{Address: "cache", Port: 6379, Protocol: model.TCP, Routing: model.Balanced})
		},
		"remote site": func(t *model.Table) {
			t.Services[0].Remote = []model.RemoteSite{{Site: "west", Cost: 1, Endpoints: 1}}
		},
		"vip": func(t *model.Table) { t.Services[0].VIPs = nil },
	}
	snap0, err := Translate(&base)
	if err != nil {
		t.Fatal(err)
	}
	v0 := snap0.GetVersion(resource.ListenerType)
	again, err := Translate(base.Clone())
	if err != nil {
		t.Fatal(err)
	}
	if v := again.GetVersion(resource.ListenerType); v != v0 {
		t.Errorf("same table: version %s, then %s", v0, v)
	}
	for name, change := range changes {
		c := base.Clone()
		change(c)
		snap, err := Translate(c)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v := snap.GetVersion(resource.ListenerType); v == v0 {
			t.Errorf("%s: version stayed %s", name, v)
		}
	}
	if v := snap0.GetVersion(resource.ListenerType); v != v0 {
		t.Errorf("Translate modified its input: version %s, want %s", v, v0)
	}
}

func TestTranslateInvalid(t *testing.T) {
	for name, tab := range map[string]model.Table{
		"no site":   {Services: []model.Service{{Address: "a", Port: 1, Protocol: model.TCP, Routing: model.Balanced}}},
		"bad port":  {Site: "east", Services: []model.Service{{Address: "a", Port: 0, Protocol: model.TCP, Routing: model.Balanced}}},
		"duplicate": {Site: "east", Services: []model.Service{{Address: "a", Port: 1, Protocol: model.TCP, Routing: model.Balanced}, {Address: "a", Port: 1, Protocol: model.TCP, Routing: model.Balanced}}},
		"bad gateway": {Site: "east", Services: []model.Service{{
			Address: "a", Port: 1, Protocol: model.TCP, Routing: model.Balanced, Gateway: "nohostport",
			Remote: []model.RemoteSite{{Site: "west", Cost: 1, Endpoints: 1}},
		}}},
	} {
		if snap, err := Translate(&tab); err == nil {
			t.Errorf("%s: Translate = %d listeners, want an error", name, len(snap.GetResources(resource.ListenerType)))
		}
	}
}

func TestWeight(t *testing.T) {
	for _, tc := range []struct {
		ready, cost int
		want        uint32
	}{
		{0, 0, 1}, {1, 0, 100}, {3, 0, 300}, {2, 1, 100}, {5, 2, 167}, {1, 2, 33}, {1, 1000, 1},
	} {
		if got := Weight(tc.ready, tc.cost); got != tc.want {
			t.Errorf("Weight(%d, %d) = %d, want %d", tc.ready, tc.cost, got, tc.want)
		}
	}
}

// go-control-plane's Snapshot.Consistent does not look into api_listeners
// (see Consistent). If this test starts failing, it has learnt to, and
// Consistent can call it directly.
func TestSnapshotConsistentMissesAPIListener(t *testing.T) {
	snap, err := Translate(&tables[1].table)
	if err != nil {
		t.Fatal(err)
	}
	err = snap.Consistent()
	if err == nil || !strings.Contains(err.Error(), resource.RouteType) {
		t.Errorf("Snapshot.Consistent() = %v, want a complaint about unreferenced routes", err)
	}
	if err := Consistent(snap); err != nil {
		t.Errorf("Consistent() = %v", err)
	}
	// A listener whose route is missing is caught.
	broken := cache.Snapshot{Resources: snap.Resources}
	broken.Resources[types.Route] = cache.NewResources("x", nil)
	if err := Consistent(&broken); err == nil {
		t.Error("Consistent() of a snapshot without routes = nil, want an error")
	}
}

// Translate's resources are valid by Envoy's own rules (protoc-gen-validate).
func TestResourcesValidate(t *testing.T) {
	for _, tc := range tables {
		snap, err := Translate(&tc.table)
		if err != nil {
			t.Fatal(err)
		}
		for _, typ := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType} {
			for name, r := range snap.GetResources(typ) {
				v, ok := r.(interface{ ValidateAll() error })
				if !ok {
					t.Fatalf("%T has no ValidateAll", r)
				}
				if err := v.ValidateAll(); err != nil {
					t.Errorf("%s: %s %s: %v", tc.name, typ, name, err)
				}
			}
		}
	}
}

// A Translator gives what Translate gives, and the same messages for
// services that did not change.
func TestTranslatorReuses(t *testing.T) {
	var tr Translator
	base := tables[4].table.Clone()                                    // balanced-weights
	base.Services = append(base.Services, tables[5].table.Services...) // http: web:80
	changed := base.Clone()
	changed.Services[0].Endpoints[0].Ready = false
	otherSite := changed.Clone()
	otherSite.Site = "west"
	for i := range otherSite.Services {
		otherSite.Services[i].Remote = nil
	}
	var prev *cache.Snapshot
	for i, tab := range []*model.Table{base, base.Clone(), changed, otherSite} {
		got, err := tr.Translate(tab)
		if err != nil {
			t.Fatalf("table %d: %v", i, err)
		}
		want, err := Translate(tab)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(snapshotJSON(t, got)), string(snapshotJSON(t, want))); diff != "" {
			t.Errorf("table %d: Translator differs from Translate (-got +want):\n%s", i, diff)
		}
		if prev != nil {
			same := 0
			for name, r := range got.GetResources(resource.ClusterType) {
				if prev.GetResources(resource.ClusterType)[name] == r {
					same++
				}
			}
			// base again: both reused; changed: the other service reused;
			// another site: nothing reused.
			if wantSame := []int{0, 2, 1, 0}[i]; same != wantSame {
				t.Errorf("table %d: %d clusters reused, want %d", i, same, wantSame)
			}
		}
		prev = got
	}
}
