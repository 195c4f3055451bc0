package server

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// Listener is an address the server serves ADS on: over TLS when TLS is
// set (the controller's port, which requires client certificates), in
// plaintext otherwise (the opt-out for proxyless clients on loopback).
type Listener struct {
	net.Listener
	// TLS is the listener's TLS configuration, used as grpc-go's
	// credentials.NewTLS uses it (h2 is added to the ALPN protocols, also
	// of a config that GetConfigForClient returns); nil is plaintext.
	TLS *tls.Config
}

// HandshakeTimeout bounds a TLS listener's connection setup: a
// connection that has not completed its handshake by then is closed, so
// that idle unauthenticated connections cost little.
const HandshakeTimeout = 10 * time.Second

// refusedLogInterval spaces the log lines of refused connections; the
// count of those left out comes with the next line, and every refusal is
// counted in skiff_xds_refused_connections_total.
const refusedLogInterval = 10 * time.Second

// grpcOptions are the gRPC server options of one listener.
func (s *Server) grpcOptions(l Listener) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: MinClientPing, PermitWithoutStream: true}),
		grpc.MaxRecvMsgSize(MaxRequestSize),
	}
	if l.TLS != nil {
		opts = append(opts,
			grpc.Creds(&refusingCreds{TransportCredentials: credentials.NewTLS(l.TLS), refused: s.refused}),
			grpc.ConnectionTimeout(HandshakeTimeout))
	}
	return opts
}

// refusingCreds are TLS credentials that report failed handshakes: a
// client without a certificate, with one of another CA, or speaking
// plaintext to the TLS port.
type refusingCreds struct {
	credentials.TransportCredentials
	refused func(remote net.Addr, err error)
}

func (c *refusingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		c.refused(raw.RemoteAddr(), err)
	}
	return conn, info, err
}

func (c *refusingCreds) Clone() credentials.TransportCredentials {
	return &refusingCreds{TransportCredentials: c.TransportCredentials.Clone(), refused: c.refused}
}

// refusals spaces the log lines of refused connections.
type refusals struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

// refused counts a refused connection and logs it, at most once per
// refusedLogInterval.
func (s *Server) refused(remote net.Addr, err error) {
	s.metrics.refused.Inc()
	r := &s.refusals
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < refusedLogInterval {
		r.skipped++
		r.mu.Unlock()
		return
	}
	skipped := r.skipped
	r.last, r.skipped = now, 0
	r.mu.Unlock()
	s.log.Info("xDS connection refused: TLS handshake failed (clients need a certificate of the site CA)",
		"remote", remote.String(), "error", err.Error(), "refusedSinceLastLine", skipped)
}
