package console

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// The routers' own counters, written by their own registry, read back:
// per peer, bytes each way and streams either way.
func TestParsePeerCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_peer_bytes_total"}, []string{"peer", "direction"})
	streams := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_peer_streams_total"}, []string{"peer", "direction"})
	other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skiff_streams_opened_total"}, []string{"address", "role"})
	reg.MustRegister(bytes, streams, other)
	bytes.WithLabelValues("west", "sent").Add(100)
	bytes.WithLabelValues("west", "received").Add(250)
	streams.WithLabelValues("west", "opened").Add(3)
	streams.WithLabelValues("north", "accepted").Add(2)
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
	got, err := ParsePeerCounters(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]PeerCounters{"west": {BytesSent: 100, BytesReceived: 250, StreamsOpened: 3}, "north": {StreamsAccepted: 2}}
	if len(got) != len(want) || got["west"] != want["west"] || got["north"] != want["north"] {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := ParsePeerCounters(strings.NewReader("skiff_peer_bytes_total{peer=\"west\" 1\n")); err == nil {
		t.Error("a malformed page parsed")
	}
}

// Rates over the sample interval; the site's own sidecars (peer = the
// site) are left out; a counter that went down (a restarted gateway)
// counts from zero.
func TestRates(t *testing.T) {
	now := time.Now()
	prev := map[string]PeerCounters{"west": {BytesSent: 1000, BytesReceived: 500, StreamsOpened: 10}, "north": {BytesSent: 900}}
	cur := map[string]PeerCounters{"west": {BytesSent: 5000, BytesReceived: 500, StreamsOpened: 14, StreamsAccepted: 2}, "north": {BytesSent: 300}, "east": {BytesSent: 1e6}}
	got := rates("east", prev, cur, 2*time.Second, now)
	want := []PeerRate{{Peer: "north", SentBps: 150}, {Peer: "west", SentBps: 2000, StreamsPerSec: 3}}
	if len(got.Peers) != 2 || got.Peers[0] != want[0] || got.Peers[1] != want[1] || got.Site != "east" {
		t.Errorf("got %+v, want %+v", got.Peers, want)
	}
}
