package server

import (
	"fmt"
	"slices"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/status"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/xds/translate"
)

// Tests of the fleet engine's own logic, driven as go-control-plane's
// delta server drives it: a Subscription per stream and type, whose
// returned resources are what the last response said.

func set(t *testing.T, e *fleetEngine, tab *model.Table) string {
	t.Helper()
	snap, err := translate.Translate(tab)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.setSnapshot(t.Context(), snap); err != nil {
		t.Fatal(err)
	}
	return tab.Hash()
}

func manyServices(n int) *model.Table {
	tab := &model.Table{Site: "east"}
	for i := range n {
		tab.Services = append(tab.Services, svc(fmt.Sprintf("s%04d", i), 80, model.Balanced, "10.0.0.1"))
	}
	return tab
}

// deltaStream is one type's subscription on a fake stream.
type deltaStream struct {
	t     *testing.T
	e     *fleetEngine
	typ   string
	sub   stream.Subscription
	ch    chan cache.DeltaResponse
	nonce int
}

func newDeltaStream(t *testing.T, e *fleetEngine, typ string, subscribe ...string) *deltaStream {
	return &deltaStream{t: t, e: e, typ: typ, ch: make(chan cache.DeltaResponse, 8),
		sub: stream.NewDeltaSubscription(subscribe, nil, nil, true)}
}

// request sends a request: the first, an ACK, or a NACK (subscription
// changes applied as the delta server applies them).
func (d *deltaStream) request(nack bool, subscribe, unsubscribe []string) {
	d.t.Helper()
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: d.typ, ResourceNamesSubscribe: subscribe, ResourceNamesUnsubscribe: unsubscribe}
	if d.nonce > 0 {
		req.ResponseNonce = fmt.Sprint(d.nonce)
		d.sub.UpdateResourceSubscriptions(subscribe, unsubscribe)
	}
	if nack {
		req.ErrorDetail = &status.Status{Message: "no"}
	}
	if _, err := d.e.CreateDeltaWatch(req, d.sub, d.ch); err != nil {
		d.t.Fatalf("CreateDeltaWatch: %v", err)
	}
}

// next returns the response waiting, or nil.
func (d *deltaStream) next() *discoveryv3.DeltaDiscoveryResponse {
	d.t.Helper()
	select {
	case r := <-d.ch:
		d.nonce++
		d.sub.SetReturnedResources(r.GetReturnedResources())
		resp, err := r.GetDeltaDiscoveryResponse()
		if err != nil {
			d.t.Fatal(err)
		}
		return resp
	default:
		return nil
	}
}

func names(resp *discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, r := range resp.GetResources() {
		out = append(out, r.GetName())
	}
	return out
}

func TestFleetThrottle(t *testing.T) {
	e := newFleetEngine(logr.Discard())
	set(t, e, manyServices(fullThreshold))
	var streams []*deltaStream
	for range fullLimit + 3 {
		d := newDeltaStream(t, e, resource.ListenerType)
		d.request(false, nil, nil)
		streams = append(streams, d)
	}
	answered := func() (n int, idle []*deltaStream) {
		for _, d := range streams {
			if r := d.next(); r != nil {
				if len(r.GetResources()) != fullThreshold {
					t.Fatalf("first response: %d resources, want %d", len(r.GetResources()), fullThreshold)
				}
				n++
				idle = append(idle, d)
			}
		}
		return n, idle
	}
	n, acked := answered()
	if n != fullLimit {
		t.Fatalf("%d full responses at once, want %d", n, fullLimit)
	}
	// One ACK lets one more through.
	acked[0].request(false, nil, nil)
	if n, _ := answered(); n != 1 {
		t.Fatalf("after one ACK, %d more full responses, want 1", n)
	}
	for _, d := range acked[1:] {
		d.request(false, nil, nil)
	}
	if n, _ := answered(); n != 2 {
		t.Fatalf("after every ACK, %d more full responses, want the last 2", n)
	}
	if len(e.tokens) != 3 {
		t.Errorf("%d tokens held, want 3 (the unacknowledged responses)", len(e.tokens))
	}
}

// A watch that waits while other types change keeps its place in the
// history; a client whose version is gone is told to start again.
func TestFleetHistory(t *testing.T) {
	e := newFleetEngine(logr.Discard())
	tab := manyServices(2)
	v0 := set(t, e, tab)
	routes := newDeltaStream(t, e, resource.RouteType)
	routes.request(false, nil, nil)
	if got := names(routes.next()); !slices.Equal(got, []string{"s0000:80", "s0001:80"}) {
		t.Fatalf("first routes %v", got)
	}
	routes.request(false, nil, nil) // ACK: waits
	stale := map[string]string{stateKey: v0}

	for i := range historyLimit + 10 { // endpoints only
		tab.Services[0].Endpoints[0].Port = 1000 + i
		set(t, e, tab)
		if r := routes.next(); r != nil {
			t.Fatalf("routes answered after an endpoint change: %v", names(r))
		}
	}
	if len(e.history) > historyLimit {
		t.Errorf("history of %d transitions, limit %d", len(e.history), historyLimit)
	}
	tab.Services = append(tab.Services, svc("new", 80, model.Balanced))
	v := set(t, e, tab)
	r := routes.next()
	if got := names(r); !slices.Equal(got, []string{"new:80"}) || r.GetSystemVersionInfo() != v {
		t.Errorf("routes after a new service: %v at %s, want [new:80] at %s", got, r.GetSystemVersionInfo(), v)
	}

	// A stream that holds v0, long gone, is reset.
	old := newDeltaStream(t, e, resource.ListenerType)
	old.sub.SetReturnedResources(stale)
	_, err := e.CreateDeltaWatch(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResponseNonce: "7"}, old.sub, old.ch)
	if err == nil {
		t.Error("a client at a forgotten version: no error")
	}
}

