package router

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/mux"
	"github.com/skiff-io/skiff/sidecar/shared/rawio"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// countingConn counts the writes that reach a TCP connection.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

// tlsPair returns a TLS 1.3 client over a countingConn, corked or not,
// and the server's side, both handshaken, over loopback TCP.
func tlsPair(t *testing.T, cork bool) (client net.Conn, raw *countingConn, server *tls.Conn) {
	t.Helper()
	client, server = tlsPairOver(t, func(c net.Conn) net.Conn {
		raw = &countingConn{Conn: c}
		if cork {
			return &corkConn{Conn: raw}
		}
		return raw
	})
	return client, raw, server
}

// tlsPairOver returns a TLS 1.3 client over under(its TCP connection),
// as a multiplexer writes it (corked), and the server's side, both
// handshaken, over loopback TCP.
func tlsPairOver(t *testing.T, under func(net.Conn) net.Conn) (client net.Conn, server *tls.Conn) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"peer"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan *tls.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13})
		_ = s.Handshake()
		accepted <- s
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// A test pair: no identity to check. Full records from the first
	// write, as on a link that has carried its first 128 KiB.
	tc := tls.Client(under(c), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, DynamicRecordSizingDisabled: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("no server side")
	}
	t.Cleanup(func() { tc.Close(); server.Close() })
	return corked(tc), server
}

// heldPair is tlsPairOver with a link's own layers under TLS (corkConn
// over rawio.Conn). With small true, the socket buffers at both ends are
// small, so that a peer that does not read fills them with a few writes,
// and a write that waits for the socket keeps waiting.
// raw is the client's TCP connection.
func heldPair(t *testing.T, small bool) (client *corkedTLS, server *tls.Conn, raw *net.TCPConn) {
	t.Helper()
	c, server := tlsPairOver(t, func(c net.Conn) net.Conn {
		raw = c.(*net.TCPConn)
		if small {
			raw.SetWriteBuffer(4 << 10)
		}
		return &corkConn{Conn: rawio.Wrap(c)}
	})
	if small {
		server.NetConn().(*net.TCPConn).SetReadBuffer(4 << 10)
	}
	return c.(*corkedTLS), server, raw
}

// within runs f and fails the test if it has not returned after a
// generous bound: f must not wait for a peer.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s waited (for a peer that does not read?)", what)
	}
}

// WriteHeld never waits: against a peer that does not read, it takes
// frames until the socket is full, holds what the socket did not take,
// and then takes nothing while something is held or while another write
// waits for the socket. Once the peer reads, every byte arrives in order
// (the held records first), and FlushHeld and the waiting write return.
func TestWriteHeldNeverWaits(t *testing.T) {
	client, server, raw := heldPair(t, true)
	msg := func(i int) []byte { return []byte(fmt.Sprintf("%06d%s\n", i, bytes.Repeat([]byte("h"), 1000))) }
	var sent [][]byte
	within(t, "WriteHeld", func() {
		for i := 0; ; i++ {
			if i == 100000 {
				t.Error("the socket never filled")
				return
			}
			taken, held, err := client.WriteHeld(msg(i))
			if err != nil || !taken {
				t.Errorf("write %d: taken %v, err %v, with nothing held", i, taken, err)
				return
			}
			sent = append(sent, msg(i))
			if held {
				return
			}
		}
	})
	if t.Failed() {
		return
	}
	within(t, "WriteHeld with something held", func() {
		if taken, _, err := client.WriteHeld(msg(-1)); taken || err != nil {
			t.Errorf("with something held: taken %v, err %v; want nothing taken", taken, err)
		}
	})
	// A Write waits for the socket (behind what is held); meanwhile
	// WriteHeld takes nothing.
	// The Write must wait whatever made the socket refuse the last
	// frame: it may have been full only while loopback's softirq lagged.
	// So both buffers grow (2 MiB each, the kernel doubles what is set)
	// and the Write is larger than both can hold; at 8 KiB a buffer,
	// reading it would take seconds.
	raw.SetWriteBuffer(1 << 20)
	server.NetConn().(*net.TCPConn).SetReadBuffer(1 << 20)
	last := []byte(fmt.Sprintf("%06d%s\n", len(sent), bytes.Repeat([]byte("w"), 8<<20)))
	wrote := make(chan error, 1)
	go func() { _, err := client.Write(last); wrote <- err }()
	tu.Eventually(t, 10*time.Second, "the Write waits for the socket", func() error {
		if client.c.mu.TryLock() {
			client.c.mu.Unlock()
			return fmt.Errorf("no write under way")
		}
		return nil
	})
	within(t, "WriteHeld beside a waiting Write", func() {
		if taken, _, _ := client.WriteHeld(msg(-2)); taken {
			t.Error("WriteHeld took a frame while a Write waited for the socket")
		}
	})
	sent = append(sent, last)
	flushed := make(chan error, 1)
	go func() { flushed <- client.FlushHeld() }()
	br := bufio.NewReader(server)
	for i, want := range sent {
		server.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := br.ReadBytes('\n')
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("message %d: %.12q, %v; want %.12q", i, got, err, want)
		}
	}
	for _, ch := range []chan error{wrote, flushed} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
}

