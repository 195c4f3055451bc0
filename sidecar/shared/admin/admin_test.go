package admin

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func TestServeHealth(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var ready atomic.Bool
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, "health", addr, HealthHandler(ready.Load, "not ready: no table"), logr.Discard())
	}()
	get := func(path string) (int, string) {
		t.Helper()
		var resp *http.Response
		var err error
		for range 100 {
			if resp, err = http.Get("http://" + addr + path); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := get("/healthz"); code != 200 || body != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || body != "not ready: no table" {
		t.Errorf("/readyz before ready: %d %q", code, body)
	}
	ready.Store(true)
	if code, body := get("/readyz"); code != 200 || body != "ok" {
		t.Errorf("/readyz when ready: %d %q", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after ctx ended: %v", err)
	}
	if err := Serve(t.Context(), "health", "256.0.0.1:1", http.NotFoundHandler(), logr.Discard()); err == nil || !strings.Contains(err.Error(), "listen for health") {
		t.Errorf("bad address: %v", err)
	}
}

func TestSplitPort(t *testing.T) {
	for addr, want := range map[string]int{":15090": 15090, "127.0.0.1:1": 1, "[::1]:65535": 65535, "x": 0, ":0": 0, ":65536": 0, "a:b": 0} {
		got, err := SplitPort(addr)
		if got != want || (err == nil) != (want != 0) {
			t.Errorf("SplitPort(%q) = %d, %v; want %d", addr, got, err, want)
		}
	}
}

// Serve returns only once its shutdown is over: a request open when ctx
// ends sees its context end (a long poll answers at once), and has
// finished by the time Serve returns; one that ignores its context is cut
// at the shutdown's deadline.
func TestServeReturnsAfterShutdown(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ignoreContext bool
	}{{"request that follows its context", false}, {"request that ignores it", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			var open, finished atomic.Bool
			release := make(chan struct{})
			defer close(release)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				open.Store(true)
				defer finished.Store(true)
				if tc.ignoreContext {
					select {
					case <-release:
					case <-time.After(10 * time.Second):
					}
					return
				}
				<-r.Context().Done()
			})
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- Serve(ctx, "test", addr, h, logr.Discard()) }()
			go func() {
				for range 100 {
					if resp, err := http.Get("http://" + addr + "/"); err == nil {
						resp.Body.Close()
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
			for !open.Load() {
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(8 * time.Second):
				t.Fatal("Serve did not return after its context ended")
			}
			if !tc.ignoreContext && !finished.Load() {
				t.Error("Serve returned while a request it served was still running")
			}
		})
	}
}
