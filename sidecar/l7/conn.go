package l7

import (
	"context"
	"net"
	"sync"
)

// connInfo is what the engine knows of a connection it serves.
type connInfo struct {
	address  string
	fromSite bool   // a link stream of another site's requests (ServeSite)
	origin   string // the site that sent them (fromSite)
	logged   bool   // its requests go to the access log
	// framing is the guard of its HTTP/1 request framing (framing.go).
	framing *framing
}

type connInfoKey struct{}

// withConnInfo is the server's ConnContext: the connection's info into
// every request's context.
func withConnInfo(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*trackedConn); ok {
		info := tc.info
		info.framing = &tc.framing
		return context.WithValue(ctx, connInfoKey{}, info)
	}
	return ctx
}

func infoOf(ctx context.Context) (connInfo, bool) {
	ci, ok := ctx.Value(connInfoKey{}).(connInfo)
	return ci, ok
}

// trackedConn is a connection handed to the engine; done is closed when
// it closes, which ends ServeConn. What it reads passes its framing guard.
type trackedConn struct {
	net.Conn
	info    connInfo
	once    sync.Once
	done    chan struct{}
	framing framing
}

// Read reads from the connection; the framing guard follows the bytes.
func (c *trackedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.framing.scan(p[:n])
	return n, err
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

// connListener is the server's listener: Accept returns the connections
// handed to the engine.
type connListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnListener() *connListener {
	return &connListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// push hands c to the server; false once the listener is closed or ctx
// ended.
func (l *connListener) push(ctx context.Context, c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	case <-ctx.Done():
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "skiff" }
func (pipeAddr) String() string  { return "skiff-l7" }
