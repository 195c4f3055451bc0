package app_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/xds/app"
)

func TestValidatePlaintextBindAddress(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want string // "" for valid
	}{
		{"", ""},
		{"127.0.0.1:15011", ""},
		{"127.0.0.2:15011", ""},
		{"[::1]:15011", ""},
		{":15011", `--xds-plaintext-bind-address ":15011": host "" is not a loopback IP address`},
		{"0.0.0.0:15011", `host "0.0.0.0" is not a loopback IP address`},
		{"10.0.0.1:15011", `host "10.0.0.1" is not a loopback IP address`},
		{"localhost:15011", `host "localhost" is not a loopback IP address`},
		{"127.0.0.1", "missing port"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			o := app.Options{SiteFile: "east.yaml", XDSBindAddress: ":15010", MetricsBindAddress: "0", HealthBindAddress: "0", XDSPlaintextBindAddress: tc.addr}
			err := o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// A Linux site's controller serves xDS over TLS with the CA of the site
// file's data dir: the gateway's certificate, issued from that CA, is
// served; a client without a certificate is refused; the plaintext
// listener on loopback serves a client without one. The serving
// certificate is for controller.east.skiff.local, loopback and the bind
// host.
func TestSiteFileControllerTLS(t *testing.T) {
	dir := t.TempDir()
	port := func() int { return testutil.FreePort(t, "127.0.0.1") }
	siteFile := filepath.Join(dir, "east.yaml")
	write(t, siteFile, fmt.Sprintf("name: east\ndataDir: %s/east-data\nlisteners:\n  - {address: echo, host: 127.0.0.1, port: %d}\n", dir, port()))
	xdsAddr, plainAddr := addr(port()), addr(port())
	runBG(t, "controller", func(ctx context.Context) error {
		return app.Run(ctx, app.Options{SiteFile: siteFile, GatewayAdmin: addr(port()), XDSBindAddress: xdsAddr, XDSPlaintextBindAddress: plainAddr,
			MetricsBindAddress: "0", HealthBindAddress: "0"}, testr.New(t).WithName("controller"))
	})

	// The gateway's credential: a certificate of the CA in east-data,
	// the CA the controller created or loaded there.
	var services atomic.Int64
	services.Store(-1)
	xc, err := xdsclient.New(xdsclient.Options{Addr: xdsAddr, Node: model.Node{Kind: model.KindGateway, Site: "east", Name: "gw"},
		Log: testr.New(t).WithName("gateway-xds"), TLS: xdsclient.CATLS(filepath.Join(dir, "east-data"), "east", "gateway~east~gw"),
		Apply: func(_ context.Context, s []model.Service) error {
			services.Store(int64(len(s)))
			return nil
		}})
	must(t, err)
	runBG(t, "gateway xds client", xc.Run)
	testutil.Eventually(t, 20*time.Second, "the gateway follows the controller over TLS", func() error {
		if n := services.Load(); n != 1 {
			return fmt.Errorf("%d services applied", n)
		}
		return nil
	})

	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "east-data"), "east")
	must(t, err)
	certPEM, keyPEM, _, err := ca.IssueClient("test", time.Hour)
	must(t, err)
	cfg, err := pki.ClientTLS(ca.CertPEM, certPEM, keyPEM, xdsclient.ServerName("east"))
	must(t, err)
	conn, err := tls.Dial("tcp", xdsAddr, cfg)
	must(t, err)
	st := conn.ConnectionState()
	conn.Close()
	leaf := st.PeerCertificates[0]
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if diff := cmp.Diff([]any{leaf.DNSNames, ips, st.Version}, []any{[]string{"controller.east.skiff.local", "localhost"}, []string{"127.0.0.1", "::1"}, uint16(tls.VersionTLS13)}); diff != "" {
		t.Errorf("serving certificate names, IPs, TLS version (-got +want):\n%s", diff)
	}

	// No certificate: refused on the TLS port, served on the plaintext
	// loopback listener.
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool(), ServerName: xdsclient.ServerName("east")}
	// The client sees "tls: certificate required", or a broken pipe when
	// the alert loses the race with its first write.
	if _, err := firstResponse(t, xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(noCert))); grpcstatus.Code(err) != codes.Unavailable {
		t.Errorf("a client without a certificate: %v, want it refused (Unavailable)", err)
	}
	if _, err := firstResponse(t, xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); grpcstatus.Code(err) != codes.Unavailable {
		t.Errorf("a plaintext client on the TLS port: %v, want it refused (Unavailable)", err)
	}
	n, err := firstResponse(t, plainAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil || n != 1 {
		t.Errorf("plaintext listener: %d listeners, %v; want 1", n, err)
	}
}

// firstResponse opens a delta ADS stream and returns the number of
// listeners in the first response.
func firstResponse(t *testing.T, target string, opts ...grpc.DialOption) (int, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return 0, err
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "grpc-app"}, TypeUrl: xdsclient.ListenerType}); err != nil {
		return 0, err
	}
	resp, err := st.Recv()
	if err != nil {
		return 0, err
	}
	return len(resp.GetResources()), nil
}
