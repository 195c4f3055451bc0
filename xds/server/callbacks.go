package server

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/resources"
)

// NodeStatus is what the server knows of one connected node; the type
// is the shared layer's, so that the CLI reads /status with it.
type NodeStatus = model.NodeStatus

// Rejection is a response a node rejected (NACK).
type Rejection = model.Rejection

// sentLimit bounds the responses remembered per stream and type to
// match ACKs and NACKs to versions. A stream has at most a couple of
// responses of a type awaiting an answer.
const sentLimit = 8

type sent struct{ nonce, version string }

type typeState struct {
	sent     []sent // newest last
	acked    string
	rejected *Rejection
}

func (ts *typeState) versionOf(nonce string) (string, bool) {
	for i := len(ts.sent) - 1; i >= 0; i-- {
		if ts.sent[i].nonce == nonce {
			return ts.sent[i].version, true
		}
	}
	return "", false
}

func (ts *typeState) record(nonce, version string) {
	if len(ts.sent) == sentLimit {
		ts.sent = slices.Delete(ts.sent, 0, 1)
	}
	ts.sent = append(ts.sent, sent{nonce, version})
}

type streamKey struct {
	delta bool
	id    int64 // go-control-plane numbers SotW and delta streams apart
}

type streamState struct {
	since time.Time
	seq   uint64 // the order streams opened in, newest highest
	// nodeID and redirect are set by the first request, from its node:
	// the ID, and the redirect state its metadata reports.
	nodeID   string
	redirect model.Redirect
	types    map[string]*typeState
}

func (st *streamState) typ(url string) *typeState {
	ts := st.types[url]
	if ts == nil {
		ts = &typeState{}
		st.types[url] = ts
	}
	return ts
}

// registry follows every stream through go-control-plane's callbacks:
// it registers nodes with the engine on their first request, matches
// ACKs and NACKs to the versions sent, and answers Status.
type registry struct {
	srv *Server

	mu      sync.Mutex
	streams map[streamKey]*streamState
	opened  uint64 // streams opened, for streamState.seq

	// nodesMu orders the engine's nodeSeen and nodeGone calls as the
	// node's stream count changes.
	nodesMu    sync.Mutex
	nodeStream map[string]int
}

var (
	_ sotw.Callbacks  = (*registry)(nil)
	_ delta.Callbacks = (*registry)(nil)
)

func newRegistry(s *Server) *registry {
	return &registry{srv: s, streams: map[streamKey]*streamState{}, nodeStream: map[string]int{}}
}

func (r *registry) open(k streamKey) {
	r.mu.Lock()
	r.opened++
	r.streams[k] = &streamState{since: time.Now(), seq: r.opened, types: map[string]*typeState{}}
	r.mu.Unlock()
	r.srv.metrics.clients.Inc()
}

func (r *registry) closed(k streamKey) {
	r.mu.Lock()
	st := r.streams[k]
	delete(r.streams, k)
	r.mu.Unlock()
	r.srv.metrics.clients.Dec()
	if st == nil || st.nodeID == "" {
		return
	}
	r.nodesMu.Lock()
	defer r.nodesMu.Unlock()
	r.nodeStream[st.nodeID]--
	if r.nodeStream[st.nodeID] <= 0 {
		delete(r.nodeStream, st.nodeID)
		r.srv.engine.nodeGone(st.nodeID)
	}
}

// request handles a request of a stream and returns the version of the
// response it rejects, if it is a NACK of a known response.
func (r *registry) request(k streamKey, node *corev3.Node, typeURL, nonce, version string, errDetail string, isNack bool) (rejected string) {
	r.mu.Lock()
	st := r.streams[k]
	if st == nil { // cannot happen: opened before its requests
		r.mu.Unlock()
		return ""
	}
	first := st.nodeID == "" && node.GetId() != ""
	if first {
		st.nodeID = node.GetId()
		st.redirect = resources.NodeRedirect(node)
	}
	nodeID := st.nodeID
	ts := st.typ(typeURL)
	logNack, keeps := false, ""
	switch {
	case nonce == "":
		// A new subscription: a state-of-the-world client names the
		// version it holds, if any.
		if !k.delta && version != "" {
			ts.acked = version
		}
	case isNack:
		v, _ := ts.versionOf(nonce)
		if ts.rejected == nil || ts.rejected.Nonce != nonce {
			logNack = true
		}
		ts.rejected = &Rejection{Version: v, Nonce: nonce, Reason: errDetail}
		rejected, keeps = v, ts.acked
	default:
		if v, ok := ts.versionOf(nonce); ok {
			ts.acked = v
			ts.rejected = nil
		}
	}
	r.mu.Unlock()

	if first {
		r.nodesMu.Lock()
		r.nodeStream[nodeID]++
		if r.nodeStream[nodeID] == 1 {
			r.srv.engine.nodeSeen(nodeID)
		}
		r.nodesMu.Unlock()
	}
	if logNack {
		r.srv.metrics.nacks.WithLabelValues(typeName(typeURL)).Inc()
		r.srv.log.Info("client rejected a response", "node", nodeID, "type", typeURL,
			"version", rejected, "nonce", nonce, "keeps", keeps, "error", errDetail, "delta", k.delta)
	}
	return rejected
}