// Named subscriptions, subscription changes and NACKs of them.
func TestFleetNamed(t *testing.T) {
	e := newFleetEngine(logr.Discard())
	tab := manyServices(3) // s0000:80 s0001:80 s0002:80
	set(t, e, tab)
	d := newDeltaStream(t, e, resource.EndpointType, "s0000:80", "s0001:80")
	d.request(false, nil, nil)
	if got := names(d.next()); !slices.Equal(got, []string{"s0000:80", "s0001:80"}) {
		t.Fatalf("first response %v", got)
	}
	d.request(false, []string{"s0002:80"}, []string{"s0000:80"})
	if got := names(d.next()); !slices.Equal(got, []string{"s0002:80"}) {
		t.Fatalf("after subscribing s0002: %v", got)
	}
	d.request(false, nil, nil)

	// s0000 (unsubscribed) and s0001 change: only s0001 is sent.
	tab.Services[0].Endpoints[0].Ready = false
	tab.Services[1].Endpoints[0].Ready = false
	set(t, e, tab)
	if got := names(d.next()); !slices.Equal(got, []string{"s0001:80"}) {
		t.Fatalf("after a change: %v", got)
	}
	// The client rejects it: nothing until the next version, which
	// changes s0002 only; s0001 comes again, as the client does not have
	// it.
	d.request(true, nil, nil)
	if r := d.next(); r != nil {
		t.Fatalf("answer to a NACK: %v", names(r))
	}
	tab.Services[2].Endpoints[0].Ready = false
	set(t, e, tab)
	if got := names(d.next()); !slices.Equal(got, []string{"s0001:80", "s0002:80"}) {
		t.Errorf("after the NACK and a change: %v, want [s0001:80 s0002:80]", got)
	}
	// A removed service is reported.
	d.request(false, nil, nil)
	tab.Services = tab.Services[:2]
	set(t, e, tab)
	if r := d.next(); !slices.Equal(r.GetRemovedResources(), []string{"s0002:80"}) {
		t.Errorf("removed %v, want [s0002:80]", r.GetRemovedResources())
	}
	// Turning wildcard brings what the client does not hold, only.
	d.request(false, []string{"*"}, nil)
	if got := names(d.next()); !slices.Equal(got, []string{"s0000:80"}) {
		t.Errorf("after subscribing to the wildcard: %v, want [s0000:80]", got)
	}
}

// A wildcard client that also named a resource and unsubscribes from the
// name is told about it again (the protocol's rule), and a NACK of a
// wildcard response sends, at the next version, everything the client
// lacks.
func TestFleetWildcard(t *testing.T) {
	e := newFleetEngine(logr.Discard())
	tab := manyServices(3)
	set(t, e, tab)
	d := newDeltaStream(t, e, resource.ClusterType)
	d.sub = stream.NewDeltaSubscription([]string{"*", "s0001:80"}, nil, nil, true)
	d.request(false, nil, nil)
	if got := names(d.next()); len(got) != 3 {
		t.Fatalf("first response %v", got)
	}
	d.request(false, nil, []string{"s0001:80"})
	if got := names(d.next()); !slices.Equal(got, []string{"s0001:80"}) {
		t.Fatalf("after unsubscribing a name: %v, want it again", got)
	}
	d.request(false, nil, nil)

	tab.Services[0].Routing = model.Closest
	set(t, e, tab)
	if got := names(d.next()); !slices.Equal(got, []string{"s0000:80"}) {
		t.Fatalf("after a change: %v", got)
	}
	d.request(true, nil, nil) // NACK
	if r := d.next(); r != nil {
		t.Fatalf("answer to a NACK: %v", names(r))
	}
	tab.Services[2].Routing = model.Closest
	v := set(t, e, tab)
	r := d.next()
	if got := names(r); !slices.Equal(got, []string{"s0000:80", "s0002:80"}) || r.GetSystemVersionInfo() != v {
		t.Errorf("after the NACK and a change: %v at %s, want [s0000:80 s0002:80] at %s", got, r.GetSystemVersionInfo(), v)
	}
	d.request(false, nil, nil)
	// Many versions later, the answer holds every change once.
	for i := range 3 {
		tab.Services[1].Endpoints[0].Port = 2000 + i
		set(t, e, tab)
	}
	if r := d.next(); r != nil {
		t.Fatalf("clusters changed with endpoints: %v", names(r))
	}
	tab.Services = tab.Services[1:]
	set(t, e, tab)
	r = d.next()
	if diff := cmp.Diff([][]string{names(r), r.GetRemovedResources()}, [][]string{nil, {"s0000:80"}}); diff != "" {
		t.Errorf("removal (-got +want):\n%s", diff)
	}
}
