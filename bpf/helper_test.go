package bpf

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/sidecar/router"
)

// The test binary doubles as the small programs the privileged tests run
// inside a pod: SKIFF_BPF_HELPER picks one and os.Args[1:] are its
// arguments.
//
//	client ADDR [BIND-PORT] [wait]  one raw-socket HTTP request, see runClient
//	origdst LISTEN-ADDR              a minimal sidecar answering with SO_ORIGINAL_DST
//	loop ADDR COUNT CONCURRENCY      connect + first byte, timed (the benchmark)
//	level CGROUP                     the cgroup's level as statCgroup finds it
const helperEnv = "SKIFF_BPF_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		var err error
		switch mode {
		case "client":
			err = runClient(os.Args[1:])
		case "origdst":
			err = runOrigDst(os.Args[1:])
		case "loop":
			err = runLoop(os.Args[1:])
		case "level":
			err = runLevel(os.Args[1:])
		default:
			err = fmt.Errorf("unknown helper %q", mode)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runClient connects with a raw socket of the address's own family, so
// that "[::ffff:10.0.0.1]:80" makes an AF_INET6 socket connect to an
// IPv4-mapped address (as Java and other dual-stack runtimes do; Go's
// net.Dial would use an AF_INET socket). With a bind port it binds first,
// to force a known 4-tuple. It prints "connected LOCAL REMOTE"; with
// "wait" it then waits for a line on stdin. Then it sends an HTTP/1.0 GET
// and prints the response body.
func runClient(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("client ADDR [BIND-PORT] [wait]")
	}
	dst, err := netip.ParseAddrPort(args[0])
	if err != nil {
		return err
	}
	bindPort := 0
	if len(args) > 1 {
		if bindPort, err = strconv.Atoi(args[1]); err != nil {
			return err
		}
	}
	wait := len(args) > 2 && args[2] == "wait"
	family := unix.AF_INET6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: dst.Addr().As16(), Port: int(dst.Port())}
	var bind unix.Sockaddr = &unix.SockaddrInet6{Port: bindPort}
	if dst.Addr().Is4() {
		family = unix.AF_INET
		sa = &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
		bind = &unix.SockaddrInet4{Port: bindPort}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if family == unix.AF_INET6 {
		// Dual-stack, whatever net.ipv6.bindv6only says.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return err
		}
	}
	if bindPort != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return err
		}
		if err := unix.Bind(fd, bind); err != nil {
			return fmt.Errorf("bind port %d: %w", bindPort, err)
		}
	}
	if err := unix.Connect(fd, sa); err != nil {
		return fmt.Errorf("connect %s: %w", dst, err)
	}
	// The socket's own view (net.Conn would show ::ffff:a.b.c.d as a.b.c.d).
	local, err := unix.Getsockname(fd)
	if err != nil {
		return err
	}
	remote, err := unix.Getpeername(fd)
	if err != nil {
		return err
	}
	fmt.Printf("connected %s %s\n", sockaddrString(local), sockaddrString(remote))
	f := os.NewFile(uintptr(fd), "client")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return err
	}
	defer c.Close()
	if wait {
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return fmt.Errorf("wait for the go-ahead: %w", err)
		}
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", dst); err != nil {
		return err
	}
	resp, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	_, body, ok := bytes.Cut(resp, []byte("\r\n\r\n"))
	if !ok {
		return fmt.Errorf("no HTTP response: %q", resp)
	}
	fmt.Printf("body %s\n", strings.TrimSpace(string(body)))
	return nil
}

func sockaddrString(sa unix.Sockaddr) string {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String()
	}
	return fmt.Sprint(sa)
}

// runOrigDst is a stand-in sidecar: it answers every connection with
// "orig=ADDR", the destination router.OriginalDst (the real sidecar's
// code) reads for it. It serves where a test needs many sidecars.
func runOrigDst(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("origdst LISTEN-ADDR")
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	fmt.Println("listening")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			answer := ""
			if dst, err := router.OriginalDst(c); err != nil {
				answer = "error=" + err.Error()
			} else {
				answer = "orig=" + dst.String()
			}
			fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n%s\n", answer)
		}()
	}
}

// loopResult is what runLoop prints (JSON).
type loopResult struct {
	Count      int     `json:"count"`
	Errors     int     `json:"errors"`
	P50us      float64 `json:"p50us"`
	P90us      float64 `json:"p90us"`
	P99us      float64 `json:"p99us"`
	MeanUs     float64 `json:"meanUs"`
	ConnPerSec float64 `json:"connPerSec"`
}

// runLoop measures connect + first byte: COUNT connections one after
// another for the latencies, then COUNT more over CONCURRENCY workers for
// the rate. The server writes one byte on accept.
func runLoop(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("loop ADDR COUNT CONCURRENCY")
	}
	addr := args[0]
	count, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	conc, err := strconv.Atoi(args[2])
	if err != nil {
		return err
	}
	one := func() (time.Duration, error) {
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	res := loopResult{Count: count}
	lat := make([]time.Duration, 0, count)
	var sum time.Duration
	for range count {
		d, err := one()
		if err != nil {
			res.Errors++
			continue
		}
		lat = append(lat, d)
		sum += d
	}
	if len(lat) == 0 {
		return fmt.Errorf("every connection failed")
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	res.P50us, res.P90us, res.P99us = pct(0.50), pct(0.90), pct(0.99)
	res.MeanUs = float64(sum.Nanoseconds()) / float64(len(lat)) / 1e3

	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next == count {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				if _, err := one(); err != nil {
					mu.Lock()
					res.Errors++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	res.ConnPerSec = float64(count) / time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(res)
}
