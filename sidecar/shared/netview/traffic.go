package netview

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/names"
)

// A traffic report is what one gateway counted over its last interval:
// the bytes and streams it moved with each neighbouring site, and the
// connections and requests of its busiest addresses by target site.
// Gateways flood their reports like their records, signed by their
// site's key, so that the console of any site can draw the traffic on
// every link of the network, not only on its own. Reports are not part
// of the view: they change no route, are never persisted, and a report
// lost on the way costs one point of a live graph.

// TrafficVersion is the wire format version of [Traffic].
const TrafficVersion = 1

// Bounds on what one report may hold.
const (
	// MaxTrafficFlows bounds the (address, site) pairs one report lists:
	// a gateway reports its busiest addresses, not all of them.
	MaxTrafficFlows = 1000
	// MaxTrafficBytes bounds one signed report on the wire.
	MaxTrafficBytes = 512 << 10
	// MaxTrafficInterval bounds the interval a report may cover.
	MaxTrafficInterval = 10 * time.Minute
)

// ErrInvalidTraffic reports a traffic report that breaks the report's
// rules.
var ErrInvalidTraffic = errors.New("invalid traffic report")

// trafficContext is prefixed to a report's JSON before it is hashed and
// signed, so that a report signature can never be taken for a record's or
// any other signature made with the site's key.
const trafficContext = "skiff traffic report v1\n"

// Traffic is one gateway's report of its traffic over Millis
// milliseconds. Counts are what happened within the interval, not totals,
// so a reader needs no earlier report to compute a rate.
type Traffic struct {
	Version int    `json:"v"`
	Site    string `json:"site"`
	Router  string `json:"router,omitempty"`
	Key     string `json:"key,omitempty"` // the signing key, [KeyID] form
	// Epoch is the gateway's start time (unix nanoseconds), Seq counts its
	// reports: (Epoch, Seq) orders a node's reports as it does records.
	Epoch  int64  `json:"epoch"`
	Seq    uint64 `json:"seq"`
	Millis int64  `json:"ms"`
	// Peers maps a neighbouring site to the traffic with it.
	Peers map[string]PeerTraffic `json:"peers,omitempty"`
	// Flows maps an address to a target site to the address's traffic
	// this gateway sent there (its own site included).
	Flows map[string]map[string]FlowTraffic `json:"flows,omitempty"`
}

// PeerTraffic is a gateway's traffic with one neighbouring site over an
// interval: bytes each way and link streams opened either way.
type PeerTraffic struct {
	Sent     uint64 `json:"sent,omitempty"`
	Received uint64 `json:"recv,omitempty"`
	Streams  uint64 `json:"streams,omitempty"`
}

// FlowTraffic is an address's traffic to one site over an interval:
// connections routed, HTTP requests answered, and those that failed.
type FlowTraffic struct {
	Connections uint64 `json:"conns,omitempty"`
	Requests    uint64 `json:"reqs,omitempty"`
	Errors      uint64 `json:"errs,omitempty"`
}

// Node returns the ID of the node whose report t is.
func (t Traffic) Node() string { return NodeID(t.Site, t.Router) }

// Newer reports whether t supersedes than, as [Record.Newer].
func (t Traffic) Newer(than Traffic) bool {
	if t.Epoch != than.Epoch {
		return t.Epoch > than.Epoch
	}
	return t.Seq > than.Seq
}

// clone returns t with maps of its own.
func (t Traffic) clone() Traffic {
	t.Peers = maps.Clone(t.Peers)
	if t.Flows != nil {
		flows := make(map[string]map[string]FlowTraffic, len(t.Flows))
		for a, sites := range t.Flows {
			flows[a] = maps.Clone(sites)
		}
		t.Flows = flows
	}
	return t
}

// Empty reports whether t counts nothing.
func (t Traffic) Empty() bool {
	for _, p := range t.Peers {
		if p != (PeerTraffic{}) {
			return false
		}
	}
	for _, sites := range t.Flows {
		for _, f := range sites {
			if f != (FlowTraffic{}) {
				return false
			}
		}
	}
	return true
}

