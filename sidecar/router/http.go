package router

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/skiff-io/skiff/sidecar/l7"
	"github.com/skiff-io/skiff/sidecar/routing"
	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// upstreams is what the router gives its HTTP engine (package l7): the
// candidates of a request, in the order of the address's pattern, and the
// connections to them.
type upstreams struct{ r *Router }

var _ l7.Upstreams = upstreams{}

// protocol returns the protocol of address: the one the service table t
// names for it, else the one the sites serving it declare in their site
// records (the view's; one this router does not know is tcp), else tcp.
// The local configuration wins, so that a client site can always decide
// how its connections are carried.
func (r *Router) protocol(t *serviceTable, address string) model.Protocol {
	if p := t.Protocols[address]; p != "" {
		return p
	}
	if d := r.db.View().Protocols[address]; d != "" {
		if p, err := model.ParseProtocol(d); err == nil {
			return p
		}
	}
	return model.TCP
}

func (u upstreams) Targets(address string) ([]l7.Target, model.Pattern, error) {
	r := u.r
	t := r.services.Load()
	pattern := t.pattern(address)
	cands, meta := r.candidates(t, address)
	if model.Pattern(pattern) == model.Multicast {
		// A copy to each: every local endpoint, and each other site once
		// (it copies the request to its own endpoints).
		all := make([]int, len(meta))
		for i := range all {
			all[i] = i
		}
		return u.targets(t, address, all, meta), model.Multicast, nil
	}
	order, err := r.picker.Order(pattern, cands)
	if err != nil {
		return nil, model.Pattern(pattern), err
	}
	return u.targets(t, address, order, meta), model.Pattern(pattern), nil
}

func (u upstreams) LocalTargets(address string) ([]l7.Target, error) {
	r := u.r
	t := r.services.Load()
	keys := t.endpoints[address]
	cands := make([]routing.Candidate, len(keys))
	meta := make([]candidate, len(keys))
	for i, key := range keys {
		cands[i] = routing.Candidate{Key: key, Weight: 1, Outstanding: int(r.counter(key).Load())}
		meta[i] = candidate{key: key}
	}
	order, err := r.picker.Order(string(model.Balanced), cands)
	if err != nil {
		return nil, fmt.Errorf("site %s has no endpoint for %q: %w", r.self, address, err)
	}
	return u.targets(t, address, order, meta), nil
}

// targets turns the picker's order of meta into the engine's targets.
func (u upstreams) targets(t *serviceTable, address string, order []int, meta []candidate) []l7.Target {
	out := make([]l7.Target, len(order))
	proto := u.r.protocol(t, address)
	for n, i := range order {
		c := meta[i]
		out[n] = l7.Target{Key: c.key, Site: c.site, Protocol: proto}
		if c.site == "" {
			out[n].Endpoint = c.key
		}
	}
	return out
}

// Multicast returns how a multicast address answers: as the service
// table says, else as the sites serving it declare (the view's), else
// the defaults.
func (u upstreams) Multicast(address string) model.MulticastSpec {
	r := u.r
	if m, ok := r.services.Load().Multicast[address]; ok {
		return m
	}
	if d := r.db.View().Multicast[address]; d != "" {
		if m, err := model.ParseMulticastText(d); err == nil {
			return m
		}
	}
	return model.MulticastSpec{}
}

func (u upstreams) Track(key string) func() {
	c := u.r.counter(key)
	c.Add(1)
	return func() { c.Add(-1) }
}

func (u upstreams) DialEndpoint(ctx context.Context, hostport string) (net.Conn, error) {
	return u.r.dialEndpoint(ctx, hostport)
}

func (u upstreams) DialSite(ctx context.Context, address, site string, h2 bool) (net.Conn, error) {
	r := u.r
	proto := uint8(protoHTTP)
	if h2 {
		proto = protoHTTP2
	}
	st, err := r.openStream(ctx, header{Kind: kindData, Hops: defaultHops, Proto: proto, Address: address, Dest: site, Origin: r.self}, nil)
	if err != nil {
		r.m.ConnectFailures.WithLabelValues(address, "remote").Inc()
		return nil, err
	}
	return st, nil
}

func (u upstreams) DialPinned(ctx context.Context, address string, t l7.Target) (net.Conn, error) {
	c, err := u.r.connect(ctx, candidate{site: t.Site, key: t.Key}, address, 0, nil)
	if err != nil {
		return nil, err
	}
	conn, ok := c.(net.Conn)
	if !ok {
		c.Close()
		return nil, errors.New("not a connection")
	}
	return conn, nil
}
