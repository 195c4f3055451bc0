// Package xdsclient is the router's xDS client: it follows the controller's
// ADS stream (incremental, "delta" xDS) for Listeners and
// ClusterLoadAssignments, turns them into services, and hands every
// accepted table to the router. The first table is handed over only once
// the first response of both types has been accepted, so that it is the
// controller's whole table (an empty one included), never the listeners
// without their assignments; from then on every accepted response is
// handed over, across reconnects too. An update the router cannot use is
// NACKed with the reason and the last good table stays in force; while the
// controller is away the router keeps serving its last table, and on
// reconnect the client presents the versions it holds so that only what
// changed is sent again.
//
// A sidecar reports its redirect self-check (SetRedirect) in the node
// metadata of each stream's first request (resources.NodeMetadata), the
// only request that carries the node. So a new state is reported with a
// new stream, which costs little: the client presents the versions it
// holds and the controller sends only what differs. A change is
// reported at once, but a new stream for a report starts no sooner than
// ReportInterval after the last one: the changes meanwhile are coalesced,
// and none is reported if the state is back to the one the current
// stream reported.
//
// The client proves that it belongs to the controller's site with a
// certificate of the site CA, over TLS 1.3, and accepts only a controller
// certificate of that CA for ServerName(site): TokenTLS for a sidecar or
// node agent holding a member token, CATLS for a gateway holding the CA.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skiff-io/skiff/sidecar/shared/backoff"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/resources"
)

// Type URLs of the resources the client follows.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// types are the types the client subscribes to, in the order it does.
var types = []string{ListenerType, EndpointType}

// MaxResponseBytes bounds one xDS response the client accepts.
const MaxResponseBytes = 256 << 20

// Options configure a Client.
type Options struct {
	// Addr is the controller's xDS address (host:port).
	Addr string
	// Node identifies this router; its site selects the local locality.
	Node model.Node
	// Apply receives every accepted set of services, the first time once
	// a response of every type has been accepted (the whole table, which
	// may have no services), then at every response. An error NACKs the
	// update that produced it; the previous set stays in force.
	Apply func(ctx context.Context, services []model.Service) error
	Log   logr.Logger
	// MinBackoff and MaxBackoff bound the jittered exponential wait
	// between connection attempts; defaults 200ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// TLS loads the TLS configuration of each connection (TokenTLS,
	// CATLS): the controller's TLS port requires a client certificate of
	// the site CA. Nil dials in plaintext, which only a controller's
	// plaintext loopback listener (--xds-plaintext-bind-address) accepts.
	TLS TLSLoader
	// DialOptions are added to the gRPC dial (tests).
	DialOptions []grpc.DialOption
	// ReportInterval is the least time between two new streams started
	// to report a changed redirect state (SetRedirect); the changes
	// within it are coalesced. Default DefaultReportInterval.
	ReportInterval time.Duration
}

// DefaultReportInterval is Options.ReportInterval's default: a
// redirect state that flaps costs at most one new stream every 5 s.
const DefaultReportInterval = 5 * time.Second

// errReport ends a stream to report a new redirect state on the next.
var errReport = errors.New("a new stream reports the changed redirect state")

// Client follows a controller. Create it with New and run it with Run.
type Client struct {
	o Options

	mu        sync.Mutex
	listeners map[string]*listenerv3.Listener
	clas      map[string]*endpointv3.ClusterLoadAssignment
	versions  map[string]map[string]string // type -> name -> version
	// held says of which types a response was accepted; until every
	// type is held, accepted responses are kept but Apply is not called.
	// It is never cleared: a reconnect keeps what the client holds, as
	// gRPC's xDS client keeps the resources it received.
	held map[string]bool

	// redirect is the state SetRedirect set; redirectSet gets a token
	// when it changes.
	redirectMu  sync.Mutex
	redirect    model.Redirect
	redirectSet chan struct{}
	// lastReport is when a stream was last ended to report a new state.
	// Only the stream's awaitRedirect uses it, and streams run one at a
	// time.
	lastReport time.Time

	connected atomic.Bool
	applied   atomic.Int64 // accepted updates
	nacked    atomic.Int64
	streams   atomic.Int64 // streams opened, the first included
}

// New returns a client that is not yet running.
func New(o Options) (*Client, error) {
	if o.Addr == "" || o.Apply == nil || o.Node.Site == "" {
		return nil, errors.New("xds client: controller address, node site and Apply are required")
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(10*time.Second, o.MinBackoff)
	}
	if o.ReportInterval <= 0 {
		o.ReportInterval = DefaultReportInterval
	}
	return &Client{
		o:           o,
		redirectSet: make(chan struct{}, 1),
		listeners:   map[string]*listenerv3.Listener{},
		clas:        map[string]*endpointv3.ClusterLoadAssignment{},
		versions:    map[string]map[string]string{ListenerType: {}, EndpointType: {}},
		held:        map[string]bool{},
	}, nil
}

