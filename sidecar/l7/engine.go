// Package l7 routes HTTP requests: the router hands it the client
// connections of addresses whose protocol is http, http2 or grpc, and it
// serves HTTP/1.1 (its fast path, else net/http's server) and cleartext
// HTTP/2 with prior knowledge (its own server, h2conn.go) on them,
// picking an endpoint for every request rather than for the
// connection: a local endpoint, or another site, reached over
// connections carried in link streams (HTTP/1.1 kept alive for http
// addresses, one HTTP/2 connection for http2 and grpc ones). The far
// site's gateway hands each stream back to the engine (ServeSite), which
// delivers each request to one of its own endpoints.
//
// A request that reached no endpoint (its dial failed, or the far site
// answered that it had none to give it) is sent to the next candidate;
// its body is kept until then, up to MaxReplay bytes. The engine knows
// nothing of links and routes: Upstreams, the router, gives it the
// candidates in order and the connections.
package l7

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/rawio"
)

// Target is one place a request can go.
type Target struct {
	// Key names the target for the router's outstanding counts (Track):
	// a local endpoint's host:port, or "site:<name>".
	Key string
	// Site is the site to send the request to; "" for a local endpoint.
	Site string
	// Endpoint is a local endpoint's host:port.
	Endpoint string
	// Protocol is what a local endpoint speaks: HTTP/1.1 (model.HTTP),
	// or cleartext HTTP/2 (model.HTTP2, model.GRPC).
	Protocol model.Protocol
}

// Upstreams is what the router gives the engine.
type Upstreams interface {
	// Targets returns where a request for address may go, in the order
	// to try them (the address's pattern decides it), and the pattern.
	Targets(address string) ([]Target, model.Pattern, error)
	// LocalTargets returns this site's endpoints of address, in the
	// order to try them, for a request another site sent here.
	LocalTargets(address string) ([]Target, error)
	// Track counts a request outstanding at key until the returned
	// function is called.
	Track(key string) (done func())
	// DialEndpoint connects to a local endpoint.
	DialEndpoint(ctx context.Context, hostport string) (net.Conn, error)
	// DialSite opens a link stream to site that carries a connection of
	// address's requests, for ServeSite there: HTTP/2 (h2, many requests
	// at once) or HTTP/1.1 (one at a time, kept alive).
	DialSite(ctx context.Context, address, site string, h2 bool) (net.Conn, error)
	// Multicast returns how a multicast address answers.
	Multicast(address string) model.MulticastSpec
	// DialPinned opens a byte stream to the target, for a request that
	// upgrades its connection (WebSocket): it is pinned to one endpoint.
	DialPinned(ctx context.Context, address string, t Target) (net.Conn, error)
}

// Options configure an Engine.
type Options struct {
	// Upstreams is the router. Required.
	Upstreams Upstreams
	// Self is this site's name, for metrics and the answers it writes.
	Self string
	// Metrics, if nil, are created unregistered.
	Metrics *Metrics
	// Log gets one line per request that failed at every candidate
	// (rate-limited by the caller's logger, if at all).
	Log logr.Logger
	// MaxAttempts bounds the candidates a request is sent to; default 3.
	MaxAttempts int
	// MaxReplay bounds the body kept to send a request again; default
	// 64 KiB. A request whose body was sent further than that is not
	// sent again.
	MaxReplay int
	// MaxMulticastBody bounds the body of a multicast request, which is
	// read whole to be copied; more is answered 413. Default 1 MiB.
	MaxMulticastBody int
	// MaxMulticastAnswer bounds the body of an endpoint's answer that a
	// multicast request of aggregate mode lists; more is cut (Answer's
	// Truncated). Default 64 KiB.
	MaxMulticastAnswer int
	// MaxSiteMulticast bounds the multicast requests of other sites that
	// this site copies to its endpoints at once: each holds a connection
	// to every local endpoint until they answer or its deadline (up to
	// 5 minutes) passes, so a linked site could otherwise hold that many
	// times the streams it may open. More are answered 503 with
	// UndeliveredHeader multicast_busy, which the origin reports as
	// that site's failed copy. Default 256.
	MaxSiteMulticast int
	// MaxHeaderBytes bounds a request's header; more is answered 431.
	// Default 64 KiB.
	MaxHeaderBytes int
	// IdleTimeout closes a client's keep-alive connection idle that
	// long; default 5 minutes.
	IdleTimeout time.Duration
	// AccessLog, if not nil, gets a line (AccessLine, JSON) for every
	// request of the connections handed to ServeConn with accessLog
	// true, written once its answer ended; nil logs none. Lines are
	// written one at a time, one Write each; a failed Write is counted
	// (Metrics.AccessLogErrors) and fails no request.
	AccessLog io.Writer
	// Go runs f on a goroutine: an HTTP/2 stream's request, or a
	// connection's writer. The router's workers, whose stacks have grown
	// already (a new goroutine's stack is copied as it grows: 7 % of a
	// gateway's CPU under h2load). Default: a new goroutine.
	Go func(f func())
}

