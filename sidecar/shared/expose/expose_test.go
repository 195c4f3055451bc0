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
