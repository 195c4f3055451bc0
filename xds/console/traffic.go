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
	Site  string     `json:"site"`
	Time  time.Time  `json:"time"`
	Peers []PeerRate `json:"peers"`
}

// rates computes the rates between two samples dt apart; a counter that
// went down (a gateway restarted) counts from zero.
func rates(site string, prev, cur map[string]PeerCounters, dt time.Duration, now time.Time) Traffic {
	t := Traffic{Site: site, Time: now}
	secs := dt.Seconds()
	for peer, c := range cur {
		if peer == site {
			continue // the site's own sidecars (member links)
		}
		p := prev[peer]
		d := func(a, b float64) float64 {
			if a < b {
				b = 0
			}
			return round((a - b) / secs)
		}
		t.Peers = append(t.Peers, PeerRate{Peer: peer, SentBps: d(c.BytesSent, p.BytesSent), ReceivedBps: d(c.BytesReceived, p.BytesReceived),
			StreamsPerSec: d(c.StreamsOpened+c.StreamsAccepted, p.StreamsOpened+p.StreamsAccepted)})
	}
	slices.SortFunc(t.Peers, func(a, b PeerRate) int { return strings.Compare(a.Peer, b.Peer) })
	return t
}

func round(v float64) float64 { return math.Round(v*10) / 10 }

// GatewayTraffic reads the peer counters of the gateways at addrs (their
// admin addresses) and sums them.
func GatewayTraffic(ctx context.Context, client *http.Client, addrs []string) (map[string]PeerCounters, error) {
	sum := map[string]PeerCounters{}
	for _, addr := range addrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("gateway metrics at %s: %w", addr, err)
		}
		c, err := ParsePeerCounters(io.LimitReader(resp.Body, maxMetrics))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("gateway metrics at %s: %w", addr, err)
		}
		for peer, v := range c {
			s := sum[peer]
			s.BytesSent += v.BytesSent
			s.BytesReceived += v.BytesReceived
			s.StreamsOpened += v.StreamsOpened
			s.StreamsAccepted += v.StreamsAccepted
			sum[peer] = s
		}
	}
	return sum, nil
}

// ParsePeerCounters reads the peer counters out of a Prometheus text
// exposition.
func ParsePeerCounters(r io.Reader) (map[string]PeerCounters, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	out := map[string]PeerCounters{}
	add := func(name string, set func(c *PeerCounters, direction string, v float64)) {
		f := families[name]
		if f == nil {
			return
		}
		for _, m := range f.GetMetric() {
			peer, dir := label(m, "peer"), label(m, "direction")
			if peer == "" || m.GetCounter() == nil {
				continue
			}
			c := out[peer]
			set(&c, dir, m.GetCounter().GetValue())
			out[peer] = c
		}
	}
	add("skiff_peer_bytes_total", func(c *PeerCounters, dir string, v float64) {
		switch dir {
		case "sent":
			c.BytesSent = v
		case "received":
			c.BytesReceived = v
		}
	})
	add("skiff_peer_streams_total", func(c *PeerCounters, dir string, v float64) {
		switch dir {
		case "opened":
			c.StreamsOpened = v
		case "accepted":
			c.StreamsAccepted = v
		}
	})
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
