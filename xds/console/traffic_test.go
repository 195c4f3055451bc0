package console

import (
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/counters"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// Rates over the sample interval; the site's own sidecars (peer = the
// site) are left out; a counter that went down (a restarted gateway)
// counts from zero; addresses without traffic in the interval are left
// out, the busiest first.
func TestRates(t *testing.T) {
	now := time.Now()
	prev, cur := counters.NewSample(), counters.NewSample()
	prev.Peers = map[string]counters.PeerCounters{"west": {BytesSent: 1000, BytesReceived: 500, StreamsOpened: 10}, "north": {BytesSent: 900}}
	cur.Peers = map[string]counters.PeerCounters{"west": {BytesSent: 5000, BytesReceived: 500, StreamsOpened: 14, StreamsAccepted: 2}, "north": {BytesSent: 300}, "east": {BytesSent: 1e6}}
	*prev.Flow("web", "west") = counters.FlowCounters{Requests: 100}
	*cur.Flow("web", "west") = counters.FlowCounters{Requests: 300, Errors: 4}
	*cur.Flow("db", "north") = counters.FlowCounters{Connections: 2}
	*prev.Flow("idle", "west") = counters.FlowCounters{Requests: 5}
	*cur.Flow("idle", "west") = counters.FlowCounters{Requests: 5}
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

// Other sites' reports become rates per site: a site's gateways'
// reports summed, each over its own interval; this site's own reports
// (its other gateways') left out, its counters being read directly.
func TestRemoteRates(t *testing.T) {
	rep := func(site, router string, ms int64, peers map[string]netview.PeerTraffic, flows map[string]map[string]netview.FlowTraffic) netview.HeldTraffic {
		return netview.HeldTraffic{Traffic: netview.Traffic{Site: site, Router: router, Millis: ms, Peers: peers, Flows: flows}}
	}
	got := remoteRates("east", []netview.HeldTraffic{
		rep("east", "e1", 1000, map[string]netview.PeerTraffic{"west": {Sent: 1 << 30}}, nil),
		rep("west", "w0", 2000, map[string]netview.PeerTraffic{"north": {Sent: 4000, Received: 200, Streams: 10}},
			map[string]map[string]netview.FlowTraffic{"web": {"north": {Requests: 100, Errors: 2}}}),
		rep("west", "w1", 5000, map[string]netview.PeerTraffic{"north": {Sent: 5000}},
			map[string]map[string]netview.FlowTraffic{"web": {"north": {Requests: 50}}, "db": {"west": {Connections: 5}}}),
		rep("north", "", 1000, map[string]netview.PeerTraffic{"west": {Received: 3000}}, nil),
	})
	if len(got) != 2 || got[0].Site != "north" || got[1].Site != "west" {
		t.Fatalf("remoteRates() = %+v, want north's and west's", got)
	}
	if want := []PeerRate{{Peer: "west", ReceivedBps: 3000}}; len(got[0].Peers) != 1 || got[0].Peers[0] != want[0] || got[0].Addresses != nil {
		t.Errorf("north: %+v", got[0])
	}
	west := got[1]
	if want := (PeerRate{Peer: "north", SentBps: 3000, ReceivedBps: 100, StreamsPerSec: 5}); len(west.Peers) != 1 || west.Peers[0] != want {
		t.Errorf("west's peers %+v, want %+v", west.Peers, want)
	}
	if len(west.Addresses) != 2 || west.Addresses[0].Name != "web" || west.Addresses[0].Flows[0] != (Flow{Site: "north", RequestsPerSec: 60, ErrorsPerSec: 1}) ||
		west.Addresses[1].Name != "db" || west.Addresses[1].Flows[0] != (Flow{Site: "west", ConnectionsPerSec: 1}) {
		t.Errorf("west's addresses %+v", west.Addresses)
	}
}
