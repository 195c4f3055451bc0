package mux

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// guard bounds waits that only a bug can make long.
const guard = time.Minute

// testCert is a self-signed ECDSA P-256 certificate for 127.0.0.1, good
// for both ends of a mutual-TLS connection.
var testCert = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "skiff mux test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
})

// connPair returns the two ends of a loopback TCP connection, wrapped in
// mutual TLS 1.3 if useTLS, with the handshake done.
func connPair(tb testing.TB, useTLS bool) (client, server net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	type result struct {
		c   net.Conn
		err error
	}
	accepted := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		accepted <- result{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	r := <-accepted
	if r.err != nil {
		tb.Fatalf("accept: %v", r.err)
	}
	server = r.c
	if !useTLS {
		return client, server
	}
	cert, pool := testCert()
	tc := tls.Client(client, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   "127.0.0.1",
	})
	ts := tls.Server(server, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	errc := make(chan error, 1)
	go func() { errc <- ts.Handshake() }()
	if err := tc.Handshake(); err != nil {
		tb.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		tb.Fatalf("server handshake: %v", err)
	}
	return tc, ts
}

type transport int

const (
	overPipe transport = iota
	overTCP
	overTLS
)

// sessionPair starts a client and a server session over a fresh
// connection; both are closed when the test ends.
func sessionPair(tb testing.TB, tr transport, ccfg, scfg Config) (client, server *Session) {
	tb.Helper()
	var a, b net.Conn
	if tr == overPipe {
		a, b = net.Pipe()
	} else {
		a, b = connPair(tb, tr == overTLS)
	}
	client, server = Client(a, ccfg), Server(b, scfg)
	tb.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// openPair opens a stream on from and accepts it on to.
func openPair(tb testing.TB, from, to *Session) (opened, accepted *Stream) {
	tb.Helper()
	opened, err := from.Open(tb.Context())
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	accepted, err = to.Accept()
	if err != nil {
		tb.Fatalf("accept: %v", err)
	}
	if accepted.ID() != opened.ID() {
		tb.Fatalf("accepted stream %d, opened %d", accepted.ID(), opened.ID())
	}
	return opened, accepted
}

// within runs f and fails the test if it does not return within guard.
func within(tb testing.TB, what string, f func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(guard):
		tb.Fatalf("%s did not finish", what)
	}
}

// rawFrame is a frame as the raw peer sees it.
type rawFrame struct {
	typ     frameType
	id      uint32
	length  uint32
	payload []byte
}

// rawPeer speaks the wire format by hand, to test how a Session copes with
// a peer that breaks the rules.
type rawPeer struct {
	conn   net.Conn
	frames chan rawFrame // closed when the connection fails
}

// newRawPeer returns a Session of the given side and a raw peer on the
// other end of a pipe. The raw peer sends nothing yet, not even SETTINGS.
func newRawPeer(tb testing.TB, sessionIsClient bool, cfg Config) (*Session, *rawPeer) {
	tb.Helper()
	a, b := net.Pipe()
	var s *Session
	if sessionIsClient {
		s = Client(a, cfg)
	} else {
		s = Server(a, cfg)
	}
	p := &rawPeer{conn: b, frames: make(chan rawFrame, 1024)}
	go p.readLoop()
	tb.Cleanup(func() {
		s.Close()
		b.Close()
	})
	return s, p
}

func (p *rawPeer) readLoop() {
	defer close(p.frames)
	br := bufio.NewReader(p.conn)
	var h [headerLen]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return
		}
		f := rawFrame{typ: frameType(h[1]), id: binary.BigEndian.Uint32(h[4:]), length: binary.BigEndian.Uint32(h[8:])}
		if f.typ == frameData || f.typ == framePing || f.typ == framePong || f.typ == frameSettings {
			f.payload = make([]byte, f.length)
			if _, err := io.ReadFull(br, f.payload); err != nil {
				return
			}
		}
		select {
		case p.frames <- f:
		default: // nobody is looking; drop it
		}
	}
}

// send writes raw bytes, ignoring errors: the session may have hung up.
func (p *rawPeer) send(b []byte) { p.conn.Write(b) }

func frameBytes(typ frameType, id, length uint32, payload []byte) []byte {
	return append(appendHeader(nil, typ, id, length), payload...)
}

func settingsFrame(window, maxFrame uint32) []byte {
	var p [8]byte
	binary.BigEndian.PutUint32(p[:], window)
	binary.BigEndian.PutUint32(p[4:], maxFrame)
	return frameBytes(frameSettings, 0, 8, p[:])
}

// next returns the next frame of type typ, skipping others.
func (p *rawPeer) next(tb testing.TB, typ frameType) rawFrame {
	tb.Helper()
	timeout := time.After(guard)
	for {
		select {
		case f, ok := <-p.frames:
			if !ok {
				tb.Fatalf("connection closed while waiting for %v", typ)
			}
			if f.typ == typ {
				return f
			}
		case <-timeout:
			tb.Fatalf("no %v frame", typ)
		}
	}
}
