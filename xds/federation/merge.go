package federation

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"math"
	"slices"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// Merge joins the views of a site's gateway replicas into one document.
// Replicas of one site see the same network once their records have
// flooded, but for a while one may see less than another (it just
// started, or its links are down), so what any replica sees counts:
//
//   - Self is the first document's site; documents of another site are
//     left out.
//   - Sites: the union; per site the lowest cost across replicas, then
//     the fewest hops (that replica's next hop); Links the union, per
//     peer site the lower cost; Routers the union, sorted. Self comes
//     first, then the sites by name, as netview sorts them.
//   - Addresses: per address and site the lowest cost and the most
//     endpoints, sorted by cost, then site, as netview sorts them.
//   - Routing: per address the pattern of the replica whose cheapest
//     site serving the address is the cheapest (by cost, then site name;
//     among equals the lowest pattern). A document names the pattern the
//     lowest-cost declaring site chose but not that site, so this is the
//     nearest to "the pattern of the lowest-cost site declaring it" a
//     merge of documents can get.
//   - Protocols: per address the protocol of the replica chosen as for
//     Routing (among equals the lowest protocol name).
//   - Multicast: per address the multicast mode of the replica chosen as
//     for Routing (among equals the lowest text).
//   - Unreachable: the sites some replica has a record of and no replica
//     reaches, sorted.
//   - Conflicts: the union, sorted by site, key and holder.
//
// Version is a hash of the rest of the merged document (the way netview
// versions its documents), so equal merges have equal versions whatever
// the order of docs. Merge of no documents is the zero Document.
func Merge(docs []netview.Document) netview.Document {
	if len(docs) == 0 {
		return netview.Document{}
	}
	m := newMerger(docs[0].Self)
	for _, d := range docs {
		if d.Self != m.self {
			continue
		}
		m.addSites(d.Sites)
		m.addAddresses(d.Addresses)
		addDeclared(m.routing, d.Routing, d.Addresses)
		addDeclared(m.protocols, d.Protocols, d.Addresses)
		addDeclared(m.multicast, d.Multicast, d.Addresses)
		for _, s := range d.Unreachable {
			m.unreachable[s] = true
		}
		for _, c := range d.Conflicts {
			m.conflicts[netview.Conflict{Site: c.Site, Key: c.Key, HeldBy: c.HeldBy}] = true
		}
	}
	return m.document()
}

// merger collects what the documents Merge joins say, per site, address
// and so on, to be written out by [merger.document].
type merger struct {
	self  string
	sites map[string]*netview.DocumentSite
	// routers collects each site's routers across replicas.
	routers     map[string]map[string]bool
	targets     map[string]map[string]netview.Target // by address, then site
	routing     map[string]declChoice                // by address
	protocols   map[string]declChoice                // by address
	multicast   map[string]declChoice                // by address
	unreachable map[string]bool
	conflicts   map[netview.Conflict]bool
}

// declChoice is what one document declares for an address (a routing
// pattern, a protocol, a multicast mode), with the cost and site of its cheapest site
// serving the address (cost math.MaxInt when it has none).
type declChoice struct {
	cost  int
	site  string
	value string
}

// newMerger returns an empty merger for the documents of site self.
func newMerger(self string) *merger {
	return &merger{
		self:        self,
		sites:       map[string]*netview.DocumentSite{},
		routers:     map[string]map[string]bool{},
		targets:     map[string]map[string]netview.Target{},
		routing:     map[string]declChoice{},
		protocols:   map[string]declChoice{},
		multicast:   map[string]declChoice{},
		unreachable: map[string]bool{},
		conflicts:   map[netview.Conflict]bool{},
	}
}

// addSites merges one document's sites: the better route, the union of
// links at the lower cost, and the union of routers.
func (m *merger) addSites(sites []netview.DocumentSite) {
	for _, s := range sites {
		cur, ok := m.sites[s.Name]
		if !ok {
			cur = &netview.DocumentSite{Name: s.Name, Cost: s.Cost, Hops: s.Hops, NextHop: s.NextHop}
			m.sites[s.Name] = cur
		} else if better(s, *cur) {
			cur.Cost, cur.Hops, cur.NextHop = s.Cost, s.Hops, s.NextHop
		}
		for peer, cost := range s.Links {
			if cur.Links == nil {
				cur.Links = map[string]int{}
			}
			if c, ok := cur.Links[peer]; !ok || cost < c {
				cur.Links[peer] = cost
			}
		}
		for _, r := range s.Routers {
			if m.routers[s.Name] == nil {
				m.routers[s.Name] = map[string]bool{}
			}
			m.routers[s.Name][r] = true
		}
	}
}

