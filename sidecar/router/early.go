package router

import (
	"net"
	"sync"
	"syscall"
)

// earlySize bounds the client bytes that travel with a stream header: one
// read's worth, the size of a typical request.
const earlySize = 16 << 10

var earlyBufs = sync.Pool{New: func() any { b := make([]byte, earlySize); return &b }}

// readEarly returns what the client has sent already, without waiting:
// one non-blocking read into buf. Clients that speak first (HTTP, redis,
// TLS) usually have by the time a new connection is routed; for the others
// it costs one read that finds nothing. Any error, EOF included, reads as
// nothing: the copier that follows meets it again.
func readEarly(c net.Conn, buf []byte) []byte {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	n := 0
	_ = rc.Read(func(fd uintptr) bool {
		n, _ = syscall.Read(int(fd), buf)
		return true // one attempt; never wait for readiness
	})
	if n <= 0 {
		return nil
	}
	return buf[:n]
}
