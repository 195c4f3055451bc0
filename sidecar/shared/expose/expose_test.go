package expose

import (
	"errors"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		app     string // a port's appProtocol
		want    Exposure
		proto   model.Protocol
		wantErr string // the annotation named, "" for none
	}{
		{name: "nothing: balanced, the port's appProtocol", app: "kubernetes.io/h2c", want: Exposure{Routing: model.Balanced}, proto: model.HTTP2},
		{name: "all of it", ann: map[string]string{"skiff.io/address": "shop", "skiff.io/routing": "Multicast", "skiff.io/protocol": "HTTP", "skiff.io/multicast": "events", "skiff.io/multicast-timeout": "2s"},
			want: Exposure{Address: "shop", Routing: model.Multicast, Protocol: model.HTTP, Multicast: model.MulticastSpec{Mode: model.Events, Timeout: 2e9}}, proto: model.HTTP},
		{name: "multicast settings kept only for multicast", ann: map[string]string{"skiff.io/multicast": "events"}, want: Exposure{Routing: model.Balanced}, proto: model.TCP},
		{name: "bad address", ann: map[string]string{"skiff.io/address": "Shop_1"}, wantErr: "skiff.io/address"},
		{name: "bad routing", ann: map[string]string{"skiff.io/routing": "nearest"}, wantErr: "skiff.io/routing"},
		{name: "bad protocol", ann: map[string]string{"skiff.io/protocol": "quic"}, wantErr: "skiff.io/protocol"},
		{name: "bad mode, whatever the routing", ann: map[string]string{"skiff.io/multicast": "all"}, wantErr: "skiff.io/multicast:"},
		{name: "bad timeout", ann: map[string]string{"skiff.io/multicast-timeout": "10m"}, wantErr: "skiff.io/multicast-timeout"},
		{name: "multicast of a tcp port: refused for the port", ann: map[string]string{"skiff.io/routing": "multicast"}, want: Exposure{Routing: model.Multicast, Multicast: model.MulticastSpec{}}, wantErr: "skiff.io/routing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := Parse(tc.ann)
			var proto model.Protocol
			if err == nil {
				proto, err = x.PortProtocol(tc.app)
			}
			if tc.wantErr != "" {
				var ae *AnnotationError
				if !errors.As(err, &ae) || !strings.Contains(err.Error(), "annotation "+tc.wantErr) {
					t.Fatalf("error %v, want an *AnnotationError on %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			x.routing = ""
			if x != tc.want || proto != tc.proto {
				t.Errorf("got %+v, port %s; want %+v, port %s", x, proto, tc.want, tc.proto)
			}
		})
	}
}

// Ports: the TCP ports with their protocols, the others left out; the
// routing refused for the whole Service if one TCP port cannot carry it;
// a Service without a TCP port refused with why each port is left out.
func TestPorts(t *testing.T) {
	x, err := Parse(map[string]string{"skiff.io/routing": "multicast"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := x.Ports([]Port{{Number: 53, Transport: "UDP"}, {Number: 80, Transport: "TCP", AppProtocol: "http"}, {Number: 81, AppProtocol: "kubernetes.io/h2c"}})
	if err != nil || len(got) != 2 || got[0] != (ExposedPort{Index: 1, Protocol: model.HTTP}) || got[1] != (ExposedPort{Index: 2, Protocol: model.HTTP2}) {
		t.Errorf("got %+v, %v", got, err)
	}
	var ae *AnnotationError
	if _, err := x.Ports([]Port{{Number: 80, AppProtocol: "http"}, {Number: 5432}}); !errors.As(err, &ae) || ae.Annotation != "skiff.io/routing" {
		t.Errorf("multicast with a tcp port: %v", err)
	}
	_, err = x.Ports([]Port{{Number: 53, Transport: "UDP"}, {Number: 123, Transport: "SCTP"}})
	if err == nil || !strings.Contains(err.Error(), "port 53: protocol UDP: only TCP ports are exposed") || !strings.Contains(err.Error(), "port 123: protocol SCTP") ||
		!strings.Contains(err.Error(), "no TCP port to expose") {
		t.Errorf("no TCP port: %v", err)
	}
}
