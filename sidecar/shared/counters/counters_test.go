package counters

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// The routers' own counters, written by their own registry, read back:
// per peer, bytes each way and streams either way; per address and site,
// connections routed, HTTP requests answered and those that failed, of
// this site's clients (a request another site sent here, with an origin,
// is that site's flow).
func TestParse(t *testing.T) {
	reg := prometheus.NewRegistry()
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_peer_bytes_total"}, []string{"peer", "direction"})
	streams := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_peer_streams_total"}, []string{"peer", "direction"})
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_routing_decisions_total"}, []string{"address", "pattern", "site"})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_http_requests_total"}, []string{"address", "site", "class", "origin"})
	upSince := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "skiff_link_up_timestamp_seconds"}, []string{"peer"})
	other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_streams_opened_total"}, []string{"address", "role"})
	reg.MustRegister(bytes, streams, decisions, requests, upSince, other)
	bytes.WithLabelValues("west", "sent").Add(100)
	bytes.WithLabelValues("west", "received").Add(250)
	streams.WithLabelValues("west", "opened").Add(3)
	streams.WithLabelValues("north", "accepted").Add(2)
	decisions.WithLabelValues("db", "closest", "west").Add(7)
	requests.WithLabelValues("web", "west", "2xx", "").Add(40)
	requests.WithLabelValues("web", "west", "5xx", "").Add(2)
	requests.WithLabelValues("web", "none", "5xx", "").Add(1)
	requests.WithLabelValues("web", "west", "2xx", "north").Add(1000)
	other.WithLabelValues("web", "origin").Add(9)
	upSince.WithLabelValues("west").Set(1.7e9)
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
	got, err := Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]PeerCounters{"west": {BytesSent: 100, BytesReceived: 250, StreamsOpened: 3, UpSince: 1.7e9}, "north": {StreamsAccepted: 2}}
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
	if _, err := Parse(strings.NewReader("skiff_peer_bytes_total{peer=\"west\" 1\n")); err == nil {
		t.Error("a malformed page parsed")
	}
}

// Add sums two gateways' samples.
func TestAdd(t *testing.T) {
	a, b := NewSample(), NewSample()
	a.Peers["west"] = PeerCounters{BytesSent: 1, StreamsOpened: 2}
	b.Peers["west"] = PeerCounters{BytesSent: 10, BytesReceived: 5}
	b.Peers["north"] = PeerCounters{StreamsAccepted: 1}
	*a.Flow("web", "west") = FlowCounters{Requests: 3}
	*b.Flow("web", "west") = FlowCounters{Requests: 4, Errors: 1}
	a.Add(b)
	if a.Peers["west"] != (PeerCounters{BytesSent: 11, BytesReceived: 5, StreamsOpened: 2}) || a.Peers["north"] != (PeerCounters{StreamsAccepted: 1}) ||
		*a.Flow("web", "west") != (FlowCounters{Requests: 7, Errors: 1}) {
		t.Errorf("sum %+v %+v", a.Peers, *a.Flow("web", "west"))
	}
}
