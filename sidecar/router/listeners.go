package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
)

// boundListener is a gateway listener serving one address; closing ln
// stops it.
type boundListener struct {
	ln      net.Listener
	address string
	port    int
	// accessLog is the listener's Listener.AccessLog, which a new
	// service table may change while it stays bound.
	accessLog atomic.Bool
}

// syncListeners binds listeners that are new in the service table and
// closes those that left it. Connections already accepted are not touched.
// Listeners live as long as the router's Run (listenCtx), whoever asked
// for them: a caller's context (an xDS stream's) may end long before.
// Before Run, and once Run is over, it does nothing: Run binds them.
func (r *Router) syncListeners() error {
	t := r.services.Load()
	r.listenMu.Lock()
	defer r.listenMu.Unlock()
	ctx := r.listenCtx
	if ctx == nil {
		return nil
	}
	want := map[string]Listener{}
	for _, l := range t.Listeners {
		want[net.JoinHostPort(l.Host, strconv.Itoa(l.Port))] = l
	}
	for key, bl := range r.listeners {
		if l, ok := want[key]; !ok || l.Address != bl.address {
			bl.ln.Close()
			delete(r.listeners, key)
			r.log.Info("listener closed", "address", bl.address, "bind", key)
		}
	}
	var errs []error
	for key, l := range want {
		if bl, ok := r.listeners[key]; ok {
			bl.accessLog.Store(l.AccessLog)
			continue
		}
		ln, err := listenProxy(ctx, "tcp", key)
		if err != nil {
			errs = append(errs, fmt.Errorf("listen for address %q on %s: %w", l.Address, key, err))
			continue
		}
		bl := &boundListener{ln: ln, address: l.Address, port: l.Port}
		bl.accessLog.Store(l.AccessLog)
		if !r.tasks.tryGo(func() { r.serveListener(ctx, bl) }) {
			ln.Close() // Run is over
			continue
		}
		r.listeners[key] = bl
		r.log.Info("listening", "address", l.Address, "bind", ln.Addr().String())
	}
	return errors.Join(errs...)
}

// stopListeners closes the gateway listeners for good: a draining gateway
// takes no new connections, and a later SetServices binds none.
func (r *Router) stopListeners() {
	r.listenMu.Lock()
	r.listenCtx = nil
	r.listenMu.Unlock()
	r.closeListeners()
}

func (r *Router) closeListeners() {
	r.listenMu.Lock()
	defer r.listenMu.Unlock()
	for key, bl := range r.listeners {
		bl.ln.Close()
		delete(r.listeners, key)
	}
}

// serveListener serves a gateway listener until bl.ln is closed or ctx,
// Run's, ends; the connections it accepted go on with ctx.
func (r *Router) serveListener(ctx context.Context, bl *boundListener) {
	acceptLoop(ctx, bl.ln, r.log.WithValues("address", bl.address, "bind", bl.ln.Addr().String()), func(c net.Conn) {
		f, ok := r.flows.begin(c)
		if !ok {
			return
		}
		logged := bl.accessLog.Load()
		r.workers.Go(func() { defer f.end(); r.originate(ctx, f, c, bl.address, bl.port, "origin", logged) })
	})
}

// acceptRedirected serves the sidecar's outbound port: each connection's
// original destination picks a network address, or it passes through.
func (r *Router) acceptRedirected(ctx context.Context, ln net.Listener) {
	acceptLoop(ctx, ln, r.log.WithValues("listener", "redirected", "bind", ln.Addr().String()), func(c net.Conn) {
		f, ok := r.flows.begin(c)
		if !ok {
			return
		}
		r.workers.Go(func() { defer f.end(); r.handleRedirected(ctx, f, c) })
	})
}

func (r *Router) handleRedirected(ctx context.Context, f *flow, c net.Conn) {
	dst, err := r.originalDst(c)
	if err != nil {
		r.log.Info("redirected connection closed: no original destination", "client", c.RemoteAddr().String(), "error", err.Error())
		c.Close()
		return
	}
	if isProbe(dst) {
		f.drop() // the self-check is no connection of the pod's
		answerProbe(c)
		return
	}
	if own := r.SidecarAddr(); own != nil && dst.Port == own.(*net.TCPAddr).Port && dst.IP.IsLoopback() {
		r.log.Info("connection to the sidecar port itself closed", "client", c.RemoteAddr().String())
		c.Close()
		return
	}
	t := r.services.Load()
	if address, ok := t.byVIP[dst.String()]; ok {
		r.originate(ctx, f, c, address, dst.Port, "sidecar", r.cfg.SidecarAccessLog)
		return
	}
	r.m.Passthrough.Inc()
	out, err := r.dialEndpoint(ctx, dst.String())
	if err != nil {
		r.log.V(1).Info("passthrough dial failed", "destination", dst.String(), "error", err.Error())
		c.Close()
		return
	}
	r.splice(f, "passthrough", c, out)
}
