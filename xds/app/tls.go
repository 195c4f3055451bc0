package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skiff-io/skiff/sidecar/shared/pki"
	"github.com/skiff-io/skiff/sidecar/shared/token"
	"github.com/skiff-io/skiff/sidecar/shared/xdsclient"
	"github.com/skiff-io/skiff/xds/source/kube"
)

// ControllerService is the controller's Service in charts/skiff; its DNS
// names are in the serving certificate on Kubernetes.
const ControllerService = "skiff-controller"

// ServingCertValidity is how long the controller's serving certificate is
// valid; a new one is issued for the first handshake after half of it.
const ServingCertValidity = 30 * 24 * time.Hour

// errNoCA refuses handshakes until the site CA is known (on Kubernetes,
// until the identity reconcile has made the Secret skiff-site-ca).
var errNoCA = errors.New("xds: the site CA is not known yet")

// serverTLS is the controller's TLS identity on its xDS port: a serving
// certificate for xdsclient.ServerName(site) and hosts, issued from the
// site CA, and client certificates of that CA required and verified.
type serverTLS struct {
	site  string
	hosts []string
	log   logr.Logger

	mu    sync.Mutex
	ca    *pki.CA
	cfg   *tls.Config // nil until the CA is known
	renew time.Time
}

func newServerTLS(site string, hosts []string, log logr.Logger) *serverTLS {
	return &serverTLS{site: site, hosts: hosts, log: log}
}

// setCA makes ca the site CA, issuing a serving certificate when it
// changed; it reports whether it did.
func (s *serverTLS) setCA(ca *pki.CA) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ca != nil && bytes.Equal(s.ca.BundlePEM(), ca.BundlePEM()) {
		return false, nil
	}
	cfg, err := s.issue(ca)
	if err != nil {
		return false, err
	}
	s.ca, s.cfg, s.renew = ca, cfg, time.Now().Add(ServingCertValidity/2)
	s.log.Info("xDS TLS ready: serving certificate issued from the site CA", "serverName", xdsclient.ServerName(s.site), "hosts", s.hosts)
	return true, nil
}

func (s *serverTLS) issue(ca *pki.CA) (*tls.Config, error) {
	// IssueServer names the certificate pki.ServerName("controller.<site>"),
	// which is xdsclient.ServerName(site).
	cert, err := ca.IssueServer("controller."+s.site, s.hosts, ServingCertValidity)
	if err != nil {
		return nil, fmt.Errorf("issue the controller's serving certificate: %w", err)
	}
	cfg := pki.StrictServerTLS(ca, cert)
	cfg.VerifyConnection = s.refuseOtherSites
	return cfg, nil
}

// refuseOtherSites refuses a link certificate of another site (this CA
// issues one to every site that redeemed one of its tokens, for the link,
// not for reading this site's table) and a link token's certificate (which
// this site hands to other sites). Sidecars and the node agent present
// member tokens, gateways a certificate they issue from the CA.
func (s *serverTLS) refuseOtherSites(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil // refused by the handshake: a client certificate is required
	}
	cert := cs.PeerCertificates[0]
	if id, err := pki.ParseLinkIdentity(cert); err == nil && id.Site != s.site {
		return fmt.Errorf("a link certificate of site %s: the xDS server serves clients of site %s only", id.Site, s.site)
	}
	if strings.HasPrefix(cert.Subject.CommonName, token.CommonName("")) {
		return fmt.Errorf("a link token's certificate (%s): this site gives those to other sites; its sidecars present member tokens", cert.Subject.CommonName)
	}
	return nil
}

// ready reports whether the site CA is known.
func (s *serverTLS) ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg != nil
}

// config is the TLS configuration of the xDS listener: each handshake
// takes the current certificate and CA.
func (s *serverTLS) config() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.current() },
	}
}

func (s *serverTLS) current() (*tls.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg == nil {
		return nil, errNoCA
	}
	if time.Now().After(s.renew) {
		cfg, err := s.issue(s.ca)
		if err != nil {
			s.log.Error(err, "renew the xDS serving certificate; keeping the current one")
			s.renew = time.Now().Add(time.Minute)
			return s.cfg, nil
		}
		s.cfg, s.renew = cfg, time.Now().Add(ServingCertValidity/2)
	}
	return s.cfg, nil
}

// certHosts are the names and addresses of the serving certificate besides
// xdsclient.ServerName(site): the host of the xDS bind address (unless
// unspecified), and the Service's DNS names on Kubernetes or loopback on
// a Linux site.
func certHosts(o Options) []string {
	var hosts []string
	if h, _, err := net.SplitHostPort(o.XDSBindAddress); err == nil && h != "" {
		if a, err := netip.ParseAddr(h); err != nil || !a.IsUnspecified() {
			hosts = append(hosts, h)
		}
	}
	if o.Kube {
		svc := ControllerService
		return append(hosts, svc, svc+"."+o.Namespace, svc+"."+o.Namespace+".svc", svc+"."+o.Namespace+".svc.cluster.local")
	}
	return append(hosts, "localhost", "127.0.0.1", "::1")
}

// checkLoopback refuses a plaintext bind address that is not a loopback
// IP: plaintext serves the site's table without authentication.
func checkLoopback(addr string) error {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(h)
	if err != nil || !a.IsLoopback() {
		return fmt.Errorf("host %q is not a loopback IP address (such as 127.0.0.1 or ::1): the plaintext listener serves the site's service table to anyone who reaches it", h)
	}
	return nil
}

// caPoll is how often the Kubernetes controller reads the CA Secret:
// often until it exists, then to notice a replaced CA.
const (
	caPollMissing = time.Second
	caPollKnown   = 30 * time.Second
)

// watchCA keeps s's CA equal to the one in the Secret skiff-site-ca of
// namespace (made by the identity reconcile), until ctx ends.
func watchCA(ctx context.Context, r client.Reader, namespace string, s *serverTLS, log logr.Logger) {
	var reported string
	for {
		ca, err := readCA(ctx, r, namespace)
		switch {
		case err == nil:
			reported = ""
			if _, err := s.setCA(ca); err != nil {
				log.Error(err, "xDS TLS")
			}
		case ctx.Err() != nil || err.Error() == reported:
		case s.ready():
			log.Info("site CA not readable; xDS keeps the CA it has", "secret", kube.CASecret, "error", err.Error())
			reported = err.Error()
		default:
			log.Info("site CA not usable yet; xDS clients are refused until it is", "secret", kube.CASecret, "error", err.Error())
			reported = err.Error()
		}
		wait := caPollKnown
		if !s.ready() {
			wait = caPollMissing
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// readCA reads the site CA from the Secret skiff-site-ca.
func readCA(ctx context.Context, r client.Reader, namespace string) (*pki.CA, error) {
	var sec corev1.Secret
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: kube.CASecret}, &sec); err != nil {
		return nil, fmt.Errorf("get secret %s: %w", kube.CASecret, err)
	}
	ca, err := pki.ParseCAWithPrevious(sec.Data[pki.CACertFile], sec.Data[pki.CAKeyFile], sec.Data[pki.CAPrevCertFile], sec.Data[pki.CAPrevKeyFile])
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", kube.CASecret, err)
	}
	return ca, nil
}
