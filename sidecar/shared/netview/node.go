package netview

import "strings"

// A node of the network graph is one router: a gateway of a site. A site
// may run several gateways (replicas); each floods a record of its own,
// signed with the site's key, and links name the router they end at. A
// node's ID is "<site>/<router>", or "<site>" for a record without a
// router name. Site names never hold a '/', so the first one splits an ID
// (router names may hold one: "east/skiff-gateway-7d9f-x2x").
func NodeID(site, router string) string {
	if router == "" {
		return site
	}
	return site + "/" + router
}

// SplitNode returns the site and router of a node ID.
func SplitNode(id string) (site, router string) {
	site, router, _ = strings.Cut(id, "/")
	return site, router
}

// SiteOf returns the site of a node ID.
func SiteOf(id string) string {
	site, _ := SplitNode(id)
	return site
}

// Node returns the ID of the node whose record r is.
func (r Record) Node() string { return NodeID(r.Site, r.Router) }
