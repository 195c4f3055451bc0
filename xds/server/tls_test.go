package server

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/test/testutil"
)

// sitePKI is a site's CA, a serving certificate for 127.0.0.1 and a
// client certificate, the latter also as files (ca.crt, client.crt,
// client.key in dir) for grpc-go's xDS bootstrap.
type sitePKI struct {
	ca                  *pki.CA
	server              *tls.Config
	certPEM, keyPEM     []byte
	dir                 string
	caFile, certFile    string
	keyFile, serverName string
}

func newSitePKI(t *testing.T, site string) *sitePKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir, site)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServer("controller."+site, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _, err := ca.IssueClient("test-client", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &sitePKI{ca: ca, server: pki.StrictServerTLS(ca, cert), certPEM: certPEM, keyPEM: keyPEM, dir: dir,
		caFile: filepath.Join(dir, pki.CACertFile), certFile: filepath.Join(dir, "client.crt"), keyFile: filepath.Join(dir, "client.key"),
		serverName: "controller." + site + ".skiff.local"}
	for path, data := range map[string][]byte{p.certFile: certPEM, p.keyFile: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// clientTLS trusts the site's CA and presents cert (nil: no certificate).
func (p *sitePKI) clientTLS(t *testing.T, certPEM, keyPEM []byte) *tls.Config {
	t.Helper()
	if certPEM == nil {
		return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: p.ca.Pool(), ServerName: p.serverName}
	}
	cfg, err := pki.ClientTLS(p.ca.CertPEM, certPEM, keyPEM, p.serverName)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// fetchListeners opens a delta ADS stream to addr as node and returns the
// number of listeners of the first response.
func fetchListeners(ctx context.Context, addr, node string, creds credentials.TransportCredentials) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return 0, err
	}
	if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: resource.ListenerType}); err != nil {
		return 0, err
	}
	resp, err := st.Recv()
	if err != nil {
		return 0, err
	}
	return len(resp.GetResources()), nil
}

// The TLS listener serves clients that present a certificate of the site
// CA and refuses, at the handshake, a client without a certificate, one
// with a certificate of another site's CA, and plaintext; the plaintext
// listener serves anyone. Refused clients never become nodes.
func TestTLSListener(t *testing.T) {
	east, west := newSitePKI(t, "east"), newSitePKI(t, "west")
	tlsLis, plainLis := listen(t), listen(t)
	ts := serveListeners(t, Options{}, Listener{Listener: tlsLis, TLS: east.server}, Listener{Listener: plainLis})
	tab := &model.Table{Site: "east", Services: []model.Service{svc("backend", 8080, model.Balanced, "10.244.0.7")}}
	ts.Update(tab)
	ts.waitVersion(t, tab.Hash())
	tlsAddr, plainAddr := tlsLis.Addr().String(), plainLis.Addr().String()

	for _, tc := range []struct {
		name, addr, node string
		creds            credentials.TransportCredentials
		refused          bool
	}{
		{"site certificate", tlsAddr, "sidecar~east~shop/a", credentials.NewTLS(east.clientTLS(t, east.certPEM, east.keyPEM)), false},
		{"no client certificate", tlsAddr, "sidecar~east~shop/b", credentials.NewTLS(east.clientTLS(t, nil, nil)), true},
		{"certificate of another site's CA", tlsAddr, "sidecar~east~shop/c", credentials.NewTLS(east.clientTLS(t, west.certPEM, west.keyPEM)), true},
		{"plaintext to the TLS listener", tlsAddr, "sidecar~east~shop/d", insecure.NewCredentials(), true},
		{"plaintext listener", plainAddr, "grpc-app", insecure.NewCredentials(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := fetchListeners(t.Context(), tc.addr, tc.node, tc.creds)
			if tc.refused {
				if err == nil || status.Code(err) != codes.Unavailable {
					t.Fatalf("got %d listeners, error %v; want the connection refused (Unavailable)", n, err)
				}
				t.Logf("the client sees: %v", err)
				return
			}
			if err != nil || n != 1 {
				t.Fatalf("got %d listeners, error %v; want 1", n, err)
			}
		})
	}
	// The server counts a refusal once its side of the handshake has
	// failed, which may come after the client saw the failure.
	testutil.Until(t, 5*time.Second, "skiff_xds_refused_connections_total >= 3", func() bool { return value(ts.metrics.refused) >= 3 })
	testutil.Until(t, 5*time.Second, "a log line of refused connections", func() bool { return ts.logs.count("xDS connection refused") >= 1 })
	// Nodes are known from their first request: the refused ones never
	// sent one.
	for _, st := range ts.Status() {
		if strings.HasPrefix(st.Name, "shop/") && st.Name != "shop/a" {
			t.Errorf("refused client %s became a node", st.ID)
		}
	}
}

// A client must verify the controller too: a client of west does not
// accept east's controller.
func TestTLSClientVerifiesServer(t *testing.T) {
	east, west := newSitePKI(t, "east"), newSitePKI(t, "west")
	tlsLis := listen(t)
	ts := serveListeners(t, Options{}, Listener{Listener: tlsLis, TLS: east.server})
	ts.Update(&model.Table{Site: "east"})
	cfg := west.clientTLS(t, west.certPEM, west.keyPEM)
	cfg.ServerName = east.serverName
	_, err := fetchListeners(t.Context(), tlsLis.Addr().String(), "sidecar~west~x", credentials.NewTLS(cfg))
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("error %v, want the client to refuse east's certificate", err)
	}
}

// Refused connections are logged at most once per refusedLogInterval;
// the next line says how many were left out.
func TestRefusedLogSpacing(t *testing.T) {
	east := newSitePKI(t, "east")
	tlsLis := listen(t)
	ts := serveListeners(t, Options{}, Listener{Listener: tlsLis, TLS: east.server})
	for range 5 {
		c, err := net.Dial("tcp", tlsLis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		c.Read(make([]byte, 64)) // the server closes after its alert
		c.Close()
	}
	for deadline := time.Now().Add(waitLimit); value(ts.metrics.refused) != 5; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v refusals counted after %v, want 5", value(ts.metrics.refused), waitLimit)
		}
	}
	if n := ts.logs.count("xDS connection refused"); n != 1 {
		t.Errorf("%d log lines for 5 refusals within %v, want 1", n, refusedLogInterval)
	}
	ts.refusals.mu.Lock()
	ts.refusals.last = ts.refusals.last.Add(-refusedLogInterval)
	ts.refusals.mu.Unlock()
	ts.refused(tlsLis.Addr(), context.DeadlineExceeded)
	if n := ts.logs.count(`"refusedSinceLastLine"=4`); n != 1 {
		t.Errorf("the next line does not count the 4 left out:\n%s", strings.Join(ts.logs.lines, "\n"))
	}
}
