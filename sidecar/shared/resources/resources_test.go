package resources

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

func listenerWith(name string, fields map[string]any) *listenerv3.Listener {
	md, err := structpb.NewStruct(fields)
	if err != nil {
		panic(err)
	}
	return &listenerv3.Listener{Name: name, Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{MetadataKey: md}}}
}

func TestServicesFromResourcesErrors(t *testing.T) {
	good := map[string]any{"address": "a", "port": 80, "protocol": "tcp", "routing": "balanced"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"no port", with("port", nil), `"port" is missing`},
		{"port as string", with("port", "80"), `"port": want an integer`},
		{"fractional port", with("port", 80.5), `"port": want an integer`},
		{"bad routing", with("routing", "random"), `routing "random"`},
		{"bad multicast mode", with("multicastMode", "broadcast"), `bad multicast mode "broadcast"`},
		{"bad multicast timeout", with("multicastTimeout", "1h"), `bad multicast timeout "1h"`},
		{"multicast timeout as number", with("multicastTimeout", 5), `"multicastTimeout": want a string`},
		{"vips not strings", with("vips", []any{1.0}), `"vips": want a list of strings`},
		{"other name", with("address", "b"), "metadata names service b:80"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := map[string]*listenerv3.Listener{"a:80": listenerWith("a:80", tc.fields)}
			got, err := ServicesFromResources(ls, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "listener a:80") {
				t.Errorf("error %v, want one naming listener a:80 and containing %q", err, tc.want)
			}
			if len(got) != 0 {
				t.Errorf("services %v, want none", got)
			}
		})
	}
}

func TestServicesFromResourcesEndpoints(t *testing.T) {
	ls := map[string]*listenerv3.Listener{"a:80": listenerWith("a:80", map[string]any{
		"address": "a", "port": 80, "protocol": "http", "routing": "closest", "gateway": "10.0.0.2:80", "network": "a.ns:80",
	})}
	lbe := func(ip string, h corev3.HealthStatus, md map[string]any) *endpointv3.LbEndpoint {
		s, _ := structpb.NewStruct(md)
		return &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}},
			HealthStatus: h,
			Metadata:     &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{MetadataKey: s}},
		}
	}
	clas := map[string]*endpointv3.ClusterLoadAssignment{"a:80": {ClusterName: "a:80", Endpoints: []*endpointv3.LocalityLbEndpoints{
		{Locality: &corev3.Locality{Zone: "west"}, LbEndpoints: []*endpointv3.LbEndpoint{lbe("10.0.0.2", corev3.HealthStatus_HEALTHY, map[string]any{"gateway": true, "cost": 2, "endpoints": 3})}},
		{Locality: &corev3.Locality{Zone: "east"}, LbEndpoints: []*endpointv3.LbEndpoint{
			lbe("10.1.0.2", corev3.HealthStatus_UNHEALTHY, map[string]any{"site": "east"}),
			lbe("10.1.0.1", corev3.HealthStatus_UNKNOWN, map[string]any{"site": "east", "name": "a-0"}),
		}},
	}}}
	got, err := ServicesFromResources(ls, nil, clas)
	if err != nil {
		t.Fatal(err)
	}
	want := model.Service{
		Address: "a", Port: 80, Protocol: model.HTTP, Routing: model.Closest, Gateway: "10.0.0.2:80", Network: "a.ns:80",
		Endpoints: []model.Endpoint{{IP: "10.1.0.1", Port: 8080, Ready: true, Name: "a-0"}, {IP: "10.1.0.2", Port: 8080}},
		Remote:    []model.RemoteSite{{Site: "west", Cost: 2, Endpoints: 3}},
	}
	if diff := cmp.Diff(got, []model.Service{want}, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("services (-got +want):\n%s", diff)
	}
}

// TestServiceMetadataMulticast checks the multicast fields: written for
// the routing multicast only, with the defaults filled in, and read back
// by model.ParseMulticast.
func TestServiceMetadataMulticast(t *testing.T) {
	for _, tc := range []struct {
		name               string
		in                 model.Service
		wantMode, wantTime string // "" absent
		want               model.MulticastSpec
	}{
		{"balanced", model.Service{Address: "a", Port: 80, Protocol: model.HTTP, Routing: model.Balanced,
			Multicast: model.MulticastSpec{Mode: model.Events}}, "", "", model.MulticastSpec{}},
		{"multicast, the defaults", model.Service{Address: "a", Port: 80, Protocol: model.HTTP, Routing: model.Multicast},
			"aggregate", "5s", model.MulticastSpec{Mode: model.Aggregate, Timeout: 5 * time.Second}},
		{"multicast, events in 1.5s", model.Service{Address: "a", Port: 80, Protocol: model.HTTP2, Routing: model.Multicast,
			Multicast: model.MulticastSpec{Mode: model.Events, Timeout: 1500 * time.Millisecond}},
			"events", "1.5s", model.MulticastSpec{Mode: model.Events, Timeout: 1500 * time.Millisecond}},
		{"multicast, 2m", model.Service{Address: "a", Port: 80, Protocol: model.HTTP, Routing: model.Multicast,
			Multicast: model.MulticastSpec{Timeout: 2 * time.Minute}},
			"aggregate", "2m0s", model.MulticastSpec{Mode: model.Aggregate, Timeout: 2 * time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			md := ServiceMetadata(&tc.in)
			for field, want := range map[string]string{FieldMulticastMode: tc.wantMode, FieldMulticastTimeout: tc.wantTime} {
				v, ok := md.GetFields()[field]
				switch {
				case want == "" && ok:
					t.Errorf("field %s = %v, want none", field, v)
				case want != "" && v.GetStringValue() != want:
					t.Errorf("field %s = %v, want %q", field, v, want)
				}
			}
			l := &listenerv3.Listener{Name: "a:80", Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{MetadataKey: md}}}
			got, err := ServicesFromResources(map[string]*listenerv3.Listener{"a:80": l}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Multicast != tc.want || got[0].Routing != tc.in.Routing {
				t.Errorf("read back %+v, want multicast %+v", got, tc.want)
			}
		})
	}
}

// TestMulticastFieldsAbsent checks a multicast service from a controller
// that writes no multicast fields: the defaults.
func TestMulticastFieldsAbsent(t *testing.T) {
	ls := map[string]*listenerv3.Listener{"a:80": listenerWith("a:80", map[string]any{"address": "a", "port": 80, "protocol": "http", "routing": "multicast"})}
	got, err := ServicesFromResources(ls, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (model.MulticastSpec{Mode: model.Aggregate, Timeout: model.DefaultMulticastTimeout}); len(got) != 1 || got[0].Multicast != want {
		t.Errorf("services %+v, want one with multicast %+v", got, want)
	}
}
