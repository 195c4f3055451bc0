package l7

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// h1Pool sends HTTP/1.1 requests that have no body over kept-alive
// connections, on the caller's goroutine: the request is written with
// net/http's Request.Write and the answer read with http.ReadResponse,
// then the connection goes back to the pool once its body was read to
// the end. net/http's Transport runs a reader and a writer goroutine per
// connection and hands every request and answer between them and the
// caller; a request routed across sites crosses two such transports, and
// those hand-offs were a large part of its cost (docs/benchmarks.md).
// Requests with a body keep using the Transport, whose writer sends the
// body while the answer comes back (an endpoint may answer first).
type h1Pool struct {
	dial        func(ctx context.Context, addr string) (net.Conn, error)
	maxIdle     int           // per address
	idleTimeout time.Duration // an idle connection older than this is closed when found

	mu   sync.Mutex
	idle map[string][]*h1Conn // by address, the most recently used last
	held map[string]int       // by address, the connections link streams hold (holdConn)
}

// h1Conn is one connection of a pool.
type h1Conn struct {
	conn      net.Conn
	read      int64  // bytes read from conn, to tell a stale idle connection
	pre       []byte // read before (h2async.go), read again first
	br        *bufio.Reader
	bw        *bufio.Writer
	addr      string
	pool      *h1Pool
	idleSince time.Time
	// deadline is the read deadline a hold set (hold.go), zero if none: a
	// Read that waits clears it first.
	deadline time.Time
}

func (c *h1Conn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	if !c.deadline.IsZero() {
		c.deadline = time.Time{}
		_ = c.conn.SetReadDeadline(time.Time{})
	}
	n, err := c.conn.Read(p)
	c.read += int64(n)
	return n, err
}

func newH1Pool(dial func(ctx context.Context, addr string) (net.Conn, error)) *h1Pool {
	return &h1Pool{dial: dial, maxIdle: 256, idleTimeout: 90 * time.Second, idle: map[string][]*h1Conn{}, held: map[string]int{}}
}

// RoundTrip sends req, which has no body, to req.URL.Host. A kept-alive
// connection the peer closed before answering (nothing came back) is
// replaced by a new one, once, for a method that may be sent twice.
func (p *h1Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		return nil, errors.New("h1Pool: a request with a body")
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := p.get(req.Context(), req.URL.Host)
		if err != nil {
			return nil, err
		}
		resp, err := p.exchange(c, req)
		if err == nil {
			return resp, nil
		}
		c.conn.Close()
		if c.read > 0 || !sendAgain(req.Context(), reused, attempt, req.Method) {
			return nil, err
		}
	}
}

// sendAgain reports whether a request whose connection failed before
// any byte of an answer came back goes once more, on a new connection:
// the connection was a kept-alive one (the peer closed it while idle),
// this was the first attempt, the method may be sent twice, and the
// request is still wanted.
func sendAgain(ctx context.Context, reused bool, attempt int, method string) bool {
	return reused && attempt == 0 && idempotent(method) && ctx.Err() == nil
}

// exchange writes req on c and reads its answer's header. While the
// answer's body is read, a cancelled request closes the connection.
func (p *h1Pool) exchange(c *h1Conn, req *http.Request) (*http.Response, error) {
	stop := context.AfterFunc(req.Context(), func() { c.conn.Close() })
	c.read = 0
	if err := req.Write(c.bw); err != nil {
		stop()
		return nil, fmt.Errorf("write request: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		stop()
		return nil, fmt.Errorf("write request: %w", err)
	}
	var resp *http.Response
	var err error
	for {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			stop()
			if req.Context().Err() != nil {
				err = req.Context().Err()
			}
			return nil, fmt.Errorf("read answer: %w", err)
		}
		// An informational answer (103 Early Hints) comes before the
		// answer; a switch of protocols was not asked for.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		stop()
		return nil, errors.New("read answer: 101 Switching Protocols to a request that did not ask")
	}
	resp.Body = &h1Body{ReadCloser: resp.Body, pool: p, conn: c, stop: stop, keep: !resp.Close && !req.Close}
	return resp, nil
}

// idempotent reports a method a client may send again (RFC 9110, 9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// get returns an idle connection to addr, or a new one.
func (p *h1Pool) get(ctx context.Context, addr string) (c *h1Conn, reused bool, err error) {
	if c := p.idleConn(addr); c != nil {
		return c, true, nil
	}
	conn, err := p.dial(ctx, addr)
	if err != nil {
		return nil, false, err
	}
	c = &h1Conn{conn: conn, addr: addr, pool: p}
	c.br = bufio.NewReaderSize(c, 4<<10)
	c.bw = bufio.NewWriterSize(conn, 4<<10)
	return c, false, nil
}

// idleConn returns an idle connection to addr, nil if it has none.
func (p *h1Pool) idleConn(addr string) *h1Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.idleConnLocked(addr)
}

// holdConn returns an idle connection to addr for a link stream to hold
// between requests (hold.go), nil if it has none or link streams hold
// maxIdle of addr's already: held connections stay open as idle ones do,
// and a peer's idle streams are bounded as they are. endHold counts its
// hold's end.
func (p *h1Pool) holdConn(addr string) *h1Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[addr] >= p.maxIdle {
		return nil
	}
	c := p.idleConnLocked(addr)
	if c != nil {
		p.held[addr]++
	}
	return c
}

// endHold counts the end of a hold of one of addr's connections.
func (p *h1Pool) endHold(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[addr]--; p.held[addr] <= 0 {
		delete(p.held, addr)
	}
}

// idleConnLocked is idleConn's work, with p.mu held.
func (p *h1Pool) idleConnLocked(addr string) *h1Conn {
	now := time.Now()
	for list := p.idle[addr]; len(list) > 0; list = p.idle[addr] {
		c := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		if now.Sub(c.idleSince) < p.idleTimeout {
			return c
		}
		c.conn.Close()
	}
	return nil
}

// put keeps c for the next request to its address, or closes it.
func (p *h1Pool) put(c *h1Conn) {
	c.idleSince = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle[c.addr]) >= p.maxIdle {
		c.conn.Close()
		return
	}
	p.idle[c.addr] = append(p.idle[c.addr], c)
}

// CloseIdleConnections closes every idle connection.
func (p *h1Pool) CloseIdleConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, list := range p.idle {
		for _, c := range list {
			c.conn.Close()
		}
		delete(p.idle, addr)
	}
}

// h1Body is an answer's body: read to its end, its connection serves the
// next request; closed before, the connection is closed (the rest of the
// answer is not read).
type h1Body struct {
	io.ReadCloser
	pool *h1Pool
	conn *h1Conn
	stop func() bool // the request's cancellation; false once it closed conn
	keep bool        // neither side asked to close the connection
	eof  bool
	once sync.Once
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *h1Body) Close() error {
	b.once.Do(func() {
		stopped := b.stop()
		if b.eof && b.keep && stopped && b.conn.br.Buffered() == 0 {
			_ = b.ReadCloser.Close() // read to the end: nothing left to drain
			b.pool.put(b.conn)
			return
		}
		b.conn.conn.Close()
	})
	return nil
}
