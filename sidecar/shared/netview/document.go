package netview

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
)

// Document is the JSON form of a gateway's view that it serves to its
// controller (GET /view on the gateway's admin address): the reachable
// sites with their path costs and links, and the addresses each serves.
type Document struct {
	// Version is a content hash of the rest of the document.
	Version string `json:"version"`
	Self    string `json:"self"`
	// Sites are the reachable sites, Self first (cost 0), then by name.
	Sites []DocumentSite `json:"sites"`
	// Unreachable are sites with a record but no path, sorted.
	Unreachable []string            `json:"unreachable,omitempty"`
	Addresses   map[string][]Target `json:"addresses,omitempty"`
	Routing     map[string]string   `json:"routing,omitempty"`
	// Protocols are the protocols declared per address (View.Protocols):
	// addresses not listed are tcp.
	Protocols map[string]string `json:"protocols,omitempty"`
	// Multicast are the multicast modes declared per address
	// (View.Multicast), model.MulticastSpec's Text form; a reader takes
	// one it cannot parse, or none, as the defaults.
	Multicast map[string]string `json:"multicast,omitempty"`
	// Conflicts are the latest records and links refused because another
	// key holds their site's name (without Count and Last, so that the
	// Version changes only with a new conflict).
	Conflicts []Conflict `json:"conflicts,omitempty"`
}

// DocumentSite is a reachable site in a Document.
type DocumentSite struct {
	Name    string         `json:"name"`
	Cost    int            `json:"cost"`
	Hops    int            `json:"hops,omitempty"`
	NextHop string         `json:"nextHop,omitempty"`
	Links   map[string]int `json:"links,omitempty"`
	// Routers are the site's reachable gateways (their router names).
	Routers []string `json:"routers,omitempty"`
}

// Document returns the current view as a Document: per reachable site,
// the links of its reachable gateways to other sites (the cheapest per
// peer site), its gateways and its route.
func (db *DB) Document() Document {
	v := db.View()
	recs := db.Records()
	d := Document{Self: v.Self, Unreachable: v.Unreachable, Addresses: v.Addresses, Routing: v.Routing, Protocols: v.Protocols, Multicast: v.Multicast}
	for _, c := range db.Conflicts() {
		d.Conflicts = append(d.Conflicts, Conflict{Site: c.Site, Key: c.Key, HeldBy: c.HeldBy})
	}
	unreachable := map[string]bool{}
	for _, n := range v.UnreachableNodes {
		unreachable[n] = true
	}
	links := map[string]map[string]int{}
	for _, r := range recs {
		if unreachable[r.Node()] {
			continue
		}
		if links[r.Site] == nil {
			links[r.Site] = map[string]int{}
		}
		for peer, cost := range r.Links {
			ps := SiteOf(peer)
			if ps == r.Site {
				continue // siblings: Routers lists them
			}
			if c, ok := links[r.Site][ps]; !ok || cost < c {
				links[r.Site][ps] = cost
			}
		}
	}
	for _, site := range v.Sites() {
		s := DocumentSite{Name: site, Links: cloneMap(links[site]), Routers: v.Routers[site]}
		if rt, ok := v.Routes[site]; ok {
			s.Cost, s.Hops, s.NextHop = rt.Cost, rt.Hops, SiteOf(rt.NextHop)
		}
		d.Sites = append(d.Sites, s)
	}
	slices.SortStableFunc(d.Sites, func(a, b DocumentSite) int {
		switch {
		case a.Name == v.Self:
			return -1
		case b.Name == v.Self:
			return 1
		}
		return 0
	})
	return d.hashed()
}

// hashed returns d with Version set to the hash of the rest.
func (d Document) hashed() Document {
	d.Version = ""
	b, _ := json.Marshal(d) // maps marshal in key order: deterministic
	sum := sha256.Sum256(b)
	d.Version = hex.EncodeToString(sum[:8])
	return d
}

// Filter returns d without the targets for which keep(site, address) is
// false (addresses left with no target are dropped), with a new Version.
func (d Document) Filter(keep func(site, address string) bool) Document {
	out := make(map[string][]Target, len(d.Addresses))
	changed := false
	for addr, targets := range d.Addresses {
		var kept []Target
		for _, t := range targets {
			if keep(t.Site, addr) {
				kept = append(kept, t)
			} else {
				changed = true
			}
		}
		if len(kept) > 0 {
			out[addr] = kept
		}
	}
	if !changed {
		return d
	}
	d.Addresses = out
	return d.hashed()
}
