package router

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"time"
)

// Siblings are the other gateways of this site (replicas): every gateway
// routes for the site, so each links to each other one, at cost 0, and
// streams reach whichever gateway holds the link they need. A gateway
// finds its siblings by resolving Config.Siblings (host:port; in
// Kubernetes a headless Service's name, which resolves to every gateway
// pod) every siblingResolveEvery, and dials each address it finds with
// Config.SiblingTLS. Of two siblings the one with the lower router name
// dials (the other refuses, "sibling_order"); the reply names the gateway
// at an address, so a gateway stops dialling itself and the siblings that
// dial it.
const siblingResolveEvery = 5 * time.Second

// siblingState is what the sibling loop knows of an address.
type siblingState struct {
	cancel context.CancelFunc // of its dial loop; nil when not dialled
	router string             // the gateway there, once a reply said
}

// siblingLoop keeps a link to every sibling until ctx ends.
func (r *Router) siblingLoop(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	addrs := map[string]*siblingState{}
	t := time.NewTicker(siblingResolveEvery)
	defer t.Stop()
	logged := ""
	for {
		found, err := r.resolveSiblings(ctx)
		if err != nil && err.Error() != logged {
			r.log.Info("sibling gateways not resolved; keeping the known ones", "error", err.Error())
		}
		logged = ""
		if err != nil {
			logged = err.Error()
		}
		mu.Lock()
		if err == nil {
			for a, st := range addrs {
				if !slices.Contains(found, a) {
					if st.cancel != nil {
						st.cancel()
					}
					delete(addrs, a)
				}
			}
		}
		for _, a := range found {
			if _, ok := addrs[a]; ok {
				continue
			}
			st := &siblingState{}
			addrs[a] = st
			dctx, cancel := context.WithCancel(ctx)
			st.cancel = cancel
			spec := LinkSpec{Name: "sibling " + a, Endpoint: a, TLS: r.cfg.SiblingTLS, Cost: 0, PeerSite: r.self, PeerKey: r.db.HolderOf(r.self)}
			spec.onReply = func(reply helloReply) {
				if reply.Router == "" {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				st.router = reply.Router
				if reply.Router == r.routerName || (reply.Error != "" && reply.Router < r.routerName) {
					// This gateway itself, or a sibling that dials this one.
					cancel()
				}
			}
			wg.Add(1)
			go func() { defer wg.Done(); r.dialLoop(dctx, spec) }()
		}
		mu.Unlock()
		select {
		case <-ctx.Done():
			mu.Lock()
			for _, st := range addrs {
				st.cancel()
			}
			mu.Unlock()
			return
		case <-t.C:
		}
	}
}

// resolveSiblings returns the addresses (ip:port) the sibling entries
// resolve to now, sorted.
func (r *Router) resolveSiblings(ctx context.Context) ([]string, error) {
	var out []string
	for _, entry := range r.cfg.Siblings {
		host, port, err := net.SplitHostPort(entry)
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ips, err := net.DefaultResolver.LookupHost(rctx, host)
		cancel()
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// siblingTLSValid reports whether a sibling configuration is usable.
func siblingTLSValid(c *tls.Config) bool { return c != nil && c.GetClientCertificate != nil }
