// Package server is skiff's xDS control server: it serves the service
// table, translated by package translate, over gRPC ADS to every sidecar,
// gateway and proxyless gRPC client of a site, both state-of-the-world
// (StreamAggregatedResources) and incremental
// (DeltaAggregatedResources).
//
// Update records the latest table; after a quiet period (Options.Debounce,
// at most Options.MaxDelay after the first of a burst of updates) the
// table is translated once and, when its content hash changed, the one
// snapshot is served to every node. A node is known from its first
// request on, and gets the current snapshot at once.
//
// Node IDs have the form <kind>~<site>~<name> (see model.ParseNodeID);
// other IDs are proxyless clients. Status reports every connected node
// with the versions it acknowledged and the redirect state a sidecar
// reports in its node metadata (resources.NodeRedirect; the newest
// stream's). A rejected response (NACK) is logged
// once, counted in skiff_xds_nacks_total, and not sent again: the node
// keeps the last version it accepted until the next table.
//
// ServeListeners serves the same ADS on several listeners, each over TLS
// or in plaintext (Listener): the controller serves TLS with client
// certificates required on its port, and plaintext only on loopback, for
// proxyless clients that have no certificate. A connection whose TLS
// handshake fails is logged (at most one line per 10 s) and counted in
// skiff_xds_refused_connections_total.
//
// go-control-plane's logger is bridged to logr here, once: its debug and
// info messages are V(1), its warnings V(0), its errors errors.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/xds/translate"
)

// Defaults of Options.
const (
	DefaultDebounce        = 100 * time.Millisecond
	DefaultMaxDelay        = time.Second
	DefaultShutdownTimeout = 5 * time.Second
)

// Keepalive: the server pings a client after KeepaliveTime without
// activity and drops it when no answer comes within KeepaliveTimeout, so
// a dead client is found within about 30 s; clients may ping every
// MinClientPing.
const (
	KeepaliveTime    = 20 * time.Second
	KeepaliveTimeout = 10 * time.Second
	MinClientPing    = 10 * time.Second
)

// MaxRequestSize is the largest request the server accepts: a delta
// client's first request lists the versions it holds
// (initial_resource_versions), about 100 bytes per resource.
const MaxRequestSize = 64 << 20

// Options configure a Server.
type Options struct {
	// Log receives the server's logs; the zero Logger discards them.
	Log logr.Logger
	// Registry registers the server's metrics; nil registers none.
	Registry prometheus.Registerer
	// Debounce is the quiet period after an Update before the table is
	// translated and pushed (default DefaultDebounce).
	Debounce time.Duration
	// MaxDelay bounds how long a burst of updates can defer a push: the
	// push happens at the latest MaxDelay after the burst's first Update
	// (default DefaultMaxDelay).
	MaxDelay time.Duration
	// ShutdownTimeout bounds the graceful stop when Serve's context ends
	// (default DefaultShutdownTimeout).
	ShutdownTimeout time.Duration

	// engineName picks the cache: engineFleet (the default) or
	// engineSnapshot, go-control-plane's SnapshotCache, which the scale
	// benchmark measures as a baseline.
	engineName string
}

// Engines.
const (
	engineFleet    = "fleet"
	engineSnapshot = "snapshot"
)

func (o *Options) setDefaults() {
	if o.Log.GetSink() == nil {
		o.Log = logr.Discard()
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
}

// Server is the ADS server. Its methods may be called concurrently;
// Serve may be called once.
type Server struct {
	opts    Options
	log     logr.Logger
	metrics *metrics
	engine  engine
	streams *registry

	serving  atomic.Bool
	refusals refusals

	// translator is used by the push loop only.
	translator translate.Translator

	// updated holds a token when an Update has not been pushed yet.
	updated chan struct{}

	mu     sync.Mutex
	latest *model.Table // the last table given to Update
	pushed string       // the content hash of the table served now
	site   string       // the site of the table served now
}

// New returns a server; it serves nothing until Update has been called
// and serves no one until Serve.
func New(opts Options) *Server {
	opts.setDefaults()
	log := opts.Log.WithName("xds")
	s := &Server{
		opts:    opts,
		log:     log,
		metrics: newMetrics(opts.Registry),
		updated: make(chan struct{}, 1),
	}
	switch opts.engineName {
	case engineSnapshot:
		s.engine = newSnapshotEngine(gcpLogger{log: log.WithName("gcp")})
	default:
		s.engine = newFleetEngine(log.WithName("cache"))
	}
	s.streams = newRegistry(s)
	return s
}

// Update records t as the latest table; it is pushed after the debounce.
// Update keeps a copy: the caller may change t afterwards.
func (s *Server) Update(t *model.Table) {
	c := t.Clone()
	s.mu.Lock()
	s.latest = c
	s.mu.Unlock()
	select {
	case s.updated <- struct{}{}:
	default:
	}
}

// Serve serves ADS in plaintext on lis until ctx ends; see
// ServeListeners.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	return s.ServeListeners(ctx, Listener{Listener: lis})
}

// ServeListeners serves the same ADS on every listener until ctx ends,
// then stops gracefully (open streams are ended; after
// Options.ShutdownTimeout the server stops hard) and returns nil. It
// returns an error when a listener fails, having stopped the others.
func (s *Server) ServeListeners(ctx context.Context, listeners ...Listener) error {
	if len(listeners) == 0 {
		return errors.New("serve xds: no listener")
	}
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("serve xds: already serving")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	logOpt := sotw.WithLogger(gcpLogger{log: s.log.WithName("gcp")})
	xs := &adsServer{
		sotw:  sotw.NewServer(ctx, s.engine, s.streams, logOpt),
		delta: delta.NewServer(ctx, s.engine, s.streams, logOpt),
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.run(ctx)
	}()
	defer wg.Wait()

	type served struct {
		addr net.Addr
		err  error
	}
	servers := make([]*grpc.Server, len(listeners))
	errc := make(chan served, len(listeners))
	for i, l := range listeners {
		gs := grpc.NewServer(s.grpcOptions(l)...)
		discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, xs)
		servers[i] = gs
		go func() { errc <- served{l.Addr(), gs.Serve(l.Listener)} }()
		s.log.Info("serving xDS", "address", l.Addr().String(), "tls", l.TLS != nil)
	}
	stopAll := func(stop func(*grpc.Server)) {
		var sw sync.WaitGroup
		for _, gs := range servers {
			sw.Go(func() { stop(gs) })
		}
		sw.Wait()
	}
	select {
	case e := <-errc:
		cancel()
		stopAll((*grpc.Server).Stop)
		for range len(listeners) - 1 {
			<-errc
		}
		return fmt.Errorf("serve xds on %s: %w", e.addr, e.err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		stopAll((*grpc.Server).GracefulStop)
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(s.opts.ShutdownTimeout):
		s.log.Info("graceful stop timed out, stopping", "timeout", s.opts.ShutdownTimeout)
		stopAll((*grpc.Server).Stop)
		<-stopped
	}
	for range listeners {
		<-errc
	}
	s.log.Info("stopped serving xDS")
	return nil
}

// Nodes returns the number of connected nodes.
func (s *Server) Nodes() int { return s.streams.nodes() }

// Status returns every connected node, by ID.
func (s *Server) Status() []NodeStatus { return s.streams.status() }

// Version returns the content hash of the table served now ("" before
// the first push).
func (s *Server) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pushed
}

// localSite is the site of the table served now: the site of node IDs
// that do not follow skiff's format.
func (s *Server) localSite() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.site
}