// A corked link connection's write of 256 KiB (16 TLS records) reaches
// TCP in one write, where crypto/tls alone makes one per record; the
// peer reads every byte.
func TestCorkOneWritePerWrite(t *testing.T) {
	msg := bytes.Repeat([]byte("skiff-cork "), 256<<10/11)
	for _, cork := range []bool{false, true} {
		client, raw, server := tlsPair(t, cork)
		if _, ok := client.(*corkedTLS); ok != cork {
			t.Fatalf("cork %v: corked() gave %T", cork, client)
		}
		got := make(chan []byte, 1)
		go func() {
			b := make([]byte, len(msg))
			_, _ = io.ReadFull(server, b)
			got <- b
		}()
		before := raw.count()
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		writes := raw.count() - before
		if b := <-got; !bytes.Equal(b, msg) {
			t.Fatalf("cork %v: the peer read other bytes", cork)
		}
		switch {
		case cork && writes != 1:
			t.Errorf("corked: %d writes to TCP for one write, want 1", writes)
		case !cork && writes < len(msg)/(16<<10):
			t.Errorf("not corked: %d writes to TCP; the test no longer shows what corking saves", writes)
		}
	}
}

// Writes from many goroutines and reads at the same time (crypto/tls may
// write from Read) keep every byte, in each writer's order.
func TestCorkConcurrent(t *testing.T) {
	client, _, server := tlsPair(t, true)
	const writers, each = 4, 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range writers {
		wg.Go(func() {
			msg := bytes.Repeat([]byte{byte('a' + w)}, 1000)
			for range each {
				mu.Lock() // a multiplexer writes one frame at a time
				_, err := client.Write(msg)
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	go func() { _, _ = io.Copy(io.Discard, client) }() // reads as the multiplexer does
	counts := map[byte]int{}
	b := make([]byte, 64<<10)
	for total := 0; total < writers*each*1000; {
		_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := server.Read(b)
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
		for _, c := range b[:n] {
			counts[c]++
		}
		total += n
	}
	wg.Wait()
	for w := range writers {
		if n := counts[byte('a'+w)]; n != each*1000 {
			t.Errorf("writer %d: %d bytes arrived, want %d", w, n, each*1000)
		}
	}
}

// A link's reader carries a stream in transit into the next link only
// with writes that never wait (mux.Stream.TryWrite into a corkedTLS):
// while the next link's peer reads nothing, the first link's other
// streams go on. Here "east" splices stream X of its link M from a
// sidecar into stream Y of its link L to "west", which does not read, as
// a gateway's Sink does; the sidecar sends 300 KiB on X (more than Y's
// first credit, 64 KiB, and L's socket buffers take), each message
// followed by a round trip on another stream of M, answered by east. Then
// west reads, and gets X's bytes whole and in order. A reader that wrote
// into L and waited (for the socket, or for Y's credit) stalls the round
// trips.
func TestTransitNeverWaitsForTheNextLink(t *testing.T) {
	cfg := mux.Config{KeepAliveTimeout: time.Minute}
	mc, ms := tlsPairOver(t, func(c net.Conn) net.Conn { return &corkConn{Conn: rawio.Wrap(c)} })
	lc, ls, _ := heldPair(t, false)
	sidecar, east, eastL := mux.Client(mc, cfg), mux.Server(ms, cfg), mux.Client(lc, cfg)
	t.Cleanup(func() { sidecar.Close(); east.Close(); eastL.Close() })

	spliced := make(chan error, 1)
	go func() { // east: X into Y, then an echo for Z
		x, err := east.Accept()
		if err != nil {
			spliced <- err
			return
		}
		y, err := eastL.Open(context.Background())
		if err != nil {
			spliced <- err
			return
		}
		x.Sink(y, mux.StreamWriter(y, nil), func(f func()) { go f() }, func(_ int64, err error) {
			if err == nil {
				err = y.CloseWrite()
			}
			spliced <- err
		})
		z, err := east.Accept()
		if err != nil {
			return
		}
		io.Copy(z, z)
	}()

	// Each message on X, then a round trip on Z: east's reader has
	// handled the message (directly into Y while Y has credit, then into
	// X's buffer for a flusher) before it answers the round trip.
	const msgs = 300
	msg := func(i int) string { return fmt.Sprintf("%06d%s\n", i, strings.Repeat("t", 1000)) }
	x, err := sidecar.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	z, err := sidecar.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	zr := bufio.NewReader(z)
	within(t, "round trips on M while L's peer reads nothing", func() {
		for i := range msgs {
			if _, err := io.WriteString(x, msg(i)); err != nil {
				t.Errorf("message %d: %v", i, err)
				return
			}
			line := fmt.Sprintf("ping %d\n", i)
			if _, err := io.WriteString(z, line); err != nil {
				t.Errorf("round trip %d: %v", i, err)
				return
			}
			if got, err := zr.ReadString('\n'); err != nil || got != line {
				t.Errorf("round trip %d: %q, %v", i, got, err)
				return
			}
		}
	})
	if t.Failed() {
		return
	}
	if err := x.CloseWrite(); err != nil {
		t.Fatal(err)
	}

	west := mux.Server(ls, cfg)
	t.Cleanup(func() { west.Close() })
	y, err := west.Accept()
	if err != nil {
		t.Fatal(err)
	}
	y.SetReadDeadline(time.Now().Add(20 * time.Second))
	yr := bufio.NewReader(y)
	for i := range msgs {
		if got, err := yr.ReadString('\n'); err != nil || got != msg(i) {
			t.Fatalf("west's message %d: %.12q, %v; want %.12q", i, got, err, msg(i))
		}
	}
	if _, err := yr.ReadByte(); err != io.EOF {
		t.Errorf("after the last message: %v, want EOF", err)
	}
	if err := <-spliced; err != nil {
		t.Fatal(err)
	}
}

// countedRaw is a link's socket (rawio.Conn) that counts the writes
// reaching it, blocking and not.
type countedRaw struct {
	*rawio.Conn
	writes atomic.Int64
}

func (c *countedRaw) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func (c *countedRaw) TryWrite(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.TryWrite(p)
}

// muxFrame is one frame of the link's multiplexer (sidecar/mux/doc.go).
func muxFrame(typ byte, id uint32, length uint32, payload []byte) []byte {
	b := []byte{1, typ, 0, 0}
	b = binary.BigEndian.AppendUint32(b, id)
	b = binary.BigEndian.AppendUint32(b, length)
	return append(b, payload...)
}

// transitBurst starts east, splicing the stream a raw sidecar opens on
// link M into a stream of its link L to west, as a gateway's Sink does.
// It sends the first message and returns M's client end (the sidecar
// speaks the link protocol itself, so a test decides what each TLS
// record holds), west's reader of the stream once the first message came
// through, and the counter of writes to L's socket.
func transitBurst(t *testing.T, first []byte) (mc net.Conn, yr *bufio.Reader, counted *countedRaw) {
	t.Helper()
	// No keepalive within a test: a PING would write what waits.
	cfg := mux.Config{KeepAliveInterval: time.Minute, KeepAliveTimeout: 2 * time.Minute}
	mc, ms := tlsPairOver(t, func(c net.Conn) net.Conn { return c })
	lc, ls := tlsPairOver(t, func(c net.Conn) net.Conn {
		counted = &countedRaw{Conn: rawio.Wrap(c).(*rawio.Conn)}
		return &corkConn{Conn: counted}
	})
	east, eastL, west := mux.Server(ms, cfg), mux.Client(lc, cfg), mux.Server(ls, cfg)
	t.Cleanup(func() { east.Close(); eastL.Close(); west.Close() })
	go func() {
		x, err := east.Accept()
		if err != nil {
			return
		}
		y, err := eastL.Open(context.Background())
		if err != nil {
			return
		}
		x.Sink(y, mux.StreamWriter(y, nil), func(f func()) { go f() }, func(int64, error) {})
	}()
	settings := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 1<<20), 16<<10)
	open := append(muxFrame(8, 0, 8, settings), muxFrame(2, 1, 0, nil)...)
	if _, err := mc.Write(append(open, muxFrame(0, 1, uint32(len(first)), first)...)); err != nil {
		t.Fatal(err)
	}
	y, err := west.Accept()
	if err != nil {
		t.Fatal(err)
	}
	y.SetReadDeadline(time.Now().Add(10 * time.Second))
	yr = bufio.NewReader(y)
	if got, err := yr.ReadBytes('\n'); err != nil || !bytes.Equal(got, first) {
		t.Fatalf("the first message: %q, %v", got, err)
	}
	time.Sleep(100 * time.Millisecond) // the Sink's first flusher goes idle
	return mc, yr, counted
}

// transitMsg is the i-th message of a transit test, one line.
func transitMsg(i int) []byte { return fmt.Appendf(nil, "%04d%s\n", i, strings.Repeat("b", 95)) }

// A burst of small messages in transit, that east's reader finds in one
// read of its link, leaves on the next link in one write, not one write
// each: the reader's direct writes wait in the next link's buffer while it
// has frames at hand. A sidecar sends 32 messages of one stream in one TLS
// record.
func TestTransitBurstLeavesInOneWrite(t *testing.T) {
	mc, yr, counted := transitBurst(t, transitMsg(0))
	var burst []byte
	const n = 32
	for i := 1; i <= n; i++ {
		burst = append(burst, muxFrame(0, 1, uint32(len(transitMsg(i))), transitMsg(i))...)
	}
	before := counted.writes.Load()
	if _, err := mc.Write(burst); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if got, err := yr.ReadBytes('\n'); err != nil || !bytes.Equal(got, transitMsg(i)) {
			t.Fatalf("message %d: %q, %v", i, got, err)
		}
	}
	if w := counted.writes.Load() - before; w != 1 {
		t.Errorf("%d messages in one read left in %d writes; want 1", n, w)
	}
}

// What the reader left in the next link's buffer goes out before the
// reader waits for the rest of a frame: a record that ends inside a
// frame does not hold the messages before it until the peer sends the
// rest.
func TestTransitHalfFrameHoldsNoMessage(t *testing.T) {
	mc, yr, _ := transitBurst(t, transitMsg(0))
	m1, m2 := transitMsg(1), transitMsg(2)
	f2 := muxFrame(0, 1, uint32(len(m2)), m2)
	if _, err := mc.Write(append(muxFrame(0, 1, uint32(len(m1)), m1), f2[:20]...)); err != nil {
		t.Fatal(err)
	}
	if got, err := yr.ReadBytes('\n'); err != nil || !bytes.Equal(got, m1) {
		t.Fatalf("message 1 while the rest of message 2 is withheld: %q, %v", got, err)
	}
	if _, err := mc.Write(f2[20:]); err != nil {
		t.Fatal(err)
	}
	if got, err := yr.ReadBytes('\n'); err != nil || !bytes.Equal(got, m2) {
		t.Fatalf("message 2: %q, %v", got, err)
	}
}
