// Package admin serves the administrative HTTP endpoints every skiff
// component has: /healthz and /readyz on the health port, Prometheus
// metrics (and the gateway's /view) on the metrics port. It also checks the
// host:port flags that name them.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
)

// Serve serves h on addr until ctx ends, then shuts down gracefully
// (bounded). name says what is served, in logs and errors.
func Serve(ctx context.Context, name, addr string, h http.Handler, log logr.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for %s on %s: %w", name, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	// Serve returns as soon as a shutdown begins; Serve's caller gets
	// control back only once it is over (open requests answered, or cut
	// after shutdownWait), so nothing of the server outlives the call.
	stopped := make(chan struct{})
	served := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-served:
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close() // requests still open at the deadline are cut
		}
	}()
	log.Info("serving "+name, "bind", ln.Addr().String())
	err = srv.Serve(ln)
	close(served)
	<-stopped
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", name, err)
	}
	return nil
}

// shutdownWait bounds how long Serve waits for open requests once its
// context ended.
const shutdownWait = 2 * time.Second

// HealthHandler serves /healthz (the process is alive) and /readyz (ready
// reports true); a component that is not ready answers 503 with notReady.
func HealthHandler(ready func() bool, notReady string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, notReady, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// SplitPort checks host:port (host may be empty) and returns the port.
func SplitPort(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("port %q: want 1-65535", p)
	}
	return port, nil
}