// validateTraffic checks a report's rules: names as records have them,
// an interval in range, and its lists bounded.
func validateTraffic(t Traffic) error {
	if t.Version != TrafficVersion {
		return fmt.Errorf("traffic report v%d from %q, this gateway understands v%d: %w", t.Version, clip(t.Site), TrafficVersion, ErrVersion)
	}
	if err := names.CheckSite(t.Site); err != nil {
		return fmt.Errorf("traffic report: %v: %w", err, ErrInvalidTraffic)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("traffic report from %q: %s: %w", t.Site, fmt.Sprintf(format, args...), ErrInvalidTraffic)
	}
	if t.Router != "" {
		if err := names.CheckRouter(t.Router); err != nil {
			return bad("%v", err)
		}
	}
	switch {
	case len(t.Key) > maxKeyID:
		return bad("key of %d bytes", len(t.Key))
	case t.Epoch < 1:
		return bad("epoch %d, want a start time", t.Epoch)
	case t.Seq < 1 || t.Seq > MaxSeq:
		return bad("seq %d, want 1..%d", t.Seq, uint64(MaxSeq))
	case t.Millis < 1 || t.Millis > MaxTrafficInterval.Milliseconds():
		return bad("interval of %d ms, want 1..%d", t.Millis, MaxTrafficInterval.Milliseconds())
	case len(t.Peers) > MaxLinks:
		return bad("%d peers, at most %d", len(t.Peers), MaxLinks)
	}
	for peer := range t.Peers {
		if names.CheckSite(peer) != nil {
			return bad("peer %q: not a site name", clip(peer))
		}
	}
	n := 0
	for addr, sites := range t.Flows {
		if err := names.CheckAddress(addr); err != nil {
			return bad("%v", err)
		}
		if n += len(sites); n > MaxTrafficFlows {
			return bad("more than %d flows", MaxTrafficFlows)
		}
		for site := range sites {
			if names.CheckSite(site) != nil {
				return bad("flow of %q to %q: not a site name", addr, clip(site))
			}
		}
	}
	return nil
}

// SignedTraffic is a report with its wire form, which transit gateways
// forward unchanged.
type SignedTraffic struct {
	Traffic
	wire []byte
}

// Wire returns the signed report's wire form. It must not be modified.
func (s SignedTraffic) Wire() []byte { return s.wire }

// trafficEnvelope is the wire form of a signed report.
type trafficEnvelope struct {
	Traffic []byte `json:"traffic"`
	Sig     []byte `json:"sig"` // ECDSA P-256 over SHA-256(trafficContext + Traffic)
}

// SignTraffic returns t signed with key: t.Key is set to key's [KeyID]
// and a zero Version to [TrafficVersion]. A report [OpenTraffic] would
// refuse is refused.
func SignTraffic(t Traffic, key *ecdsa.PrivateKey) (SignedTraffic, error) {
	if key == nil {
		return SignedTraffic{}, errors.New("sign traffic report: no key")
	}
	id, err := KeyID(&key.PublicKey)
	if err != nil {
		return SignedTraffic{}, err
	}
	t.Key = id
	if t.Version == 0 {
		t.Version = TrafficVersion
	}
	if err := validateTraffic(t); err != nil {
		return SignedTraffic{}, fmt.Errorf("sign: %w", err)
	}
	body, err := json.Marshal(t)
	if err != nil {
		return SignedTraffic{}, fmt.Errorf("sign traffic report: %w", err)
	}
	sig, err := ecdsa.SignASN1(rand.Reader, key, trafficDigest(body))
	if err != nil {
		return SignedTraffic{}, fmt.Errorf("sign traffic report: %w", err)
	}
	wire, err := json.Marshal(trafficEnvelope{Traffic: body, Sig: sig})
	if err != nil {
		return SignedTraffic{}, fmt.Errorf("sign traffic report: %w", err)
	}
	if len(wire) > MaxTrafficBytes {
		return SignedTraffic{}, fmt.Errorf("traffic report of %d bytes, at most %d: %w", len(wire), MaxTrafficBytes, ErrInvalidTraffic)
	}
	return SignedTraffic{Traffic: t, wire: wire}, nil
}

// OpenTraffic parses a signed report's wire form, checks its rules and
// epoch (as [Open] does a record's) and verifies its signature against
// the key it names. Whether that key speaks for the site is the [DB]'s
// to decide ([DB.ApplyTraffic]).
func OpenTraffic(b []byte, now time.Time) (SignedTraffic, error) {
	if len(b) > MaxTrafficBytes {
		return SignedTraffic{}, fmt.Errorf("traffic report of %d bytes, at most %d: %w", len(b), MaxTrafficBytes, ErrInvalidTraffic)
	}
	var env trafficEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		return SignedTraffic{}, fmt.Errorf("decode traffic report: %w", err)
	}
	var t Traffic
	if err := json.Unmarshal(env.Traffic, &t); err != nil {
		return SignedTraffic{}, fmt.Errorf("decode traffic report: %w", err)
	}
	if err := validateTraffic(t); err != nil {
		return SignedTraffic{}, err
	}
	if limit := now.Add(MaxClockSkew).UnixNano(); t.Epoch > limit {
		return SignedTraffic{}, fmt.Errorf("traffic report from %q has an epoch more than %s ahead of this gateway's clock: %w", t.Site, MaxClockSkew, ErrInvalidTraffic)
	}
	pub, err := ParseKeyID(t.Key)
	if err != nil {
		return SignedTraffic{}, fmt.Errorf("traffic report from %q: %w", t.Site, err)
	}
	if len(env.Sig) == 0 || !ecdsa.VerifyASN1(pub, trafficDigest(env.Traffic), env.Sig) {
		return SignedTraffic{}, fmt.Errorf("traffic report from %q (key %s): %w", t.Site, Fingerprint(t.Key), ErrSignature)
	}
	return SignedTraffic{Traffic: t, wire: append([]byte(nil), b...)}, nil
}

