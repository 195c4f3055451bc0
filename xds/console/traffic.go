package console

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TrafficEvery is how often the feed reads the gateways' counters.
const TrafficEvery = 2 * time.Second

// maxMetrics bounds a gateway's /metrics page the feed reads.
const maxMetrics = 32 << 20

// PeerCounters are a site's gateways' counters of its traffic with one
// neighbouring site, summed over the gateway replicas: the routers'
// skiff_peer_bytes_total and skiff_peer_streams_total.
type PeerCounters struct {
	BytesSent, BytesReceived, StreamsOpened, StreamsAccepted float64
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

// Flow is an address's traffic from this site to one site over the last
// TrafficEvery.
type Flow struct {
	Site              string  `json:"site"`
	ConnectionsPerSec float64 `json:"connectionsPerSec"`
	RequestsPerSec    float64 `json:"requestsPerSec"`
	ErrorsPerSec      float64 `json:"errorsPerSec"`
}

// AddressFlows is where an address's traffic from this site went.
type AddressFlows struct {
	Name  string `json:"name"`
	Flows []Flow `json:"flows"`
}

// MaxFlowAddresses bounds the addresses a traffic event lists: the
// busiest, those with any traffic in the last sample.
const MaxFlowAddresses = 500

// PeerRate is the traffic with a neighbouring site over the last
// TrafficEvery: bytes per second each way, streams (connections, or
// HTTP site connections) opened per second either way.
type PeerRate struct {
	Peer          string  `json:"peer"`
	SentBps       float64 `json:"sentBps"`
	ReceivedBps   float64 `json:"receivedBps"`
	StreamsPerSec float64 `json:"streamsPerSec"`
}

// Traffic is what the page draws on this site's links.
type Traffic struct {
	Site      string         `json:"site"`
	Time      time.Time      `json:"time"`
	Peers     []PeerRate     `json:"peers"`
	Addresses []AddressFlows `json:"addresses,omitempty"`
}

// rates computes the rates between two samples dt apart; a counter that
// went down (a gateway restarted) counts from zero.
func rates(site string, prev, cur Sample, dt time.Duration, now time.Time) Traffic {
	t := Traffic{Site: site, Time: now}
	secs := dt.Seconds()
	d := func(a, b float64) float64 {
		if a < b {
			b = 0
		}
		return round((a - b) / secs)
	}
	for peer, c := range cur.Peers {
		if peer == site {
			continue // the site's own sidecars (member links)
		}
		p := prev.Peers[peer]
		t.Peers = append(t.Peers, PeerRate{Peer: peer, SentBps: d(c.BytesSent, p.BytesSent), ReceivedBps: d(c.BytesReceived, p.BytesReceived),
			StreamsPerSec: d(c.StreamsOpened+c.StreamsAccepted, p.StreamsOpened+p.StreamsAccepted)})
	}
	slices.SortFunc(t.Peers, func(a, b PeerRate) int { return strings.Compare(a.Peer, b.Peer) })
	type busy struct {
		a     AddressFlows
		total float64
	}
	var all []busy
	for addr, sites := range cur.Flows {
		var b busy
		b.a.Name = addr
		for s, c := range sites {
			var p FlowCounters
			if pp := prev.Flows[addr][s]; pp != nil {
				p = *pp
			}
			f := Flow{Site: s, ConnectionsPerSec: d(c.Connections, p.Connections), RequestsPerSec: d(c.Requests, p.Requests), ErrorsPerSec: d(c.Errors, p.Errors)}
			if f.ConnectionsPerSec+f.RequestsPerSec+f.ErrorsPerSec == 0 {
				continue
			}
			b.a.Flows = append(b.a.Flows, f)
			b.total += f.ConnectionsPerSec + f.RequestsPerSec
		}
		if len(b.a.Flows) > 0 {
			slices.SortFunc(b.a.Flows, func(x, y Flow) int { return strings.Compare(x.Site, y.Site) })
			all = append(all, b)
		}
	}
	slices.SortFunc(all, func(x, y busy) int {
		if x.total != y.total {
			if x.total > y.total {
				return -1
			}
			return 1
		}
		return strings.Compare(x.a.Name, y.a.Name)
	})
	for i := 0; i < len(all) && i < MaxFlowAddresses; i++ {
		t.Addresses = append(t.Addresses, all[i].a)
	}
	return t
}

func round(v float64) float64 { return math.Round(v*10) / 10 }

// GatewayTraffic reads the counters of the gateways at addrs (their
// admin addresses) and sums them.
func GatewayTraffic(ctx context.Context, client *http.Client, addrs []string) (Sample, error) {
	sum := newSample()
	for _, addr := range addrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
		if err != nil {
			return Sample{}, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return Sample{}, fmt.Errorf("gateway metrics at %s: %w", addr, err)
		}
		c, err := ParseCounters(io.LimitReader(resp.Body, maxMetrics))
		resp.Body.Close()
		if err != nil {
			return Sample{}, fmt.Errorf("gateway metrics at %s: %w", addr, err)
		}
		for peer, v := range c.Peers {
			s := sum.Peers[peer]
			s.BytesSent += v.BytesSent
			s.BytesReceived += v.BytesReceived
			s.StreamsOpened += v.StreamsOpened
			s.StreamsAccepted += v.StreamsAccepted
			sum.Peers[peer] = s
		}
		for a, sites := range c.Flows {
			for site, v := range sites {
				f := sum.flow(a, site)
				f.Connections += v.Connections
				f.Requests += v.Requests
				f.Errors += v.Errors
			}
		}
	}
	return sum, nil
}

func newSample() Sample {
	return Sample{Peers: map[string]PeerCounters{}, Flows: map[string]map[string]*FlowCounters{}}
}

// flow returns the counters of address a to site in s, made if needed.
func (s Sample) flow(a, site string) *FlowCounters {
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

// ParseCounters reads the counters a Sample holds out of a Prometheus
// text exposition.
func ParseCounters(r io.Reader) (Sample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return Sample{}, err
	}
	out := newSample()
	each := func(name string, f func(m *dto.Metric, v float64)) {
		for _, m := range families[name].GetMetric() {
			if m.GetCounter() != nil {
				f(m, m.GetCounter().GetValue())
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
	each("skiff_routing_decisions_total", func(m *dto.Metric, v float64) {
		out.flow(label(m, "address"), label(m, "site")).Connections += v
	})
	each("skiff_http_requests_total", func(m *dto.Metric, v float64) {
		site, class := label(m, "site"), label(m, "class")
		f := out.flow(label(m, "address"), site)
		f.Requests += v
		if class == "5xx" || site == "none" || site == "" {
			f.Errors += v
		}
	})
	delete(out.Peers, "")
	return out, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
