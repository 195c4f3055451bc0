package router

import (
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/mux"
	tu "github.com/skiff-io/skiff/test/testutil"
)

func TestPoolLoadObserve(t *testing.T) {
	t0 := time.Unix(1000, 0)
	t.Run("a steady rate settles at a second's bytes", func(t *testing.T) {
		var p poolLoad
		const rate = 250e6 // bytes per second
		var total uint64
		p.observe(0, t0)
		var got float64
		for i := 1; i <= 500; i++ { // 5 s in steps of 10 ms
			total += uint64(rate / 100)
			got = p.observe(total, t0.Add(time.Duration(i)*10*time.Millisecond))
		}
		want := rate * loadTau.Seconds() * (1 - math.Exp(-5))
		if math.Abs(got-want)/want > 0.01 {
			t.Fatalf("after 5 s at %.0f B/s: %.0f decayed bytes; want %.0f", rate, got, want)
		}
		// Looking more often changes nothing: the same traffic, seen in
		// steps of 1 ms for the next second, then 1 s of quiet in one step.
		q := p
		for i := 1; i <= 1000; i++ {
			total += uint64(rate / 1000)
			got = p.observe(total, t0.Add(5*time.Second+time.Duration(i)*time.Millisecond))
		}
		once := q.observe(total, t0.Add(6*time.Second))
		if math.Abs(got-once)/once > 0.01 {
			t.Fatalf("one more second looked at every 1 ms: %.0f; looked at once: %.0f", got, once)
		}
		quiet := p.observe(total, t0.Add(7*time.Second))
		if want := got * math.Exp(-1); math.Abs(quiet-want)/want > 1e-9 {
			t.Fatalf("a quiet second after %.0f: %.0f; want %.0f", got, quiet, want)
		}
	})
	t.Run("old traffic seen late counts as old", func(t *testing.T) {
		var p poolLoad
		p.observe(0, t0)
		// 1 GB carried some time in the last minute, first seen now.
		got := p.observe(1e9, t0.Add(time.Minute))
		if want := 1e9 / 60.0; got > want {
			t.Fatalf("1 GB over a minute, looked at once: %.0f decayed bytes; want at most %.0f (spread over the minute)", got, want)
		}
	})
	t.Run("the first look only takes the count", func(t *testing.T) {
		var p poolLoad
		if got := p.observe(5e9, t0); got != 0 {
			t.Fatalf("first look at a session that carried 5 GB: %.0f; want 0", got)
		}
		if got := p.observe(5e9+1000, t0); got != 1000 {
			t.Fatalf("1000 bytes more at the same instant: %.0f; want 1000", got)
		}
	})
	t.Run("cost", func(t *testing.T) {
		// One bulk stream at 250 MB/s against 100 quiet streams.
		if bulk, quiet := poolCost(1, 250e6), poolCost(100, 0); bulk <= quiet {
			t.Fatalf("a bulk stream's connection costs %.0f, one with 100 quiet streams %.0f; want the bulk one dearer", bulk, quiet)
		}
		if a, b := poolCost(2, 0), poolCost(3, 0); a >= b {
			t.Fatalf("quiet connections: 2 streams cost %.0f, 3 cost %.0f", a, b)
		}
	})
}

// New streams keep off the pool connection that carries a bulk stream:
// a small request there waits behind the bulk stream's bytes.
func TestNewStreamsAvoidBulkConnection(t *testing.T) {
	sink, sunk := discardService(t)
	bulkPort := tu.FreePort(t, "127.0.0.1")
	webPort := tu.FreePort(t, "127.0.0.1")
	east := startSite(t, "east", true, nil, Services{Listeners: []Listener{
		{Address: "bulk", Host: "127.0.0.1", Port: bulkPort},
		{Address: "backend", Host: "127.0.0.1", Port: webPort},
	}})
	sink.Address = "bulk"
	startSite(t, "west", false, []LinkSpec{specFor(t, east.issue(t, 1))}, Services{Connectors: []Connector{sink, echoService(t, "west")}})
	webAddr := fmt.Sprintf("127.0.0.1:%d", webPort)
	tu.Eventually(t, 10*time.Second, "east reaches backend at west", reachEcho(webAddr, "west"))
	l, err := east.r.anyLink("west")
	if err != nil {
		t.Fatal(err)
	}
	tu.Eventually(t, 10*time.Second, "both pool connections up", func() error {
		if conns, _ := l.counts(); conns != 2 {
			return fmt.Errorf("%d connections", conns)
		}
		return nil
	})

	// One client sends as fast as it can, for as long as the test runs.
	bc, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", bulkPort))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { bc.Close(); wg.Wait() })
	wg.Go(func() {
		chunk := make([]byte, 64<<10)
		bc.SetWriteDeadline(time.Now().Add(time.Minute))
		for {
			if _, err := bc.Write(chunk); err != nil {
				return
			}
		}
	})
	tu.Eventually(t, 10*time.Second, "16 MiB through the bulk stream", func() error {
		if n := sunk.Load(); n < 16<<20 {
			return fmt.Errorf("%d bytes", n)
		}
		return nil
	})
	bulk, other := busiest(t, l)
	bulkBefore, otherBefore := bulk.NumStreams(), other.NumStreams()

	for i := range 3 {
		e := echoAnsweredBy(t, webAddr, "west")
		t.Cleanup(func() { e.c.Close() })
		if err := e.roundTrip(fmt.Sprintf("request %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if b, o := bulk.NumStreams()-bulkBefore, other.NumStreams()-otherBefore; b != 0 || o != 3 {
		t.Fatalf("3 connections opened beside a bulk stream: %d streams on its pool connection, %d on the other; want 0 and 3", b, o)
	}
}

// discardService reads and drops what each connection sends, counting
// the bytes.
func discardService(t *testing.T) (Connector, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	port := serveEach(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		buf := make([]byte, 64<<10)
		for {
			m, err := c.Read(buf)
			n.Add(int64(m))
			if err != nil {
				return
			}
		}
	})
	return Connector{Host: "127.0.0.1", Port: port}, &n
}

// busiest returns the link's pool session that carried the most data,
// and the other one.
func busiest(t *testing.T, l *link) (bulk, other *mux.Session) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.sessions) != 2 || l.sessions[0] == nil || l.sessions[1] == nil {
		t.Fatalf("pool %v; want two live sessions", l.sessions)
	}
	a, b := l.sessions[0], l.sessions[1]
	if a.DataBytes() < b.DataBytes() {
		a, b = b, a
	}
	return a, b
}
