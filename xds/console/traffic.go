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

	"github.com/skiff-io/skiff/sidecar/shared/counters"
)

// TrafficEvery is how often the feed reads the gateways' counters.
const TrafficEvery = 2 * time.Second

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
func rates(site string, prev, cur counters.Sample, dt time.Duration, now time.Time) Traffic {
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
			var p counters.FlowCounters
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
func GatewayTraffic(ctx context.Context, client *http.Client, addrs []string) (counters.Sample, error) {
	sum := counters.NewSample()
	for _, addr := range addrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
		if err != nil {
			return counters.Sample{}, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return counters.Sample{}, fmt.Errorf("gateway metrics at %s: %w", addr, err)
		}
		c, err := counters.Parse(io.LimitReader(resp.Body, counters.MaxPage))
		resp.Body.Close()
		if err != nil {
			return counters.Sample{}, fmt.Errorf("gateway metrics at %s: %w", addr, err)
		}
		sum.Add(c)
	}
	return sum, nil
}
