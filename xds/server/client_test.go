package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/xds/translate"
)

// allTypes are the types skiff serves, in the order clients ask for them.
var allTypes = []string{resource.ListenerType, resource.ClusterType, resource.RouteType, resource.EndpointType}

// waitLimit bounds every wait for clients to converge.
const waitLimit = 30 * time.Second

// received is one response as a test client saw it.
type received struct {
	typeURL string
	version string // SotW version_info, delta system_version_info
	names   []string
	removed []string
	nacked  bool
}

// clientType is what a test client holds of one type.
type clientType struct {
	version   string                // last accepted version
	resources map[string]*anypb.Any // by name
	versions  map[string]string     // delta: resource versions
}

// adsClient is a test ADS client written with the generated discovery
// client: state-of-the-world or delta, wildcard on every type, ACKing
// each response unless reject says to NACK it.
type adsClient struct {
	t      *testing.T
	node   string
	delta  bool
	reject func(typeURL, version string) bool
	// metadata is the node metadata of each stream's first request.
	metadata *structpb.Struct

	mu      sync.Mutex
	types   map[string]*clientType
	history []received
	changed chan struct{} // a token after each response
	ended   chan struct{} // closed when the current stream ends
}

func newClient(t *testing.T, node string, delta bool) *adsClient {
	c := &adsClient{t: t, node: node, delta: delta, types: map[string]*clientType{}, changed: make(chan struct{}, 1)}
	for _, typ := range allTypes {
		c.types[typ] = &clientType{resources: map[string]*anypb.Any{}, versions: map[string]string{}}
	}
	return c
}

// connect opens a stream to addr and subscribes to every type,
// presenting what the client holds (SotW: its versions; delta: its
// resource versions). The stream lives until ctx ends or the server
// closes it.
func (c *adsClient) connect(ctx context.Context, addr string) {
	c.t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatalf("dial %s: %v", addr, err)
	}
	c.t.Cleanup(func() { conn.Close() })
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	node := &corev3.Node{Id: c.node, Metadata: c.metadata}
	ended := make(chan struct{})
	c.mu.Lock()
	c.ended = ended
	c.mu.Unlock()
	if c.delta {
		s, err := ads.DeltaAggregatedResources(ctx)
		if err != nil {
			c.t.Fatalf("open delta stream: %v", err)
		}
		for i, typ := range allTypes {
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, InitialResourceVersions: c.resourceVersions(typ)}
			if i == 0 {
				req.Node = node
			}
			if err := s.Send(req); err != nil {
				c.t.Fatalf("send: %v", err)
			}
		}
		go func() {
			defer close(ended)
			c.runDelta(s)
		}()
		return
	}
	s, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		c.t.Fatalf("open stream: %v", err)
	}
	for i, typ := range allTypes {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: c.version(typ)}
		if i == 0 {
			req.Node = node
		}
		if err := s.Send(req); err != nil {
			c.t.Fatalf("send: %v", err)
		}
	}
	go func() {
		defer close(ended)
		c.runSotw(s)
	}()
}

func (c *adsClient) version(typ string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.types[typ].version
}

func (c *adsClient) resourceVersions(typ string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.types[typ].versions)
}

func (c *adsClient) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

func (c *adsClient) runSotw(s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient) {
	for {
		resp, err := s.Recv()
		if err != nil {
			return
		}
		typ := resp.GetTypeUrl()
		nack := c.reject != nil && c.reject(typ, resp.GetVersionInfo())
		rec := received{typeURL: typ, version: resp.GetVersionInfo(), nacked: nack}
		c.mu.Lock()
		ct := c.types[typ]
		for _, r := range resp.GetResources() {
			rec.names = append(rec.names, name(c.t, r))
		}
		if !nack {
			// State of the world: the response replaces what is held.
			ct.version = resp.GetVersionInfo()
			ct.resources = map[string]*anypb.Any{}
			for i, r := range resp.GetResources() {
				ct.resources[rec.names[i]] = r
			}
		}
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: ct.version, ResponseNonce: resp.GetNonce()}
		if nack {
			req.ErrorDetail = &status.Status{Code: 3, Message: "test client rejects " + resp.GetVersionInfo()}
		}
		c.history = append(c.history, rec)
		c.mu.Unlock()
		if err := s.Send(req); err != nil {
			return
		}
		c.notify()
	}
}

