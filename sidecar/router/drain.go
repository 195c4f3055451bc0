package router

import (
	"context"
	"slices"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// The drain: how a router stops when it is asked to (SIGTERM), so that
// what it carries is not cut off.
//
// Drain starts it. The router turns unready (Readiness says "draining"),
// so Kubernetes takes the pod out of its Services' endpoints. A gateway
// closes its listeners and its link port: new connections are refused.
// Every session of every link sends GOAWAY, so peers open no new streams
// over it: they open them on another link to the same site, or dial a new
// one (links.go, linkconn.go); a peer keeps the draining link, and the
// routes that rest on it, until it closes. The flows the router carries
// (flows.go) go on until they end. A gateway keeps its links a little
// longer (gatewayDrainHold), and while another gateway of its site is up,
// until its leaving cuts no one off (stranded). Once that is over, or
// DrainTimeout has passed, the router stops as Run does when its context
// ends: flows still open are reset, links closed.
//
// A sidecar is stopped together with its pod's app (an ordinary
// container gets SIGTERM at the same time as the app; a native sidecar
// only after the app's containers have exited), so it keeps serving the
// pod's outbound port while it drains, new connections included: an app
// that makes a last call on its way out still reaches its service. It
// stops once it has carried no connection for DrainIdle, or when
// DrainTimeout ends.

// DefaultDrainTimeout is how long a drain lets open streams finish by
// default: within Kubernetes' default terminationGracePeriodSeconds (30),
// with time left for the process to exit.
const DefaultDrainTimeout = 25 * time.Second

// DefaultSidecarDrainIdle is a draining sidecar's Config.DrainIdle by
// default: how long it goes on serving its pod with no connection open.
const DefaultSidecarDrainIdle = 2 * time.Second

// gatewayDrainHold is how long a draining gateway keeps its links at
// least, with no stream left: peers and sidecars look for its GOAWAY
// every goAwayPoll and dial a replacement link (to another gateway of
// the site, or this one's successor) while it holds, so that their new
// streams never find no link at all. Bounded by DrainTimeout.
const gatewayDrainHold = 3 * time.Second

// Drain asks a running router to drain and stop; Run returns when the
// drain is over. It returns at once and may be called more than once;
// called before Run, the router drains as soon as it has started.
func (r *Router) Drain() { r.drainOnce.Do(func() { close(r.drainReq) }) }

// Draining reports whether the router is draining (or has drained).
func (r *Router) Draining() bool { return r.draining.Load() }

// Why a drain ended, in its last log line.
const (
	drainDone    = "no open streams"
	drainIdle    = "no connection for the idle time"
	drainTimeout = "drain timeout"
	drainStopped = "stopped before the drain was over"
)

// drainStats is what a drain did, kept for tests.
type drainStats struct {
	open, finished, reset int
	reason                string
}

// drain runs a drain: unready, no new connections or streams, then
// waiting for the open flows. It returns why it ended (and the flows open
// at its start) when they are all done, DrainTimeout has passed, or ctx
// ended. stopLinkAccess closes the link port.
func (r *Router) drain(ctx context.Context, stopLinkAccess func()) (reason string, open int) {
	r.draining.Store(true)
	r.m.Draining.Set(1)
	if _, changed := r.db.SetLocalDraining(true); changed && r.cfg.Role == RoleGateway {
		// Routes avoid this gateway from now on where they can (netview's
		// label).
		r.floodLocal()
		r.viewChanged()
	}
	stopLinkAccess()
	r.stopListeners()
	r.goAwayAll()
	if r.cfg.Role == RoleGateway {
		// HTTP clients' idle keep-alive connections close and HTTP/2
		// ones get GOAWAY; requests under way finish.
		r.tasks.Go(func() { _ = r.http.Shutdown(ctx) })
	} else {
		// A draining sidecar keeps serving its pod: new connections
		// still get their request answered, but none is kept alive, so
		// that the drain sees the pod go idle.
		r.http.StopKeepAlives()
	}
	open = r.flows.startDrain()
	r.log.Info("drain started", "openStreams", open, "timeout", r.cfg.DrainTimeout.String())

	timeout := time.NewTimer(r.cfg.DrainTimeout)
	defer timeout.Stop()
	idle := time.NewTimer(r.cfg.DrainIdle)
	defer idle.Stop()
	var hold time.Time // a gateway's links stay at least until then
	if r.cfg.Role == RoleGateway {
		hold = time.Now().Add(gatewayDrainHold)
	}
	var held []string // what a gateway last logged it holds its links for
	for {
		idle.Stop()
		var idleC <-chan time.Time
		var viewC <-chan struct{}
		if n, since := r.flows.idle(); n == 0 {
			left := max(r.cfg.DrainIdle-time.Since(since), time.Until(hold))
			switch {
			case left > 0:
				idle.Reset(left)
				idleC = idle.C
			case r.cfg.Role == RoleGateway:
				viewC = r.db.Changed()
				if s := r.stranded(); len(s) > 0 {
					if !slices.Equal(s, held) {
						r.log.Info("drain holds the links: other gateways of this site reach these sites or gateways only through this one", "cutOff", s)
					}
					held = s
					break
				}
				return drainDone, open
			case r.cfg.DrainIdle > 0:
				return drainIdle, open
			default:
				return drainDone, open
			}
		}
		select {
		case <-ctx.Done():
			return drainStopped, open
		case <-timeout.C:
			return drainTimeout, open
		case <-r.flows.changed:
		case <-idleC:
		case <-viewC:
		}
	}
}

// goAwayAll sends GOAWAY on every session of every link: peers open no
// new streams on them. Sessions that join later get it from setSession,
// links that come up later from markUp.
func (r *Router) goAwayAll() {
	r.mu.Lock()
	links := make([]*link, 0, len(r.links))
	for _, l := range r.links {
		links = append(links, l)
	}
	r.mu.Unlock()
	for _, l := range links {
		l.goAway()
	}
}

// Readiness reports whether the router is ready and, when it is not,
// why: "starting" (Run has not started serving), "draining",
// "stopped", or "redirect not verified" (a sidecar waiting for its
// redirect self-check, up to RedirectWait).
func (r *Router) Readiness() (ready bool, reason string) {
	switch {
	case r.stopped.Load():
		return false, "stopped"
	case r.draining.Load():
		return false, "draining"
	case !r.ready.Load():
		return false, "starting"
	case !r.redirectReady():
		return false, "redirect not verified"
	case len(r.cfg.Siblings) > 0 && !r.siblingsSettled.Load():
		return false, "linking to the site's other gateways"
	}
	return true, ""
}

// stranded returns what this draining gateway still holds together
// (netview's DB.Stranded): sites that another gateway of its site reaches
// only through it (their replacement links are not up yet), and sibling
// gateways linked to the rest of the site only through it. Nil with no
// other gateway of the site: a single gateway restarting waits for no one.
func (r *Router) stranded() []string {
	return r.db.Stranded(netview.NodeID(r.self, r.routerName))
}
