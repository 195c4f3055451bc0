// Command skiff-loadgen is the small TCP load tool of hack/bench/router.sh:
// a byte-echo server to stand behind a proxy, and a client that holds many
// idle connections open through it (the memory check).
//
//	skiff-loadgen echo --listen 127.0.0.1:9000
//	skiff-loadgen hold --addr 127.0.0.1:18000 --conns 1000 --hold 5s
//
// hold dials --conns connections, writes one byte on each and reads it back
// (so each is established end to end, through every proxy, to the echo
// server), prints "established N", keeps them all open and idle for --hold,
// closes them and prints "closed N". It fails if any connection does not
// complete its round trip within --timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "skiff-loadgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: skiff-loadgen echo|hold [flags]")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	switch args[0] {
	case "echo":
		listen := fs.String("listen", "127.0.0.1:9000", "address to listen on")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return echo(ctx, *listen)
	case "hold":
		addr := fs.String("addr", "", "address to dial (an echo server, directly or through a proxy)")
		conns := fs.Int("conns", 1000, "connections to hold open")
		hold := fs.Duration("hold", 5*time.Second, "how long to hold them idle")
		timeout := fs.Duration("timeout", 20*time.Second, "time allowed to establish them all")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return holdConns(ctx, *addr, *conns, *hold, *timeout)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// echo copies every byte each connection sends back to it.
func echo(ctx context.Context, listen string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// holdConns opens n connections to addr, checks each with a one-byte round
// trip, holds them for hold and closes them.
func holdConns(ctx context.Context, addr string, n int, hold, timeout time.Duration) error {
	dialCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var (
		mu    sync.Mutex
		conns []net.Conn
		errs  []error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 64) // dials in flight; keeps accept backlogs from overflowing
		d     net.Dialer
	)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := roundTrip(dialCtx, &d, addr, byte(i))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			conns = append(conns, c)
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		fmt.Printf("closed %d\n", len(conns))
	}()
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d connections failed, first: %w", len(errs), n, errs[0])
	}
	fmt.Printf("established %d\n", len(conns))
	select {
	case <-time.After(hold):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// roundTrip dials addr, writes b and reads it back.
func roundTrip(ctx context.Context, d *net.Dialer, addr string, b byte) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	buf := []byte{b}
	if _, err := c.Write(buf); err != nil {
		c.Close()
		return nil, fmt.Errorf("write: %w", err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		c.Close()
		return nil, fmt.Errorf("read: %w", err)
	}
	if buf[0] != b {
		c.Close()
		return nil, fmt.Errorf("echo: got byte %d, want %d", buf[0], b)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
