package app

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/router"
	"github.com/skiff-io/skiff/sidecar/shared/admin"
)

// drain drains r (router.Router.Drain) and returns once life ends, which
// the router's Run ending does when the drain is over. A second SIGTERM
// or SIGINT meanwhile ends it at once: stop ends life, so Run's context,
// and the streams still open are reset.
func drain(life context.Context, r *router.Router, stop context.CancelFunc, log logr.Logger) {
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	r.Drain()
	select {
	case <-life.Done():
	case sig := <-again:
		log.Info("second signal: stopping without waiting for the drain", "signal", sig.String())
		stop()
	}
}

// healthHandler serves the router's /healthz and /readyz; /readyz of a
// draining router answers 503 "not ready: draining".
func healthHandler(r *router.Router) http.Handler {
	serving := admin.HealthHandler(r.Ready, "not ready")
	draining := admin.HealthHandler(r.Ready, "not ready: draining")
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.Draining() {
			draining.ServeHTTP(w, req)
			return
		}
		serving.ServeHTTP(w, req)
	})
}