// Engine serves HTTP on the connections it is handed. Run serves; the
// connections handed to it before Run, or after it ended, are closed.
type Engine struct {
	o      Options
	up     Upstreams
	m      *Metrics
	log    logr.Logger
	srv    *http.Server
	ln     *connListener
	proxy  *httputil.ReverseProxy
	local1 *http.Transport // HTTP/1.1 to local endpoints
	local2 *http.Transport // cleartext HTTP/2 to local endpoints
	h1     *h1Pool         // HTTP/1.1 requests without a body to local endpoints
	alog   *accessLog      // nil: no access log
	fast   fastConns       // the connections the fast path serves (fast.go)
	// siteFanOuts holds a token per multicast request of another site
	// being copied here (Options.MaxSiteMulticast).
	siteFanOuts chan struct{}
	// fastStop ends the fast path's connections after their request
	// under way (StopKeepAlives, Shutdown).
	fastStop atomic.Bool
	// linkAnswers counts the answers the link's reader passed on without
	// a goroutine (h2async.go), for tests.
	linkAnswers atomic.Int64
	// heldRequests counts the requests the link's reader sent on an
	// endpoint connection a link stream held (hold.go), for tests.
	heldRequests atomic.Int64
	// idleGen counts CloseIdle's calls: a held endpoint connection taken
	// before the last is closed, not given back.
	idleGen atomic.Uint64

	mu      sync.Mutex
	sites   map[siteKey]*http.Transport // over link streams
	h1Sites map[siteKey]*h1Pool         // HTTP/1.1 requests without a body, over link streams
}

type siteKey struct {
	address, site string
	h2            bool
}

// readHeaderTimeout bounds the time from a request's first byte to its
// head's end.
const readHeaderTimeout = time.Minute

// New returns an engine; Run serves it.
func New(o Options) *Engine {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	if o.MaxReplay <= 0 {
		o.MaxReplay = 64 << 10
	}
	if o.MaxMulticastBody <= 0 {
		o.MaxMulticastBody = 1 << 20
	}
	if o.MaxMulticastAnswer <= 0 {
		o.MaxMulticastAnswer = 64 << 10
	}
	if o.MaxSiteMulticast <= 0 {
		o.MaxSiteMulticast = 256
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Go == nil {
		o.Go = func(f func()) { go f() }
	}
	e := &Engine{o: o, up: o.Upstreams, m: o.Metrics, log: o.Log, ln: newConnListener(), sites: map[siteKey]*http.Transport{}, h1Sites: map[siteKey]*h1Pool{},
		siteFanOuts: make(chan struct{}, o.MaxSiteMulticast)}
	if o.AccessLog != nil {
		e.alog = newAccessLog(o.AccessLog, o.Metrics.AccessLogErrors)
	}
	e.local1 = e.newTransport(false, e.dialEndpoint)
	e.local2 = e.newTransport(true, e.dialEndpoint)
	e.h1 = newH1Pool(undeliveredDial(e.dialEndpoint))
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	e.srv = &http.Server{
		Handler:           http.HandlerFunc(e.serveHTTP),
		ConnContext:       withConnInfo,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		Protocols:         &protocols,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: 1000},
		ErrorLog:          log.New(logWriter{o.Log}, "", 0),
	}
	e.proxy = &httputil.ReverseProxy{
		Rewrite:        func(*httputil.ProxyRequest) {}, // the transport picks the host
		Transport:      e,
		ModifyResponse: e.modifyResponse,
		ErrorHandler:   e.proxyError,
		ErrorLog:       log.New(logWriter{o.Log}, "", 0),
		BufferPool:     bufferPool{},
	}
	return e
}

// newTransport returns a transport that dials with dial; h2 makes it
// speak cleartext HTTP/2 (prior knowledge), else HTTP/1.1. A dial that
// fails is marked undelivered: the request may go elsewhere.
func (e *Engine) newTransport(h2 bool, dial func(ctx context.Context, addr string) (net.Conn, error)) *http.Transport {
	var p http.Protocols
	if h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	undelivered := undeliveredDial(dial)
	return &http.Transport{
		Proxy: nil, // never the environment's proxy
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return undelivered(ctx, addr)
		},
		Protocols:             &p,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // bodies pass as the endpoint sent them
		HTTP2:                 &http.HTTP2Config{MaxConcurrentStreams: 1000},
	}
}

// siteTransport returns the transport of address's requests to site: its
// connections are link streams (DialSite), each carrying HTTP/2 (h2) or
// HTTP/1.1. HTTP/1.1 costs less per request (net/http's HTTP/2 does more
// work per stream than the link's own multiplexer, which carries many
// HTTP/1.1 connections at once); HTTP/2 carries what HTTP/1.1 cannot,
// gRPC's bidirectional streams.
func (e *Engine) siteTransport(address, site string, h2 bool) *http.Transport {
	k := siteKey{address, site, h2}
	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.sites[k]
	if t == nil {
		t = e.newTransport(h2, func(ctx context.Context, _ string) (net.Conn, error) {
			return e.up.DialSite(ctx, address, site, h2)
		})
		e.sites[k] = t
	}
	return t
}

