// Package model is skiff's service table: the network services a site's
// controller knows (its own and those of linked sites), their ports,
// protocol, routing pattern and endpoints per site, and the sites and
// links of the network. Sources (Kubernetes, a site file, the gateway's
// link-state) fill a Table; translation turns it into xDS resources.
//
// It also holds the one definition of protocols and routing patterns, and
// the one validator of what the data plane serves, [CheckRouting], which
// every source and router calls (routing.go); and what a controller
// says of its xDS clients (NodeStatus), with the redirect state a
// sidecar reports (Redirect, read with ParseRedirect; nodestatus.go).
//
// The model imports neither Kubernetes nor Envoy packages, so that every
// source and every consumer can be tested on its own.
package model

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// Table is the service table one site's controller serves.
type Table struct {
	// Site is the local site.
	Site string `json:"site"`
	// Services are sorted by Address, then Port (see Normalize).
	Services []Service `json:"services,omitempty"`
	// Sites are the sites reachable from Site (Site itself at cost 0),
	// sorted by Cost, then Name.
	Sites []Site `json:"sites,omitempty"`
}

// Service is one network service port: an address and a port, like
// backend:8080. A Kubernetes Service with two ports is two Services.
type Service struct {
	Address  string   `json:"address"`
	Port     int      `json:"port"`
	Protocol Protocol `json:"protocol"`
	Routing  Pattern  `json:"routing"`
	// Multicast is how a multicast address answers (Routing Multicast);
	// the zero value is the defaults.
	Multicast MulticastSpec `json:"multicast,omitzero"`
	// VIPs are the local virtual IPs that clients dial for this service
	// (the ClusterIP of the Service named Address in this site); sidecars
	// match redirected connections' original destinations against
	// VIP:Port. Sorted.
	VIPs []string `json:"vips,omitempty"`
	// Gateway is host:port where clients in this site reach the local
	// gateway for this service (a proxy listener); "" when there is none.
	// Remote sites' endpoints are reached through it.
	Gateway string `json:"gateway,omitempty"`
	// GatewayListen is the address the local gateway binds for this
	// service when it differs from Gateway (in Kubernetes, Gateway is the
	// proxy Service's ClusterIP:Port and GatewayListen the gateway pod's
	// ":<target port>"); "" means Gateway.
	GatewayListen string `json:"gatewayListen,omitempty"`
	// Network is the name routers use for this service in stream headers
	// and site records; "" means Key(). A site file's address is used as
	// written, so that a controller-managed site and a standalone gateway
	// with the same site file agree.
	Network string `json:"network,omitempty"`
	// Endpoints are this site's endpoints, sorted by IP, then Port.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
	// Remote lists the other reachable sites that have ready endpoints for
	// this service, sorted by Cost, then Site.
	Remote []RemoteSite `json:"remote,omitempty"`
}

// Key returns "address:port", the name of the service's xDS resources.
func (s *Service) Key() string { return s.Address + ":" + strconv.Itoa(s.Port) }

// NetworkName returns Network, or Key() when it is empty.
func (s *Service) NetworkName() string {
	if s.Network != "" {
		return s.Network
	}
	return s.Key()
}

// ReadyEndpoints counts the local endpoints that are ready.
func (s *Service) ReadyEndpoints() int {
	n := 0
	for _, e := range s.Endpoints {
		if e.Ready {
			n++
		}
	}
	return n
}

// Endpoint is a local endpoint of a service.
type Endpoint struct {
	IP    string `json:"ip"`
	Port  int    `json:"port"`
	Ready bool   `json:"ready"`
	// Name says what the endpoint is, for logs and metadata (a pod name).
	Name string `json:"name,omitempty"`
}

// RemoteSite is another site that has ready endpoints for a service.
type RemoteSite struct {
	Site string `json:"site"`
	// Cost is the least total link cost from the local site.
	Cost int `json:"cost"`
	// Endpoints is how many ready endpoints the site has.
	Endpoints int `json:"endpoints"`
}

// Site is a reachable site.
type Site struct {
	Name string `json:"name"`
	// Cost is the least total link cost from the local site (0 for it).
	Cost int `json:"cost"`
	// Links are the site's links, sorted by Peer.
	Links []Link `json:"links,omitempty"`
}

// Link is one link of a site.
type Link struct {
	Peer string `json:"peer"`
	Cost int    `json:"cost"`
}