func (c *adsClient) runDelta(s discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) {
	for {
		resp, err := s.Recv()
		if err != nil {
			return
		}
		typ := resp.GetTypeUrl()
		nack := c.reject != nil && c.reject(typ, resp.GetSystemVersionInfo())
		rec := received{typeURL: typ, version: resp.GetSystemVersionInfo(), removed: resp.GetRemovedResources(), nacked: nack}
		c.mu.Lock()
		ct := c.types[typ]
		for _, r := range resp.GetResources() {
			rec.names = append(rec.names, r.GetName())
		}
		if !nack {
			ct.version = resp.GetSystemVersionInfo()
			for _, r := range resp.GetResources() {
				ct.resources[r.GetName()] = r.GetResource()
				ct.versions[r.GetName()] = r.GetVersion()
			}
			for _, n := range resp.GetRemovedResources() {
				delete(ct.resources, n)
				delete(ct.versions, n)
			}
		}
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}
		if nack {
			req.ErrorDetail = &status.Status{Code: 3, Message: "test client rejects " + resp.GetSystemVersionInfo()}
		}
		c.history = append(c.history, rec)
		c.mu.Unlock()
		if err := s.Send(req); err != nil {
			return
		}
		c.notify()
	}
}

func name(t *testing.T, a *anypb.Any) string {
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Errorf("unmarshal %s: %v", a.GetTypeUrl(), err)
		return ""
	}
	return cache.GetResourceName(m)
}

// waitFor waits until cond holds for the client's state, or fails the
// test after waitLimit.
func (c *adsClient) waitFor(what string, cond func() string) {
	c.t.Helper()
	limit := time.NewTimer(waitLimit)
	defer limit.Stop()
	for {
		c.mu.Lock()
		why := cond()
		c.mu.Unlock()
		if why == "" {
			return
		}
		select {
		case <-c.changed:
		case <-limit.C:
			c.t.Fatalf("client %s: %s: still %s after %v", c.node, what, why, waitLimit)
		}
	}
}

// expected is a table's translation, as clients should hold it.
type expected struct {
	version   string
	resources map[string]map[string]proto.Message // type URL → name → resource
}

func expect(t *testing.T, tab *model.Table) expected {
	t.Helper()
	snap, err := translate.Translate(tab)
	if err != nil {
		t.Fatal(err)
	}
	e := expected{version: tab.Hash(), resources: map[string]map[string]proto.Message{}}
	for _, typ := range allTypes {
		e.resources[typ] = map[string]proto.Message{}
		for n, r := range snap.GetResources(typ) {
			e.resources[typ][n] = r
		}
	}
	return e
}

// holds says why the client does not hold e (the empty string when it
// does): every type's resources equal e's, and for a SotW client every
// type's version is e's (a delta client's version of a type moves only
// when one of the type's resources changes). Called with c.mu held.
func (c *adsClient) holds(e expected) string {
	for _, typ := range allTypes {
		ct := c.types[typ]
		if !c.delta && ct.version != e.version {
			return fmt.Sprintf("%s at version %q, want %q", typeName(typ), ct.version, e.version)
		}
		if got, want := slices.Sorted(maps.Keys(ct.resources)), slices.Sorted(maps.Keys(e.resources[typ])); !slices.Equal(got, want) {
			return fmt.Sprintf("%s names %v, want %v", typeName(typ), got, want)
		}
		for n, a := range ct.resources {
			m, err := a.UnmarshalNew()
			if err != nil {
				return fmt.Sprintf("%s %s: %v", typeName(typ), n, err)
			}
			if !proto.Equal(m, e.resources[typ][n]) {
				return fmt.Sprintf("%s %s differs", typeName(typ), n)
			}
		}
	}
	return ""
}

func (c *adsClient) waitHolds(e expected) {
	c.t.Helper()
	c.waitFor("hold version "+e.version, func() string { return c.holds(e) })
}

// responses returns the responses of type typ at version v the client
// received.
func (c *adsClient) responses(typ, v string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.history {
		if r.typeURL == typ && r.version == v {
			n++
		}
	}
	return n
}

// removed returns the names a delta client was told were removed, by type.
func (c *adsClient) removed() map[string][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]string{}
	for _, r := range c.history {
		out[r.typeURL] = append(out[r.typeURL], r.removed...)
	}
	return out
}
