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
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving "+name, "bind", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", name, err)
	}
	return nil
}

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