func trafficDigest(body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(trafficContext))
	h.Write(body)
	return h.Sum(nil)
}

// heldTraffic is a stored report of another node.
type heldTraffic struct {
	SignedTraffic
	at time.Time // when it arrived
}

// SignTraffic signs a report of the local node's traffic with the DB's
// key: the DB fills in the site, router, epoch and the next report Seq.
func (db *DB) SignTraffic(interval time.Duration, peers map[string]PeerTraffic, flows map[string]map[string]FlowTraffic) (SignedTraffic, error) {
	db.mu.Lock()
	key, keyErr := db.key, db.keyErr
	db.trafficSeq++
	t := Traffic{Version: TrafficVersion, Site: db.self, Router: db.local.Router, Epoch: db.local.Epoch, Seq: db.trafficSeq,
		Millis: max(interval.Milliseconds(), 1), Peers: peers, Flows: flows}
	db.mu.Unlock()
	if key == nil {
		return SignedTraffic{}, fmt.Errorf("site %s: no key to sign its traffic report", db.self)
	}
	if keyErr != nil {
		return SignedTraffic{}, keyErr
	}
	return SignTraffic(t, key)
}

// ApplyTraffic stores s, from [OpenTraffic], if it is newer than the
// report held for its node, and reports whether it did; the caller then
// floods it to its other peers. A report is taken only from a key that
// speaks for its site ([ErrKeyConflict] otherwise: it never binds a name)
// and only for a node the DB holds a record of, so that the reports held
// are bounded by the records and go with them; others are dropped
// (false, nil). The local node's own reports are dropped.
func (db *DB) ApplyTraffic(s SignedTraffic) (bool, error) {
	if err := validateTraffic(s.Traffic); err != nil {
		return false, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	node := s.Node()
	if node == db.local.Node() {
		return false, nil
	}
	b := db.bindingLocked(s.Site)
	if b == nil {
		return false, nil // a site not known (yet): it has no record here
	}
	if s.Key != b.key && s.Key != b.prev && !db.ownKeyLocked(s.Site, s.Key) {
		return false, fmt.Errorf("traffic report of site %q by key %s, which does not speak for it: %w", s.Site, Fingerprint(s.Key), ErrKeyConflict)
	}
	if _, ok := db.records[node]; !ok {
		return false, nil
	}
	if old, ok := db.traffic[node]; ok && !s.Newer(old.Traffic) {
		return false, nil
	}
	if db.traffic == nil {
		db.traffic = map[string]*heldTraffic{}
	}
	db.traffic[node] = &heldTraffic{SignedTraffic: s, at: db.now()}
	return true, nil
}

// HeldTraffic is a report the DB holds, with its age.
type HeldTraffic struct {
	Traffic
	AgeMillis int64 `json:"ageMs"` // since it arrived
}

// TrafficDocument is what a gateway serves at /traffic: the latest
// reports of the other nodes of the network, by node.
type TrafficDocument struct {
	Self    string        `json:"self"`
	Reports []HeldTraffic `json:"reports"`
}

// Traffic returns the reports of other nodes that arrived within maxAge
// and whose node the DB still holds a record of, sorted by node; it drops
// the others.
func (db *DB) Traffic(maxAge time.Duration) []HeldTraffic {
	now := db.now()
	db.mu.Lock()
	var out []HeldTraffic
	for node, h := range db.traffic {
		_, held := db.records[node]
		if age := now.Sub(h.at); held && age <= maxAge {
			out = append(out, HeldTraffic{Traffic: h.Traffic.clone(), AgeMillis: age.Milliseconds()})
			continue
		}
		delete(db.traffic, node)
	}
	db.mu.Unlock()
	slices.SortFunc(out, func(a, b HeldTraffic) int { return strings.Compare(a.Node(), b.Node()) })
	return out
}
