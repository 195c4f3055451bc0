package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// fleetEngine is the cache skiff's server uses: every node gets the same
// snapshot, so everything is computed once per snapshot rather than once
// per node or stream, which is what go-control-plane's SnapshotCache
// does (see docs/xds.md for the measurements):
//
//   - each resource is marshalled and hashed once, when its snapshot is
//     set (and not at all when the Translator handed over the same
//     message as before); responses share the marshalled Any values;
//   - each new snapshot is compared with the previous one once, giving
//     the names that changed per type (a transition); a delta watch is
//     answered from the transitions since the version its client holds,
//     in time proportional to the changes, not to the table;
//   - a wildcard delta subscription's returned-resources map, which
//     go-control-plane's delta server keeps per stream and hands back with
//     every request, is not a copy of the table's versions but a small
//     map naming the snapshot version the client holds (stateKey), so a
//     stream costs a few hundred bytes rather than one map entry per
//     resource.
//
// NACKs: a delta client that rejects a response keeps the resources it
// had; the engine then treats it as holding the version before the
// rejected one (prevKey), sends nothing until a newer snapshot, and then
// sends everything that differs from what the client really holds. (The
// delta server of go-control-plane records a response as known to the
// client when it sends it, so with the SnapshotCache a rejecting client
// would miss those resources until they change again.) A SotW client's
// NACK is handled by the registry (see OnStreamRequest).
//
// Responses with many resources (a new client's first response of a
// type) are throttled: at most fullLimit of them are in flight, a token
// being returned when the client's next request (its ACK or NACK)
// arrives, or after tokenTTL. Without that, a restart under a thousand
// clients would marshal a thousand copies of the whole table at once.
//
// Named (non-wildcard) delta subscriptions, which skiff's clients do not
// use, are answered by comparing every subscribed name, as go-control-plane
// does.
type fleetEngine struct {
	log logr.Logger

	mu      sync.Mutex
	cur     *fleetSnap
	seq     uint64        // transitions applied; cur is the state after seq
	history []*transition // the latest transitions, oldest first
	sotw    map[*sotwWatch]struct{}
	delta   map[*deltaWatch]struct{}
	shared  map[sharedKey]*sharedDelta // answers for clients at a common version, for cur

	nextToken uint64
	tokens    map[uint64]time.Time // throttle tokens in use, by grant time
	queue     []*deltaWatch        // watches waiting for a token, oldest first
	nodes     int
}

// Keys of a wildcard delta subscription's returned-resources map. Every
// other key is a resource name; its value is "" when go-control-plane's
// delta server marked it (the client unsubscribed from it by name while
// wildcard): the client must be told whether it exists.
const (
	stateKey    = ""            // wildcard: the snapshot version the client holds
	prevKey     = "\x00prev"    // wildcard: the version it held before the last response
	tokenKey    = "\x00token"   // the throttle token of the last response
	namedKey    = "\x00named"   // named: the snapshot version of the last response
	namedPrefix = "\x00before:" // named: a name's version before the last response
)

const (
	// fullThreshold is the size from which a response is throttled.
	fullThreshold = 1000
	// fullLimit is how many throttled responses may be in flight.
	fullLimit = 8
	// tokenTTL bounds how long a token waits for its client's answer.
	tokenTTL = 30 * time.Second
	// historyLimit is how many transitions are kept; a client whose
	// version is older (it did not answer for that many snapshots) is
	// reset: its stream is closed and it starts again.
	historyLimit = 1024
)

// fleetTypes are the types served, indexed as in fleetSnap.types.
var fleetTypes = [...]string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}

func typeIndex(url string) int {
	for i, t := range fleetTypes {
		if t == url {
			return i
		}
	}
	return -1
}

type fleetSnap struct {
	version string
	types   [len(fleetTypes)]*fleetType
}

type fleetType struct {
	res  map[string]*fleetRes
	all  []*discoveryv3.Resource // every resource, by name
	anys []*anypb.Any            // the same, as SotW responses carry them
}

// fleetRes is one resource, marshalled once.
type fleetRes struct {
	msg     types.Resource // identity: the Translator reuses messages
	version string         // content hash
	any     *anypb.Any
	delta   *discoveryv3.Resource
}

// transition is what changed from one snapshot to the next.
type transition struct {
	seq      uint64 // the state after it
	from, to string
	names    [len(fleetTypes)][]string // changed, added or removed
}

type sharedKey struct {
	typ int
	seq uint64
}

type sharedDelta struct {
	resources []*discoveryv3.Resource
	removed   []string
}

