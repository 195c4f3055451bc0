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
	// Protocols maps an address to the protocol declared for it
	// (Record.Protocols), chosen as Routing is: by the lowest-cost site
	// that declares one (by name among equals). Addresses no reachable
	// site declares a protocol for (tcp ones) are absent.
	Protocols map[string]string
	// Multicast maps a multicast address to how it answers
	// (Record.Multicast, a model.MulticastSpec's Text), chosen as Routing
	// is: by the lowest-cost site that declares one (by name among
	// equals). Addresses no reachable site declares it for are absent.
	Multicast map[string]string
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

// label orders paths to one node: fewest draining gateways along it (the
// local one aside; Record.Draining), then least cost, then fewest hops,
// then lowest next hop (node indexes follow node IDs). Extending two
// paths by the same link keeps their order, so Dijkstra over labels
// finds, for every node, the least label of all paths to it, which makes
// ties deterministic. A draining gateway takes no new streams, so a path
// through one is taken only when there is no other: the site it leads to
// stays in the view (its streams wait for a replacement link) rather than
// drop out while the network reroutes. Hops come before the next hop so
// that two gateways of one site, linked at cost 0, never route a site
// through each other: each prefers its own link to a path through its
// sibling of the same cost (with the next hop first, both could pick the
// other, a loop).
type label struct {
	drains, cost, nextHop, hops int
}

func (a label) less(b label) bool {
	if a.drains != b.drains {
		return a.drains < b.drains
	}
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
	g := newGraph(local, records)
	g.shortestPaths()
	v := &View{
		Self:      local.Site,
		Node:      local.Node(),
		Routes:    map[string]Route{},
		Addresses: map[string][]Target{},
		Routers:   map[string][]string{},
		hops:      map[string]string{},
	}
	sites := v.addNodes(g)
	v.addUnreachableSites(g, sites.reachable)
	v.addSites(g, sites)
	v.sortLists()
	v.Routing = v.choose(sites.routing)
	v.Protocols = v.choose(sites.protocols)
	v.Multicast = v.choose(sites.multicast)
	return v
}

// graph is the network compute works on: every node with its record and
// its two-way links, and, once [graph.shortestPaths] ran, the least label
// of the paths from the local node to each node.
type graph struct {
	ids   []string       // sorted: a node's index is its ID's rank
	recs  []Record       // by node index
	index map[string]int // node ID to node index
	self  int            // the local node's index
	// edges holds every node's edges, node i's in edges[start[i]:start[i+1]].
	edges []edge
	start []int

	best []label // by node index; cost unset for nodes not reached
	done []bool  // by node index: whether the node is reachable
}

// unset is the cost of a label no path has set yet, and the next hop of
// the local node's own label.
const unset = -1

// newGraph indexes the local record and the other nodes' records (by node
// ID) and links them.
func newGraph(local Record, records map[string]Record) *graph {
	// Nodes are indexed in node-ID order, so comparing indexes compares
	// IDs.
	localNode := local.Node()
	ids := make([]string, 0, len(records)+1)
	ids = append(ids, localNode)
	for node := range records {
		ids = append(ids, node)
	}
	slices.Sort(ids)
	g := &graph{ids: ids, recs: make([]Record, len(ids)), index: make(map[string]int, len(ids))}
	for i, node := range ids {
		if node == localNode {
			g.recs[i] = local
		} else {
			g.recs[i] = records[node]
		}
		g.index[node] = i
	}
	g.self = g.index[localNode]
	g.link()
	return g
}

// link sets the graph's edges from the records' links.
func (g *graph) link() {
	// Two-way check: an edge counts only when both ends list each other;
	// its cost is the higher of the two claims. Every node's edges end up
	// in one slice, edges[start[i]:start[i+1]].
	g.start = make([]int, len(g.recs)+1)
	for i, r := range g.recs {
		for peer, cost := range r.Links {
			j, ok := g.index[peer]
			if !ok {
				continue
			}
			if back, ok := g.recs[j].Links[g.ids[i]]; ok {
				g.edges = append(g.edges, edge{to: j, cost: max(cost, back)})
			}
		}
		g.start[i+1] = len(g.edges)
	}
}

// shortestPaths runs Dijkstra over labels from the local node, setting
// best and done.
func (g *graph) shortestPaths() {
	g.best = make([]label, len(g.recs))
	for i := range g.best {
		g.best[i] = label{cost: unset}
	}
	g.done = make([]bool, len(g.recs))
	g.best[g.self] = label{nextHop: unset}
	h := make(labelHeap, 1, len(g.recs))
	h[0] = heapItem{label: g.best[g.self], node: g.self}
	for len(h) > 0 {
		it := h.pop()
		if g.done[it.node] || g.best[it.node] != it.label {
			continue
		}
		g.done[it.node] = true
		for _, e := range g.edges[g.start[it.node]:g.start[it.node+1]] {
			if g.done[e.to] {
				continue
			}
			next := label{drains: it.drains, cost: it.cost + e.cost, nextHop: it.nextHop, hops: it.hops + 1}
			if g.recs[e.to].Draining {
				next.drains++
			}
			if it.node == g.self {
				next.nextHop = e.to
			}
			if g.best[e.to].cost == unset || next.less(g.best[e.to]) {
				g.best[e.to] = next
				h.push(heapItem{label: next, node: e.to})
			}
		}
	}
}