// Stats says how the client is doing.
type Stats struct {
	Connected bool
	Applied   int64 // updates accepted (ACKed), those kept before the first table included
	Nacked    int64 // updates refused
	Streams   int64 // ADS streams opened, reconnects and reports of a new redirect state included
	Resources int   // listeners held
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	n := len(c.listeners)
	c.mu.Unlock()
	return Stats{Connected: c.connected.Load(), Applied: c.applied.Load(), Nacked: c.nacked.Load(), Streams: c.streams.Load(), Resources: n}
}

// Run follows the controller until ctx ends, reconnecting with jittered
// exponential backoff. It returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	creds := insecure.NewCredentials()
	if c.o.TLS != nil {
		creds = &loadingCreds{load: c.o.TLS}
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		// A full response for 10,000 services is about 4 MB of listeners,
		// gRPC's default limit (docs/xds.md).
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxResponseBytes)),
	}, c.o.DialOptions...)
	conn, err := grpc.NewClient(c.o.Addr, opts...)
	if err != nil {
		return fmt.Errorf("xds client for %s: %w", c.o.Addr, err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	log := c.o.Log.WithValues("controller", c.o.Addr)
	b := backoff.New(c.o.MinBackoff, c.o.MaxBackoff)
	for ctx.Err() == nil {
		start := time.Now()
		err := c.stream(ctx, ads, log)
		c.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errReport) {
			log.V(1).Info("reporting the redirect state on a new stream", "redirect", string(c.Redirect()))
			continue
		}
		if time.Since(start) > 30*time.Second {
			b.Reset() // the stream was healthy for a while
		}
		wait := b.Next()
		log.Info("controller stream ended; serving the last table", "error", err.Error(), "retryIn", wait.String())
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
	return nil
}

// SetRedirect sets the redirect state the client reports (model.Redirect;
// "" reports none). A change is reported on a new stream, at once or, if
// the last report was less than ReportInterval ago, when it is that old.
// It may be called before Run and from any goroutine; it does not block.
func (c *Client) SetRedirect(r model.Redirect) {
	c.redirectMu.Lock()
	changed := c.redirect != r
	c.redirect = r
	c.redirectMu.Unlock()
	if changed {
		select {
		case c.redirectSet <- struct{}{}:
		default:
		}
	}
}

// Redirect returns the redirect state the client reports.
func (c *Client) Redirect() model.Redirect {
	c.redirectMu.Lock()
	defer c.redirectMu.Unlock()
	return c.redirect
}

// stream runs one ADS stream until it fails, or until a changed redirect
// state ends it (errReport). A response being applied when it ends is
// applied all the same (on ctx, not the stream's context): the versions
// the next stream presents are those of what was applied, so that the
// controller neither sends it again nor leaves it out.
func (c *Client) stream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient, log logr.Logger) error {
	sctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	st, err := ads.DeltaAggregatedResources(sctx)
	if err != nil {
		return fmt.Errorf("open delta ADS stream: %w", err)
	}
	c.streams.Add(1)
	redirect := c.Redirect()
	wg.Go(func() { c.awaitRedirect(sctx, cancel, redirect) })
	node := &corev3.Node{Id: c.o.Node.ID(), Cluster: c.o.Node.Site, UserAgentName: "skiff-router", Metadata: resources.NodeMetadata(redirect)}
	err = c.follow(ctx, st, node, log)
	if errors.Is(context.Cause(sctx), errReport) {
		return errReport
	}
	return err
}

// awaitRedirect ends the stream (cancel with errReport) once the redirect
// state differs from reported, the one it reported, but not before
// ReportInterval after the last report; it returns when ctx, the
// stream's, ends.
func (c *Client) awaitRedirect(ctx context.Context, cancel context.CancelCauseFunc, reported model.Redirect) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.redirectSet:
		}
		if c.Redirect() == reported {
			continue
		}
		if !backoff.Sleep(ctx, time.Until(c.lastReport.Add(c.o.ReportInterval))) {
			return
		}
		if c.Redirect() != reported { // else it changed back meanwhile
			c.lastReport = time.Now()
			cancel(errReport)
			return
		}
	}
}

