// Package federation joins a site's own services with what its gateway
// knows of the network (the link-state view) into the service table the
// controller serves, and follows the gateway's view as it changes.
package federation

import (
	"net"
	"strconv"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// Build returns the table of site: its local services, each with the
// remote sites that serve the same network name, plus a service for every
// remote network name of the form address:port that the site does not
// have (a Kubernetes service of another site; names without a port can
// only be reached through a local listener, so they need a local entry).
//
// The routing of a service the site serves (one with local endpoints) is
// the site's own; that of one it only reaches is its own non-default
// pattern, else the one the network declares, else balanced. The
// multicast mode goes with the pattern: a service routed by the site's
// own pattern keeps its own mode, one that takes the network's multicast
// pattern takes the mode the network declares (Document.Multicast), the
// defaults (the zero model.MulticastSpec) when it declares none or one
// this controller cannot parse. The protocol of a local service is its own;
// that of a remote service, and of a local one the site only reaches and
// names none for (a proxy Service, a listener without a protocol), is the
// one the network declares (Document.Protocols); tcp when there is none
// or one this controller does not know. A remote service is given the declared
// pattern and protocol as they are, even a pair the data plane cannot
// serve (multicast of tcp connections): the routers refuse it in
// model.CheckRouting's words. doc may be nil (no view yet): the table then
// holds the local services only.
func Build(site string, local []model.Service, doc *netview.Document) *model.Table {
	t := &model.Table{Site: site}
	var addrs map[string][]netview.Target
	var routing, protocols, multicast map[string]string
	if doc != nil {
		addrs, routing, protocols, multicast = doc.Addresses, doc.Routing, doc.Protocols, doc.Multicast
		for _, s := range doc.Sites {
			ms := model.Site{Name: s.Name, Cost: s.Cost}
			for peer, cost := range s.Links {
				ms.Links = append(ms.Links, model.Link{Peer: peer, Cost: cost})
			}
			t.Sites = append(t.Sites, ms)
		}
	}
	if len(t.Sites) == 0 {
		t.Sites = []model.Site{{Name: site}}
	}
	seen := map[string]bool{}
	for _, s := range local {
		s = cloneService(s)
		name := s.NetworkName()
		seen[name] = true
		s.Remote = remotes(site, addrs[name])
		// A service the site serves itself is routed as the site says:
		// the pattern the network declares for it is this site's own
		// gateway's (from this table), or a stale one of its, and must
		// not feed back. One it only reaches (a listener, a virtual IP)
		// takes the serving sites' pattern when it names none, and with
		// a multicast pattern their mode.
		if len(s.Endpoints) == 0 && (s.Routing == "" || s.Routing == model.Balanced) {
			if p, err := model.ParsePattern(routing[name]); err == nil && routing[name] != "" {
				s.Routing = p
				if p == model.Multicast {
					s.Multicast = declaredMulticast(multicast[name])
				}
			}
		}
		if s.Routing == "" {
			s.Routing = model.Balanced
		}
		if s.Protocol == "" && len(s.Endpoints) == 0 {
			// One it only reaches and names no protocol for (a proxy
			// Service, a listener without one) is carried as the sites
			// serving it say: per request when they serve HTTP.
			if p, err := model.ParseProtocol(protocols[name]); err == nil {
				s.Protocol = p
			}
		}
		if s.Protocol == "" {
			s.Protocol = model.TCP
		}
		t.Services = append(t.Services, s)
	}
	for name, targets := range addrs {
		if seen[name] {
			continue
		}
		address, port, ok := SplitName(name)
		if !ok {
			continue
		}
		rs := remotes(site, targets)
		if len(rs) == 0 {
			continue
		}
		p, err := model.ParsePattern(routing[name])
		if err != nil {
			p = model.Balanced
		}
		proto, err := model.ParseProtocol(protocols[name])
		if err != nil {
			proto = model.TCP
		}
		var mc model.MulticastSpec
		if p == model.Multicast {
			mc = declaredMulticast(multicast[name])
		}
		t.Services = append(t.Services, model.Service{Address: address, Port: port, Protocol: proto, Routing: p, Multicast: mc, Remote: rs})
	}
	t.Normalize()
	return t
}

// declaredMulticast returns the multicast mode a document declares (its
// Text form); the zero value, the defaults, for none or one this
// controller cannot parse (a newer site's).
func declaredMulticast(text string) model.MulticastSpec {
	m, err := model.ParseMulticastText(text)
	if err != nil {
		return model.MulticastSpec{}
	}
	return m
}

// SplitName splits a network name of the form address:port.
func SplitName(name string) (string, int, bool) {
	host, port, err := net.SplitHostPort(name)
	if err != nil || host == "" {
		return "", 0, false
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, false
	}
	return host, p, true
}

func remotes(site string, targets []netview.Target) []model.RemoteSite {
	var out []model.RemoteSite
	for _, t := range targets {
		if t.Site != site && t.Endpoints > 0 {
			out = append(out, model.RemoteSite{Site: t.Site, Cost: t.Cost, Endpoints: t.Endpoints})
		}
	}
	return out
}

func cloneService(s model.Service) model.Service {
	t := model.Table{Services: []model.Service{s}}
	return t.Clone().Services[0]
}
