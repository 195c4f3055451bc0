package router

import (
	"crypto/tls"
	"net"
	"sync"

	"github.com/skiff-io/skiff/sidecar/mux"
)

// A link connection's TLS records leave in one system call per write of
// its multiplexer: crypto/tls writes each record (up to 16 KiB) with its
// own write to the TCP connection, so a 64 KiB write of frames made four
// writes and four TCP segments' worth of work at both ends. corkConn, the
// TCP connection under TLS, holds what TLS writes while a corkedTLS
// write is under way, and writes it at once when that write returns.
//
// A corkedTLS write may also be one that never waits (WriteHeld, for a
// stream in transit written by another link's reader): what the socket
// does not take at once, corkConn holds, and writes ahead of anything
// written after.

// corkConn is a link's TCP connection under TLS.
type corkConn struct {
	net.Conn
	mu     sync.Mutex // TLS writes records from Read too (KeyUpdate), on another goroutine
	corked bool
	buf    []byte
	held   []byte // written by TLS, not yet taken by the socket (WriteHeld)
}

// tryWriter is a socket that can write without waiting (rawio.Conn).
type tryWriter interface {
	TryWrite(p []byte) (int, error)
}

// Write buffers p while corked, else writes what is held, then p.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	if err := c.writeHeldLocked(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// cork starts holding writes.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// tryCork starts holding writes unless a write is under way (one that
// may wait for the socket, holding mu), something is held already, or the
// socket cannot write without waiting.
func (c *corkConn) tryCork() bool {
	if _, ok := c.Conn.(tryWriter); !ok || !c.mu.TryLock() {
		return false
	}
	defer c.mu.Unlock()
	if len(c.held) > 0 {
		return false
	}
	c.corked = true
	return true
}

// uncork writes what is held and what it buffered, and stops holding.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if err := c.writeHeldLocked(); err != nil {
		return err
	}
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = trim(c.buf)
	return err
}

// uncorkHeld stops holding writes and writes what it buffered with one
// attempt that never waits (nothing is held: tryCork saw to it); what the
// socket does not take is held. It reports whether something is.
func (c *corkConn) uncorkHeld() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return false, nil
	}
	n, err := c.Conn.(tryWriter).TryWrite(c.buf)
	c.held = append(c.held, c.buf[n:]...)
	c.buf = trim(c.buf)
	return len(c.held) > 0, err
}

// writeHeld writes what is held, waiting for the socket.
func (c *corkConn) writeHeld() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeHeldLocked()
}

func (c *corkConn) writeHeldLocked() error {
	if len(c.held) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.held)
	c.held = trim(c.held)
	return err
}

// trim empties b for reuse, dropping it after an odd burst.
func trim(b []byte) []byte {
	if cap(b) > maxCork {
		return nil
	}
	return b[:0]
}

// maxCork bounds the buffer a corkConn keeps between writes.
const maxCork = 256 << 10

// corkedTLS is a link's TLS connection as its multiplexer writes it:
// each Write's records leave together.
type corkedTLS struct {
	*tls.Conn
	c *corkConn
}

var _ mux.HeldWriter = (*corkedTLS)(nil)

func (t *corkedTLS) Write(p []byte) (int, error) {
	t.c.cork()
	n, err := t.Conn.Write(p)
	if uerr := t.c.uncork(); err == nil && uerr != nil {
		return n, uerr
	}
	return n, err
}

// WriteHeld is Write without a wait: TLS seals p while corkConn holds
// the records, which then go to the socket with one attempt. While
// corked, TLS's own writes (a KeyUpdate answer from Read) are held too, so
// TLS's lock is never held across a wait for the socket; a write of
// corkConn's under way (holding mu, maybe waiting) makes it take nothing.
func (t *corkedTLS) WriteHeld(p []byte) (taken, held bool, err error) {
	if !t.c.tryCork() {
		return false, false, nil
	}
	_, err = t.Conn.Write(p)
	held, uerr := t.c.uncorkHeld()
	if err == nil {
		err = uerr
	}
	return true, held, err
}

// FlushHeld writes what WriteHeld left held.
func (t *corkedTLS) FlushHeld() error { return t.c.writeHeld() }

// corked returns conn for a multiplexer: corkedTLS when its TCP
// connection is a corkConn, conn otherwise.
func corked(conn *tls.Conn) net.Conn {
	if c, ok := conn.NetConn().(*corkConn); ok {
		return &corkedTLS{Conn: conn, c: c}
	}
	return conn
}