// Normalize sorts every list of t into its canonical order, so that equal
// tables compare (and hash) equal.
func (t *Table) Normalize() {
	for i := range t.Services {
		s := &t.Services[i]
		slices.Sort(s.VIPs)
		s.VIPs = slices.Compact(s.VIPs)
		slices.SortFunc(s.Endpoints, func(a, b Endpoint) int {
			return cmp.Or(cmp.Compare(a.IP, b.IP), cmp.Compare(a.Port, b.Port))
		})
		slices.SortFunc(s.Remote, func(a, b RemoteSite) int {
			return cmp.Or(cmp.Compare(a.Cost, b.Cost), cmp.Compare(a.Site, b.Site))
		})
	}
	slices.SortFunc(t.Services, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
	for i := range t.Sites {
		slices.SortFunc(t.Sites[i].Links, func(a, b Link) int { return cmp.Compare(a.Peer, b.Peer) })
	}
	slices.SortFunc(t.Sites, func(a, b Site) int {
		return cmp.Or(cmp.Compare(a.Cost, b.Cost), cmp.Compare(a.Name, b.Name))
	})
}

// Service returns the service with the given address and port, or nil.
func (t *Table) Service(address string, port int) *Service {
	for i := range t.Services {
		if t.Services[i].Address == address && t.Services[i].Port == port {
			return &t.Services[i]
		}
	}
	return nil
}

// Hash returns a content hash of the normalized table (hex, 16 chars),
// used as a snapshot version.
func (t *Table) Hash() string {
	c := t.Clone()
	c.Normalize()
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("marshal table: %v", err)) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Clone returns a deep copy of t.
func (t *Table) Clone() *Table {
	c := &Table{Site: t.Site, Services: make([]Service, len(t.Services)), Sites: make([]Site, len(t.Sites))}
	for i, s := range t.Services {
		s.VIPs = slices.Clone(s.VIPs)
		s.Endpoints = slices.Clone(s.Endpoints)
		s.Remote = slices.Clone(s.Remote)
		c.Services[i] = s
	}
	for i, s := range t.Sites {
		s.Links = slices.Clone(s.Links)
		c.Sites[i] = s
	}
	return c
}

// Validate reports every inconsistency in t: empty names, bad ports and
// IPs, duplicate services, unknown protocols or patterns. Protocols and
// patterns must be known names; whether the data plane serves them is
// CheckRouting's decision, made by the sources and the routers, since one
// service refused here would hold back the whole table.
func (t *Table) Validate() error {
	var errs []error
	if t.Site == "" {
		errs = append(errs, errors.New("table: site is empty"))
	}
	seen := map[string]bool{}
	for _, s := range t.Services {
		key := s.Key()
		switch {
		case s.Address == "":
			errs = append(errs, fmt.Errorf("service %s: address is empty", key))
		case seen[key]:
			errs = append(errs, fmt.Errorf("service %s: listed twice", key))
		}
		seen[key] = true
		if s.Port < 1 || s.Port > 65535 {
			errs = append(errs, fmt.Errorf("service %s: port %d out of range", key, s.Port))
		}
		if !slices.Contains(protocols, s.Protocol) {
			errs = append(errs, fmt.Errorf("service %s: unknown protocol %q", key, s.Protocol))
		}
		if !slices.Contains(patterns, s.Routing) {
			errs = append(errs, fmt.Errorf("service %s: unknown routing %q", key, s.Routing))
		}
		for _, v := range s.VIPs {
			if _, err := netip.ParseAddr(v); err != nil {
				errs = append(errs, fmt.Errorf("service %s: virtual IP %q: %w", key, v, err))
			}
		}
		for _, e := range s.Endpoints {
			if _, err := netip.ParseAddr(e.IP); err != nil {
				errs = append(errs, fmt.Errorf("service %s: endpoint IP %q: %w", key, e.IP, err))
			}
			if e.Port < 1 || e.Port > 65535 {
				errs = append(errs, fmt.Errorf("service %s: endpoint %s port %d out of range", key, e.IP, e.Port))
			}
		}
		for _, r := range s.Remote {
			if r.Site == "" || r.Site == t.Site {
				errs = append(errs, fmt.Errorf("service %s: remote site %q is empty or local", key, r.Site))
			}
		}
	}
	return errors.Join(errs...)
}
