package netview

import (
	"cmp"
	"slices"
)

// View is the network as one gateway sees it, computed from a [DB]'s
// records. Paths run between nodes (gateways, see [NodeID]); what the
// router needs is per site: the least-cost route to any gateway of it. A
// View is immutable: it is shared by everyone who asked for it.
type View struct {
	// Self is the local site.
	Self string
	// Node is the local node.
	Node string
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
	// to any of their gateways, sorted.
	Unreachable []string
	// UnreachableNodes lists the nodes the DB holds a record for but has
	// no path to, sorted: gateways gone, whose records age out.
	UnreachableNodes []string
	// Routers maps every reachable site (Self included) to its reachable
	// gateways' router names, sorted (empty names left out).
	Routers map[string][]string

	sites []string // reachable, Self included, sorted
	// hops maps a reachable node other than Node to the neighbour node on
	// its least-cost path.
	hops map[string]string
}

// Route is the least-cost path to a site: to the nearest of its gateways.
type Route struct {
	Site string
	// NextHop is the neighbour node to forward to: a gateway of the next
	// site on the path, or a sibling gateway of this site that has the
	// link.
	NextHop string
	Cost    int // sum of the link costs along the path
	Hops    int // number of links along the path
	// Router is the gateway of Site the path ends at.
	Router string
}

// Target is a site that serves an address.
type Target struct {
	Site      string `json:"site"`
	Endpoints int    `json:"endpoints"` // ready endpoints at Site
	Cost      int    `json:"cost"`      // path cost from Self; 0 for Self
}

// NextHop returns the neighbour node to forward a stream for site to. It
// reports false for sites with no route, and for Self, which needs no hop.
func (v *View) NextHop(site string) (string, bool) {
	r, ok := v.Routes[site]
	return r.NextHop, ok
}

// NextHopToNode returns the neighbour node on the least-cost path to node
// (a sibling gateway, say); false when node is unreachable or the local
// node.
func (v *View) NextHopToNode(node string) (string, bool) {
	nh, ok := v.hops[node]
	return nh, ok
}

// Sites returns the reachable sites, Self included, sorted.
func (v *View) Sites() []string { return slices.Clone(v.sites) }

// label orders paths to one node: least cost, then fewest hops, then
// lowest next hop (node indexes follow node IDs). Extending two paths by
// the same link keeps their order, so Dijkstra over labels finds, for
// every node, the least label of all paths to it, which makes ties
// deterministic. Hops come before the next hop so that two gateways of one
// site, linked at cost 0, never route a site through each other: each
// prefers its own link to a path through its sibling of the same cost
// (with the next hop first, both could pick the other, a loop).
type label struct {
	cost, nextHop, hops int
}

func (a label) less(b label) bool {
	if a.cost != b.cost {
		return a.cost < b.cost
	}
	if a.hops != b.hops {
		return a.hops < b.hops
	}
	return a.nextHop < b.nextHop
}

type edge struct{ to, cost int }

// compute builds the view rooted at local from the other nodes' records
// (by node ID).
func compute(local Record, records map[string]Record) *View {
	// Nodes are indexed in node-ID order, so comparing indexes compares
	// IDs.
	localNode := local.Node()
	ids := make([]string, 0, len(records)+1)
	ids = append(ids, localNode)
	for node := range records {
		ids = append(ids, node)
	}
	slices.Sort(ids)
	recs := make([]Record, len(ids))
	index := make(map[string]int, len(ids))
	for i, node := range ids {
		if node == localNode {
			recs[i] = local
		} else {
			recs[i] = records[node]
		}
		index[node] = i
	}
	self := index[localNode]

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
			if back, ok := recs[j].Links[ids[i]]; ok {
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
		Node:      localNode,
		Routes:    map[string]Route{},
		Addresses: map[string][]Target{},
		Routers:   map[string][]string{},
		hops:      map[string]string{},
	}
	// Per site: the nearest reachable gateway (the least label; ties go
	// to the lowest node ID, as nodes are visited in ID order), and its
	// addresses: a site's gateways front the same endpoints, so a site
	// serves an address with the most endpoints any of its reachable
	// gateways reports.
	nearest := map[string]int{}
	endpoints := map[string]map[string]int{}
	routing := map[string]map[string]string{}
	reachable := map[string]bool{}
	for i, r := range recs {
		if !done[i] {
			v.UnreachableNodes = append(v.UnreachableNodes, ids[i])
			continue
		}
		reachable[r.Site] = true
		if r.Router != "" {
			v.Routers[r.Site] = append(v.Routers[r.Site], r.Router)
		}
		if i != self {
			v.hops[ids[i]] = ids[best[i].nextHop]
		}
		if n, ok := nearest[r.Site]; !ok || best[i].less(best[n]) {
			nearest[r.Site] = i
		}
		if endpoints[r.Site] == nil {
			endpoints[r.Site] = map[string]int{}
		}
		for addr, n := range r.Addresses {
			endpoints[r.Site][addr] = max(endpoints[r.Site][addr], n)
		}
		for addr, p := range r.Routing {
			if routing[r.Site] == nil {
				routing[r.Site] = map[string]string{}
			}
			if _, ok := routing[r.Site][addr]; !ok || r.Site == local.Site && i == self {
				routing[r.Site][addr] = p
			}
		}
	}
	for i, r := range recs {
		if !done[i] && !reachable[r.Site] && !slices.Contains(v.Unreachable, r.Site) {
			v.Unreachable = append(v.Unreachable, r.Site)
		}
	}
	slices.Sort(v.Unreachable)
	for site, i := range nearest {
		v.sites = append(v.sites, site)
		cost := best[i].cost
		if site == local.Site {
			cost = 0 // the local site is served here
		} else {
			v.Routes[site] = Route{Site: site, NextHop: ids[best[i].nextHop], Router: recs[i].Router, Cost: cost, Hops: best[i].hops}
		}
		for addr, n := range endpoints[site] {
			if n > 0 {
				v.Addresses[addr] = append(v.Addresses[addr], Target{Site: site, Endpoints: n, Cost: cost})
			}
		}
	}
	slices.Sort(v.sites)
	for _, rs := range v.Routers {
		slices.Sort(rs)
	}
	for addr, ts := range v.Addresses {
		slices.SortFunc(ts, func(a, b Target) int {
			return cmp.Or(cmp.Compare(a.Cost, b.Cost), cmp.Compare(a.Site, b.Site))
		})
		for _, t := range ts {
			if p := routing[t.Site][addr]; p != "" {
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
