package xdsclient_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/token"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
	"github.com/skiff-io/skiff/test/testutil"
	"github.com/skiff-io/skiff/xds/server"
)

// newCA makes a site CA in a new directory.
func newCA(t *testing.T, site string) (*pki.CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir, site)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

// serveTLS serves a one-service table of site east over TLS with a
// certificate that ca issues for name (and 127.0.0.1), requiring client
// certificates of ca, as skiff-controller does.
func serveTLS(t *testing.T, ca *pki.CA, name string) string {
	t.Helper()
	cert, err := ca.IssueServer(name, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Options{Log: testr.New(t).WithName("controller"), Debounce: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond})
	srv.Update(&model.Table{Site: "east", Services: []model.Service{{Address: "backend", Port: 8080, Protocol: model.TCP, Routing: model.Balanced,
		Endpoints: []model.Endpoint{{IP: "10.244.0.7", Port: 8080, Ready: true}}}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.ServeListeners(ctx, server.Listener{Listener: lis, TLS: pki.StrictServerTLS(ca, cert)})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// follow runs a client of site east with loader until the test ends; it
// returns how many services the client last applied.
func follow(t *testing.T, addr string, loader xdsclient.TLSLoader) *atomic.Int64 {
	t.Helper()
	var services atomic.Int64
	services.Store(-1)
	c, err := xdsclient.New(xdsclient.Options{Addr: addr, Node: model.Node{Kind: model.KindSidecar, Site: "east", Name: "shop/a"},
		Log: testr.New(t).WithName("client"), TLS: loader, MaxBackoff: 200 * time.Millisecond,
		Apply: func(_ context.Context, s []model.Service) error {
			services.Store(int64(len(s)))
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &services
}

// stays checks that the client applies nothing for a while.
func stays(t *testing.T, services *atomic.Int64, what string) {
	t.Helper()
	time.Sleep(time.Second)
	if n := services.Load(); n != -1 {
		t.Fatalf("%s: the client applied %d services", what, n)
	}
}

func writeToken(t *testing.T, path string, ca *pki.CA, site string) {
	t.Helper()
	tok, err := token.Issue(ca, site, "127.0.0.1:55671", time.Hour, 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := tok.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A sidecar's member token is its credential. The token file is read at
// each connection: a client that started with a token of another site is
// refused, and follows the controller once the right token replaces it,
// without a restart.
func TestTokenTLS(t *testing.T) {
	east, _ := newCA(t, "east")
	west, _ := newCA(t, "west")
	addr := serveTLS(t, east, "controller.east")
	path := filepath.Join(t.TempDir(), "token.yaml")

	writeToken(t, path, west, "east") // a token named east, from west's CA
	services := follow(t, addr, xdsclient.TokenTLS(path, "east"))
	stays(t, services, "a token of another CA")

	writeToken(t, path, east, "east")
	testutil.Eventually(t, 20*time.Second, "the client follows the controller with the new token", func() error {
		if n := services.Load(); n != 1 {
			return fmt.Errorf("%d services applied", n)
		}
		return nil
	})
}

// A token of another site is refused before dialing.
func TestTokenTLSWrongSite(t *testing.T) {
	west, _ := newCA(t, "west")
	path := filepath.Join(t.TempDir(), "token.yaml")
	writeToken(t, path, west, "west")
	if _, err := xdsclient.TokenTLS(path, "east")(); err == nil {
		t.Fatal("a token of west loaded as east's credential")
	}
	if _, err := xdsclient.TokenTLS(filepath.Join(t.TempDir(), "missing.yaml"), "east")(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing token file: %v", err)
	}
}

// A gateway issues itself a certificate from the CA in its caDir; a CA
// dir of another site is refused by the controller.
func TestCATLS(t *testing.T) {
	east, eastDir := newCA(t, "east")
	_, westDir := newCA(t, "west")
	addr := serveTLS(t, east, "controller.east")

	stays(t, follow(t, addr, xdsclient.CATLS(westDir, "east", "gateway~east~gw")), "a certificate of west's CA")
	services := follow(t, addr, xdsclient.CATLS(eastDir, "east", "gateway~east~gw"))
	testutil.Eventually(t, 20*time.Second, "the gateway follows the controller", func() error {
		if n := services.Load(); n != 1 {
			return fmt.Errorf("%d services applied", n)
		}
		return nil
	})
	cfg, err := xdsclient.CATLS(eastDir, "east", "gateway~east~gw")()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "controller.east.skiff.local" || xdsclient.ServerName("east") != cfg.ServerName {
		t.Errorf("server name %q, want controller.east.skiff.local", cfg.ServerName)
	}
}

// Clients verify the controller's name: a certificate of the right CA
// for another name (east's gateway's, east.skiff.local) is refused.
func TestServerNameVerified(t *testing.T) {
	east, eastDir := newCA(t, "east")
	addr := serveTLS(t, east, "east")
	stays(t, follow(t, addr, xdsclient.CATLS(eastDir, "east", "gateway~east~gw")), "the gateway's certificate")
}
