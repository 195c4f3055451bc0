package router

import (
	"context"
	"net"
)

// The sockets of proxied connections: the client side a gateway listener
// or the sidecar's outbound port accepts, and the server side a connector
// or a passthrough dials. They carry no TCP keepalive, as in Envoy and
// haproxy by default: Go's default (15 s probes) costs four setsockopt
// calls per connection on each side, a proxy cannot answer for the far
// end anyway, and the links between sites keep their own keepalive (mux
// PING). Go sets TCP_NODELAY on every TCP connection itself.

// proxyListenConfig is the ListenConfig of client-facing listeners.
var proxyListenConfig = net.ListenConfig{KeepAlive: -1}

// listenProxy binds a client-facing TCP listener.
func listenProxy(ctx context.Context, network, addr string) (net.Listener, error) {
	return proxyListenConfig.Listen(ctx, network, addr)
}

// dialEndpoint connects to a local endpoint (a connector, or a
// passthrough destination). The dial ends with ctx, which ends when the
// router stops.
func (r *Router) dialEndpoint(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: r.cfg.DialTimeout, KeepAlive: -1}
	return d.DialContext(ctx, "tcp", addr)
}
