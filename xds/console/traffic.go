package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/counters"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
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

// Traffic is what the page draws on the links: this site's from its
// gateways' counters, every TrafficEvery, and the other sites' from the
// traffic reports their gateways flood (Remote).
type Traffic struct {
	Site      string         `json:"site"`
	Time      time.Time      `json:"time"`
	Peers     []PeerRate     `json:"peers"`
	Addresses []AddressFlows `json:"addresses,omitempty"`
	Remote    []SiteTraffic  `json:"remote,omitempty"`
}

// SiteTraffic is another site's traffic as its gateways last reported it
// (their reports summed): with its neighbouring sites, and where its
// busiest addresses' traffic went.
type SiteTraffic struct {
	Site      string         `json:"site"`
	Peers     []PeerRate     `json:"peers,omitempty"`
	Addresses []AddressFlows `json:"addresses,omitempty"`
}

// Reading is one reading of the gateways: their own counters, and the
// latest traffic reports of the other nodes of the network they hold.
type Reading struct {
	Own    counters.Sample
	Remote []netview.HeldTraffic
}

// rates computes the rates between two samples dt apart (counters.Delta:
// a counter that went down, a gateway restarted, counts from zero).
func rates(site string, prev, cur counters.Sample, dt time.Duration, now time.Time) Traffic {
	t := Traffic{Site: site, Time: now}
	secs := dt.Seconds()
	r := func(v float64) float64 { return round(v / secs) }
	delta := counters.Delta(prev, cur)
	for peer, c := range delta.Peers {
		if peer == site {
			continue // the site's own sidecars (member links)
		}
		t.Peers = append(t.Peers, PeerRate{Peer: peer, SentBps: r(c.BytesSent), ReceivedBps: r(c.BytesReceived), StreamsPerSec: r(c.StreamsOpened + c.StreamsAccepted)})
	}
	slices.SortFunc(t.Peers, func(a, b PeerRate) int { return strings.Compare(a.Peer, b.Peer) })
	var all []busy
	for addr, sites := range delta.Flows {
		var b busy
		b.a.Name = addr
		for s, c := range sites {
			f := Flow{Site: s, ConnectionsPerSec: r(c.Connections), RequestsPerSec: r(c.Requests), ErrorsPerSec: r(c.Errors)}
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
	for _, b := range busiest(all, MaxFlowAddresses) {
		t.Addresses = append(t.Addresses, b.a)
	}
	return t
}

// busy is an address's flows from one site and their total rate, to
// rank addresses by.
type busy struct {
	a      AddressFlows
	origin string
	total  float64
}

// busiest returns the n busiest of all, busiest first (then by name and
// origin).
func busiest(all []busy, n int) []busy {
	slices.SortFunc(all, func(x, y busy) int {
		if x.total != y.total {
			if x.total > y.total {
				return -1
			}
			return 1
		}
		if c := strings.Compare(x.a.Name, y.a.Name); c != 0 {
			return c
		}
		return strings.Compare(x.origin, y.origin)
	})
	return all[:min(n, len(all))]
}

// remoteRates sums the reports of the other sites' gateways into rates
// per site (site's own reports, from its other gateways, are left out:
// its counters are read directly). At most MaxFlowAddresses addresses
// are listed over all sites, the busiest.
func remoteRates(site string, reports []netview.HeldTraffic) []SiteTraffic {
	type acc struct {
		peers map[string]*PeerRate
		flows map[string]map[string]*Flow
	}
	bySite := map[string]*acc{}
	for _, r := range reports {
		if r.Site == site || r.Millis <= 0 {
			continue
		}
		a := bySite[r.Site]
		if a == nil {
			a = &acc{peers: map[string]*PeerRate{}, flows: map[string]map[string]*Flow{}}
			bySite[r.Site] = a
		}
		secs := float64(r.Millis) / 1000
		for peer, p := range r.Peers {
			pr := a.peers[peer]
			if pr == nil {
				pr = &PeerRate{Peer: peer}
				a.peers[peer] = pr
			}
			pr.SentBps += float64(p.Sent) / secs
			pr.ReceivedBps += float64(p.Received) / secs
			pr.StreamsPerSec += float64(p.Streams) / secs
		}
		for addr, sites := range r.Flows {
			m := a.flows[addr]
			if m == nil {
				m = map[string]*Flow{}
				a.flows[addr] = m
			}
			for to, f := range sites {
				fl := m[to]
				if fl == nil {
					fl = &Flow{Site: to}
					m[to] = fl
				}
				fl.ConnectionsPerSec += float64(f.Connections) / secs
				fl.RequestsPerSec += float64(f.Requests) / secs
				fl.ErrorsPerSec += float64(f.Errors) / secs
			}
		}
	}
	out := make([]SiteTraffic, 0, len(bySite))
	var all []busy
	for name, a := range bySite {
		st := SiteTraffic{Site: name}
		for _, p := range a.peers {
			st.Peers = append(st.Peers, PeerRate{Peer: p.Peer, SentBps: round(p.SentBps), ReceivedBps: round(p.ReceivedBps), StreamsPerSec: round(p.StreamsPerSec)})
		}
		slices.SortFunc(st.Peers, func(a, b PeerRate) int { return strings.Compare(a.Peer, b.Peer) })
		for addr, m := range a.flows {
			b := busy{a: AddressFlows{Name: addr}, origin: name}
			for _, f := range m {
				r := Flow{Site: f.Site, ConnectionsPerSec: round(f.ConnectionsPerSec), RequestsPerSec: round(f.RequestsPerSec), ErrorsPerSec: round(f.ErrorsPerSec)}
				b.a.Flows = append(b.a.Flows, r)
				b.total += r.ConnectionsPerSec + r.RequestsPerSec
			}
			slices.SortFunc(b.a.Flows, func(x, y Flow) int { return strings.Compare(x.Site, y.Site) })
			all = append(all, b)
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b SiteTraffic) int { return strings.Compare(a.Site, b.Site) })
	for _, b := range busiest(all, MaxFlowAddresses) {
		i, _ := slices.BinarySearchFunc(out, b.origin, func(st SiteTraffic, site string) int { return strings.Compare(st.Site, site) })
		out[i].Addresses = append(out[i].Addresses, b.a)
	}
	return out
}

func round(v float64) float64 { return math.Round(v*10) / 10 }

// MaxTrafficPage bounds the /traffic document read from a gateway.
const MaxTrafficPage = 64 << 20

// GatewayTraffic reads the gateways at addrs (their admin addresses):
// their counters (/metrics), summed, and the traffic reports they hold
// of other nodes (/traffic), the newest of each node. A gateway that
// serves no /traffic (an earlier version) adds no report.
func GatewayTraffic(ctx context.Context, client *http.Client, addrs []string) (Reading, error) {
	sum := counters.NewSample()
	newest := map[string]netview.HeldTraffic{}
	for _, addr := range addrs {
		body, err := get(ctx, client, "http://"+addr+"/metrics")
		if err != nil {
			return Reading{}, fmt.Errorf("gateway metrics at %s: %w", addr, err)
		}
		c, err := counters.Parse(io.LimitReader(body, counters.MaxPage))
		body.Close()
		if err != nil {
			return Reading{}, fmt.Errorf("gateway metrics at %s: %w", addr, err)
		}
		sum.Add(c)
		var doc netview.TrafficDocument
		if body, err = get(ctx, client, "http://"+addr+"/traffic"); err == nil {
			err = json.NewDecoder(io.LimitReader(body, MaxTrafficPage)).Decode(&doc)
			body.Close()
		}
		if err != nil {
			continue // its own counters are still worth drawing
		}
		for _, r := range doc.Reports {
			if old, ok := newest[r.Node()]; !ok || r.Newer(old.Traffic) {
				newest[r.Node()] = r
			}
		}
	}
	out := Reading{Own: sum}
	for _, r := range newest {
		out.Remote = append(out.Remote, r)
	}
	slices.SortFunc(out.Remote, func(a, b netview.HeldTraffic) int { return strings.Compare(a.Node(), b.Node()) })
	return out, nil
}

// get returns the body of a GET of url that answered 200 OK.
func get(ctx context.Context, client *http.Client, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}