// follow subscribes on st as node, presenting the versions held, and
// answers every response until the stream fails. Responses are applied
// on ctx.
func (c *Client) follow(ctx context.Context, st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, node *corev3.Node, log logr.Logger) error {
	c.mu.Lock()
	initial := map[string]map[string]string{ListenerType: maps.Clone(c.versions[ListenerType]), EndpointType: maps.Clone(c.versions[EndpointType])}
	c.mu.Unlock()
	for _, typ := range types {
		req := &discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: typ, InitialResourceVersions: initial[typ]}
		if err := st.Send(req); err != nil {
			return fmt.Errorf("subscribe %s: %w", typ, err)
		}
	}
	first := true
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("controller closed the stream")
			}
			return fmt.Errorf("receive: %w", err)
		}
		if first {
			c.connected.Store(true)
			log.Info("following controller", "node", c.o.Node.ID(), "redirect", string(resources.NodeRedirect(node)))
			first = false
		}
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if err := c.handle(ctx, log, resp); err != nil {
			c.nacked.Add(1)
			log.Error(err, "update refused; keeping the last good table", "type", resp.GetTypeUrl(), "nonce", resp.GetNonce())
			ack.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		} else {
			c.applied.Add(1)
		}
		if err := st.Send(ack); err != nil {
			return fmt.Errorf("acknowledge: %w", err)
		}
	}
}

// handle applies one response to a copy of the held resources and, if the
// result converts and the router accepts it, commits it. Until a response
// of every type is held, the router is not asked: the result is committed
// if it converts.
func (c *Client) handle(ctx context.Context, log logr.Logger, resp *discoveryv3.DeltaDiscoveryResponse) error {
	typ := resp.GetTypeUrl()
	c.mu.Lock()
	defer c.mu.Unlock()
	listeners, clas := c.listeners, c.clas
	versions := maps.Clone(c.versions[typ])
	switch typ {
	case ListenerType:
		listeners = maps.Clone(listeners)
		for _, r := range resp.GetResources() {
			l := &listenerv3.Listener{}
			if err := unpack(r.GetResource(), l); err != nil {
				return fmt.Errorf("listener %s: %w", r.GetName(), err)
			}
			listeners[r.GetName()] = l
			versions[r.GetName()] = r.GetVersion()
		}
		for _, n := range resp.GetRemovedResources() {
			delete(listeners, n)
			delete(versions, n)
		}
	case EndpointType:
		clas = maps.Clone(clas)
		for _, r := range resp.GetResources() {
			a := &endpointv3.ClusterLoadAssignment{}
			if err := unpack(r.GetResource(), a); err != nil {
				return fmt.Errorf("cluster load assignment %s: %w", r.GetName(), err)
			}
			clas[r.GetName()] = a
			versions[r.GetName()] = r.GetVersion()
		}
		for _, n := range resp.GetRemovedResources() {
			delete(clas, n)
			delete(versions, n)
		}
	default:
		return fmt.Errorf("unexpected resource type %s", typ)
	}
	// A listener is served once its assignment has arrived (they come as
	// two types, the listener first), so that a new service never starts
	// without its endpoints.
	ready := make(map[string]*listenerv3.Listener, len(listeners))
	for n, l := range listeners {
		if _, ok := clas[n]; ok {
			ready[n] = l
		}
	}
	services, err := resources.ServicesFromResources(ready, nil, clas)
	if err != nil {
		return err
	}
	first := false
	if !c.holdsAll() {
		if !c.holdsAllWith(typ) {
			log.V(1).Info("waiting for every type before the first table", "type", typ, "resources", len(resp.GetResources()))
			c.commit(typ, listeners, clas, versions)
			return nil
		}
		first = true
	}
	if err := c.o.Apply(ctx, services); err != nil {
		return fmt.Errorf("apply %d services: %w", len(services), err)
	}
	if first {
		log.Info("first table applied: every type received", "services", len(services))
	}
	c.commit(typ, listeners, clas, versions)
	return nil
}

// holdsAll says whether a response of every type is held.
func (c *Client) holdsAll() bool { return c.holdsAllWith("") }

// holdsAllWith says whether a response of every type would be held with
// one of typ.
func (c *Client) holdsAllWith(typ string) bool {
	for _, t := range types {
		if t != typ && !c.held[t] {
			return false
		}
	}
	return true
}

// commit makes the resources of a response of typ the held ones.
func (c *Client) commit(typ string, listeners map[string]*listenerv3.Listener, clas map[string]*endpointv3.ClusterLoadAssignment, versions map[string]string) {
	c.listeners, c.clas = listeners, clas
	c.versions[typ] = versions
	c.held[typ] = true
}

func unpack(a *anypb.Any, m proto.Message) error {
	if a == nil {
		return errors.New("empty resource")
	}
	if err := a.UnmarshalTo(m); err != nil {
		return fmt.Errorf("decode %s: %w", a.GetTypeUrl(), err)
	}
	return nil
}