func (r *registry) response(k streamKey, typeURL, nonce, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.streams[k]; st != nil {
		st.typ(typeURL).record(nonce, version)
	}
}

// OnStreamOpen implements sotw.Callbacks.
func (r *registry) OnStreamOpen(_ context.Context, id int64, _ string) error {
	r.open(streamKey{id: id})
	return nil
}

// OnStreamClosed implements sotw.Callbacks.
func (r *registry) OnStreamClosed(id int64, _ *corev3.Node) { r.closed(streamKey{id: id}) }

// OnStreamRequest implements sotw.Callbacks. A NACK's request is
// changed to present the rejected version, so that go-control-plane's
// cache, which compares versions only, waits for the next snapshot
// instead of sending the rejected one again at once.
func (r *registry) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	nack := req.GetErrorDetail() != nil
	rejected := r.request(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(),
		req.GetVersionInfo(), req.GetErrorDetail().GetMessage(), nack)
	if nack && rejected != "" {
		req.VersionInfo = rejected
	}
	return nil
}

// OnStreamResponse implements sotw.Callbacks.
func (r *registry) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	r.response(streamKey{id: id}, req.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

// OnDeltaStreamOpen implements delta.Callbacks.
func (r *registry) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	r.open(streamKey{delta: true, id: id})
	return nil
}

// OnDeltaStreamClosed implements delta.Callbacks.
func (r *registry) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	r.closed(streamKey{delta: true, id: id})
}

// OnStreamDeltaRequest implements delta.Callbacks. go-control-plane's
// delta server records what it sent when it sends it, so a NACKed
// version is not sent again.
func (r *registry) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	r.request(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(),
		"", req.GetErrorDetail().GetMessage(), req.GetErrorDetail() != nil)
	return nil
}

// OnStreamDeltaResponse implements delta.Callbacks.
func (r *registry) OnStreamDeltaResponse(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	r.response(streamKey{delta: true, id: id}, req.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

func (r *registry) nodes() int {
	r.nodesMu.Lock()
	defer r.nodesMu.Unlock()
	return len(r.nodeStream)
}

func (r *registry) status() []NodeStatus {
	site := r.srv.localSite()
	r.mu.Lock()
	defer r.mu.Unlock()
	byID := map[string]*NodeStatus{}
	newest := map[string]uint64{} // the seq of the stream whose redirect a node shows
	for k, st := range r.streams {
		if st.nodeID == "" {
			continue
		}
		ns := byID[st.nodeID]
		if ns == nil {
			n, err := model.ParseNodeID(st.nodeID, site)
			if err != nil {
				n = model.Node{Kind: model.KindClient, Site: site, Name: st.nodeID}
			}
			ns = &NodeStatus{ID: st.nodeID, Kind: n.Kind, Site: n.Site, Name: n.Name, ConnectedSince: st.since,
				Acked: map[string]string{}, Rejected: map[string]Rejection{}}
			byID[st.nodeID] = ns
		}
		ns.Streams++
		ns.Delta = ns.Delta || k.delta
		if st.seq > newest[st.nodeID] {
			// A client reports a new state on a new stream; its old one
			// may not have closed yet.
			newest[st.nodeID] = st.seq
			ns.Redirect = st.redirect
		}
		if st.since.Before(ns.ConnectedSince) {
			ns.ConnectedSince = st.since
		}
		for url, ts := range st.types {
			name := typeName(url)
			if name == "other" {
				name = url
			}
			if ts.acked != "" {
				ns.Acked[name] = ts.acked
			}
			if ts.rejected != nil {
				ns.Rejected[name] = *ts.rejected
			}
		}
	}
	out := make([]NodeStatus, 0, len(byID))
	for _, ns := range byID {
		out = append(out, *ns)
	}
	slices.SortFunc(out, func(a, b NodeStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