func newFleetEngine(log logr.Logger) *fleetEngine {
	return &fleetEngine{
		log:    log,
		sotw:   map[*sotwWatch]struct{}{},
		delta:  map[*deltaWatch]struct{}{},
		tokens: map[uint64]time.Time{},
	}
}

func (e *fleetEngine) nodeSeen(string) {
	e.mu.Lock()
	e.nodes++
	e.mu.Unlock()
}

func (e *fleetEngine) nodeGone(string) {
	e.mu.Lock()
	e.nodes--
	e.mu.Unlock()
}

func (e *fleetEngine) nodeCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nodes
}

// setSnapshot marshals what is new in snap, outside the lock (pushes are
// serialized by the Server), then answers every waiting watch.
func (e *fleetEngine) setSnapshot(_ context.Context, snap *cache.Snapshot) error {
	e.mu.Lock()
	prev := e.cur
	e.mu.Unlock()
	next, tr, err := buildFleetSnap(prev, snap)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cur = next
	e.shared = map[sharedKey]*sharedDelta{}
	if prev != nil {
		e.seq++
		tr.seq = e.seq
		e.history = append(e.history, tr)
		e.trimHistory()
	}
	for w := range e.sotw {
		if e.trySotw(w) {
			delete(e.sotw, w)
		}
	}
	for w := range e.delta {
		if w.queued {
			continue
		}
		if e.tryDelta(w) {
			delete(e.delta, w)
		}
	}
	return nil
}

func buildFleetSnap(prev *fleetSnap, snap *cache.Snapshot) (*fleetSnap, *transition, error) {
	next := &fleetSnap{version: snap.GetVersion(fleetTypes[0])}
	tr := &transition{to: next.version}
	if prev != nil {
		tr.from = prev.version
	}
	for i, url := range fleetTypes {
		if v := snap.GetVersion(url); v != next.version {
			return nil, nil, fmt.Errorf("snapshot versions differ: %s for %s, %s for %s", next.version, fleetTypes[0], v, url)
		}
		items := snap.GetResourcesAndTTL(url)
		var old map[string]*fleetRes
		if prev != nil {
			old = prev.types[i].res
			if sameMessages(old, items) {
				next.types[i] = prev.types[i]
				continue
			}
		}
		ft := &fleetType{
			res:  make(map[string]*fleetRes, len(items)),
			all:  make([]*discoveryv3.Resource, 0, len(items)),
			anys: make([]*anypb.Any, 0, len(items)),
		}
		for _, name := range slices.Sorted(maps.Keys(items)) {
			m := items[name].Resource
			o := old[name]
			r := o
			if o == nil || o.msg != m {
				b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
				if err != nil {
					return nil, nil, fmt.Errorf("marshal %s %s: %w", typeName(url), name, err)
				}
				sum := sha256.Sum256(b)
				r = &fleetRes{msg: m, version: hex.EncodeToString(sum[:8])}
				if o != nil && o.version == r.version {
					r.any, r.delta = o.any, o.delta
				} else {
					r.any = &anypb.Any{TypeUrl: url, Value: b}
					r.delta = &discoveryv3.Resource{Name: name, Version: r.version, Resource: r.any}
				}
			}
			ft.res[name] = r
			ft.all = append(ft.all, r.delta)
			ft.anys = append(ft.anys, r.any)
			if o == nil || o.version != r.version {
				tr.names[i] = append(tr.names[i], name)
			}
		}
		for name := range old {
			if _, ok := ft.res[name]; !ok {
				tr.names[i] = append(tr.names[i], name)
			}
		}
		next.types[i] = ft
	}
	return next, tr, nil
}

// sameMessages reports whether items holds the very messages of old (the
// Translator hands over unchanged services' messages as they were).
func sameMessages(old map[string]*fleetRes, items map[string]types.ResourceWithTTL) bool {
	if len(old) != len(items) {
		return false
	}
	for name, it := range items {
		if o, ok := old[name]; !ok || o.msg != it.Resource {
			return false
		}
	}
	return true
}

// trimHistory drops the oldest transitions beyond historyLimit, except
// those a waiting watch still needs.
func (e *fleetEngine) trimHistory() {
	drop := len(e.history) - historyLimit
	if drop <= 0 {
		return
	}
	oldest := e.seq
	for w := range e.delta {
		if w.byVersion {
			oldest = min(oldest, w.seq)
		}
	}
	for drop > 0 && e.history[0].seq <= oldest {
		e.history[0] = nil
		e.history = e.history[1:]
		drop--
	}
}

