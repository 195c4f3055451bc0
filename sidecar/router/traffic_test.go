package router

import (
	"fmt"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/counters"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// Traffic reports cross the network: east accepts links from west (which
// serves backend) and from north; connections to backend through east
// show in the reports north holds of east (to west) and of west (from
// east), west's having crossed east. A hostile linked site's reports for
// west, forged with its own key, and garbage are refused and change
// nothing north or east hold.
func TestTrafficReportsCrossTheNetwork(t *testing.T) {
	fast := func(c *Config) { c.TrafficEvery = 100 * time.Millisecond }
	port := tu.FreePort(t, "127.0.0.1")
	east := startSite(t, "east", true, nil, Services{Listeners: []Listener{{Address: "backend", Host: "127.0.0.1", Port: port}}}, fast)
	west := startSite(t, "west", false, []LinkSpec{specFor(t, east.issue(t, 1))}, Services{Connectors: []Connector{banner(t, "west")}}, fast)
	north := startSite(t, "north", false, []LinkSpec{specFor(t, east.issue(t, 1))}, Services{}, fast)
	p := &pair{east: east, west: west, eastLn: fmt.Sprintf("127.0.0.1:%d", port)}
	p.waitBackend(t, "west")
	p.onlyWest(t, 20)

	reportOf := func(s *testSite, site string) (netview.HeldTraffic, bool) {
		for _, r := range s.r.TrafficReports().Reports {
			if r.Site == site {
				return r, true
			}
		}
		return netview.HeldTraffic{}, false
	}
	// Reports cover 100 ms each: keep the traffic going until both have
	// been seen in one.
	var sawEast, sawWest bool
	tu.Eventually(t, 10*time.Second, "north holds east's and west's reports of backend's traffic", func() error {
		p.onlyWest(t, 2)
		if r, ok := reportOf(north, "east"); ok && r.Peers["west"].Streams > 0 && r.Peers["west"].Received > 0 && r.Flows["backend"]["west"].Connections > 0 {
			sawEast = true
		}
		if r, ok := reportOf(north, "west"); ok && r.Peers["east"].Streams > 0 && r.Peers["east"].Sent > 0 {
			sawWest = true
		}
		if !sawEast || !sawWest {
			return fmt.Errorf("east's seen %v, west's seen %v; north holds %+v", sawEast, sawWest, north.r.TrafficReports())
		}
		return nil
	})
	if r, ok := reportOf(north, "north"); ok {
		t.Errorf("north holds a report of its own: %+v", r)
	}

	m := newMallory(t)
	_, ctrl := m.link(east, east.issue(t, 1))
	forged, err := netview.SignTraffic(netview.Traffic{Site: "west", Router: "west-gw-0", Epoch: time.Now().UnixNano(), Seq: netview.MaxSeq, Millis: 1000,
		Peers: map[string]netview.PeerTraffic{"east": {Sent: 1 << 50}}}, m.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeMsg(ctrl, controlMsg{Traffic: [][]byte{forged.Wire(), []byte("{")}}); err != nil {
		t.Fatal(err)
	}
	tr := east.r.m.TrafficRefused
	tu.Eventually(t, 5*time.Second, "mallory's reports refused", func() error {
		if refusedCount(east, tr, "key_conflict") != 1 || refusedCount(east, tr, "invalid") != 1 {
			return fmt.Errorf("key_conflict %v, invalid %v", refusedCount(east, tr, "key_conflict"), refusedCount(east, tr, "invalid"))
		}
		return nil
	})
	for _, s := range []*testSite{east, north} {
		if r, ok := reportOf(s, "west"); ok && r.Peers["east"].Sent >= 1<<50 {
			t.Errorf("%s took mallory's report of west: %+v", s.name, r)
		}
	}
}

func TestTrafficDelta(t *testing.T) {
	prev, cur := counters.NewSample(), counters.NewSample()
	prev.Peers["west"] = counters.PeerCounters{BytesSent: 100, StreamsOpened: 1}
	cur.Peers["west"] = counters.PeerCounters{BytesSent: 1100, BytesReceived: 50, StreamsOpened: 3, StreamsAccepted: 1}
	cur.Peers["east"] = counters.PeerCounters{BytesSent: 7}    // the site's own sidecars: left out
	prev.Peers["north"] = counters.PeerCounters{BytesSent: 10} // idle: left out
	cur.Peers["north"] = counters.PeerCounters{BytesSent: 10}
	cur.Peers["south"] = counters.PeerCounters{BytesSent: 5} // restarted: counts from zero
	prev.Peers["south"] = counters.PeerCounters{BytesSent: 500}
	*prev.Flow("web", "west") = counters.FlowCounters{Requests: 10}
	*cur.Flow("web", "west") = counters.FlowCounters{Requests: 30, Errors: 1} // busiest
	*cur.Flow("db", "east") = counters.FlowCounters{Connections: 3}           // next
	*cur.Flow("idle", "west") = counters.FlowCounters{Connections: 4}         // unchanged
	*prev.Flow("idle", "west") = counters.FlowCounters{Connections: 4}
	*cur.Flow("cache", "west") = counters.FlowCounters{Connections: 1} // cut: over the bound
	peers, flows := trafficDelta("east", prev, cur, 2)
	want := map[string]netview.PeerTraffic{"west": {Sent: 1000, Received: 50, Streams: 3}, "south": {Sent: 5}}
	if len(peers) != len(want) || peers["west"] != want["west"] || peers["south"] != want["south"] {
		t.Errorf("peers = %+v, want %+v", peers, want)
	}
	if len(flows) != 2 || flows["web"]["west"] != (netview.FlowTraffic{Requests: 20, Errors: 1}) || flows["db"]["east"] != (netview.FlowTraffic{Connections: 3}) {
		t.Errorf("flows = %+v, want web's and db's", flows)
	}
	if p, f := trafficDelta("east", cur, cur, 2); p != nil || f != nil {
		t.Errorf("nothing moved: %+v %+v, want none", p, f)
	}
}
