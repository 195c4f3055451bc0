package translate

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/resources"
)

// typed returns the snapshot's resources of one type, as a client holds
// them after unmarshalling each from its Any.
func typed[T any, PT interface {
	*T
	proto.Message
}](t *testing.T, snap *cache.Snapshot, typeURL string) map[string]PT {
	t.Helper()
	out := map[string]PT{}
	for name, r := range snap.GetResources(typeURL) {
		a, err := anypb.New(r)
		if err != nil {
			t.Fatal(err)
		}
		m := PT(new(T))
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		out[name] = m
	}
	return out
}

func TestServicesFromResourcesRoundTrip(t *testing.T) {
	for _, tc := range tables {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := Translate(&tc.table)
			if err != nil {
				t.Fatal(err)
			}
			got, err := resources.ServicesFromResources(
				typed[listenerv3.Listener](t, snap, resource.ListenerType),
				typed[clusterv3.Cluster](t, snap, resource.ClusterType),
				typed[endpointv3.ClusterLoadAssignment](t, snap, resource.EndpointType),
			)
			if err != nil {
				t.Fatalf("ServicesFromResources: %v", err)
			}
			// What the resources carry: remote sites only through a
			// gateway and only with ready endpoints, and a multicast
			// service's mode and deadline with the defaults filled in.
			want := tc.table.Clone()
			want.Normalize()
			for i := range want.Services {
				s := &want.Services[i]
				if s.Routing == model.Multicast {
					s.Multicast = model.MulticastSpec{Mode: s.Multicast.ModeOrDefault(), Timeout: s.Multicast.Deadline()}
				}
				var remote []model.RemoteSite
				for _, r := range s.Remote {
					if s.Gateway != "" && r.Endpoints > 0 {
						remote = append(remote, r)
					}
				}
				s.Remote = remote
			}
			if diff := cmp.Diff(got, want.Services, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("services (-got +want):\n%s", diff)
			}
		})
	}
}

func TestServicesFromResourcesPartial(t *testing.T) {
	snap, err := Translate(&tables[1].table) // one-local
	if err != nil {
		t.Fatal(err)
	}
	listeners := typed[listenerv3.Listener](t, snap, resource.ListenerType)
	clusters := typed[clusterv3.Cluster](t, snap, resource.ClusterType)

	// No assignment yet: the service without endpoints.
	got, err := resources.ServicesFromResources(nil, clusters, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := tables[1].table.Clone().Services
	want[0].Endpoints = nil
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("services from clusters only (-got +want):\n%s", diff)
	}

	// A listener without skiff metadata is reported, the rest is read.
	listeners["stranger:1"] = &listenerv3.Listener{Name: "stranger:1"}
	got, err = resources.ServicesFromResources(listeners, nil, nil)
	if err == nil {
		t.Error("a listener without metadata: no error")
	}
	if len(got) != 1 || got[0].Key() != "backend:8080" {
		t.Errorf("services = %v, want backend:8080 alone", got)
	}
}
