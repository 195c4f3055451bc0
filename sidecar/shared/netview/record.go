package netview

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/skiff-io/skiff/sidecar/shared/names"
)

// RecordVersion is the wire format version of [Record] that this package
// writes and reads. Version 1 records were unsigned and are refused.
const RecordVersion = 2

// Bounds on what one record may claim. They keep path costs (sums over at
// most a few thousand links) far from integer overflow and a record's
// maps small enough that a peer cannot make a gateway hold much.
const (
	// MaxCost is the largest link cost a record may claim; [DB.SetLocal]
	// clamps local costs into 1..MaxCost.
	MaxCost = 1 << 24
	// MaxSeq is the largest sequence number a record may carry. A site
	// bumps Seq once per change, so no honest record comes near it.
	MaxSeq = 1 << 53
	// MaxLinks is how many links one record may list.
	MaxLinks = 4096
	// MaxAddresses is how many addresses one record may list.
	MaxAddresses = 1 << 17
	// MaxEndpoints is the largest endpoint count one address may claim.
	MaxEndpoints = 1 << 20
)

var (
	// ErrVersion reports a site record of a wire format version this
	// gateway does not understand.
	ErrVersion = errors.New("unsupported site record version")
	// ErrInvalidRecord reports a site record that is well-formed JSON but
	// breaks the record's rules (no site, a cost out of range, ...).
	ErrInvalidRecord = errors.New("invalid site record")
)

// Record is what one site's gateway floods about itself. On the wire it
// travels signed by its site's key (see [Sign] and [Open]).
type Record struct {
	Version int    `json:"v"`
	Site    string `json:"site"`
	// Router names the gateway that originated the record within its
	// site (its pod or host name): with Site, the record's node
	// ([NodeID]). Each gateway of a site floods its own record.
	Router string `json:"router,omitempty"`
	// Key is the site's public key ([KeyID] form) that signs the record.
	// The first key seen for a site name holds the name (see [DB]).
	Key string `json:"key,omitempty"`
	// Epoch is the gateway's start time (unix nanoseconds): a restarted
	// site supersedes its old records whatever their Seq. A record whose
	// epoch lies more than [MaxClockSkew] in the future is refused.
	Epoch int64 `json:"epoch"`
	// Seq is bumped on every change within an epoch, and on every
	// refresh.
	Seq uint64 `json:"seq"`
	// Links maps a peer node ([NodeID]: the router at the other end) to
	// the cost of the link to it, for links currently up. Links between
	// the gateways of one site (siblings) may cost 0.
	Links map[string]int `json:"links,omitempty"`
	// Addresses maps a network address to the number of ready endpoints
	// (connectors) this site has for it.
	Addresses map[string]int `json:"addresses,omitempty"`
	// Routing maps an address this site has endpoints for to the routing
	// pattern the site declares for it, when that is not the default. It
	// informs the controllers of other sites; routers route by their own
	// configuration.
	Routing map[string]string `json:"routing,omitempty"`
	// Protocols maps an address this site has endpoints for to the
	// protocol they speak (a model.Protocol other than tcp: http, http2
	// or grpc), so that other sites route its requests one by one when
	// their own configuration names no protocol for it. Addresses that
	// are not listed are tcp, and so are names a reader does not know.
	Protocols map[string]string `json:"protocols,omitempty"`
	// Multicast maps a multicast address this site has endpoints for to
	// how it answers the client whose request it copied: a
	// model.MulticastSpec in its Text form, such as aggregate-5000ms.
	// Defaults are declared too, so that the lowest-cost declaring site's
	// choice holds. A value this version cannot parse (a newer site's
	// mode) is read as the default (model.MulticastSpec's zero value).
	Multicast map[string]string `json:"multicast,omitempty"`
	// Draining is set while the gateway drains: its links sent GOAWAY, so
	// it takes no new streams. Routes avoid it where another path exists
	// (see [View]). A reader of an earlier version ignores it.
	Draining bool `json:"draining,omitempty"`
	// Prev, while the site rotates its key, is the endorsement of Key by the
	// key before it: records signed by Key are then accepted wherever the
	// previous key holds the site's name.
	Prev *Rollover `json:"prev,omitempty"`
}

// Rollover is a site's previous key endorsing its current one.
type Rollover struct {
	Key string `json:"key"` // the previous key, KeyID form
	Sig []byte `json:"sig"` // ECDSA P-256 (ASN.1) by Key over SHA-256(rolloverContext + site + "\n" + new key ID)
}

// maxRolloverSig bounds an endorsement's signature (a P-256 ASN.1
// signature is at most 72 bytes).
const maxRolloverSig = 256

// Newer reports whether r supersedes than: a later Epoch, or the same Epoch
// and a higher Seq. It does not look at Site.
func (r Record) Newer(than Record) bool {
	if r.Epoch != than.Epoch {
		return r.Epoch > than.Epoch
	}
	return r.Seq > than.Seq
}

// sameContent reports whether r and o describe the same links,
// addresses, routing patterns, protocols and multicast modes, and the
// same drain. Prev is not content: the DB acts on it when it binds the
// record's key.
func (r Record) sameContent(o Record) bool {
	return maps.Equal(r.Links, o.Links) && maps.Equal(r.Addresses, o.Addresses) &&
		maps.Equal(r.Routing, o.Routing) && maps.Equal(r.Protocols, o.Protocols) &&
		maps.Equal(r.Multicast, o.Multicast) && r.Draining == o.Draining
}