// siteH1 returns the pool of address's HTTP/1.1 requests without a body
// to site (siteTransport's, for those).
func (e *Engine) siteH1(address, site string) *h1Pool {
	k := siteKey{address, site, false}
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.h1Sites[k]
	if p == nil {
		p = newH1Pool(undeliveredDial(func(ctx context.Context, _ string) (net.Conn, error) {
			return e.up.DialSite(ctx, address, site, false)
		}))
		e.h1Sites[k] = p
	}
	return p
}

// undeliveredDial marks dial's failures undelivered: the request may go
// elsewhere.
func undeliveredDial(dial func(ctx context.Context, addr string) (net.Conn, error)) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := dial(ctx, addr)
		if err != nil {
			return nil, &undeliveredError{reason: "dial", err: err}
		}
		return c, nil
	}
}

// dialEndpoint connects to a local endpoint, its reads and writes made
// without the scheduler's system call bracket (package rawio).
func (e *Engine) dialEndpoint(ctx context.Context, addr string) (net.Conn, error) {
	c, err := e.up.DialEndpoint(ctx, addr)
	if err != nil {
		return nil, err
	}
	return rawio.Wrap(c), nil
}

// ServeConn serves HTTP on a client connection to address, until the
// connection closes or ctx ends. With accessLog, each of its requests
// gets a line in the access log (Options.AccessLog), if there is one.
func (e *Engine) ServeConn(ctx context.Context, c net.Conn, address string, accessLog bool) {
	e.serve(ctx, rawio.Wrap(c), connInfo{address: address, logged: accessLog && e.alog != nil})
}

// ServeSite serves the HTTP/2 connection another site opened in a link
// stream for address's requests (DialSite there), delivering each to a
// local endpoint, until the stream closes or ctx ends. origin is the site
// whose clients sent them (the stream's), for the metrics.
func (e *Engine) ServeSite(ctx context.Context, c net.Conn, address, origin string) {
	e.serve(ctx, c, connInfo{address: address, fromSite: true, origin: origin})
}

func (e *Engine) serve(ctx context.Context, c net.Conn, info connInfo) {
	c, handOff := e.serveFast(ctx, c, info)
	if !handOff {
		return
	}
	tc := &trackedConn{Conn: c, info: info, done: make(chan struct{})}
	if !e.ln.push(ctx, tc) {
		c.Close()
		return
	}
	select {
	case <-tc.done:
	case <-ctx.Done():
		tc.Close()
	}
}

// Run serves the connections handed to the engine until ctx ends, then
// closes them all.
func (e *Engine) Run(ctx context.Context) {
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = e.srv.Serve(e.ln)
	}()
	<-ctx.Done()
	e.ln.Close()
	e.srv.Close()
	<-served
	e.closeTransports()
}

// Shutdown stops taking requests gracefully: idle client connections
// close, HTTP/2 clients get GOAWAY, and requests under way finish, until
// ctx ends.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.fastStop.Store(true)
	slow := make(chan error, 1)
	go func() { slow <- e.srv.Shutdown(ctx) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	// A connection that has sent no request yet gets what net/http's
	// Shutdown gives one: 5 s, for the request on its way.
	newUntil := time.Now().Add(5 * time.Second)
	for e.closeIdleFast(time.Now().After(newUntil)) > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			<-slow
			return ctx.Err()
		}
	}
	return <-slow
}

// StopKeepAlives keeps serving but ends every connection after its
// request under way: idle keep-alive connections close now, and answers
// say Connection: close.
func (e *Engine) StopKeepAlives() {
	e.fastStop.Store(true)
	e.closeIdleFast(false)
	e.srv.SetKeepAlivesEnabled(false)
}

func (e *Engine) closeTransports() {
	e.local1.CloseIdleConnections()
	e.local2.CloseIdleConnections()
	e.h1.CloseIdleConnections()
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, t := range e.sites {
		t.CloseIdleConnections()
		delete(e.sites, k)
	}
	for k, p := range e.h1Sites {
		p.CloseIdleConnections()
		delete(e.h1Sites, k)
	}
}

// CloseIdle closes the idle connections to endpoints and sites, after a
// change of the service table or the routes.
func (e *Engine) CloseIdle() {
	e.idleGen.Add(1)
	e.pokeHolds()
	e.local1.CloseIdleConnections()
	e.local2.CloseIdleConnections()
	e.h1.CloseIdleConnections()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, t := range e.sites {
		t.CloseIdleConnections()
	}
	for _, p := range e.h1Sites {
		p.CloseIdleConnections()
	}
}

// undeliveredError is a request that reached no endpoint: it may be sent
// to another.
type undeliveredError struct {
	reason string
	err    error
}

func (e *undeliveredError) Error() string { return e.err.Error() }
func (e *undeliveredError) Unwrap() error { return e.err }

func isUndelivered(err error) bool {
	var u *undeliveredError
	return errors.As(err, &u)
}

// logWriter sends net/http's log lines (a malformed request, a panic)
// to the engine's logger.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.V(1).Info("http", "message", string(p))
	return len(p), nil
}

// bufferPool lends the proxy its copy buffers.
type bufferPool struct{}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBufs.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBufs.Put(&b) }
