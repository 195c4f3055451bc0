// Package rawio reads and writes non-blocking sockets without telling Go's
// scheduler that a system call is under way.
//
// Go brackets every system call of package syscall with entersyscall and
// exitsyscall. When every P of the process was idle a moment before (a
// proxy between two requests), entersyscall also wakes the runtime's
// monitor thread (sysmon) from its deep sleep, which then polls every
// 20 us until it has had nothing to do for a millisecond: on a proxy at
// one connection, a futex wake-up on the request's path and two or more
// thread wake-ups per request (docs/benchmarks.md, "The runtime's
// monitor"). A read or write of a non-blocking socket never waits (it
// returns EAGAIN instead), so it needs neither: these functions make it
// with syscall.RawSyscall and wait for readiness through the socket's
// RawConn, as package net does.
//
// Only for sockets in non-blocking mode (every socket of package net).
// The goroutine keeps its P while the kernel works on the call (a
// garbage collection's stop waits for it too): for a non-blocking read or
// write that is the copy and, on loopback, the delivery to the reader,
// some tens of microseconds for the largest writes of the data path
// (64 KiB).
//
// Under the race detector a write and a later read order the goroutines
// that made them, as package syscall's do (race.go).
package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Read makes one read(2) of fd into p, retrying on EINTR: the bytes read,
// or the error (EAGAIN when the socket has nothing). 0 bytes and no error
// with len(p) > 0 is the peer's end.
func Read(fd uintptr, p []byte) (int, syscall.Errno) {
	n, e := call(syscall.SYS_READ, fd, p)
	if e == 0 {
		acquire()
	}
	return n, e
}

// Write makes one write(2) of p to fd, retrying on EINTR: the bytes
// written (maybe fewer than len(p)), or the error (EAGAIN when the socket
// is full).
func Write(fd uintptr, p []byte) (int, syscall.Errno) {
	release()
	return call(syscall.SYS_WRITE, fd, p)
}

// call makes the read or write trap of fd with p, retrying on EINTR.
func call(trap, fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	for {
		n, _, e := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), 0
	}
}

// Conn is a TCP connection whose Read and Write go through Read and Write
// above; everything else is the *net.TCPConn's. Deadlines hold as for
// net's own Read and Write (the waits are the RawConn's). Its Read and
// Write allocate nothing: each has its callback, made once, and the
// state it works on, under a lock of its own (net.Conn allows Reads and
// Writes from many goroutines at once).
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu   sync.Mutex
	rbuf  []byte
	rn    int
	rerr  syscall.Errno
	rfunc func(uintptr) bool
	// ReadWhenReady's: whether its next attempt is its first, its
	// caller's quiet, and its attempt.
	rfirst bool
	rquiet func() bool
	qfunc  func(uintptr) bool

	wmu     sync.Mutex
	wbuf    []byte
	wdone   int
	werr    syscall.Errno
	wfunc   func(uintptr) bool
	tryfunc func(uintptr) bool
}

// Wrap returns c as a Conn when it is a *net.TCPConn, else c itself.
func Wrap(c net.Conn) net.Conn {
	t, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := t.SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{TCPConn: t, rc: rc}
	rw.rfunc, rw.wfunc, rw.tryfunc, rw.qfunc = rw.readReady, rw.writeReady, rw.writeOnce, rw.readQuiet
	return rw
}

// Read reads into p, waiting for data as net.Conn's Read does; 0 bytes
// read with len(p) > 0 is io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.readLocked(p, c.rfunc)
}

// ReadWhenReady reads into p as Read does, except that its first
// attempt makes no read while quiet reports true: it waits for the
// poller first. It is for a connection on which nothing is expected
// until the caller's side writes to it (a kept-alive HTTP connection
// between requests, whose next request another goroutine may write), so
// that waiting for the answer costs no read that finds nothing. quiet
// must turn false before the write that makes the peer send. Readiness
// from before the call is forgotten as the wait begins (package net's
// poller resets it then): what came before, bytes or the peer's end, is
// seen at the next readiness or the read deadline.
func (c *Conn) ReadWhenReady(p []byte, quiet func() bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rfirst, c.rquiet = true, quiet
	n, err := c.readLocked(p, c.qfunc)
	c.rquiet = nil
	return n, err
}

// readLocked reads into p through the RawConn with attempt (readReady or
// readQuiet), holding rmu.
func (c *Conn) readLocked(p []byte, attempt func(uintptr) bool) (int, error) {
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(attempt)
	n := c.rn
	c.rbuf = nil
	if err := c.opError("read", err, c.rerr); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// readQuiet is ReadWhenReady's attempt: the first waits for the poller
// while the caller is quiet, then each reads as readReady does.
func (c *Conn) readQuiet(fd uintptr) bool {
	if c.rfirst {
		c.rfirst = false
		if c.rquiet() {
			return false
		}
	}
	return c.readReady(fd)
}

// readReady is Read's attempt: false (wait for the poller) while the
// socket has nothing.
func (c *Conn) readReady(fd uintptr) bool {
	c.rn, c.rerr = Read(fd, c.rbuf)
	return c.rerr != syscall.EAGAIN
}

// Write writes all of p, waiting while the socket is full, as net.Conn's
// Write does.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(p, c.wfunc)
}

// writeLocked writes p through the RawConn with attempt (writeReady or
// writeOnce), holding wmu.
func (c *Conn) writeLocked(p []byte, attempt func(uintptr) bool) (int, error) {
	c.wbuf, c.wdone, c.werr = p, 0, 0
	err := c.rc.Write(attempt)
	c.wbuf = nil
	return c.wdone, c.opError("write", err, c.werr)
}

// writeReady is Write's attempt: it writes until all is written, an
// error, or a full socket (false: wait for the poller, then go on).
func (c *Conn) writeReady(fd uintptr) bool {
	for c.wdone < len(c.wbuf) {
		n, e := Write(fd, c.wbuf[c.wdone:])
		if e == syscall.EAGAIN {
			return false
		}
		if e != 0 {
			c.werr = e
			return true
		}
		c.wdone += n
	}
	return true
}

// TryWrite writes what of p the socket takes at once and never waits:
// the bytes written, 0 when the socket is full or another Write is under
// way.
func (c *Conn) TryWrite(p []byte) (int, error) {
	if !c.wmu.TryLock() {
		return 0, nil
	}
	defer c.wmu.Unlock()
	return c.writeLocked(p, c.tryfunc)
}

// writeOnce is TryWrite's attempt: one write, and no wait whatever it did.
func (c *Conn) writeOnce(fd uintptr) bool {
	n, e := Write(fd, c.wbuf)
	switch e {
	case 0:
		c.wdone = n
	case syscall.EAGAIN:
	default:
		c.werr = e
	}
	return true
}

// opError returns the error of a Read or Write: err, the RawConn's
// (closed, deadline), or else the system call's e, wrapped as package
// net wraps them (errors.Is(err, net.ErrClosed), os.ErrDeadlineExceeded
// and syscall errors hold as for its own); nil if neither.
func (c *Conn) opError(op string, err error, e syscall.Errno) error {
	if err == nil && e != 0 {
		err = os.NewSyscallError(op, e)
	}
	if err == nil {
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
