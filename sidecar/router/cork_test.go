package router

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
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
	raw = &countingConn{Conn: c}
	var under net.Conn = raw
	if cork {
		under = &corkConn{Conn: raw}
	}
	tc := tls.Client(under, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) // a test pair: no identity to check
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("no server side")
	}
	t.Cleanup(func() { tc.Close(); server.Close() })
	return corked(tc), raw, server
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
