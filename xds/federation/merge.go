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
	self := docs[0].Self
	out := netview.Document{Self: self}
	sites := map[string]*netview.DocumentSite{}
	// routers collects each site's routers across replicas.
	routers := map[string]map[string]bool{}
	targets := map[string]map[string]netview.Target{}
	type routingChoice struct {
		cost    int
		site    string
		pattern string
	}
	routing := map[string]routingChoice{}
	unreachable := map[string]bool{}
	conflicts := map[netview.Conflict]bool{}
	for _, d := range docs {
		if d.Self != self {
			continue
		}
		for _, s := range d.Sites {
			cur, ok := sites[s.Name]
			if !ok {
				cur = &netview.DocumentSite{Name: s.Name, Cost: s.Cost, Hops: s.Hops, NextHop: s.NextHop}
				sites[s.Name] = cur
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
				if routers[s.Name] == nil {
					routers[s.Name] = map[string]bool{}
				}
				routers[s.Name][r] = true
			}
		}
		for addr, ts := range d.Addresses {
			for _, t := range ts {
				if targets[addr] == nil {
					targets[addr] = map[string]netview.Target{}
				}
				cur, ok := targets[addr][t.Site]
				if !ok {
					targets[addr][t.Site] = t
					continue
				}
				cur.Cost = min(cur.Cost, t.Cost)
				cur.Endpoints = max(cur.Endpoints, t.Endpoints)
				targets[addr][t.Site] = cur
			}
		}
		for addr, p := range d.Routing {
			if p == "" {
				continue
			}
			c := routingChoice{cost: math.MaxInt, pattern: p}
			if ts := d.Addresses[addr]; len(ts) > 0 {
				// netview sorts targets by cost, then site.
				c.cost, c.site = ts[0].Cost, ts[0].Site
			}
			if cur, ok := routing[addr]; !ok || cmp.Or(cmp.Compare(c.cost, cur.cost), cmp.Compare(c.site, cur.site), cmp.Compare(c.pattern, cur.pattern)) < 0 {
				routing[addr] = c
			}
		}
		for _, s := range d.Unreachable {
			unreachable[s] = true
		}
		for _, c := range d.Conflicts {
			conflicts[netview.Conflict{Site: c.Site, Key: c.Key, HeldBy: c.HeldBy}] = true
		}
	}

	for _, name := range slices.Sorted(maps.Keys(sites)) {
		s := sites[name]
		if rs := routers[name]; len(rs) > 0 {
			s.Routers = slices.Sorted(maps.Keys(rs))
		}
		out.Sites = append(out.Sites, *s)
	}
	slices.SortStableFunc(out.Sites, func(a, b netview.DocumentSite) int {
		switch {
		case a.Name == self:
			return -1
		case b.Name == self:
			return 1
		}
		return 0
	})
	for s := range unreachable {
		if sites[s] == nil && s != self {
			out.Unreachable = append(out.Unreachable, s)
		}
	}
	slices.Sort(out.Unreachable)
	for addr, bySite := range targets {
		if out.Addresses == nil {
			out.Addresses = map[string][]netview.Target{}
		}
		ts := slices.Collect(maps.Values(bySite))
		slices.SortFunc(ts, func(a, b netview.Target) int {
			return cmp.Or(cmp.Compare(a.Cost, b.Cost), cmp.Compare(a.Site, b.Site))
		})
		out.Addresses[addr] = ts
	}
	for addr, c := range routing {
		if out.Routing == nil {
			out.Routing = map[string]string{}
		}
		out.Routing[addr] = c.pattern
	}
	for c := range conflicts {
		out.Conflicts = append(out.Conflicts, c)
	}
	slices.SortFunc(out.Conflicts, func(a, b netview.Conflict) int {
		return cmp.Or(cmp.Compare(a.Site, b.Site), cmp.Compare(a.Key, b.Key), cmp.Compare(a.HeldBy, b.HeldBy))
	})
	out.Version = documentVersion(out)
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