// seqOf returns the latest state (by transition count) whose version is
// v; versions are content hashes, so any state of that version will do.
func (e *fleetEngine) seqOf(v string) (uint64, bool) {
	if e.cur != nil && v == e.cur.version {
		return e.seq, true
	}
	for i := len(e.history) - 1; i >= 0; i-- {
		if e.history[i].to == v {
			return e.history[i].seq, true
		}
	}
	if len(e.history) > 0 && e.history[0].from == v {
		return e.history[0].seq - 1, true
	}
	return 0, false
}

// namesSince returns the names of type typ that changed after state seq.
func (e *fleetEngine) namesSince(typ int, seq uint64) []string {
	var trs []*transition
	for i := len(e.history) - 1; i >= 0 && e.history[i].seq > seq; i-- {
		trs = append(trs, e.history[i])
	}
	switch len(trs) {
	case 0:
		return nil
	case 1:
		return trs[0].names[typ]
	}
	set := map[string]struct{}{}
	for _, tr := range trs {
		for _, n := range tr.names[typ] {
			set[n] = struct{}{}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Fetch implements cache.Cache; skiff does not serve REST.
func (e *fleetEngine) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("fetch is not served: use ADS")
}

// sotwWatch is a state-of-the-world watch.
type sotwWatch struct {
	req        *cache.Request
	ch         chan cache.Response
	typ        int
	wildcard   bool
	subscribed map[string]struct{}
	returned   map[string]string
}

// CreateWatch implements cache.ConfigWatcher.
func (e *fleetEngine) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	w := &sotwWatch{
		req: req, ch: ch, typ: typeIndex(req.GetTypeUrl()),
		wildcard: sub.IsWildcard(), subscribed: sub.SubscribedResources(), returned: sub.ReturnedResources(),
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.trySotw(w) {
		return func() {}, nil
	}
	e.sotw[w] = struct{}{}
	return func() {
		e.mu.Lock()
		delete(e.sotw, w)
		e.mu.Unlock()
	}, nil
}

// trySotw answers w if the client lacks something of the current
// snapshot: a newer version, or a subscribed resource it was not sent.
// A client that presents the current version holds it (it may have
// connected to another server with the same table: versions are content
// hashes).
func (e *fleetEngine) trySotw(w *sotwWatch) bool {
	if e.cur == nil || w.typ < 0 {
		return false
	}
	ft := e.cur.types[w.typ]
	if w.req.GetVersionInfo() == e.cur.version {
		if w.wildcard {
			return false
		}
		missing := false
		for n := range w.subscribed {
			if _, ok := ft.res[n]; ok {
				if _, sent := w.returned[n]; !sent {
					missing = true
					break
				}
			}
		}
		if !missing {
			return false
		}
	}
	resp := &discoveryv3.DiscoveryResponse{VersionInfo: e.cur.version, TypeUrl: fleetTypes[w.typ]}
	var returned map[string]string
	if w.wildcard {
		resp.Resources = ft.anys
	} else {
		returned = make(map[string]string, len(w.subscribed))
		for _, n := range slices.Sorted(maps.Keys(w.subscribed)) {
			if r, ok := ft.res[n]; ok {
				resp.Resources = append(resp.Resources, r.any)
				returned[n] = e.cur.version
			}
		}
	}
	return e.send(func() {
		w.ch <- &cache.PassthroughResponse{Request: w.req, DiscoveryResponse: resp, ReturnedResources: returned}
	}, cap(w.ch)-len(w.ch))
}

// send runs put if the channel has room; the go-control-plane servers
// size their channels so that it always has.
func (e *fleetEngine) send(put func(), room int) bool {
	if room <= 0 {
		e.log.Error(nil, "response channel full, dropping the response")
		return false
	}
	put()
	return true
}

// deltaWatch is an incremental watch and what its client holds.
type deltaWatch struct {
	req      *cache.DeltaRequest
	ch       chan cache.DeltaResponse
	typ      int
	first    bool // the subscription's first request: answer even if empty
	wildcard bool
	queued   bool // waiting for a throttle token

	// Wildcard, client state known by version (byVersion): it holds the
	// snapshot at seq (version asOf) but for overrides, which it must be
	// told about.
	byVersion bool
	seq       uint64
	asOf      string
	overrides []string
	// Otherwise (a new wildcard subscription, or a named one): the
	// versions it holds, by name.
	known      map[string]string
	subscribed map[string]struct{}

	// hold: do not answer while the current version is hold (the client
	// rejected it).
	hold string
}

// CreateDeltaWatch implements cache.ConfigWatcher. It returns an error,
// which ends the stream, when the version the client holds is no longer
// known (see historyLimit).
func (e *fleetEngine) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	w := &deltaWatch{
		req: req, ch: ch, typ: typeIndex(req.GetTypeUrl()),
		first: req.GetResponseNonce() == "", wildcard: sub.IsWildcard(),
	}
	returned := sub.ReturnedResources()
	nack := req.GetErrorDetail() != nil
	e.mu.Lock()
	defer e.mu.Unlock()
	if tok, ok := returned[tokenKey]; ok {
		e.release(tok)
	}
	state, hasState := returned[stateKey]
	switch {
	case w.wildcard && hasState:
		w.asOf = state
		if nack {
			w.hold = state
			w.asOf = returned[prevKey]
		}
		for n, v := range returned {
			if v == "" && n != stateKey && !strings.HasPrefix(n, "\x00") {
				w.overrides = append(w.overrides, n)
			}
		}
		if w.asOf == "" { // it rejected its first response: it holds nothing
			w.known = map[string]string{}
			break
		}
		w.byVersion = true
		seq, ok := e.seqOf(w.asOf)
		if !ok {
			e.log.Info("client state too old, resetting its stream", "node", req.GetNode().GetId(), "type", req.GetTypeUrl(), "version", w.asOf)
			return nil, fmt.Errorf("version %s of %s is no longer known: reconnect", w.asOf, req.GetTypeUrl())
		}
		w.seq = seq
	case w.wildcard:
		w.known = returned // initial_resource_versions, or nothing
	default:
		w.subscribed = sub.SubscribedResources()
		w.known = map[string]string{}
		for n, v := range returned {
			if !strings.HasPrefix(n, "\x00") && n != stateKey {
				w.known[n] = v
			}
		}
		if v, ok := returned[namedKey]; nack && ok {
			w.hold = v
			for k, v := range returned {
				if n, ok := strings.CutPrefix(k, namedPrefix); ok {
					if v == "" {
						delete(w.known, n)
					} else {
						w.known[n] = v
					}
				}
			}
		}
	}
	if e.tryDelta(w) {
		return nil, nil
	}
	e.delta[w] = struct{}{}
	return func() {
		e.mu.Lock()
		delete(e.delta, w)
		e.mu.Unlock()
	}, nil
}

// tryDelta answers w if its client lacks something of the current
// snapshot (or it is the first request of a wildcard subscription), and
// reports whether it did; w may instead be queued for a throttle token.
func (e *fleetEngine) tryDelta(w *deltaWatch) bool {
	if e.cur == nil || w.typ < 0 || (w.hold != "" && w.hold == e.cur.version) {
		return false
	}
	next := map[string]string{}
	if w.wildcard {
		next[stateKey] = e.cur.version
	} else {
		next[namedKey] = e.cur.version
	}
	resources, removed := e.deltaChanges(w, next)
	if len(resources) == 0 && len(removed) == 0 && !(w.first && w.wildcard) {
		// Nothing new: the client holds the current version.
		if w.byVersion {
			w.seq, w.asOf = e.seq, e.cur.version
		}
		return false
	}
	if len(resources) >= fullThreshold && !e.takeToken(w, next) {
		return false
	}
	w.queued = false
	return e.sendDelta(w, next, resources, removed)
}

// deltaChanges returns what w's client lacks of the current snapshot:
// the resources to send and the names removed. It adds to next, the
// returned-resources map the client will hold, what that needs besides
// the version.
func (e *fleetEngine) deltaChanges(w *deltaWatch, next map[string]string) ([]*discoveryv3.Resource, []string) {
	ft := e.cur.types[w.typ]
	switch {
	case w.byVersion:
		next[prevKey] = w.asOf
		return e.changesSinceVersion(w, ft)
	case w.wildcard:
		return wildcardChanges(w, ft)
	default:
		return namedChanges(w, ft, next)
	}
}

// changesSinceVersion returns the changes for a wildcard client known by
// version: those since its state, shared with every client at that
// state, unless it must also be told about overrides.
func (e *fleetEngine) changesSinceVersion(w *deltaWatch, ft *fleetType) ([]*discoveryv3.Resource, []string) {
	if len(w.overrides) == 0 {
		sd := e.sharedSince(w.typ, w.seq)
		return sd.resources, sd.removed
	}
	names := append(slices.Clone(e.namesSince(w.typ, w.seq)), w.overrides...)
	slices.Sort(names)
	return pick(ft, slices.Compact(names))
}

// wildcardChanges returns the changes for a wildcard subscription not
// known by version (a new one): every resource whose version differs from the one its client holds (all
// of them if it holds none), and the names it holds that are gone.
func wildcardChanges(w *deltaWatch, ft *fleetType) (resources []*discoveryv3.Resource, removed []string) {
	if len(w.known) == 0 {
		return ft.all, nil
	}
	for _, r := range ft.all {
		if w.known[r.GetName()] != r.GetVersion() {
			resources = append(resources, r)
		}
	}
	for n := range w.known {
		if _, ok := ft.res[n]; !ok && n != stateKey && !strings.HasPrefix(n, "\x00") {
			removed = append(removed, n)
		}
	}
	slices.Sort(removed)
	return resources, removed
}

// namedChanges returns the changes for a named subscription, comparing
// every subscribed name, and records in next the version of each current
// one and, for each it sends or removes, the version the client held.
func namedChanges(w *deltaWatch, ft *fleetType, next map[string]string) (resources []*discoveryv3.Resource, removed []string) {
	for _, n := range slices.Sorted(maps.Keys(w.subscribed)) {
		r, ok := ft.res[n]
		v, had := w.known[n]
		switch {
		case ok:
			next[n] = r.version
			if !had || v != r.version {
				resources = append(resources, r.delta)
				next[namedPrefix+n] = v
			}
		case had:
			removed = append(removed, n)
			next[namedPrefix+n] = v
		}
	}
	return resources, removed
}

// takeToken takes a throttle token for a response to w and records it in
// next, or queues w for one (once) and reports false.
func (e *fleetEngine) takeToken(w *deltaWatch, next map[string]string) bool {
	tok, ok := e.acquire()
	if !ok {
		if !w.queued {
			w.queued = true
			e.queue = append(e.queue, w)
		}
		return false
	}
	next[tokenKey] = tok
	return true
}

// sendDelta sends w's client the resources and removed names of the
// current snapshot, next being its returned-resources map afterwards, and
// reports whether it did.
func (e *fleetEngine) sendDelta(w *deltaWatch, next map[string]string, resources []*discoveryv3.Resource, removed []string) bool {
	resp := &cache.DeltaPassthroughResponse{
		DeltaRequest:   w.req,
		NextVersionMap: next,
		DeltaDiscoveryResponse: &discoveryv3.DeltaDiscoveryResponse{
			SystemVersionInfo: e.cur.version,
			TypeUrl:           fleetTypes[w.typ],
			Resources:         resources,
			RemovedResources:  removed,
		},
	}
	return e.send(func() { w.ch <- resp }, cap(w.ch)-len(w.ch))
}

// sharedSince returns the answer for every wildcard client that holds
// state seq: computed once per type and state for the current snapshot.
func (e *fleetEngine) sharedSince(typ int, seq uint64) *sharedDelta {
	k := sharedKey{typ, seq}
	if sd := e.shared[k]; sd != nil {
		return sd
	}
	sd := &sharedDelta{}
	sd.resources, sd.removed = pick(e.cur.types[typ], e.namesSince(typ, seq))
	e.shared[k] = sd
	return sd
}

// pick splits names into the current resources and the removed names.
func pick(ft *fleetType, names []string) ([]*discoveryv3.Resource, []string) {
	var resources []*discoveryv3.Resource
	var removed []string
	for _, n := range names {
		if r, ok := ft.res[n]; ok {
			resources = append(resources, r.delta)
		} else {
			removed = append(removed, n)
		}
	}
	return resources, removed
}

// acquire takes a throttle token, reclaiming expired ones first.
func (e *fleetEngine) acquire() (string, bool) {
	if len(e.tokens) >= fullLimit {
		now := time.Now()
		for id, at := range e.tokens {
			if now.Sub(at) > tokenTTL {
				delete(e.tokens, id)
			}
		}
		if len(e.tokens) >= fullLimit {
			return "", false
		}
	}
	e.nextToken++
	e.tokens[e.nextToken] = time.Now()
	return strconv.FormatUint(e.nextToken, 10), true
}

// release returns a token and answers queued watches while tokens last.
func (e *fleetEngine) release(tok string) {
	id, err := strconv.ParseUint(tok, 10, 64)
	if err != nil {
		return
	}
	delete(e.tokens, id)
	for len(e.queue) > 0 && len(e.tokens) < fullLimit {
		w := e.queue[0]
		e.queue[0] = nil
		e.queue = e.queue[1:]
		if _, ok := e.delta[w]; !ok { // cancelled
			continue
		}
		w.queued = false
		if e.tryDelta(w) {
			delete(e.delta, w)
		}
	}
}
