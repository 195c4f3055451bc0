package netview

import (
	"maps"
	"slices"
)

// Stranded returns what node leaving the network would cut off, as the
// DB's records tell it: the nodes and sites node's own view reaches that
// some other gateway of node's site (reachable, not draining) could not
// reach without it. Such a gateway is cut off from a site whose only link
// to the site is node's (its peers are dialling replacements), or from a
// sibling it is linked to only through node (two new gateways that have
// not found each other yet). Sites are listed by name, gateways of
// node's own site by node ID, sorted. With no such other gateway it
// returns nil: there is no one to strand (a single gateway restarting).
func (db *DB) Stranded(node string) []string {
	db.mu.Lock()
	all := make(map[string]Record, len(db.records)+1)
	all[db.local.Node()] = db.local
	for n, h := range db.records {
		all[n] = h.Record
	}
	db.mu.Unlock()
	self, ok := all[node]
	if !ok {
		return nil
	}
	v := reach(self, all, "")
	var others []string
	for n := range v {
		if r := all[n]; n != node && r.Site == self.Site && !r.Draining {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return nil
	}
	cut := map[string]bool{}
	for _, from := range others {
		without := reach(all[from], all, node)
		sites := map[string]bool{}
		for n := range without {
			sites[all[n].Site] = true
		}
		for n := range v {
			r := all[n]
			switch {
			case n == node:
			case r.Site == self.Site && !r.Draining && !without[n]:
				cut[n] = true
			case r.Site != self.Site && !sites[r.Site]:
				cut[r.Site] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(cut))
}

// reach returns the nodes reachable from root over the two-way links of
// records (root's own included), leaving out the node without.
func reach(root Record, records map[string]Record, without string) map[string]bool {
	rest := make(map[string]Record, len(records))
	for n, r := range records {
		if n != root.Node() && n != without {
			rest[n] = r
		}
	}
	g := newGraph(root, rest)
	g.shortestPaths()
	out := map[string]bool{}
	for i, id := range g.ids {
		if g.done[i] {
			out[id] = true
		}
	}
	return out
}
