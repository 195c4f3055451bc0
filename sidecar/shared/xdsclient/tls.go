package xdsclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/token"
)

// ServerName is the name a site's controller certificate is issued for
// and that its clients verify: "controller.<site>.skiff.local". Site
// names are DNS labels, so it is never a gateway's "<site>.skiff.local".
func ServerName(site string) string {
	return pki.ServerName("controller." + site)
}

// TLSLoader returns the TLS configuration of a new connection to the
// controller. It is called for every connection, so that renewed
// credentials are used from the next reconnect on.
type TLSLoader func() (*tls.Config, error)

// TokenTLS is the TLS loader of a client that holds a member token of
// site (a sidecar's token.yaml, mounted from the Secret skiff-sidecar, or a
// token its gateway issued): the token's CA is the root that the
// controller's certificate must chain to, and the token's certificate is
// the client's. The file is read at every connection.
func TokenTLS(path, site string) TLSLoader {
	return func() (*tls.Config, error) {
		tok, err := token.Load(path)
		if err != nil {
			return nil, fmt.Errorf("xds credentials: %w", err)
		}
		if err := tok.VerifyIntegrity(); err != nil {
			return nil, fmt.Errorf("xds credentials %s: %w", path, err)
		}
		if tok.Site != site {
			return nil, fmt.Errorf("xds credentials %s: a token of site %q, not of this site %q", path, tok.Site, site)
		}
		cfg, err := pki.ClientTLS([]byte(tok.CA), []byte(tok.Cert), []byte(tok.Key), ServerName(site))
		if err != nil {
			return nil, fmt.Errorf("xds credentials %s: %w", path, err)
		}
		return cfg, nil
	}
}

// CACertValidity is how long a certificate that CATLS issues is valid; a
// new one is issued for the first connection after half of it has passed.
const CACertValidity = 24 * time.Hour

// CATLS is the TLS loader of a client that holds the site CA itself (a
// gateway, whose site file names caDir): it issues itself a client
// certificate named commonName, valid for CACertValidity, from the CA in
// caDir (created there if missing, as the gateway and the controller of a
// Linux site do with pki.LoadOrCreateCA).
//
// A CA rotation (a changed ca.crt or ca-previous.crt) issues a new one at
// the next connection, trusting both CAs while the rotation is under way.
func CATLS(caDir, site, commonName string) TLSLoader {
	var mu sync.Mutex
	var cfg *tls.Config
	var renew time.Time
	var seen []byte // the CA certificates cfg was made from
	return func() (*tls.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		now := caCerts(caDir)
		if cfg != nil && time.Now().Before(renew) && bytes.Equal(now, seen) {
			return cfg, nil
		}
		ca, err := pki.LoadOrCreateCA(caDir, site)
		if err != nil {
			return nil, fmt.Errorf("xds credentials: %w", err)
		}
		certPEM, keyPEM, _, err := ca.IssueClient(commonName, CACertValidity)
		if err != nil {
			return nil, fmt.Errorf("xds credentials: %w", err)
		}
		c, err := pki.ClientTLS(ca.BundlePEM(), certPEM, keyPEM, ServerName(site))
		if err != nil {
			return nil, fmt.Errorf("xds credentials %s: %w", filepath.Join(caDir, pki.CACertFile), err)
		}
		cfg, renew, seen = c, time.Now().Add(CACertValidity/2), now
		return cfg, nil
	}
}

// caCerts returns the CA certificates in caDir, the current and the
// previous one (nil parts for missing files), to notice a rotation.
func caCerts(caDir string) []byte {
	var b []byte
	for _, f := range []string{pki.CACertFile, pki.CAPrevCertFile} {
		data, _ := os.ReadFile(filepath.Join(caDir, f))
		b = append(append(b, data...), 0)
	}
	return b
}

// loadingCreds are gRPC TLS credentials whose configuration is loaded for
// every connection.
type loadingCreds struct {
	load TLSLoader
}

// ClientHandshake verifies the controller under the loaded ServerName,
// not the dialed host: grpc-go's TLS credentials take the server name from
// the authority they are given.
func (c *loadingCreds) ClientHandshake(ctx context.Context, _ string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg, err := c.load()
	if err != nil {
		return nil, nil, err
	}
	if cfg.ServerName == "" {
		return nil, nil, errors.New("xds client credentials: no server name")
	}
	return credentials.NewTLS(cfg).ClientHandshake(ctx, cfg.ServerName, raw)
}

func (c *loadingCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("xds client credentials: no server handshake")
}

func (c *loadingCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c *loadingCreds) Clone() credentials.TransportCredentials { return &loadingCreds{load: c.load} }

func (c *loadingCreds) OverrideServerName(string) error {
	return errors.New("xds client credentials: the server name comes from the site")
}
