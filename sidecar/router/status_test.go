package router

import (
	"net"
	"sort"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// What the tests read of a running router: its links with their
// connections and streams, its routes and addresses, and its bound link
// address. Production reads the same through Document and metrics.

// Status is a snapshot of the router, for tests.
type Status struct {
	Site      string
	Links     []LinkStatus
	Sites     []netview.Route
	Addresses map[string][]netview.Target
}

// LinkStatus describes one link.
type LinkStatus struct {
	ID          string
	Peer        string
	Role        string
	Cost        int
	Dialed      bool
	Connections int
	Streams     int
}

// Status returns the router's links and view.
func (r *Router) Status() Status {
	st := Status{Site: r.self}
	r.mu.Lock()
	for _, l := range r.links {
		if !l.isUp() {
			continue
		}
		conns, streams := l.counts()
		st.Links = append(st.Links, LinkStatus{ID: l.id, Peer: l.peer, Role: l.role, Cost: l.cost, Dialed: l.dialed, Connections: conns, Streams: streams})
	}
	r.mu.Unlock()
	sort.Slice(st.Links, func(i, j int) bool { return st.Links[i].Peer < st.Links[j].Peer })
	v := r.db.View()
	for _, rt := range v.Routes {
		st.Sites = append(st.Sites, rt)
	}
	sort.Slice(st.Sites, func(i, j int) bool { return st.Sites[i].Site < st.Sites[j].Site })
	st.Addresses = v.Addresses
	return st
}

// LinkAddr returns the bound link address once Run has started (nil before).
func (r *Router) LinkAddr() net.Addr {
	a, _ := r.linkAddr.Load().(net.Addr)
	return a
}

func (l *link) counts() (conns, streams int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.sessions {
		if s != nil {
			conns++
			streams += s.NumStreams()
		}
	}
	return
}
