// Package counters reads the traffic counters skiff's routers export on
// /metrics (Prometheus text) into sums a reader can compute rates and
// totals from: per neighbouring site (skiff_peer_bytes_total,
// skiff_peer_streams_total), and per address and target site
// (skiff_routing_decisions_total, skiff_http_requests_total). The
// controller's console and the skiff CLI both read them through it.
package counters

import (
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// MaxPage bounds the /metrics page a reader should parse.
const MaxPage = 32 << 20

// PeerCounters are a site's gateways' counters of its traffic with one
// neighbouring site, summed over the gateway replicas: the routers'
// skiff_peer_bytes_total and skiff_peer_streams_total.
type PeerCounters struct {
	BytesSent, BytesReceived, StreamsOpened, StreamsAccepted float64
	// UpSince is when the newest of the gateways' links to the site that
	// are up came up (unix seconds, skiff_link_up_timestamp_seconds); 0
	// when none is up.
	UpSince float64
}

// FlowCounters are a site's gateways' counters of one address's traffic
// to one site (this one included): connections routed there
// (skiff_routing_decisions_total), HTTP requests it answered and those
// that failed (skiff_http_requests_total, class 5xx, or no site).
type FlowCounters struct {
	Connections, Requests, Errors float64
}

// Sample is one reading of the counters: per neighbouring site, and per
// address and target site.
type Sample struct {
	Peers map[string]PeerCounters
	Flows map[string]map[string]*FlowCounters // address -> site -> counters
}

func NewSample() Sample {
	return Sample{Peers: map[string]PeerCounters{}, Flows: map[string]map[string]*FlowCounters{}}
}

// Flow returns the counters of address a to site in s, made if needed.
func (s Sample) Flow(a, site string) *FlowCounters {
	m := s.Flows[a]
	if m == nil {
		m = map[string]*FlowCounters{}
		s.Flows[a] = m
	}
	c := m[site]
	if c == nil {
		c = &FlowCounters{}
		m[site] = c
	}
	return c
}

// Add adds o's counters to s.
func (s Sample) Add(o Sample) {
	for peer, v := range o.Peers {
		c := s.Peers[peer]
		c.BytesSent += v.BytesSent
		c.BytesReceived += v.BytesReceived
		c.StreamsOpened += v.StreamsOpened
		c.StreamsAccepted += v.StreamsAccepted
		c.UpSince = max(c.UpSince, v.UpSince)
		s.Peers[peer] = c
	}
	for a, sites := range o.Flows {
		for site, v := range sites {
			f := s.Flow(a, site)
			f.Connections += v.Connections
			f.Requests += v.Requests
			f.Errors += v.Errors
		}
	}
}

// Delta returns what the counters of cur grew by since prev, for every
// peer and flow of cur (those that did not move with zeros); a counter
// that went down (its router restarted) counts from zero. UpSince is
// cur's.
func Delta(prev, cur Sample) Sample {
	d := func(c, p float64) float64 {
		if c < p {
			return c
		}
		return c - p
	}
	out := NewSample()
	for peer, c := range cur.Peers {
		p := prev.Peers[peer]
		out.Peers[peer] = PeerCounters{BytesSent: d(c.BytesSent, p.BytesSent), BytesReceived: d(c.BytesReceived, p.BytesReceived),
			StreamsOpened: d(c.StreamsOpened, p.StreamsOpened), StreamsAccepted: d(c.StreamsAccepted, p.StreamsAccepted), UpSince: c.UpSince}
	}
	for addr, sites := range cur.Flows {
		for site, c := range sites {
			var p FlowCounters
			if pp := prev.Flows[addr][site]; pp != nil {
				p = *pp
			}
			*out.Flow(addr, site) = FlowCounters{Connections: d(c.Connections, p.Connections), Requests: d(c.Requests, p.Requests), Errors: d(c.Errors, p.Errors)}
		}
	}
	return out
}

// Parse reads the counters a Sample holds out of a Prometheus
// text exposition.
func Parse(r io.Reader) (Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return Sample{}, err
	}
	return FromFamilies(families), nil
}

// Gathered reads the counters a Sample holds out of what a registry
// gathered (a router reading its own, prometheus.Gatherer's Gather).
func Gathered(families []*dto.MetricFamily) Sample {
	byName := make(map[string]*dto.MetricFamily, len(families))
	for _, f := range families {
		byName[f.GetName()] = f
	}
	return FromFamilies(byName)
}

// FromFamilies reads the counters a Sample holds out of metric families
// by name.
func FromFamilies(families map[string]*dto.MetricFamily) Sample {
	out := NewSample()
	each := func(name string, f func(m *dto.Metric, v float64)) {
		for _, m := range families[name].GetMetric() {
			switch {
			case m.GetCounter() != nil:
				f(m, m.GetCounter().GetValue())
			case m.GetGauge() != nil:
				f(m, m.GetGauge().GetValue())
			}
		}
	}
	each("skiff_peer_bytes_total", func(m *dto.Metric, v float64) {
		peer := label(m, "peer")
		c := out.Peers[peer]
		switch label(m, "direction") {
		case "sent":
			c.BytesSent = v
		case "received":
			c.BytesReceived = v
		}
		out.Peers[peer] = c
	})
	each("skiff_peer_streams_total", func(m *dto.Metric, v float64) {
		peer := label(m, "peer")
		c := out.Peers[peer]
		switch label(m, "direction") {
		case "opened":
			c.StreamsOpened = v
		case "accepted":
			c.StreamsAccepted = v
		}
		out.Peers[peer] = c
	})
	each("skiff_link_up_timestamp_seconds", func(m *dto.Metric, v float64) {
		peer := label(m, "peer")
		c := out.Peers[peer]
		c.UpSince = v
		out.Peers[peer] = c
	})
	each("skiff_routing_decisions_total", func(m *dto.Metric, v float64) {
		out.Flow(label(m, "address"), label(m, "site")).Connections += v
	})
	each("skiff_http_requests_total", func(m *dto.Metric, v float64) {
		if label(m, "origin") != "" {
			return // another site's request this site delivered: that site's flow
		}
		site, class := label(m, "site"), label(m, "class")
		f := out.Flow(label(m, "address"), site)
		f.Requests += v
		if class == "5xx" || site == "none" || site == "" {
			f.Errors += v
		}
	})
	delete(out.Peers, "")
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
