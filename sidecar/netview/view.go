package netview

import (
	"cmp"
	"slices"
)

// View is the network as one site sees it, computed from a [DB]'s records.
// A View is immutable: it is shared by everyone who asked for it.
type View struct {
	// Self is the local site.
	Self string
	// Routes holds the least-cost route to every reachable site except
	// Self.
	Routes map[string]Route
	// Addresses maps an address to the reachable sites (Self included, at
	// cost 0) that have ready endpoints for it, sorted by cost, then site.
	Addresses map[string][]Target
	// Routing maps an address to the routing pattern declared for it by the
	// lowest-cost site that declares one (by name among equals); addresses
	// no reachable site declares a pattern for are absent.
	Routing map[string]string
	// Unreachable lists the sites the DB holds a record for but has no path
	// to, sorted.
	Unreachable []string

	sites []string // reachable, Self included, sorted
}

// Route is the least-cost path to a site.
type Route struct {
	Site    string
	NextHop string // the neighbour to forward to
	Cost    int    // sum of the link costs along the path
	Hops    int    // number of links along the path
}

// Target is a site that serves an address.
type Target struct {
	Site      string `json:"site"`
	Endpoints int    `json:"endpoints"` // ready endpoints at Site
	Cost      int    `json:"cost"`      // path cost from Self; 0 for Self
}

// NextHop returns the neighbour to forward a stream for site to. It reports
// false for sites with no route, and for Self, which needs no hop.
func (v *View) NextHop(site string) (string, bool) {
	r, ok := v.Routes[site]
	return r.NextHop, ok
}

// Sites returns the reachable sites, Self included, sorted.
func (v *View) Sites() []string { return slices.Clone(v.sites) }

// label orders paths to one node: least cost, then lowest next hop (node
// indexes follow site names), then fewest hops. Extending two paths by the
// same link keeps their order, so Dijkstra over labels finds, for every
// node, the least label of all paths to it, which makes ties deterministic.
type label struct {
	cost, nextHop, hops int
}

func (a label) less(b label) bool {
	if a.cost != b.cost {
		return a.cost < b.cost
	}
	if a.nextHop != b.nextHop {
		return a.nextHop < b.nextHop
	}
	return a.hops < b.hops
}

type edge struct{ to, cost int }

// compute builds the view rooted at local from the other sites' records.
func compute(local Record, records map[string]Record) *View {
	// Nodes are indexed in site-name order, so comparing indexes compares
	// names.
	names := make([]string, 0, len(records)+1)
	names = append(names, local.Site)
	for site := range records {
		names = append(names, site)
	}
	slices.Sort(names)
	recs := make([]Record, len(names))
	index := make(map[string]int, len(names))
	for i, site := range names {
		if site == local.Site {
			recs[i] = local
		} else {
			recs[i] = records[site]
		}
		index[site] = i
	}
	self := index[local.Site]

	// Two-way check: an edge counts only when both ends list each other;
	// its cost is the higher of the two claims. Every node's edges end up
	// in one slice, edges[start[i]:start[i+1]].
	var edges []edge
	start := make([]int, len(recs)+1)
	for i, r := range recs {
		for peer, cost := range r.Links {
			j, ok := index[peer]
			if !ok {
				continue
			}
			if back, ok := recs[j].Links[r.Site]; ok {
				edges = append(edges, edge{to: j, cost: max(cost, back)})
			}
		}
		start[i+1] = len(edges)
	}

	const unset = -1
	best := make([]label, len(recs))
	for i := range best {
		best[i] = label{cost: unset}
	}
	done := make([]bool, len(recs))
	best[self] = label{nextHop: unset}
	h := make(labelHeap, 1, len(recs))
	h[0] = heapItem{label: best[self], node: self}
	for len(h) > 0 {
		it := h.pop()
		if done[it.node] || best[it.node] != it.label {
			continue
		}
		done[it.node] = true
		for _, e := range edges[start[it.node]:start[it.node+1]] {
			if done[e.to] {
				continue
			}
			next := label{cost: it.cost + e.cost, nextHop: it.nextHop, hops: it.hops + 1}
			if it.node == self {
				next.nextHop = e.to
			}
			if best[e.to].cost == unset || next.less(best[e.to]) {
				best[e.to] = next
				h.push(heapItem{label: next, node: e.to})
			}
		}
	}

	v := &View{
		Self:      local.Site,
		Routes:    make(map[string]Route, len(recs)-1),
		Addresses: map[string][]Target{},
	}
	bySite := make(map[string]Record, len(recs))
	for i, r := range recs {
		if !done[i] {
			v.Unreachable = append(v.Unreachable, r.Site)
			continue
		}
		v.sites = append(v.sites, r.Site)
		b := best[i]
		if i != self {
			v.Routes[r.Site] = Route{Site: r.Site, NextHop: recs[b.nextHop].Site, Cost: b.cost, Hops: b.hops}
		}
		bySite[r.Site] = r
		for addr, n := range r.Addresses {
			if n > 0 {
				v.Addresses[addr] = append(v.Addresses[addr], Target{Site: r.Site, Endpoints: n, Cost: b.cost})
			}
		}
	}
	for addr, ts := range v.Addresses {
		slices.SortFunc(ts, func(a, b Target) int {
			return cmp.Or(cmp.Compare(a.Cost, b.Cost), cmp.Compare(a.Site, b.Site))
		})
		for _, t := range ts {
			if p := bySite[t.Site].Routing[addr]; p != "" {
				if v.Routing == nil {
					v.Routing = map[string]string{}
				}
				v.Routing[addr] = p
				break
			}
		}
	}
	return v
}

// heapItem is a tentative label for a node.
type heapItem struct {
	label
	node int
}

// labelHeap is a binary min-heap of heapItems by label, then node.
type labelHeap []heapItem

func (h labelHeap) less(i, j int) bool {
	if h[i].label != h[j].label {
		return h[i].label.less(h[j].label)
	}
	return h[i].node < h[j].node
}

func (h *labelHeap) push(it heapItem) {
	*h = append(*h, it)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *labelHeap) pop() heapItem {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && s.less(l, m) {
			m = l
		}
		if r < n && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
