package kube

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
)

func svc(ann map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	a := map[string]string{"skiff.io/expose": "true"}
	for k, v := range ann {
		a[k] = v
	}
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "backend", Namespace: "west", Annotations: a},
		Spec: corev1.ServiceSpec{ClusterIPs: []string{"10.0.0.5"}, Ports: ports}}
}

func slice(ports map[string]int32, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	es := discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps}
	for n, p := range ports {
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: ptr.To(n), Port: ptr.To(p)})
	}
	return es
}

func ep(ip string, ready bool, pod string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: pod}}
}

func TestExposedServices(t *testing.T) {
	httpPort := corev1.ServicePort{Name: "http", Port: 8080, AppProtocol: ptr.To("http")}
	tcpPort := corev1.ServicePort{Name: "http", Port: 8080}
	grpcPort := corev1.ServicePort{Name: "grpc", Port: 9090, AppProtocol: ptr.To("grpc")}
	slices := []discoveryv1.EndpointSlice{
		slice(map[string]int32{"http": 80, "grpc": 90}, ep("10.1.0.2", true, "b-1"), ep("10.1.0.1", false, "b-2")),
		slice(map[string]int32{"http": 80, "grpc": 90}, ep("10.1.0.3", true, "b-3")),
	}
	for _, tc := range []struct {
		name    string
		svc     *corev1.Service
		want    []model.Service
		wantErr string
	}{
		{
			name: "two ports, appProtocol, readiness",
			svc:  svc(nil, httpPort, grpcPort),
			want: []model.Service{
				{Address: "backend", Port: 8080, Protocol: model.HTTP, Routing: model.Balanced, VIPs: []string{"10.0.0.5"}, Network: "backend:8080",
					Endpoints: []model.Endpoint{{IP: "10.1.0.1", Port: 80, Name: "b-2"}, {IP: "10.1.0.2", Port: 80, Ready: true, Name: "b-1"}, {IP: "10.1.0.3", Port: 80, Ready: true, Name: "b-3"}}},
				{Address: "backend", Port: 9090, Protocol: model.GRPC, Routing: model.Balanced, VIPs: []string{"10.0.0.5"}, Network: "backend:9090",
					Endpoints: []model.Endpoint{{IP: "10.1.0.1", Port: 90, Name: "b-2"}, {IP: "10.1.0.2", Port: 90, Ready: true, Name: "b-1"}, {IP: "10.1.0.3", Port: 90, Ready: true, Name: "b-3"}}},
			},
		},
		{
			name: "address, routing and protocol annotations",
			svc:  svc(map[string]string{"skiff.io/address": "api", "skiff.io/routing": "closest", "skiff.io/protocol": "tcp"}, httpPort),
			want: []model.Service{{Address: "api", Port: 8080, Protocol: model.TCP, Routing: model.Closest, VIPs: []string{"10.0.0.5"}, Network: "api:8080",
				Endpoints: []model.Endpoint{{IP: "10.1.0.1", Port: 80, Name: "b-2"}, {IP: "10.1.0.2", Port: 80, Ready: true, Name: "b-1"}, {IP: "10.1.0.3", Port: 80, Ready: true, Name: "b-3"}}}},
		},
		{name: "bad routing", svc: svc(map[string]string{"skiff.io/routing": "fastest"}, httpPort), wantErr: `annotation skiff.io/routing: "fastest": unknown routing "fastest"; use balanced, closest or multicast`},
		{name: "bad protocol", svc: svc(map[string]string{"skiff.io/protocol": "udp"}, httpPort), wantErr: `annotation skiff.io/protocol: "udp": unknown protocol "udp"; use tcp, http, http2 or grpc`},
		{name: "appProtocol names are not protocol names", svc: svc(map[string]string{"skiff.io/protocol": "h2c"}, httpPort), wantErr: `annotation skiff.io/protocol: "h2c": unknown protocol`},
		{name: "bad address", svc: svc(map[string]string{"skiff.io/address": "Api_1"}, httpPort), wantErr: `annotation skiff.io/address: "Api_1"`},
		{
			name: "empty annotations are absent",
			svc:  svc(map[string]string{"skiff.io/routing": "", "skiff.io/protocol": ""}, httpPort),
			want: []model.Service{{Address: "backend", Port: 8080, Protocol: model.HTTP, Routing: model.Balanced, VIPs: []string{"10.0.0.5"}, Network: "backend:8080",
				Endpoints: []model.Endpoint{{IP: "10.1.0.1", Port: 80, Name: "b-2"}, {IP: "10.1.0.2", Port: 80, Ready: true, Name: "b-1"}, {IP: "10.1.0.3", Port: 80, Ready: true, Name: "b-3"}}}},
		},
		{
			name: "multicast, appProtocol http: the defaults",
			svc:  svc(map[string]string{"skiff.io/routing": "multicast"}, httpPort),
			want: []model.Service{{Address: "backend", Port: 8080, Protocol: model.HTTP, Routing: model.Multicast,
				Multicast: model.MulticastSpec{Mode: model.Aggregate, Timeout: 5 * time.Second}, VIPs: []string{"10.0.0.5"}, Network: "backend:8080",
				Endpoints: []model.Endpoint{{IP: "10.1.0.1", Port: 80, Name: "b-2"}, {IP: "10.1.0.2", Port: 80, Ready: true, Name: "b-1"}, {IP: "10.1.0.3", Port: 80, Ready: true, Name: "b-3"}}}},
		},
		{
			name: "multicast, protocol http, events, timeout 2s",
			svc: svc(map[string]string{"skiff.io/routing": "multicast", "skiff.io/protocol": "http",
				"skiff.io/multicast": "Events", "skiff.io/multicast-timeout": "2s"}, tcpPort),
			want: []model.Service{{Address: "backend", Port: 8080, Protocol: model.HTTP, Routing: model.Multicast,
				Multicast: model.MulticastSpec{Mode: model.Events, Timeout: 2 * time.Second}, VIPs: []string{"10.0.0.5"}, Network: "backend:8080",
				Endpoints: []model.Endpoint{{IP: "10.1.0.1", Port: 80, Name: "b-2"}, {IP: "10.1.0.2", Port: 80, Ready: true, Name: "b-1"}, {IP: "10.1.0.3", Port: 80, Ready: true, Name: "b-3"}}}},
		},
		{
			name: "multicast annotations of another pattern are checked, not carried",
			svc:  svc(map[string]string{"skiff.io/routing": "closest", "skiff.io/multicast": "events", "skiff.io/multicast-timeout": "2s"}, httpPort),
			want: []model.Service{{Address: "backend", Port: 8080, Protocol: model.HTTP, Routing: model.Closest, VIPs: []string{"10.0.0.5"}, Network: "backend:8080",
				Endpoints: []model.Endpoint{{IP: "10.1.0.1", Port: 80, Name: "b-2"}, {IP: "10.1.0.2", Port: 80, Ready: true, Name: "b-1"}, {IP: "10.1.0.3", Port: 80, Ready: true, Name: "b-3"}}}},
		},
		{name: "multicast, tcp port", svc: svc(map[string]string{"skiff.io/routing": "multicast"}, tcpPort),
			wantErr: `annotation skiff.io/routing: "multicast": multicast copies HTTP requests, not tcp connections; set the protocol to http or http2, or use balanced or closest`},
		{name: "multicast, protocol tcp over appProtocol http", svc: svc(map[string]string{"skiff.io/routing": "multicast", "skiff.io/protocol": "tcp"}, httpPort),
			wantErr: `annotation skiff.io/routing: "multicast": multicast copies HTTP requests, not tcp connections`},
		{name: "multicast, one port grpc", svc: svc(map[string]string{"skiff.io/routing": "Multicast"}, httpPort, grpcPort),
			wantErr: `annotation skiff.io/routing: "Multicast": ` + model.CheckRouting(model.GRPC, model.Multicast).Error()},
		{name: "bad multicast mode", svc: svc(map[string]string{"skiff.io/routing": "multicast", "skiff.io/multicast": "broadcast"}, httpPort),
			wantErr: `annotation skiff.io/multicast: "broadcast": bad multicast mode "broadcast"; use aggregate or events`},
		{name: "bad multicast timeout", svc: svc(map[string]string{"skiff.io/routing": "multicast", "skiff.io/multicast-timeout": "10m"}, httpPort),
			wantErr: `annotation skiff.io/multicast-timeout: "10m": bad multicast timeout "10m"; use a duration from 1ms to 5m, like 5s`},
		{name: "multicast timeout without a unit", svc: svc(map[string]string{"skiff.io/routing": "multicast", "skiff.io/multicast-timeout": "5"}, httpPort),
			wantErr: `annotation skiff.io/multicast-timeout: "5": bad multicast timeout`},
		{name: "bad multicast mode of another pattern", svc: svc(map[string]string{"skiff.io/multicast": "all"}, httpPort),
			wantErr: `annotation skiff.io/multicast: "all": bad multicast mode`},
		{name: "udp only", svc: svc(nil, corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}), wantErr: "only TCP ports"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExposedServices(tc.svc, slices)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				var ae *AnnotationError
				if strings.HasPrefix(tc.wantErr, "annotation") && !errors.As(err, &ae) {
					t.Errorf("error %v is not an *AnnotationError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// TestRefusedLikeTheSiteFile checks that the Kubernetes source refuses a
// routing pattern the data plane cannot serve, and a bad multicast mode or
// deadline, with the words the site file uses for it: model.CheckRouting's
// and model.ParseMulticast's.
func TestRefusedLikeTheSiteFile(t *testing.T) {
	tcpPort := corev1.ServicePort{Name: "tcp", Port: 8080}
	httpPort := corev1.ServicePort{Name: "http", Port: 8080, AppProtocol: ptr.To("http")}
	grpcPort := corev1.ServicePort{Name: "grpc", Port: 8080, AppProtocol: ptr.To("grpc")}
	for _, tc := range []struct {
		name       string
		svc        *corev1.Service
		annotation string
		site       string // the site file's entries for the same address
		is         error
	}{
		{"multicast", svc(map[string]string{"skiff.io/routing": "multicast"}, tcpPort), "skiff.io/routing",
			"routing:\n  backend: multicast\n", model.ErrMulticast},
		{"multicast, protocol tcp", svc(map[string]string{"skiff.io/routing": "multicast", "skiff.io/protocol": "tcp"}, httpPort), "skiff.io/routing",
			"connectors:\n  - {address: backend, host: 10.0.0.1, port: 80, protocol: tcp}\nrouting:\n  backend: multicast\n", model.ErrMulticast},
		{"multicast, appProtocol grpc", svc(map[string]string{"skiff.io/routing": "multicast"}, grpcPort), "skiff.io/routing",
			"connectors:\n  - {address: backend, host: 10.0.0.1, port: 80, protocol: grpc}\nrouting:\n  backend: multicast\n", model.ErrMulticast},
		{"unknown pattern", svc(map[string]string{"skiff.io/routing": "fastest"}, tcpPort), "skiff.io/routing",
			"routing:\n  backend: fastest\n", model.ErrUnknownPattern},
		{"bad multicast mode", svc(map[string]string{"skiff.io/routing": "multicast", "skiff.io/multicast": "all"}, httpPort), "skiff.io/multicast",
			"connectors:\n  - {address: backend, host: 10.0.0.1, port: 80, protocol: http, multicast: all}\nrouting:\n  backend: multicast\n", model.ErrMulticastMode},
		{"bad multicast timeout", svc(map[string]string{"skiff.io/routing": "multicast", "skiff.io/multicast-timeout": "0s"}, httpPort), "skiff.io/multicast-timeout",
			"connectors:\n  - {address: backend, host: 10.0.0.1, port: 80, protocol: http, multicastTimeout: 0s}\nrouting:\n  backend: multicast\n", model.ErrMulticastMode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ExposedServices(tc.svc, nil)
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Annotation != tc.annotation {
				t.Fatalf("ExposedServices error = %v, want an *AnnotationError on %s", err, tc.annotation)
			}
			_, err = sitefile.Parse("east.yaml", []byte("name: east\n"+tc.site))
			var se *sitefile.Error
			if !errors.As(err, &se) {
				t.Fatalf("sitefile.Parse error = %v, want a *sitefile.Error", err)
			}
			if ae.Err.Error() != se.Msg {
				t.Errorf("Kubernetes source: %q\nsite file:         %q", ae.Err, se.Msg)
			}
			if !errors.Is(ae, tc.is) {
				t.Errorf("error %v does not wrap %v", ae, tc.is)
			}
		})
	}
}

// TestReconcileRefusesUnservable checks what a Service the data plane
// cannot serve gets: a Warning Event (once per distinct problem) and no
// place in the site's services, also when it was exposed before (the
// source keeps no last good state per Service).
func TestReconcileRefusesUnservable(t *testing.T) {
	backend := svc(map[string]string{"skiff.io/routing": "closest", "skiff.io/protocol": "http"}, corev1.ServicePort{Name: "http", Port: 8080})
	cl := fake.NewClientBuilder().WithObjects(backend).Build()
	var got events
	var local []model.Service
	s := &Source{Client: cl, Namespace: "west", GatewayService: "skiff-gateway", Recorder: &got, Log: testr.New(t),
		OnLocal: func(l []model.Service) { local = l }}
	reconcile := func() {
		t.Helper()
		if _, err := s.Reconcile(t.Context(), siteRequest); err != nil {
			t.Fatal(err)
		}
	}
	reconcile()
	if len(local) != 1 || local[0].Routing != model.Closest || len(got) != 0 {
		t.Fatalf("good Service: local %+v, events %q", local, got)
	}

	backend.Annotations["skiff.io/routing"] = "multicast"
	backend.Annotations["skiff.io/protocol"] = "tcp"
	if err := cl.Update(t.Context(), backend); err != nil {
		t.Fatal(err)
	}
	reconcile()
	reconcile()
	if len(local) != 0 {
		t.Errorf("refused Service still exposed: %+v", local)
	}
	want := `backend Warning InvalidExposure Expose: annotation skiff.io/routing: "multicast": ` + model.CheckRouting(model.TCP, model.Multicast).Error()
	if diff := cmp.Diff([]string(got), []string{want}); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}

func TestAllocatePorts(t *testing.T) {
	keys := []string{"a:80", "b:80", "c:443"}
	first, err := AllocatePorts(keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	for _, k := range keys {
		p := first[k]
		if p < MinGatewayPort || p > MaxGatewayPort || used[p] {
			t.Fatalf("port %d for %s: out of range or taken", p, k)
		}
		used[p] = true
	}
	// Existing allocations are kept when keys come and go.
	second, err := AllocatePorts([]string{"c:443", "d:80", "a:80"}, first)
	if err != nil {
		t.Fatal(err)
	}
	if second["a:80"] != first["a:80"] || second["c:443"] != first["c:443"] {
		t.Errorf("allocations moved: %v then %v", first, second)
	}
	// A clash in the existing map is resolved.
	clash, err := AllocatePorts([]string{"x:1", "y:1"}, map[string]int{"x:1": 20000, "y:1": 20000})
	if err != nil {
		t.Fatal(err)
	}
	if clash["x:1"] == clash["y:1"] {
		t.Errorf("two keys share port %d", clash["x:1"])
	}
	if _, err := AllocatePorts(make([]string, MaxGatewayPort-MinGatewayPort+2), nil); err == nil {
		t.Error("no error when the range is exhausted")
	}
}

func TestProxyService(t *testing.T) {
	got := ProxyService("east", "backend", []ProxyPort{{9090, 20002}, {8080, 20001}}, map[string]string{"app.kubernetes.io/component": "gateway"})
	if !Owned(got) || got.Name != "backend" || got.Namespace != "east" {
		t.Fatalf("proxy service meta %+v", got.ObjectMeta)
	}
	if len(got.Spec.Ports) != 2 || got.Spec.Ports[0].Port != 8080 || got.Spec.Ports[0].TargetPort.IntValue() != 20001 || got.Spec.Ports[1].Name != "tcp-9090" {
		t.Errorf("ports %+v", got.Spec.Ports)
	}
	if Owned(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{ManagedByLabel: "helm"}}}) {
		t.Error("a helm-managed Service counts as skiff's")
	}
}
