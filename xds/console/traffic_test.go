package console

import (
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/counters"
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
