package router

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/logging"
)

// What hostile or unlucky input must not do to a listener: stop it. Every
// listener the router owns (link access, gateway listeners, the sidecar's
// outbound port) accepts through acceptLoop, which outlives failed
// accepts; the link port also bounds the connections that have not yet
// proved who they are (handshakeLimiter).

// Accept retry pauses: 5 ms doubling to 1 s, as net/http's Server and
// grpc-go's use.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// Accept failures log at most acceptLogBurst lines per acceptLogEvery and
// listener; the next line says how many were suppressed.
const (
	acceptLogBurst = 3
	acceptLogEvery = 10 * time.Second
)

// acceptLoop accepts connections from ln and hands each to handle (which
// must not block for long: start a goroutine for the work), until ln is
// closed or ctx ends; when ctx ends it closes ln.
//
// No other accept error stops it. Out of file descriptors (EMFILE,
// ENFILE), out of memory or buffers, a connection aborted in the queue,
// a timeout: it logs and tries again after a pause that doubles from 5 ms
// to 1 s, so that the listener serves again once the cause has passed,
// with the connections the kernel queued meanwhile. Errors not known to
// be transient are retried the same way, logged as errors: a listener
// skiff owns is only closed by skiff.
func acceptLoop(ctx context.Context, ln net.Listener, log logr.Logger, handle func(net.Conn)) {
	// The goroutine that closes ln when ctx ends is waited for, so that
	// nothing of the loop outlives it.
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { ln.Close(); close(closed) })
	defer func() {
		if !stop() {
			<-closed
		}
	}()
	limit := logging.NewLimiter(acceptLogBurst, acceptLogEvery)
	var pause time.Duration
	failed := 0 // accepts failed in a row
	for {
		c, err := ln.Accept()
		if err == nil {
			if failed > 0 {
				if ok, suppressed := limit.Allow("accepting again"); ok {
					log.Info("accepting again", "failedAccepts", failed, "suppressed", suppressed)
				}
				pause, failed = 0, 0
			}
			handle(c)
			continue
		}
		if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
			return
		}
		failed++
		pause = min(max(2*pause, acceptRetryMin), acceptRetryMax)
		if ok, suppressed := limit.Allow("accept failed"); ok {
			if transientAcceptError(err) {
				log.Info("accept failed, retrying", "error", err.Error(), "retryIn", pause.String(), "suppressed", suppressed)
			} else {
				log.Error(err, "accept failed, retrying", "retryIn", pause.String(), "suppressed", suppressed)
			}
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// transientAcceptError reports whether err is an accept error that passes
// by itself: resources (descriptors, memory, buffers) run short, or a
// queued connection failed before it was accepted.
func transientAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{
		syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.EAGAIN, syscall.EINTR, syscall.ECONNABORTED, syscall.ECONNRESET,
		syscall.EPROTO, syscall.EPERM,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Bounds on the link port's connections that have not yet proved who
// they are (TLS handshake and hello under way): all of them, and those
// from one address (an IPv6 /64 counts as one address). A busy site's
// gateways and sidecars reconnecting at once complete their handshakes in
// milliseconds; an attacker's idle connections would hold their slots for
// the whole handshake timeout.
const (
	maxPendingHandshakes      = 256
	maxPendingHandshakesPerIP = 16
)

// Why handshakeLimiter.acquire refuses a connection.
var (
	errPendingLimit   = errors.New("too many link connections waiting for their handshake")
	errPendingLimitIP = errors.New("too many link connections from one address waiting for their handshake")
)

// Refusals of the link port's admission log at most admissionLogBurst
// lines per reason and admissionLogEvery.
const (
	admissionLogBurst = 5
	admissionLogEvery = time.Minute
)

// linkAdmission admits connections to the link port's handshake: at most
// maxPendingHandshakes at once, maxPendingHandshakesPerIP from one
// address.
type linkAdmission struct {
	pending *handshakeLimiter
	logs    *logging.Limiter
	log     logr.Logger
}

func newLinkAdmission(log logr.Logger) *linkAdmission {
	return &linkAdmission{
		pending: newHandshakeLimiter(maxPendingHandshakes, maxPendingHandshakesPerIP),
		logs:    logging.NewLimiter(admissionLogBurst, admissionLogEvery),
		log:     log,
	}
}

// admit takes a handshake slot for c; release gives it back (see
// handshakeLimiter.acquire). When no slot is free, admit closes c at once,
// logs it (rate-limited) and returns the reason for
// skiff_link_connections_refused_total: pending_limit or
// pending_limit_ip.
func (a *linkAdmission) admit(c net.Conn) (release func(), refused string) {
	release, err := a.pending.acquire(c.RemoteAddr())
	if err == nil {
		return release, ""
	}
	c.Close()
	refused = "pending_limit"
	if errors.Is(err, errPendingLimitIP) {
		refused = "pending_limit_ip"
	}
	if ok, suppressed := a.logs.Allow(refused); ok {
		a.log.Info("link connection refused", "remote", c.RemoteAddr().String(), "error", err.Error(), "suppressed", suppressed)
	}
	return nil, refused
}

// handshakeLimiter counts link connections whose handshake is under way,
// in all and per remote address; a connection beyond either cap is to be
// closed at once. The zero value is not usable: see newHandshakeLimiter.
type handshakeLimiter struct {
	global, perIP int

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
}

func newHandshakeLimiter(global, perIP int) *handshakeLimiter {
	return &handshakeLimiter{global: global, perIP: perIP, byIP: map[netip.Addr]int{}}
}

// acquire takes a slot for a connection from remote. On success release
// gives it back; it may be called more than once (only the first call
// counts), and must be called once the handshake is over, whatever its
// outcome. On failure the error says which cap was reached.
func (h *handshakeLimiter) acquire(remote net.Addr) (release func(), err error) {
	key := limitKey(remote)
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.total >= h.global:
		return nil, errPendingLimit
	case h.byIP[key] >= h.perIP:
		return nil, errPendingLimitIP
	}
	h.total++
	h.byIP[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.total--
			if h.byIP[key]--; h.byIP[key] == 0 {
				delete(h.byIP, key)
			}
		})
	}, nil
}

// pending returns the connections holding a slot, in all and from
// remote's address.
func (h *handshakeLimiter) pending(remote net.Addr) (total, fromIP int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total, h.byIP[limitKey(remote)]
}

// limitKey is the address a connection is counted under: its IP, an IPv6
// address's /64 (one host's or one subnet's share). Addresses that are not
// IP share one key.
func limitKey(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case nil:
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr()
		}
	}
	ip = ip.Unmap()
	if ip.Is6() {
		ip = netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}
