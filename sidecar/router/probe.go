package router

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/skiff-io/skiff/sidecar/contract"
)

// The redirect self-check. Both redirect modes send a connect to
// contract.RedirectProbeHost:RedirectProbePort (127.0.0.1:15002) to the
// sidecar, whatever the UID, so a sidecar that dials there and reads
// probeAnswer back knows that its pod's connections reach it: the node agent has attached the eBPF
// programs, or skiff-init has installed the nftables rules. Until then a
// sidecar with a RedirectWait is not ready (the native sidecar's startup
// probe holds the app containers back), for at most that long: the pod's
// connections still work without the sidecar, through the site gateway.
const (
	probeAnswer = "skiff-redirect-ok\n"
	// probeTimeout bounds one attempt's connect and its read.
	probeTimeout = 200 * time.Millisecond
	// probeInterval spaces the attempts while readiness waits;
	// probeLateInterval once it no longer does.
	probeInterval     = 200 * time.Millisecond
	probeLateInterval = time.Second
	// probeLossAfter failed checks in a row, once verified, report the
	// redirection lost.
	probeLossAfter = 3
)

// DefaultRedirectRecheck is how often a verified sidecar checks its
// redirection again (Config.RedirectRecheck).
const DefaultRedirectRecheck = 10 * time.Second

// errWrongAnswer: something other than the sidecar listens on the
// self-check address, so connections there are not redirected.
var errWrongAnswer = errors.New("the redirect self-check address answered, but not as the sidecar does")

// probeAddr is where the sidecar dials to check its own redirection.
var probeAddr = net.JoinHostPort(contract.RedirectProbeHost, strconv.Itoa(contract.RedirectProbePort))

// probeIP is contract.RedirectProbeHost.
var probeIP = net.ParseIP(contract.RedirectProbeHost)

// isProbe reports whether a redirected connection was headed for the
// self-check address.
func isProbe(dst *net.TCPAddr) bool {
	return dst.Port == contract.RedirectProbePort && dst.IP.Equal(probeIP)
}

// answerProbe writes the self-check's answer and closes the connection.
func answerProbe(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, probeAnswer)
	c.Close()
}

// redirectReady reports whether redirection holds readiness no longer:
// no check configured, verified once, or the wait is over.
func (r *Router) redirectReady() bool {
	return r.cfg.Role != RoleSidecar || r.cfg.RedirectWait <= 0 || r.redirectSettled.Load()
}

// RedirectVerified reports whether the sidecar's last self-check came
// back through the redirect.
func (r *Router) RedirectVerified() bool { return r.redirectVerified.Load() }

// checkRedirect dials the self-check address until the answer comes back
// or ctx ends. After RedirectWait it declares the wait over (readiness
// then no longer depends on it) and goes on checking, less often. Once
// verified it checks every RedirectRecheck, and reports the redirection
// lost after probeLossAfter failures in a row (one refused connect may be
// a sidecar restarting its listener, not a missing redirect), and found
// again at the next success. Readiness stays as it is: without
// redirection the pod's connections still work, through the gateway.
func (r *Router) checkRedirect(ctx context.Context) {
	start := time.Now()
	expired := time.NewTimer(r.cfg.RedirectWait)
	defer expired.Stop()
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	verifiedOnce, failures := false, 0
	for {
		err := probeRedirect(ctx, r.probeAddr)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && !verifiedOnce:
			verifiedOnce = true
			expired.Stop()
			afterWait := r.redirectSettled.Swap(true) // settled before only by the wait running out
			r.setRedirectVerified(true)
			r.log.Info("redirection verified", "elapsed", time.Since(start).Round(time.Millisecond).String(),
				"afterWait", afterWait)
			tick.Reset(r.cfg.RedirectRecheck)
		case err == nil:
			if !r.redirectVerified.Load() {
				r.setRedirectVerified(true)
				r.log.Info("redirection restored: the pod's connections reach the sidecar again", "failedChecks", failures)
			}
			failures = 0
		case verifiedOnce:
			failures++
			if failures == probeLossAfter {
				r.setRedirectVerified(false)
				r.log.Error(err, "redirection lost: the pod's connections bypass the sidecar (they still reach other sites through the gateway); is the node agent running, or was the pod's nftables table removed?",
					"probe", r.probeAddr, "failedChecks", failures)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-expired.C:
			r.redirectSettled.Store(true)
			r.log.Info("redirection not in place; traffic bypasses the sidecar through the gateway until the node agent attaches",
				"waited", r.cfg.RedirectWait.String(), "probe", r.probeAddr, "lastError", errString(err))
			tick.Reset(probeLateInterval)
		case <-tick.C:
		}
	}
}

// setRedirectVerified records the self-check's state and exports it.
func (r *Router) setRedirectVerified(ok bool) {
	r.redirectVerified.Store(ok)
	if ok {
		r.m.RedirectVerified.Set(1)
	} else {
		r.m.RedirectVerified.Set(0)
	}
}

// probeRedirect makes one attempt: connect to addr, the self-check
// address, and read the sidecar's answer. Without redirection the connect
// is refused (nothing listens there) or, if something else does listen,
// the answer is wrong or missing.
func probeRedirect(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(probeTimeout))
	buf := make([]byte, len(probeAnswer))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != probeAnswer {
		return errWrongAnswer
	}
	return nil
}
