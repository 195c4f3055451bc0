// Package linux_test runs networks of Linux sites: gateways started from
// real site files and real tokens on 127.0.0.x, real mTLS links, and real
// clients.
package linux_test

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/test/testutil"
)

// A–B–C: A has no link to C and reaches it through B.
func TestChainMultiHop(t *testing.T) {
	c := testutil.HTTPNameServer(t, "127.0.0.1:0", "C")
	n := newNetwork(t,
		&siteSpec{name: "a", host: "127.0.0.1", listeners: []string{"echo"}, links: []linkTo{{site: "b", cost: 2}}},
		&siteSpec{name: "b", host: "127.0.0.2", accept: true},
		&siteSpec{name: "c", host: "127.0.0.3", links: []linkTo{{site: "b", cost: 3}}, connectors: []string{"echo=" + c}},
	)
	n.waitEndpoints("a", "echo", "c")
	rt := n.sites["a"].r.View().Routes["c"]
	if netview.SiteOf(rt.NextHop) != "b" || rt.Cost != 5 || rt.Hops != 2 {
		t.Fatalf("route a->c = %+v, want next hop b, cost 5, 2 hops", rt)
	}
	counts := get(t, n.url("a", "echo"), 20)
	if counts["C"] != 20 {
		t.Fatalf("answers through a->b->c = %v, want C=20", counts)
	}
}

// A site that only dials out still receives traffic over its link.
func TestDialOutOnlySiteReceives(t *testing.T) {
	a := testutil.HTTPNameServer(t, "127.0.0.1:0", "A")
	n := newNetwork(t,
		&siteSpec{name: "a", host: "127.0.0.1", links: []linkTo{{site: "b", cost: 1}}, connectors: []string{"echo=" + a}},
		&siteSpec{name: "b", host: "127.0.0.2", accept: true, listeners: []string{"echo"}},
	)
	n.waitEndpoints("b", "echo", "a")
	if counts := get(t, n.url("b", "echo"), 10); counts["A"] != 10 {
		t.Fatalf("answers from the dial-out site = %v, want A=10", counts)
	}
}

// balanced spreads new connections in proportion to endpoints.
func TestBalancedProportionalToEndpoints(t *testing.T) {
	b1, b2, c := testutil.HTTPNameServer(t, "127.0.0.1:0", "B"), testutil.HTTPNameServer(t, "127.0.0.1:0", "B"), testutil.HTTPNameServer(t, "127.0.0.1:0", "C")
	n := newNetwork(t,
		&siteSpec{name: "a", host: "127.0.0.1", accept: true, listeners: []string{"echo"}},
		&siteSpec{name: "b", host: "127.0.0.2", links: []linkTo{{site: "a", cost: 1}}, connectors: []string{"echo=" + b1, "echo=" + b2}},
		&siteSpec{name: "c", host: "127.0.0.3", links: []linkTo{{site: "a", cost: 1}}, connectors: []string{"echo=" + c}},
	)
	n.waitEndpoints("a", "echo", "b", "c")
	const total = 600
	counts := get(t, n.url("a", "echo"), total)
	t.Logf("balanced over B (2 endpoints) and C (1): %v", counts)
	if counts["error"] > 0 {
		t.Fatalf("%d requests failed", counts["error"])
	}
	share := float64(counts["B"]) / total
	if math.Abs(share-2.0/3) > 0.1 {
		t.Fatalf("B's share = %.2f, want about 0.67 (2 of 3 endpoints)", share)
	}
}

