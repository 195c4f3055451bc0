package console

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// The routers' own counters, written by their own registry, read back:
// per peer, bytes each way and streams either way; per address and site,
// connections routed, HTTP requests answered and those that failed.
func TestParseCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_peer_bytes_total"}, []string{"peer", "direction"})
	streams := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_peer_streams_total"}, []string{"peer", "direction"})
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_routing_decisions_total"}, []string{"address", "pattern", "site"})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_http_requests_total"}, []string{"address", "site", "class"})
	other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_streams_opened_total"}, []string{"address", "role"})
	reg.MustRegister(bytes, streams, decisions, requests, other)
	bytes.WithLabelValues("west", "sent").Add(100)
	bytes.WithLabelValues("west", "received").Add(250)
	streams.WithLabelValues("west", "opened").Add(3)
	streams.WithLabelValues("north", "accepted").Add(2)
	decisions.WithLabelValues("db", "closest", "west").Add(7)
	requests.WithLabelValues("web", "west", "2xx").Add(40)
	requests.WithLabelValues("web", "west", "5xx").Add(2)
	requests.WithLabelValues("web", "none", "5xx").Add(1)
	other.WithLabelValues("web", "origin").Add(9)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ParseCounters(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]PeerCounters{"west": {BytesSent: 100, BytesReceived: 250, StreamsOpened: 3}, "north": {StreamsAccepted: 2}}
	if len(got.Peers) != len(want) || got.Peers["west"] != want["west"] || got.Peers["north"] != want["north"] {
		t.Errorf("peers %+v, want %+v", got.Peers, want)
	}
	if c := got.Flows["db"]["west"]; c == nil || *c != (FlowCounters{Connections: 7}) {
		t.Errorf("db to west: %+v", c)
	}
	if c := got.Flows["web"]["west"]; c == nil || *c != (FlowCounters{Requests: 42, Errors: 2}) {
		t.Errorf("web to west: %+v", c)
	}
	if c := got.Flows["web"]["none"]; c == nil || *c != (FlowCounters{Requests: 1, Errors: 1}) {
		t.Errorf("web to no site: %+v", c)
	}
	if _, err := ParseCounters(strings.NewReader("skiff_peer_bytes_total{peer=\"west\" 1\n")); err == nil {
		t.Error("a malformed page parsed")
	}
}

// Rates over the sample interval; the site's own sidecars (peer = the
// site) are left out; a counter that went down (a restarted gateway)
// counts from zero; addresses without traffic in the interval are left
// out, the busiest first.
func TestRates(t *testing.T) {
	now := time.Now()
	prev, cur := newSample(), newSample()
	prev.Peers = map[string]PeerCounters{"west": {BytesSent: 1000, BytesReceived: 500, StreamsOpened: 10}, "north": {BytesSent: 900}}
	cur.Peers = map[string]PeerCounters{"west": {BytesSent: 5000, BytesReceived: 500, StreamsOpened: 14, StreamsAccepted: 2}, "north": {BytesSent: 300}, "east": {BytesSent: 1e6}}
	*prev.flow("web", "west") = FlowCounters{Requests: 100}
	*cur.flow("web", "west") = FlowCounters{Requests: 300, Errors: 4}
	*cur.flow("db", "north") = FlowCounters{Connections: 2}
	*prev.flow("idle", "west") = FlowCounters{Requests: 5}
	*cur.flow("idle", "west") = FlowCounters{Requests: 5}
	got := rates("east", prev, cur, 2*time.Second, now)
	want := []PeerRate{{Peer: "north", SentBps: 150}, {Peer: "west", SentBps: 2000, StreamsPerSec: 3}}
	if len(got.Peers) != 2 || got.Peers[0] != want[0] || got.Peers[1] != want[1] || got.Site != "east" {
		t.Errorf("peers %+v, want %+v", got.Peers, want)
	}
	if len(got.Addresses) != 2 || got.Addresses[0].Name != "web" || got.Addresses[0].Flows[0] != (Flow{Site: "west", RequestsPerSec: 100, ErrorsPerSec: 2}) ||
		got.Addresses[1].Name != "db" || got.Addresses[1].Flows[0] != (Flow{Site: "north", ConnectionsPerSec: 1}) {
		t.Errorf("addresses %+v", got.Addresses)
	}
}
