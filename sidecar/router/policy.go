package router

import (
	"fmt"
	"sync"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// Link policies (package policy) are enforced here, on gateways:
//
//   - advertise: streams for an address leave over a link only if the
//     link's policy lets the peer advertise that address into this site;
//     routes through a link that may not advertise an address are left out
//     of the choice of endpoints and of the view the controller reads.
//   - reach: a stream that arrives over a link and is delivered here must
//     be for an address the link's policy lets the peer reach.
//
// A refusal is counted (skiff_policy_refused_total) and logged once per
// link, direction and address.

// maxPolicyLogged bounds the refusals remembered for logging once.
const maxPolicyLogged = 4096

// policyLog remembers which refusals were logged.
type policyLog struct {
	mu   sync.Mutex
	seen map[string]bool
}

// mayReach reports whether a stream from l may be delivered to address.
func (r *Router) mayReach(l *link, address string) bool {
	if l.role != roleGateway || l.policy.MayReach(address) {
		return true
	}
	r.policyRefused(l.peer, "reach", address)
	return false
}

// advertised reports whether a stream for address may go out toward site
// (through the link to the next hop), without counting a refusal. It
// asks the link linkToward would pick now, draining or not, and does not
// wait for one.
func (r *Router) advertised(site, address string) bool {
	if r.cfg.Role != RoleGateway {
		return true // a sidecar's gateway enforces its links' policies
	}
	if r.limitedLinks.Load() == 0 {
		return true // no link's policy limits what its peer advertises
	}
	_, match, err := r.nextHop(site)
	if err != nil {
		return true
	}
	l, _, _ := r.bestLink(match)
	return l == nil || l.policy.MayAdvertise(address)
}

// policyRefused counts a refusal and logs it the first time.
func (r *Router) policyRefused(peer, direction, address string) {
	r.m.PolicyRefused.WithLabelValues(peer, direction).Inc()
	key := direction + "|" + peer + "|" + address
	pl := &r.policyLog
	pl.mu.Lock()
	first := !pl.seen[key] && len(pl.seen) < maxPolicyLogged
	if first {
		if pl.seen == nil {
			pl.seen = map[string]bool{}
		}
		pl.seen[key] = true
	}
	pl.mu.Unlock()
	if first {
		what := "advertise it into this site"
		if direction == "reach" {
			what = "reach it"
		}
		r.log.Info("address refused by link policy", "peerSite", peer, "address", address, "direction", direction,
			"reason", fmt.Sprintf("the policy of the link to %s does not let it %s", peer, what))
	}
}

// filterDocument drops from d the remote sites whose route's link may not
// advertise an address, so the controller makes no proxy Service for
// what the router would refuse.
func (r *Router) filterDocument(d netview.Document) netview.Document {
	if r.cfg.Role != RoleGateway {
		return d
	}
	return d.Filter(func(site, address string) bool {
		return site == r.self || r.advertised(site, address)
	})
}

// setLinkLocked and deleteLinkLocked change r.links (r.mu held), and keep
// limitedLinks: how many of its links have a policy that limits what
// their peer may advertise. Most networks have none, and then advertised,
// asked for every candidate site of every request, looks up no route and
// no link.
func (r *Router) setLinkLocked(l *link) {
	r.links[l.id] = l
	r.countLimitedLocked()
}

func (r *Router) deleteLinkLocked(l *link) {
	delete(r.links, l.id)
	r.countLimitedLocked()
}

func (r *Router) countLimitedLocked() {
	n := int32(0)
	for _, l := range r.links {
		if len(l.policy.Advertise) > 0 {
			n++
		}
	}
	r.limitedLinks.Store(n)
}