// clone returns r with maps and a Prev of its own, empty maps as nil.
func (r Record) clone() Record {
	r.Links = cloneMap(r.Links)
	r.Addresses = cloneMap(r.Addresses)
	r.Routing = cloneMap(r.Routing)
	r.Protocols = cloneMap(r.Protocols)
	r.Multicast = cloneMap(r.Multicast)
	if r.Prev != nil {
		r.Prev = &Rollover{Key: r.Prev.Key, Sig: bytes.Clone(r.Prev.Sig)}
	}
	return r
}

func cloneMap[V comparable](m map[string]V) map[string]V {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// Encode returns r's JSON form, unsigned. A zero Version is written as
// [RecordVersion]; a record that [Decode] would refuse is refused.
func Encode(r Record) ([]byte, error) {
	if r.Version == 0 {
		r.Version = RecordVersion
	}
	if err := validate(r); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode site record from %q: %w", r.Site, err)
	}
	return b, nil
}

// Decode parses a record's JSON form and checks it against the record's
// rules; it does not check a signature (see [Open]). Unknown fields are
// ignored, so that records from gateways with later compatible additions
// interoperate; a Version other than [RecordVersion] is refused with
// [ErrVersion], and a record that breaks a rule (names, costs, counts, the
// bounds above) with [ErrInvalidRecord]. Empty maps decode as nil.
func Decode(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("decode site record: %w", err)
	}
	if err := validate(r); err != nil {
		return Record{}, err
	}
	return r.clone(), nil
}

// validate checks the rules Decode enforces. Names are checked with
// package names, so a record cannot carry a name the site file would
// refuse.
func validate(r Record) error {
	if r.Version != RecordVersion {
		return fmt.Errorf("site record v%d from %q, this gateway understands v%d: %w", r.Version, clip(r.Site), RecordVersion, ErrVersion)
	}
	if err := names.CheckSite(r.Site); err != nil {
		return fmt.Errorf("site record: %v: %w", err, ErrInvalidRecord)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("site record from %q: %s: %w", r.Site, fmt.Sprintf(format, args...), ErrInvalidRecord)
	}
	if r.Router != "" {
		if err := names.CheckRouter(r.Router); err != nil {
			return bad("%v", err)
		}
	}
	if len(r.Key) > maxKeyID {
		return bad("key of %d bytes", len(r.Key))
	}
	if p := r.Prev; p != nil {
		switch {
		case p.Key == "" || len(p.Key) > maxKeyID:
			return bad("previous key of %d bytes", len(p.Key))
		case len(p.Sig) > maxRolloverSig:
			return bad("endorsement of %d bytes, at most %d", len(p.Sig), maxRolloverSig)
		case p.Key == r.Key:
			return bad("key endorses itself")
		}
	}
	switch {
	case r.Epoch < 1:
		return bad("epoch %d, want a start time", r.Epoch)
	case r.Seq < 1 || r.Seq > MaxSeq:
		return bad("seq %d, want 1..%d", r.Seq, uint64(MaxSeq))
	case len(r.Links) > MaxLinks:
		return bad("%d links, at most %d", len(r.Links), MaxLinks)
	case len(r.Addresses) > MaxAddresses:
		return bad("%d addresses, at most %d", len(r.Addresses), MaxAddresses)
	case len(r.Routing) > MaxAddresses:
		return bad("%d routing entries, at most %d", len(r.Routing), MaxAddresses)
	case len(r.Protocols) > MaxAddresses:
		return bad("%d protocol entries, at most %d", len(r.Protocols), MaxAddresses)
	case len(r.Multicast) > MaxAddresses:
		return bad("%d multicast entries, at most %d", len(r.Multicast), MaxAddresses)
	}
	if err := validateLinks(r, bad); err != nil {
		return err
	}
	for addr, n := range r.Addresses {
		if err := names.CheckAddress(addr); err != nil {
			return bad("%v", err)
		}
		if n < 0 || n > MaxEndpoints {
			return bad("address %q has %d endpoints, want 0..%d", addr, n, MaxEndpoints)
		}
	}
	// Routing patterns, protocols and multicast modes are names: one
	// this version does not know (a newer site's) is read as the default
	// by the consumers (model.ParsePattern, model.ParseProtocol,
	// model.ParseMulticastText), not a reason to refuse the whole record.
	if err := validateNames(r.Routing, "routing", "routing", bad); err != nil {
		return err
	}
	if err := validateNames(r.Protocols, "protocols", "protocol", bad); err != nil {
		return err
	}
	return validateNames(r.Multicast, "multicast", "multicast", bad)
}

// validateLinks checks the record's links: to sites and routers by
// name, not to itself, at a cost in range (0 for a sibling).
func validateLinks(r Record, bad func(string, ...any) error) error {
	self := r.Node()
	for peer, cost := range r.Links {
		site, router := SplitNode(peer)
		minCost := 1
		if site == r.Site {
			minCost = 0 // a sibling
		}
		switch {
		case names.CheckSite(site) != nil:
			return bad("link to %q: not a site name", clip(peer))
		case router != "" && names.CheckRouter(router) != nil:
			return bad("link to %q: not a router name", clip(peer))
		case peer == self:
			return bad("lists a link to itself")
		case cost < minCost || cost > MaxCost:
			return bad("link to %q has cost %d, want %d..%d", peer, cost, minCost, MaxCost)
		}
	}
	return nil
}

// validateNames checks the record's field of address to a name (a
// routing pattern, a protocol, a multicast mode: what): addresses as the
// site file would accept them, names short labels.
func validateNames(m map[string]string, field, what string, bad func(string, ...any) error) error {
	for addr, v := range m {
		if err := names.CheckAddress(addr); err != nil {
			return bad("%s: %v", field, err)
		}
		if len(v) > 32 || !names.IsLabel(v) {
			return bad("bad %s %q for address %q", what, clip(v), addr)
		}
	}
	return nil
}

// clip shortens a string from the network for an error message.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}
