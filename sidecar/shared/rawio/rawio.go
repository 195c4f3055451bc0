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
//
// Under the race detector a write and a later read order the goroutines
// that made them, as package syscall's do (race.go).
package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Read makes one read(2) of fd into p, retrying on EINTR: the bytes read,
// or the error (EAGAIN when the socket has nothing). 0 bytes and no error
// with len(p) > 0 is the peer's end.
func Read(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		acquire()
		return int(n), 0
	}
}

// Write makes one write(2) of p to fd, retrying on EINTR: the bytes
// written (maybe fewer than len(p)), or the error (EAGAIN when the socket
// is full).
func Write(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	release()
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
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
// net's own Read and Write (the waits are the RawConn's).
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
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
	return &Conn{TCPConn: t, rc: rc}
}

// Read reads into p, waiting for data as net.Conn's Read does; 0 bytes
// read with len(p) > 0 is io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n int
		e syscall.Errno
	)
	err := c.rc.Read(func(fd uintptr) bool {
		n, e = Read(fd, p)
		return e != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case e != 0:
		return 0, c.opError("read", os.NewSyscallError("read", e))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// opError wraps err as package net does (errors.Is(err, net.ErrClosed)
// and os.ErrDeadlineExceeded hold as for its own).
func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Write writes all of p, waiting while the socket is full, as net.Conn's
// Write does.
func (c *Conn) Write(p []byte) (int, error) {
	var (
		done int
		e    syscall.Errno
	)
	err := c.rc.Write(func(fd uintptr) bool {
		for done < len(p) {
			var n int
			n, e = Write(fd, p[done:])
			if e == syscall.EAGAIN {
				e = 0
				return false
			}
			if e != 0 {
				return true
			}
			done += n
		}
		return true
	})
	switch {
	case err != nil:
		return done, c.opError("write", err)
	case e != 0:
		return done, c.opError("write", os.NewSyscallError("write", e))
	}
	return done, nil
}
