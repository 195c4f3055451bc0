package router

import (
	"crypto/tls"
	"net"
	"sync"
)

// A link connection's TLS records leave in one system call per write of
// its multiplexer: crypto/tls writes each record (up to 16 KiB) with its
// own write to the TCP connection, so a 64 KiB write of frames made four
// writes and four TCP segments' worth of work at both ends. corkConn, the
// TCP connection under TLS, holds what TLS writes while a corkedTLS
// write is under way, and writes it at once when that write returns.

// corkConn is a link's TCP connection under TLS.
type corkConn struct {
	net.Conn
	mu     sync.Mutex // TLS writes records from Read too (KeyUpdate), on another goroutine
	corked bool
	buf    []byte
}

// Write buffers p while corked, else writes it.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// cork starts holding writes.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork writes what it held, in one write, and stops holding.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	if cap(c.buf) > maxCork {
		c.buf = nil // not kept after an odd burst
	} else {
		c.buf = c.buf[:0]
	}
	return err
}

// maxCork bounds the buffer a corkConn keeps between writes.
const maxCork = 256 << 10

// corkedTLS is a link's TLS connection as its multiplexer writes it:
// each Write's records leave together.
type corkedTLS struct {
	*tls.Conn
	c *corkConn
}

func (t *corkedTLS) Write(p []byte) (int, error) {
	t.c.cork()
	n, err := t.Conn.Write(p)
	if uerr := t.c.uncork(); err == nil && uerr != nil {
		return n, uerr
	}
	return n, err
}

// corked returns conn for a multiplexer: corkedTLS when its TCP
// connection is a corkConn, conn otherwise.
func corked(conn *tls.Conn) net.Conn {
	if c, ok := conn.NetConn().(*corkConn); ok {
		return &corkedTLS{Conn: conn, c: c}
	}
	return conn
}
