package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// The redirect self-check. Both redirect modes send a connect to
// contract.RedirectProbeHost:RedirectProbePort (127.0.0.1:15002) to the
// sidecar, whatever the UID, so a sidecar that dials there and reads its
// own answer back knows that its pod's connections reach it: the node
// agent has attached the eBPF programs, or skiff-init has installed the
// nftables rules. Until then a sidecar with a RedirectWait is not ready
// (the native sidecar's startup probe holds the app containers back), for
// at most that long: the pod's connections still work without the
// sidecar, through the site gateway.
//
// Reaching the sidecar is not enough: the redirect must carry this site's
// services. The nftables rules live in the pod's own network namespace
// and send every outbound connection to its own sidecar, so they do. With
// eBPF, the programs that redirect the pod are a node agent's, and only
// the agent of the pod's own site fills their services map with this
// site's table; another site's agent (or an agent older than per-site
// programs, which attached every site's pods) redirects other services
// and lets this site's bypass the sidecar. So the programs record the
// self-check's original destination as the site's own address,
// contract.RedirectProbeSiteAddr (once the agent has armed it, with its
// services map filled), the sidecar answers with the original destination
// it reads, and the prober tells the modes apart by its own socket: an
// nftables REDIRECT leaves the socket's peer as dialled (the NAT is
// undone on the way back), an eBPF connect rewrite makes the peer the
// sidecar's port. A rewritten self-check that does not come back as this
// site's address is errOtherSite.
const (
	// probeAnswer starts the sidecar's answer; the original destination
	// of the self-check follows when the sidecar could read it.
	probeAnswer = "skiff-redirect-ok"
	// probeMaxAnswer bounds the answer read.
	probeMaxAnswer = 64
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

// errOtherSite: the self-check reached the sidecar through eBPF programs
// that are not this site's, so the pod's connections to this site's
// services bypass the sidecar.
var errOtherSite = errors.New("the pod is redirected by the eBPF programs of another site's node agent (or of a node agent older than this sidecar), whose services are not this site's")

// probeAddr is where the sidecar dials to check its own redirection.
var probeAddr = net.JoinHostPort(contract.RedirectProbeHost, strconv.Itoa(contract.RedirectProbePort))

// probeHost is contract.RedirectProbeHost; probeSites holds every site's
// self-check address (contract.RedirectProbeSiteAddr).
var (
	probeHost  = netip.MustParseAddr(contract.RedirectProbeHost)
	probeSites = netip.MustParsePrefix("127.128.0.0/9")
)

// isProbe reports whether a redirected connection was headed for the
// self-check address, as nftables (RedirectProbeHost) or a site's eBPF
// programs (a site's address) record it. The sidecar answers every site's:
// the prober judges whose it is.
func isProbe(dst *net.TCPAddr) bool {
	a, ok := netip.AddrFromSlice(dst.IP)
	if !ok || dst.Port != contract.RedirectProbePort {
		return false
	}
	a = a.Unmap()
	return a == probeHost || probeSites.Contains(a)
}

// answerProbe writes the self-check's answer, with the original
// destination the connection had (the handler read it before; it is read
// again here, one getsockopt), and closes the connection.
func answerProbe(c net.Conn) {
	line := probeAnswer + "\n"
	if dst, err := OriginalDst(c); err == nil {
		line = probeAnswer + " " + dst.String() + "\n"
	}
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, line)
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
// Each change of judgement, and the wait running out unverified, goes to
// Config.OnRedirect (setRedirectVerified).
func (r *Router) checkRedirect(ctx context.Context) {
	start := time.Now()
	expired := time.NewTimer(r.cfg.RedirectWait)
	defer expired.Stop()
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	verifiedOnce, failures := false, 0
	for {
		err := probeRedirect(ctx, r.probeAddr, r.cfg.Site)
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
			r.setRedirectVerified(false) // never verified: the pod's connections bypass the sidecar
			r.log.Info("redirection not in place; traffic bypasses the sidecar through the gateway until the node agent attaches",
				"waited", r.cfg.RedirectWait.String(), "probe", r.probeAddr, "lastError", errString(err))
			tick.Reset(probeLateInterval)
		case <-tick.C:
		}
	}
}

// setRedirectVerified records the self-check's state, exports it and
// tells Config.OnRedirect.
func (r *Router) setRedirectVerified(ok bool) {
	r.redirectVerified.Store(ok)
	state := model.RedirectLost
	if ok {
		state = model.RedirectVerified
		r.m.RedirectVerified.Set(1)
	} else {
		r.m.RedirectVerified.Set(0)
	}
	if r.cfg.OnRedirect != nil {
		r.cfg.OnRedirect(state)
	}
}

// probeRedirect makes one attempt: connect to addr, the self-check
// address, and check the sidecar's answer (checkProbeAnswer). Without
// redirection the connect is refused (nothing listens there) or, if
// something else does listen, the answer is wrong or missing.
func probeRedirect(ctx context.Context, addr, site string) error {
	dialled, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("self-check address: %w", err)
	}
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(probeTimeout))
	return checkProbeAnswer(c, dialled, site)
}

// checkProbeAnswer reads the sidecar's answer on the self-check connection
// c, dialled to dialled, and judges it for site. A connection whose peer is
// still the dialled address was redirected by NAT (the pod's nftables
// rules): the answer is enough. One whose peer is not was rewritten by
// eBPF connect programs: the original destination in the answer must be
// the site's own self-check address, else errOtherSite.
func checkProbeAnswer(c net.Conn, dialled netip.AddrPort, site string) error {
	line, err := bufio.NewReader(io.LimitReader(c, probeMaxAnswer)).ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		return err
	}
	fields := strings.Fields(line)
	if err != nil || len(fields) == 0 || fields[0] != probeAnswer || len(fields) > 2 {
		return errWrongAnswer
	}
	var peer netip.AddrPort
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		peer = ta.AddrPort()
	}
	if netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()) == dialled {
		return nil
	}
	want := contract.RedirectProbeSiteAddr(site)
	got := "no original destination"
	if len(fields) == 2 {
		got = fields[1]
		if got == want.String() {
			return nil
		}
	}
	return fmt.Errorf("%w: the self-check came back as %s, site %s's is %s", errOtherSite, got, site, want)
}