// siteNodes is what compute gathers per site from its reachable nodes.
type siteNodes struct {
	// nearest maps a site to the node index of its nearest reachable
	// gateway.
	nearest map[string]int
	// endpoints maps a site to the endpoints it serves per address.
	endpoints map[string]map[string]int
	// routing maps a site to the routing pattern it declares per address.
	routing map[string]map[string]string
	// protocols maps a site to the protocol it declares per address.
	protocols map[string]map[string]string
	// multicast maps a site to the multicast mode it declares per address.
	multicast map[string]map[string]string
	// reachable holds the sites with a reachable gateway.
	reachable map[string]bool
}

// addNodes sets the view's unreachable nodes, routers and hops, and
// gathers what the reachable nodes tell of their sites.
func (v *View) addNodes(g *graph) siteNodes {
	// Per site: the nearest reachable gateway (the least label; ties go
	// to the lowest node ID, as nodes are visited in ID order), and its
	// addresses: a site's gateways front the same endpoints, so a site
	// serves an address with the most endpoints any of its reachable
	// gateways reports.
	s := siteNodes{
		nearest:   map[string]int{},
		endpoints: map[string]map[string]int{},
		routing:   map[string]map[string]string{},
		protocols: map[string]map[string]string{},
		multicast: map[string]map[string]string{},
		reachable: map[string]bool{},
	}
	for i, r := range g.recs {
		if !g.done[i] {
			v.UnreachableNodes = append(v.UnreachableNodes, g.ids[i])
			continue
		}
		s.reachable[r.Site] = true
		if r.Router != "" {
			v.Routers[r.Site] = append(v.Routers[r.Site], r.Router)
		}
		if i != g.self {
			v.hops[g.ids[i]] = g.ids[g.best[i].nextHop]
		}
		if n, ok := s.nearest[r.Site]; !ok || g.best[i].less(g.best[n]) {
			s.nearest[r.Site] = i
		}
		s.addNode(r, i == g.self, v.Self)
	}
	return s
}

// addNode adds the addresses, routing patterns, protocols and multicast
// modes of the reachable node whose record r is (the local node's when
// local) to its site's.
func (s siteNodes) addNode(r Record, local bool, self string) {
	if s.endpoints[r.Site] == nil {
		s.endpoints[r.Site] = map[string]int{}
	}
	for addr, n := range r.Addresses {
		s.endpoints[r.Site][addr] = max(s.endpoints[r.Site][addr], n)
	}
	override := r.Site == self && local
	declare(s.routing, r.Site, r.Routing, override)
	declare(s.protocols, r.Site, r.Protocols, override)
	declare(s.multicast, r.Site, r.Multicast, override)
}

// declare adds what one gateway of site declares per address (decl) to
// the site's declarations in bySite: the first gateway to declare an
// address holds it (gateways are added in node order), unless override
// (the local gateway, whose own configuration wins in its site).
func declare(bySite map[string]map[string]string, site string, decl map[string]string, override bool) {
	for addr, v := range decl {
		if bySite[site] == nil {
			bySite[site] = map[string]string{}
		}
		if _, ok := bySite[site][addr]; !ok || override {
			bySite[site][addr] = v
		}
	}
}

// addUnreachableSites sets the view's unreachable sites: those of the
// unreachable nodes that have no reachable gateway.
func (v *View) addUnreachableSites(g *graph, reachable map[string]bool) {
	for i, r := range g.recs {
		if !g.done[i] && !reachable[r.Site] && !slices.Contains(v.Unreachable, r.Site) {
			v.Unreachable = append(v.Unreachable, r.Site)
		}
	}
	slices.Sort(v.Unreachable)
}

// addSites sets the view's reachable sites, the route to each but Self,
// and the targets of the addresses they serve.
func (v *View) addSites(g *graph, s siteNodes) {
	for site, i := range s.nearest {
		v.sites = append(v.sites, site)
		cost := g.best[i].cost
		if site == v.Self {
			cost = 0 // the local site is served here
		} else {
			v.Routes[site] = Route{Site: site, NextHop: g.ids[g.best[i].nextHop], Router: g.recs[i].Router, Cost: cost, Hops: g.best[i].hops}
		}
		for addr, n := range s.endpoints[site] {
			if n > 0 {
				v.Addresses[addr] = append(v.Addresses[addr], Target{Site: site, Endpoints: n, Cost: cost})
			}
		}
	}
}

// sortLists sorts the view's sites, each site's routers, and each
// address's targets (by cost, then site).
func (v *View) sortLists() {
	slices.Sort(v.sites)
	for _, rs := range v.Routers {
		slices.Sort(rs)
	}
	for _, ts := range v.Addresses {
		slices.SortFunc(ts, func(a, b Target) int {
			return cmp.Or(cmp.Compare(a.Cost, b.Cost), cmp.Compare(a.Site, b.Site))
		})
	}
}

// choose returns what the view's sites declare per address (a routing
// pattern, a protocol, a multicast mode; bySite holds the declarations per site): for each
// address, the declaration of the first of its sorted targets that
// declares one. It returns nil when no target declares anything.
func (v *View) choose(bySite map[string]map[string]string) map[string]string {
	var out map[string]string
	for addr, ts := range v.Addresses {
		for _, t := range ts {
			if d := bySite[t.Site][addr]; d != "" {
				if out == nil {
					out = map[string]string{}
				}
				out[addr] = d
				break
			}
		}
	}
	return out
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
