package netview

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
)

// RecordVersion is the wire format version of [Record] that this package
// writes and the newest it reads.
const RecordVersion = 1

// MaxCost is the largest link cost a record may claim. The bound keeps path
// costs (sums over at most a few thousand links) far from integer overflow;
// [DB.SetLocal] clamps local costs into 1..MaxCost.
const MaxCost = 1 << 24

var (
	// ErrVersion reports a site record of a wire format version this
	// gateway does not understand.
	ErrVersion = errors.New("unsupported site record version")
	// ErrInvalidRecord reports a site record that is well-formed JSON but
	// breaks the record's rules (no site, a cost out of range, ...).
	ErrInvalidRecord = errors.New("invalid site record")
)

// Record is what one site's gateway floods about itself.
type Record struct {
	Version int    `json:"v"`
	Site    string `json:"site"`
	// Epoch is the gateway's start time (unix nanoseconds): a restarted
	// site supersedes its old records whatever their Seq.
	Epoch int64 `json:"epoch"`
	// Seq is bumped on every change within an epoch.
	Seq uint64 `json:"seq"`
	// Links maps a peer site to the cost of the link to it, for links
	// currently up.
	Links map[string]int `json:"links,omitempty"`
	// Addresses maps a network address to the number of ready endpoints
	// (connectors) this site has for it.
	Addresses map[string]int `json:"addresses,omitempty"`
	// Routing maps an address this site has endpoints for to the routing
	// pattern the site declares for it, when that is not the default. It
	// informs the controllers of other sites; routers route by their own
	// configuration.
	Routing map[string]string `json:"routing,omitempty"`
}

// Newer reports whether r supersedes than: a later Epoch, or the same Epoch
// and a higher Seq. It does not look at Site.
func (r Record) Newer(than Record) bool {
	if r.Epoch != than.Epoch {
		return r.Epoch > than.Epoch
	}
	return r.Seq > than.Seq
}

// sameContent reports whether r and o describe the same links and addresses.
func (r Record) sameContent(o Record) bool {
	return maps.Equal(r.Links, o.Links) && maps.Equal(r.Addresses, o.Addresses) && maps.Equal(r.Routing, o.Routing)
}

// clone returns r with maps of its own, empty ones as nil.
func (r Record) clone() Record {
	r.Links = cloneMap(r.Links)
	r.Addresses = cloneMap(r.Addresses)
	r.Routing = cloneMap(r.Routing)
	return r
}

func cloneMap[V comparable](m map[string]V) map[string]V {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// Encode returns r's wire form (JSON). A zero Version is written as
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

// Decode parses a record's wire form. Unknown fields are ignored, so that
// records from gateways with later compatible additions interoperate; a
// Version other than 1..RecordVersion is refused with [ErrVersion], and a
// record without a site, with a link cost outside 1..[MaxCost] or a negative
// endpoint count with [ErrInvalidRecord]. Empty maps decode as nil.
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

// validate checks the rules Decode enforces.
func validate(r Record) error {
	if r.Version < 1 || r.Version > RecordVersion {
		return fmt.Errorf("site record v%d from %q, this gateway understands v%d: %w", r.Version, r.Site, RecordVersion, ErrVersion)
	}
	if r.Site == "" {
		return fmt.Errorf("site record has no site: %w", ErrInvalidRecord)
	}
	for peer, cost := range r.Links {
		switch {
		case peer == "":
			return fmt.Errorf("site record from %q lists a link to an unnamed site: %w", r.Site, ErrInvalidRecord)
		case peer == r.Site:
			return fmt.Errorf("site record from %q lists a link to itself: %w", r.Site, ErrInvalidRecord)
		case cost < 1 || cost > MaxCost:
			return fmt.Errorf("site record from %q: link to %q has cost %d, want 1..%d: %w", r.Site, peer, cost, MaxCost, ErrInvalidRecord)
		}
	}
	for addr, n := range r.Addresses {
		switch {
		case addr == "":
			return fmt.Errorf("site record from %q lists an empty address: %w", r.Site, ErrInvalidRecord)
		case n < 0:
			return fmt.Errorf("site record from %q: address %q has %d endpoints: %w", r.Site, addr, n, ErrInvalidRecord)
		}
	}
	for addr, p := range r.Routing {
		if addr == "" || p == "" || len(p) > 32 {
			return fmt.Errorf("site record from %q: bad routing %q for address %q: %w", r.Site, p, addr, ErrInvalidRecord)
		}
	}
	return nil
}