// Diamond: a–b (1), a–c (5), b–d (1), c–d (1). "near" has endpoints at b
// and c; "far" only at d. closest uses b, fails over to c when b's gateway
// dies, and comes back when it returns; far reroutes through c.
func TestDiamondClosestFailover(t *testing.T) {
	nb, nc, fd := testutil.HTTPNameServer(t, "127.0.0.1:0", "B"), testutil.HTTPNameServer(t, "127.0.0.1:0", "C"), testutil.HTTPNameServer(t, "127.0.0.1:0", "D")
	n := newNetwork(t,
		&siteSpec{name: "a", host: "127.0.0.1", listeners: []string{"near", "far"}, routing: map[string]string{"near": "closest"},
			links: []linkTo{{site: "b", cost: 1}, {site: "c", cost: 5}}},
		&siteSpec{name: "b", host: "127.0.0.2", accept: true, connectors: []string{"near=" + nb}},
		&siteSpec{name: "c", host: "127.0.0.3", accept: true, connectors: []string{"near=" + nc}},
		&siteSpec{name: "d", host: "127.0.0.4", links: []linkTo{{site: "b", cost: 1}, {site: "c", cost: 1}}, connectors: []string{"far=" + fd}},
	)
	n.waitEndpoints("a", "near", "b", "c")
	n.waitEndpoints("a", "far", "d")
	testutil.Eventually(t, 10*time.Second, "a routes to d via b", func() error {
		if rt := n.sites["a"].r.View().Routes["d"]; netview.SiteOf(rt.NextHop) != "b" || rt.Cost != 2 {
			return fmt.Errorf("route a->d = %+v, want via b at cost 2", rt)
		}
		return nil
	})
	if counts := get(t, n.url("a", "near"), 20); counts["B"] != 20 {
		t.Fatalf("closest before failure = %v, want B=20", counts)
	}

	killed := time.Now()
	n.stop("b")
	var failover time.Duration
	testutil.Eventually(t, 10*time.Second, "closest fails over to c", func() error {
		got, err := getOne(n.url("a", "near"))
		if err != nil {
			return err
		}
		if got != "C" {
			return fmt.Errorf("answer %q", got)
		}
		failover = time.Since(killed)
		return nil
	})
	t.Logf("closest failed over from b to c in %s", failover)
	if counts := get(t, n.url("a", "near"), 20); counts["C"] != 20 {
		t.Fatalf("closest after b died = %v, want C=20", counts)
	}
	testutil.Eventually(t, 10*time.Second, "far reroutes through c", func() error {
		rt := n.sites["a"].r.View().Routes["d"]
		if netview.SiteOf(rt.NextHop) != "c" || rt.Cost != 6 {
			return fmt.Errorf("route a->d = %+v", rt)
		}
		return nil
	})
	if counts := get(t, n.url("a", "far"), 10); counts["D"] != 10 {
		t.Fatalf("far through c = %v, want D=10", counts)
	}
	if _, ok := n.sites["a"].r.View().Routes["b"]; ok {
		t.Fatalf("b still in a's view after it died")
	}

	n.start("b")
	testutil.Eventually(t, 15*time.Second, "closest comes back to b", func() error {
		got, err := getOne(n.url("a", "near"))
		if err != nil {
			return err
		}
		if got != "B" {
			return fmt.Errorf("answer %q", got)
		}
		return nil
	})
	if counts := get(t, n.url("a", "near"), 20); counts["B"] != 20 {
		t.Fatalf("closest after b returned = %v, want B=20", counts)
	}
}

