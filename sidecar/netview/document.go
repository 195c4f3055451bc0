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
}

// Document returns the current view as a Document.
func (db *DB) Document() Document {
	v := db.View()
	recs := db.Records()
	d := Document{Self: v.Self, Unreachable: v.Unreachable, Addresses: v.Addresses, Routing: v.Routing}
	for _, c := range db.Conflicts() {
		d.Conflicts = append(d.Conflicts, Conflict{Site: c.Site, Key: c.Key, HeldBy: c.HeldBy})
	}
	reachable := map[string]bool{}
	for _, s := range v.Sites() {
		reachable[s] = true
	}
	for _, r := range recs {
		if !reachable[r.Site] {
			continue
		}
		s := DocumentSite{Name: r.Site, Links: r.Links}
		if rt, ok := v.Routes[r.Site]; ok {
			s.Cost, s.Hops, s.NextHop = rt.Cost, rt.Hops, rt.NextHop
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