// addAddresses merges one document's targets: per address and site the
// lowest cost and the most endpoints.
func (m *merger) addAddresses(addresses map[string][]netview.Target) {
	for addr, ts := range addresses {
		for _, t := range ts {
			if m.targets[addr] == nil {
				m.targets[addr] = map[string]netview.Target{}
			}
			cur, ok := m.targets[addr][t.Site]
			if !ok {
				m.targets[addr][t.Site] = t
				continue
			}
			cur.Cost = min(cur.Cost, t.Cost)
			cur.Endpoints = max(cur.Endpoints, t.Endpoints)
			m.targets[addr][t.Site] = cur
		}
	}
}

// addDeclared merges what one document declares per address (its
// routing patterns, its protocols or its multicast modes, decl) into
// chosen: per address it keeps the choice whose cheapest serving site (in
// addresses, the document's targets) is the cheapest, by cost, then site,
// then value.
func addDeclared(chosen map[string]declChoice, decl map[string]string, addresses map[string][]netview.Target) {
	for addr, v := range decl {
		if v == "" {
			continue
		}
		c := declChoice{cost: math.MaxInt, value: v}
		if ts := addresses[addr]; len(ts) > 0 {
			// netview sorts targets by cost, then site.
			c.cost, c.site = ts[0].Cost, ts[0].Site
		}
		if cur, ok := chosen[addr]; !ok || cmp.Or(cmp.Compare(c.cost, cur.cost), cmp.Compare(c.site, cur.site), cmp.Compare(c.value, cur.value)) < 0 {
			chosen[addr] = c
		}
	}
}

// document writes out the merged document, versioned.
func (m *merger) document() netview.Document {
	out := netview.Document{
		Self:        m.self,
		Sites:       m.mergedSites(),
		Unreachable: m.mergedUnreachable(),
		Addresses:   m.mergedAddresses(),
		Routing:     merged(m.routing),
		Protocols:   merged(m.protocols),
		Multicast:   merged(m.multicast),
		Conflicts:   m.mergedConflicts(),
	}
	out.Version = documentVersion(out)
	return out
}

// mergedSites returns the merged sites, each with its routers sorted: Self
// first, then the sites by name.
func (m *merger) mergedSites() []netview.DocumentSite {
	var out []netview.DocumentSite
	for _, name := range slices.Sorted(maps.Keys(m.sites)) {
		s := m.sites[name]
		if rs := m.routers[name]; len(rs) > 0 {
			s.Routers = slices.Sorted(maps.Keys(rs))
		}
		out = append(out, *s)
	}
	slices.SortStableFunc(out, func(a, b netview.DocumentSite) int {
		switch {
		case a.Name == m.self:
			return -1
		case b.Name == m.self:
			return 1
		}
		return 0
	})
	return out
}

// mergedUnreachable returns the sites some document lists as unreachable
// and none reaches, sorted.
func (m *merger) mergedUnreachable() []string {
	var out []string
	for s := range m.unreachable {
		if m.sites[s] == nil && s != m.self {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// mergedAddresses returns every address's merged targets, sorted by cost,
// then site; nil when there are none.
func (m *merger) mergedAddresses() map[string][]netview.Target {
	var out map[string][]netview.Target
	for addr, bySite := range m.targets {
		if out == nil {
			out = map[string][]netview.Target{}
		}
		ts := slices.Collect(maps.Values(bySite))
		slices.SortFunc(ts, func(a, b netview.Target) int {
			return cmp.Or(cmp.Compare(a.Cost, b.Cost), cmp.Compare(a.Site, b.Site))
		})
		out[addr] = ts
	}
	return out
}

// merged returns the chosen value (pattern, protocol or multicast mode)
// of every address; nil when there are none.
func merged(chosen map[string]declChoice) map[string]string {
	var out map[string]string
	for addr, c := range chosen {
		if out == nil {
			out = map[string]string{}
		}
		out[addr] = c.value
	}
	return out
}

// mergedConflicts returns the union of the conflicts, sorted by site, key
// and holder.
func (m *merger) mergedConflicts() []netview.Conflict {
	var out []netview.Conflict
	for c := range m.conflicts {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b netview.Conflict) int {
		return cmp.Or(cmp.Compare(a.Site, b.Site), cmp.Compare(a.Key, b.Key), cmp.Compare(a.HeldBy, b.HeldBy))
	})
	return out
}

// better reports whether a is a better route to its site than b: a lower
// cost, then fewer hops, then (to be independent of the replicas' order)
// the lower next hop.
func better(a, b netview.DocumentSite) bool {
	return cmp.Or(cmp.Compare(a.Cost, b.Cost), cmp.Compare(a.Hops, b.Hops), cmp.Compare(a.NextHop, b.NextHop)) < 0
}

// documentVersion hashes d without its Version as netview versions a
// document (netview's hash is not exported): the first 8 bytes of the
// SHA-256 of its JSON, hex. Maps marshal in key order, so the hash is
// deterministic.
func documentVersion(d netview.Document) string {
	d.Version = ""
	b, _ := json.Marshal(d) // strings, ints, slices and maps: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