// A link cut mid-stream ends the streams on it cleanly (the client sees
// the connection close, promptly) and new connections reroute.
func TestLinkCutMidStream(t *testing.T) {
	echo := testutil.EchoServer(t)
	// a dials b through a proxy that the test can cut, and c directly;
	// c dials b: the other path a–c–b costs 2.
	n := newNetwork(t,
		&siteSpec{name: "a", host: "127.0.0.1", listeners: []string{"echo"}, links: []linkTo{{site: "b", cost: 1, via: "proxy"}, {site: "c", cost: 1}}},
		&siteSpec{name: "b", host: "127.0.0.2", accept: true, connectors: []string{"echo=" + echo}},
		&siteSpec{name: "c", host: "127.0.0.3", accept: true, links: []linkTo{{site: "b", cost: 1}}},
	)
	n.waitEndpoints("a", "echo", "b")
	testutil.Eventually(t, 10*time.Second, "a routes to b directly", func() error {
		if rt := n.sites["a"].r.View().Routes["b"]; netview.SiteOf(rt.NextHop) != "b" {
			return fmt.Errorf("route a->b = %+v, want direct", rt)
		}
		return nil
	})
	conn, err := net.Dial("tcp", n.addr("a", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if _, err := fmt.Fprintln(conn, "hello"); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("echo before cut = %q, %v", line, err)
	}
	n.proxy.cut(true)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("stream over the cut link did not end: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "a reroutes to b through c", func() error {
		rt := n.sites["a"].r.View().Routes["b"]
		if netview.SiteOf(rt.NextHop) != "c" {
			return fmt.Errorf("route a->b = %+v", rt)
		}
		return nil
	})
	c2, err := net.Dial("tcp", conn.RemoteAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintln(c2, "again")
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(c2).ReadString('\n'); err != nil || line != "again\n" {
		t.Fatalf("echo after reroute = %q, %v", line, err)
	}
}

// A peer that goes silent (no FIN, no RST: a blackholed path) is found by
// the link keepalive and leaves the view within 10 s; its connections fail
// over to what remains.
func TestSilentPeerLeavesView(t *testing.T) {
	b, c := testutil.HTTPNameServer(t, "127.0.0.1:0", "B"), testutil.HTTPNameServer(t, "127.0.0.1:0", "C")
	n := newNetwork(t,
		&siteSpec{name: "a", host: "127.0.0.1", listeners: []string{"echo"}, routing: map[string]string{"echo": "closest"},
			links: []linkTo{{site: "b", cost: 1, via: "proxy"}, {site: "c", cost: 5}}},
		&siteSpec{name: "b", host: "127.0.0.2", accept: true, connectors: []string{"echo=" + b}},
		&siteSpec{name: "c", host: "127.0.0.3", accept: true, connectors: []string{"echo=" + c}},
	)
	n.waitEndpoints("a", "echo", "b", "c")
	if got, err := getOne(n.url("a", "echo")); err != nil || got != "B" {
		t.Fatalf("closest before the blackhole = %q %v, want B", got, err)
	}
	frozen := time.Now()
	n.proxy.freeze()
	testutil.Eventually(t, 10*time.Second, "b leaves a's view", func() error {
		if _, ok := n.sites["a"].r.View().Routes["b"]; ok {
			return fmt.Errorf("b still reachable")
		}
		return nil
	})
	t.Logf("silent peer b left a's view %s after the blackhole", time.Since(frozen).Round(time.Millisecond))
	if got, err := getOne(n.url("a", "echo")); err != nil || got != "C" {
		t.Fatalf("closest after b went silent = %q %v, want C", got, err)
	}
}

// A listener whose address has no endpoint anywhere closes the client's
// connection at once instead of leaving it hanging.
func TestNoEndpointClosesPromptly(t *testing.T) {
	n := newNetwork(t, &siteSpec{name: "a", host: "127.0.0.1", listeners: []string{"nowhere"}})
	conn, err := net.Dial("tcp", n.addr("a", "nowhere"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("read data from an address with no endpoint")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection to an address with no endpoint was left open")
	}
	if v := counterValue(t, n.sites["a"].reg, "skiff_connect_failures_total", map[string]string{"address": "nowhere", "reason": "no_endpoint"}); v != 1 {
		t.Fatalf("skiff_connect_failures_total{nowhere,no_endpoint} = %v, want 1", v)
	}
}

// A client that speaks first: its first bytes travel with the stream
// header, and when the cheapest endpoint fails they go to the next one
// unharmed. b's connector points at a closed port, so every connection's
// first attempt (closest: b, cost 1) fails at b's dial and the second (c,
// cost 2) carries the bytes.
func TestEarlyBytesSurviveAFailedAttempt(t *testing.T) {
	deadAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t, "127.0.0.1")))
	n := newNetwork(t,
		&siteSpec{name: "a", host: "127.0.0.1", listeners: []string{"echo"}, routing: map[string]string{"echo": "closest"},
			links: []linkTo{{site: "b", cost: 1}, {site: "c", cost: 2}}},
		&siteSpec{name: "b", host: "127.0.0.2", accept: true, connectors: []string{"echo=" + deadAddr}},
		&siteSpec{name: "c", host: "127.0.0.3", accept: true, connectors: []string{"echo=" + testutil.EchoServer(t)}},
	)
	n.waitEndpoints("a", "echo", "b", "c")
	msg := make([]byte, 12<<10) // most of one early read
	for i := range msg {
		msg[i] = byte('a' + i%26)
	}
	msg[len(msg)-1] = '\n'
	for i := range 20 {
		conn, err := net.Dial("tcp", n.addr("a", "echo"))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(msg); err != nil { // before a routes the connection
			t.Fatal(err)
		}
		got, err := bufio.NewReaderSize(conn, len(msg)).ReadBytes('\n')
		conn.Close()
		if err != nil || string(got) != string(msg) {
			t.Fatalf("connection %d: echoed %d of %d bytes intact (%v)", i, len(got), len(msg), err)
		}
	}
	if v := counterValue(t, n.sites["a"].reg, "skiff_connect_failures_total", map[string]string{"address": "echo", "reason": "remote"}); v != 20 {
		t.Fatalf("failed first attempts at b = %v, want 20", v)
	}
	// The early bytes count like the rest: every byte in, and out again.
	want := float64(20 * len(msg))
	testutil.Eventually(t, 5*time.Second, "address bytes counted", func() error {
		for _, dir := range []string{"in", "out"} {
			if v := counterValue(t, n.sites["a"].reg, "skiff_address_bytes_total", map[string]string{"address": "echo", "direction": dir}); v != want {
				return fmt.Errorf("skiff_address_bytes_total{echo,%s} = %v, want %v", dir, v, want)
			}
		}
		return nil
	})
}
