package router

import (
	"cmp"
	"context"
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/shared/counters"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// Traffic reports (netview's Traffic): every TrafficEvery a gateway reads
// its own counters of traffic with its neighbouring sites and of its
// addresses, and, if it moved anything since the last report, floods what
// it counted over the interval to the gateways of the network, signed by
// its site's key. Gateways keep the latest report of every node and serve
// them at /traffic, where a controller's console reads the traffic on the
// links between other sites. An idle network sends no report.

const (
	// DefaultTrafficEvery is how often a gateway reports its traffic.
	DefaultTrafficEvery = 5 * time.Second
	// trafficAddresses bounds the addresses one report lists: the busiest
	// over the interval.
	trafficAddresses = 200
)

// TrafficMaxAge is how long after its arrival a report is still served:
// a node that reports nothing for longer moved nothing.
func (r *Router) TrafficMaxAge() time.Duration { return 2*r.cfg.TrafficEvery + time.Second }

// newTrafficGatherer gathers the counters a traffic report is made of.
func newTrafficGatherer(m *Metrics) prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.PeerBytes, m.PeerStreams, m.RoutingDecisions, m.HTTP.Requests)
	return reg
}

// sampleTraffic reads the router's own counters.
func (r *Router) sampleTraffic() (counters.Sample, error) {
	fams, err := r.trafficGather.Gather()
	if err != nil {
		return counters.Sample{}, err
	}
	return counters.Gathered(fams), nil
}

// trafficLoop reports the gateway's traffic every TrafficEvery until ctx
// ends.
func (r *Router) trafficLoop(ctx context.Context) {
	prev, err := r.sampleTraffic()
	if err != nil {
		r.log.Error(err, "cannot read the traffic counters: this gateway reports no traffic")
		return
	}
	then := time.Now()
	tick := time.NewTicker(r.cfg.TrafficEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cur, err := r.sampleTraffic()
		if err != nil {
			continue
		}
		now := time.Now()
		peers, flows := trafficDelta(r.cfg.Site, prev, cur, trafficAddresses)
		interval := now.Sub(then)
		prev, then = cur, now
		if len(peers) == 0 && len(flows) == 0 {
			continue
		}
		s, err := r.db.SignTraffic(interval, peers, flows)
		if err != nil {
			r.log.V(1).Info("traffic report not sent", "error", err.Error())
			continue
		}
		r.floodTraffic([]netview.SignedTraffic{s}, nil)
	}
}

// trafficDelta returns what happened between two samples of a gateway's
// counters: the traffic with each neighbouring site (its own site's
// sidecars and sibling gateways left out), and the flows of the busiest
// addresses, at most maxAddrs of them and netview.MaxTrafficFlows
// flows. Only what moved is listed.
func trafficDelta(site string, prev, cur counters.Sample, maxAddrs int) (map[string]netview.PeerTraffic, map[string]map[string]netview.FlowTraffic) {
	delta := counters.Delta(prev, cur)
	peers := map[string]netview.PeerTraffic{}
	for peer, c := range delta.Peers {
		if peer == site {
			continue
		}
		t := netview.PeerTraffic{Sent: count(c.BytesSent), Received: count(c.BytesReceived), Streams: count(c.StreamsOpened + c.StreamsAccepted)}
		if t != (netview.PeerTraffic{}) {
			peers[peer] = t
		}
	}
	type busy struct {
		addr  string
		sites map[string]netview.FlowTraffic
		total uint64
	}
	var all []busy
	for addr, sites := range delta.Flows {
		b := busy{addr: addr, sites: map[string]netview.FlowTraffic{}}
		for s, c := range sites {
			f := netview.FlowTraffic{Connections: count(c.Connections), Requests: count(c.Requests), Errors: count(c.Errors)}
			if f != (netview.FlowTraffic{}) && s != "" {
				b.sites[s] = f
				b.total += f.Connections + f.Requests
			}
		}
		if len(b.sites) > 0 {
			all = append(all, b)
		}
	}
	slices.SortFunc(all, func(x, y busy) int {
		if c := cmp.Compare(y.total, x.total); c != 0 {
			return c
		}
		return cmp.Compare(x.addr, y.addr)
	})
	flows := map[string]map[string]netview.FlowTraffic{}
	n := 0
	for _, b := range all {
		if len(flows) == maxAddrs || n+len(b.sites) > netview.MaxTrafficFlows {
			break
		}
		flows[b.addr] = b.sites
		n += len(b.sites)
	}
	if len(peers) == 0 {
		peers = nil
	}
	if len(flows) == 0 {
		flows = nil
	}
	return peers, flows
}

// count is a counter's growth as a whole count.
func count(d float64) uint64 {
	if d <= 0 || math.IsNaN(d) {
		return 0
	}
	return uint64(math.Round(d))
}

// applyTraffic takes the traffic reports link l brought: each that is
// valid, signed by a key of its site, and newer than the one held is kept
// and flooded on. Sidecars and members take none.
func (r *Router) applyTraffic(l *link, wires [][]byte) {
	if r.cfg.Role != RoleGateway || l.role == roleMember {
		return
	}
	var fresh []netview.SignedTraffic
	for _, b := range wires {
		t, err := netview.OpenTraffic(b, time.Now())
		if err == nil {
			var ok bool
			if ok, err = r.db.ApplyTraffic(t); ok {
				fresh = append(fresh, t)
			}
		}
		if err != nil {
			r.trafficRefused(l, err)
		}
	}
	if len(fresh) > 0 {
		r.floodTraffic(fresh, l)
	}
}

// trafficRefused counts and logs (rate-limited) a report link l brought
// that was refused.
func (r *Router) trafficRefused(l *link, err error) {
	reason := refusedReason(err)
	r.m.TrafficRefused.WithLabelValues(reason).Inc()
	if ok, suppressed := r.refusedLogs.Allow("traffic " + reason); ok {
		r.log.Info("traffic report refused", "peerSite", l.peer, "error", err.Error(), "suppressed", suppressed)
	}
}

// floodTraffic sends reports to every up link to a gateway but except.
func (r *Router) floodTraffic(reports []netview.SignedTraffic, except *link) {
	for _, l := range r.upLinks(except, false) {
		l.enqueueTraffic(reports)
	}
}

// enqueueTraffic queues reports for the link's writer, the newest per
// node: a slow peer gets the latest report, never a growing queue.
func (l *link) enqueueTraffic(reports []netview.SignedTraffic) {
	l.pendMu.Lock()
	if l.traffic == nil {
		l.traffic = map[string]netview.SignedTraffic{}
	}
	for _, t := range reports {
		if old, ok := l.traffic[t.Node()]; !ok || t.Newer(old.Traffic) {
			l.traffic[t.Node()] = t
		}
	}
	l.pendMu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// TrafficReports returns the latest traffic report of every other node
// of the network that reported within TrafficMaxAge (gateways only).
func (r *Router) TrafficReports() netview.TrafficDocument {
	return netview.TrafficDocument{Self: r.cfg.Site, Reports: r.db.Traffic(r.TrafficMaxAge())}
}
