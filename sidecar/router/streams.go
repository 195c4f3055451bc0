package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/sidecar/mux"
	"github.com/skiff-io/skiff/sidecar/routing"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/names"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/rawio"
)

// headerTimeout bounds how long a peer may take to send a stream header
// and how long an origin waits for the far end's status.
const headerTimeout = 10 * time.Second

// maxAttempts bounds the endpoints an origin tries for one connection.
const maxAttempts = 3

// drainingLinkWait bounds how long a new stream waits for a link to its
// next hop when every link there is draining (its peer sent GOAWAY): about
// what a replacement takes to be dialled, once the peer's Service sends
// new connections to a replica that is not draining.
const drainingLinkWait = 3 * time.Second

// handleStream serves a stream a peer opened on a link; f is its flow.
// Its dials and waits end with ctx.
func (r *Router) handleStream(ctx context.Context, f *flow, l *link, st *mux.Stream) {
	br := bufio.NewReaderSize(st, 1024)
	st.SetReadDeadline(time.Now().Add(headerTimeout))
	h, err := readHeader(br)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		r.refuseStream(l, st, "bad_header", err.Error(), false)
		return
	}
	if reason, msg := r.checkHeader(l, h); reason != "" {
		r.refuseStream(l, st, reason, msg, h.Kind == kindData)
		return
	}
	if h.Kind == kindControl {
		f.drop() // the link's, not a flow: it lasts as long as the link
		l.markUp(st)
		l.readControl(br)
		return
	}
	if r.cfg.Role == RoleSidecar {
		_ = writeStatus(st, statusBadRequest, "a sidecar does not accept streams")
		st.Close()
		return
	}
	if (h.Dest == "" || h.Dest == r.self) && !r.mayReach(l, h.Address) {
		r.refuseStream(l, st, "policy", fmt.Sprintf("the policy of the link from %s does not let it reach %q", l.peer, h.Address), true)
		return
	}
	in := newStreamConn(st, br, l)
	l.peerCounts.accepted.Inc()
	in.node = l.node()
	if h.Dest == "" || h.Dest == r.self {
		r.deliver(ctx, f, h, in)
		return
	}
	r.transit(ctx, f, h, in)
}

// checkHeader validates a stream header from link l before anything in
// it is used: names as the site file would accept them, the hop limit, a
// control stream only where one belongs, no stream that comes back to
// its origin. It returns a metric reason and a message, or "".
func (r *Router) checkHeader(l *link, h header) (reason, msg string) {
	if h.Kind == kindControl {
		l.mu.Lock()
		has := l.ctrl != nil
		l.mu.Unlock()
		if has || l.dialed {
			return "bad_header", "a second control stream, or one from the accepting side"
		}
		return "", ""
	}
	if err := names.CheckAddress(h.Address); err != nil {
		return "bad_header", err.Error()
	}
	if h.Dest != "" && names.CheckSite(h.Dest) != nil {
		return "bad_header", fmt.Sprintf("destination site %q is not a site name", clipName(h.Dest))
	}
	if err := names.CheckSite(h.Origin); err != nil {
		return "bad_header", "origin: " + err.Error()
	}
	switch {
	case h.Hops > defaultHops:
		return "hop_limit", fmt.Sprintf("hop count %d above the limit of %d", h.Hops, defaultHops)
	case l.role == roleMember && h.Origin != r.self:
		return "member_origin", fmt.Sprintf("a sidecar of site %s opened a stream from site %q", r.self, h.Origin)
	case l.role != roleMember && h.Origin == r.self && l.peer != r.self:
		return "loop", fmt.Sprintf("a stream from this site (%s) came back from %s", r.self, l.peer)
	}
	return "", ""
}

// refuseStream refuses a stream a peer opened: counted, logged at most a
// few times per reason and interval, answered with a status when the
// header was a data stream's, and reset.
func (r *Router) refuseStream(l *link, st *mux.Stream, reason, msg string, answer bool) {
	r.m.StreamsRefused.WithLabelValues(reason).Inc()
	if reason != "policy" { // policyRefused logged it, once per address
		if ok, suppressed := r.refusedLogs.Allow("stream " + reason); ok {
			r.log.Info("stream refused", "peerSite", l.peer, "reason", msg, "suppressed", suppressed)
		}
	}
	if answer {
		// Close, not Reset: a reset discards what the peer has not read
		// yet, the status with it. Close stops the peer's writes (RST
		// STOP) and lets it read the status to the end.
		_ = writeStatus(st, statusBadRequest, msg)
		st.Close()
		return
	}
	st.Reset()
}

// deliver connects a stream that reached its destination site to a local
// connector.
func (r *Router) deliver(ctx context.Context, f *flow, h header, in *streamConn) {
	if h.Proto == protoHTTP || h.Proto == protoHTTP2 {
		// A connection (HTTP/1.1 or HTTP/2) of another site's requests
		// for the address: each goes to a local endpoint (package l7).
		if err := writeStatus(in, statusOK, ""); err != nil {
			in.Close()
			return
		}
		r.track(h.Address, "delivery", func() { r.http.ServeSite(ctx, in, h.Address, h.Origin) })
		return
	}
	t := r.services.Load()
	keys := t.endpoints[h.Address]
	cands := make([]routing.Candidate, len(keys))
	for i, key := range keys {
		cands[i] = routing.Candidate{Key: key, Weight: 1, Outstanding: int(r.counter(key).Load())}
	}
	order, err := r.picker.Order("balanced", cands)
	if err != nil {
		r.m.ConnectFailures.WithLabelValues(h.Address, "no_endpoint").Inc()
		_ = writeStatus(in, statusNoEndpoint, fmt.Sprintf("site %s has no endpoint for %q", r.self, h.Address))
		in.Close()
		return
	}
	var lastErr error
	for n, i := range order {
		if n == maxAttempts {
			break
		}
		key := cands[i].Key
		out, err := r.dialEndpoint(ctx, key)
		if err != nil {
			lastErr = err
			r.m.ConnectFailures.WithLabelValues(h.Address, "dial").Inc()
			r.log.Info("connector dial failed", "address", h.Address, "endpoint", key, "error", err.Error())
			continue
		}
		if err := writeStatus(in, statusOK, ""); err != nil {
			out.Close()
			in.Close()
			return
		}
		c := r.counter(key)
		c.Add(1)
		r.track(h.Address, "delivery", func() { r.splice(f, h.Address, in, out) })
		c.Add(-1)
		return
	}
	_ = writeStatus(in, statusDialFailed, fmt.Sprintf("site %s could not reach an endpoint for %q: %v", r.self, h.Address, lastErr))
	in.Close()
}

// transit forwards a stream toward its destination site.
func (r *Router) transit(ctx context.Context, f *flow, h header, in *streamConn) {
	if h.Hops <= 1 {
		r.m.ConnectFailures.WithLabelValues(h.Address, "hop_limit").Inc()
		_ = writeStatus(in, statusHopLimit, fmt.Sprintf("hop limit reached at site %s on the way to %s", r.self, h.Dest))
		in.Close()
		return
	}
	h.Hops--
	if nh, ok := r.db.View().NextHop(h.Dest); ok && nh == in.node {
		r.m.StreamsRefused.WithLabelValues("loop").Inc()
		_ = writeStatus(in, statusNoRoute, fmt.Sprintf("site %s routes %s back through %s, where the stream came from", r.self, h.Dest, in.peer))
		in.Close()
		return
	}
	out, err := r.openStream(ctx, h, nil)
	if err != nil {
		var se *statusError
		if errors.As(err, &se) {
			_ = writeStatus(in, se.Code, se.Msg)
		} else {
			_ = writeStatus(in, statusUnreachable, fmt.Sprintf("site %s cannot reach %s: %v", r.self, h.Dest, err))
		}
		r.m.ConnectFailures.WithLabelValues(h.Address, "transit").Inc()
		in.Close()
		return
	}
	if err := writeStatus(in, statusOK, ""); err != nil {
		out.Close()
		in.Close()
		return
	}
	r.track(h.Address, "transit", func() { r.splice(f, h.Address, in, out) })
}

// openStream opens a data stream toward h.Dest through the next hop and
// waits for the far end's status, at most until ctx ends. early, the
// client's first bytes if any, travels in the same write as the header.
//
// A stream the peer refused because it is draining (it had sent GOAWAY,
// which crossed the stream's OPEN) never reached its application, so it
// is opened again, on a link that is not draining (linkToward), up to
// goAwayRetries times.
func (r *Router) openStream(ctx context.Context, h header, early []byte) (*streamConn, error) {
	for retry := 0; ; retry++ {
		st, err := r.openStreamOnce(ctx, h, early)
		if err == nil || !errors.Is(err, mux.ErrGoAway) || retry == goAwayRetries {
			return st, err
		}
	}
}

// goAwayRetries bounds how often openStream opens a stream again that a
// draining peer refused.
const goAwayRetries = 2

func (r *Router) openStreamOnce(ctx context.Context, h header, early []byte) (*streamConn, error) {
	l, err := r.linkToward(ctx, h.Dest)
	if err != nil {
		return nil, err
	}
	if r.cfg.Role == RoleGateway && !l.policy.MayAdvertise(h.Address) {
		r.policyRefused(l.peer, "advertise", h.Address)
		return nil, &statusError{Code: statusNoRoute, Msg: fmt.Sprintf("site %s: the policy of the link to %s does not let it advertise %q", r.self, l.peer, h.Address)}
	}
	sess := l.pick()
	if sess == nil {
		return nil, fmt.Errorf("link to %s has no live connection: %w", l.peer, errNoLink)
	}
	b, err := h.encode()
	if err != nil {
		return nil, err
	}
	b = append(b, early...)
	octx, cancel := context.WithTimeout(ctx, headerTimeout)
	defer cancel()
	st, err := sess.OpenWrite(octx, b)
	if err != nil {
		return nil, fmt.Errorf("open stream to %s: %w", l.peer, err)
	}
	l.peerCounts.sent.Add(float64(len(early)))
	br := bufio.NewReaderSize(st, 1024)
	st.SetReadDeadline(time.Now().Add(headerTimeout))
	err = readStatus(br)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		st.Reset()
		return nil, err
	}
	out := newStreamConn(st, br, l)
	l.peerCounts.opened.Inc()
	out.node = l.node()
	return out, nil
}

// linkToward returns the up link to the next hop toward site, one whose
// peer is not draining if there is one, else the cheapest. The next hop
// is a node (one gateway); when it is a gateway of site itself, a link to
// any of site's gateways delivers there as well, and is as good. When
// every link there is draining it waits, up to drainingLinkWait, for one
// that is not (a replacement being dialled, or another replica's link)
// rather than fail a connection that a moment's wait would carry, or
// until ctx ends.
func (r *Router) linkToward(ctx context.Context, site string) (*link, error) {
	var wait *time.Timer
	for {
		// The next hop is looked up again after every wait: the link
		// that comes up may be to another gateway, and change the route.
		changed := r.db.Changed()
		next, match, err := r.nextHop(site)
		if err != nil {
			return nil, err
		}
		best, draining, up := r.bestLink(match)
		switch {
		case best == nil && r.cfg.Role == RoleGateway:
			return nil, fmt.Errorf("no link up to %s: %w", next, errNoLink)
		case best != nil && !draining:
			return best, nil
		}
		// A sidecar with no link to its gateway (it went away; the
		// sidecar is dialling it, or its successor, again) waits too.
		if wait == nil {
			wait = time.NewTimer(drainingLinkWait)
			defer wait.Stop()
		}
		select {
		case <-up:
		case <-changed: // a new route, perhaps
		case <-wait.C:
			if best == nil {
				return nil, fmt.Errorf("no link up to %s: %w", next, errNoLink)
			}
			return nil, fmt.Errorf("every link to %s is draining: %w", next, errNoLink)
		case <-ctx.Done():
			return nil, fmt.Errorf("no link up to %s: %w: %w", next, errNoLink, ctx.Err())
		}
	}
}

// nextHop returns the next hop toward site (a node; a sidecar's is its
// site) and which links lead there.
func (r *Router) nextHop(site string) (next string, match func(*link) bool, err error) {
	if r.cfg.Role != RoleGateway {
		// A sidecar reaches everything through its gateway.
		return site, func(l *link) bool { return l.peer == r.self }, nil
	}
	nh, ok := r.db.View().NextHop(site)
	if !ok {
		return "", nil, &statusError{Code: statusNoRoute, Msg: fmt.Sprintf("site %s has no route to site %s", r.self, site)}
	}
	if netview.SiteOf(nh) == site {
		return nh, func(l *link) bool { return l.peer == site }, nil
	}
	return nh, func(l *link) bool { return l.node() == nh }, nil
}

// bestLink returns, of the up gateway links that match, the one whose
// peer is not draining with the lowest cost, else the draining one with
// the lowest cost (draining true), and a channel closed when another link
// comes up.
func (r *Router) bestLink(match func(*link) bool) (best *link, draining bool, up <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.links {
		if l.role != roleGateway || !match(l) || !l.isUp() {
			continue
		}
		d := l.peerDraining()
		if best == nil || (draining && !d) || (draining == d && l.cost < best.cost) {
			best, draining = l, d
		}
	}
	return best, draining, r.linkUp
}

// candidate is one place an origin can send a connection.
type candidate struct {
	site string // "" for a local connector
	key  string // local endpoint host:port, or site name
}

// originate routes a client connection for address: it picks an endpoint
// by the address's pattern, tries up to maxAttempts of them, then splices.
// f is the connection's flow; its dials and waits end with ctx. With
// accessLog, the requests of an HTTP address go to the access log.
func (r *Router) originate(ctx context.Context, f *flow, client net.Conn, address string, port int, role string, accessLog bool) {
	t := r.services.Load()
	if r.protocol(t, address).IsHTTP() {
		// Routed per request, until the client closes the connection.
		r.track(address, role, func() { r.http.ServeConn(ctx, client, address, accessLog) })
		return
	}
	pattern := t.pattern(address)
	cands, meta := r.candidates(t, address)
	order, err := r.picker.Order(pattern, cands)
	if err != nil {
		r.noEndpoint(client, address, pattern, err)
		return
	}
	// The client's first bytes, if they are there already, go with the
	// stream header (one write and one wake-up less at each end); they are
	// kept until an endpoint accepts them, so a failed attempt loses none.
	eb := earlyBufs.Get().(*[]byte)
	early := readEarly(client, *eb)
	release := func() { // not held for the connection's life
		if eb != nil {
			earlyBufs.Put(eb)
			eb, early = nil, nil
		}
	}
	defer release()
	var errs []error
	for n, i := range order {
		if n == maxAttempts {
			break
		}
		c := meta[i]
		out, err := r.connect(ctx, c, address, port, early)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		site := c.site
		if site == "" {
			site = r.self
		}
		r.m.RoutingDecisions.WithLabelValues(address, pattern, site).Inc()
		// The splice counts what it copies; the early bytes went before it.
		r.m.AddressBytes.WithLabelValues(address, "in").Add(float64(len(early)))
		release()
		r.relay(f, client, out, c.key, address, role)
		return
	}
	r.log.Info("connection closed: every endpoint failed", "address", address, "pattern", pattern, "client", client.RemoteAddr().String(), "error", errors.Join(errs...).Error())
	client.Close()
}

// candidates lists where a connection for address may go, for the
// picker (cands) and for originate (meta, in the same order): this
// router's connectors for it, then the sites that advertise it.
func (r *Router) candidates(t *serviceTable, address string) (cands []routing.Candidate, meta []candidate) {
	local := t.endpoints[address]
	for _, key := range local {
		cands = append(cands, routing.Candidate{Key: key, Cost: 0, Weight: 1, Outstanding: int(r.counter(key).Load())})
		meta = append(meta, candidate{key: key})
	}
	for _, tg := range r.db.View().Addresses[address] {
		if tg.Site == r.self && (r.cfg.Role == RoleGateway || len(local) > 0) {
			continue // our own connectors are listed above
		}
		if tg.Site != r.self && !r.advertised(tg.Site, address) {
			continue // the link's policy refuses it; openStream would too
		}
		key := "site:" + tg.Site
		cands = append(cands, routing.Candidate{Key: key, Cost: tg.Cost, Weight: tg.Endpoints, Outstanding: int(r.counter(key).Load())})
		meta = append(meta, candidate{site: tg.Site, key: key})
	}
	return cands, meta
}

// noEndpoint closes a client connection for address for which the
// picker found no endpoint (err), counting and logging why.
func (r *Router) noEndpoint(client net.Conn, address, pattern string, err error) {
	reason := "no_endpoint"
	if errors.Is(err, model.ErrMulticast) {
		reason = "pattern"
	}
	r.m.ConnectFailures.WithLabelValues(address, reason).Inc()
	r.log.Info("connection closed: no endpoint", "address", address, "pattern", pattern, "client", client.RemoteAddr().String(), "error", err.Error())
	client.Close()
}

// connect opens a connection for address to candidate c, a local
// endpoint (dialled) or a site (a stream), sending early first; a failure
// is counted and returned with the candidate it was for.
func (r *Router) connect(ctx context.Context, c candidate, address string, port int, early []byte) (io.ReadWriteCloser, error) {
	if c.site == "" {
		conn, err := r.dialEndpoint(ctx, c.key)
		if err == nil && len(early) > 0 {
			if _, err = conn.Write(early); err != nil {
				conn.Close()
			}
		}
		if err != nil {
			r.m.ConnectFailures.WithLabelValues(address, "dial").Inc()
			return nil, fmt.Errorf("local endpoint %s: %w", c.key, err)
		}
		return conn, nil
	}
	st, err := r.openStream(ctx, header{Kind: kindData, Hops: defaultHops, Proto: protoTCP, Port: uint16(port), Address: address, Dest: c.site, Origin: r.self}, early)
	if err != nil {
		r.m.ConnectFailures.WithLabelValues(address, "remote").Inc()
		return nil, fmt.Errorf("site %s: %w", c.site, err)
	}
	return st, nil
}

// relay splices client with out, its connection to the endpoint key,
// which counts as outstanding for the picker meanwhile.
func (r *Router) relay(f *flow, client net.Conn, out io.ReadWriteCloser, key, address, role string) {
	ctr := r.counter(key)
	ctr.Add(1)
	r.track(address, role, func() { r.splice(f, address, client, out) })
	ctr.Add(-1)
}

func (r *Router) track(address, role string, f func()) {
	r.m.StreamsOpened.WithLabelValues(address, role).Inc()
	g := r.m.StreamsActive.WithLabelValues(address, role)
	g.Inc()
	defer g.Dec()
	f()
}

// closeWriter is a connection that can half-close.
type closeWriter interface {
	CloseWrite() error
}

// splice copies both ways with half-close and returns when both directions
// are done or either failed. a is the side facing the client, whose flow
// f (which holds a) now holds b too. A link stream's data into a TCP
// socket or another link stream needs no goroutine of its own (sinkTo);
// the caller's copies a direction that does, and a worker the second one
// when both do (socket to socket).
func (r *Router) splice(f *flow, address string, a, b io.ReadWriteCloser) {
	f.attach(b)
	in := r.m.AddressBytes.WithLabelValues(address, "in")
	out := r.m.AddressBytes.WithLabelValues(address, "out")
	countIn := func(n int64) { in.Add(float64(n)) }
	countOut := func(n int64) { out.Add(float64(n)) }
	var wg sync.WaitGroup
	var once sync.Once
	abort := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	// ended closes dst for writing once its source is done with, or
	// aborts the splice if that failed.
	ended := func(dst io.ReadWriteCloser, err error) {
		if err != nil {
			abort()
			return
		}
		if cw, ok := dst.(closeWriter); !ok || cw.CloseWrite() != nil {
			abort()
		}
	}
	cp := func(dst, src io.ReadWriteCloser, count func(int64)) {
		defer wg.Done()
		n, err := copyConn(dst, src)
		count(n)
		ended(dst, err)
	}
	wg.Add(2)
	toA := r.sinkTo(b, a, countOut, func(err error) { ended(a, err); wg.Done() })
	toB := r.sinkTo(a, b, countIn, func(err error) { ended(b, err); wg.Done() })
	switch {
	case toA && toB: // stream to stream (transit): flushers carry both ways
	case toA:
		cp(b, a, countIn)
	case toB:
		cp(a, b, countOut)
	default:
		r.workers.Go(func() { cp(b, a, countIn) })
		cp(a, b, countOut)
	}
	wg.Wait()
	abort()
}

// sinkTo hands src's data to dst with the stream's Sink when src is a link
// stream and dst a TCP socket or another link stream, and reports whether
// it did. The session's reader writes small messages directly, with a
// write that never waits: to a socket, or into the next link
// (mux.Stream.TryWrite: the link's reader must never wait for another
// link). A goroutine runs only for what it could not write, while that
// waits. Either way an idle direction holds no goroutine: an idle
// connection through a sidecar is one, not two, and one in transit at a
// gateway is only its caller's. count gets the bytes and ended the
// outcome, once.
func (r *Router) sinkTo(src, dst io.ReadWriteCloser, count func(int64), ended func(error)) bool {
	s, ok := src.(*streamConn)
	if !ok {
		return false
	}
	var direct mux.Direct
	switch d := dst.(type) {
	case *net.TCPConn:
		rc, err := d.SyscallConn()
		if err != nil {
			return false
		}
		direct = mux.SocketWriter(rc)
	case *streamConn:
		direct = mux.StreamWriter(d.Stream, func(n int) { d.sent.Add(float64(n)) })
	default:
		return false
	}
	// What came with the stream's header goes first.
	pre, err := s.drainTo(dst)
	done := func(n int64, err error) {
		s.rx.Add(float64(pre + n))
		count(pre + n)
		ended(err)
	}
	if err != nil {
		done(0, err)
		return true
	}
	s.Stream.Sink(dst, direct, r.workers.Go, done)
	return true
}

// copyConn copies until EOF (nil error) or failure. Into a stream it
// calls the stream's ReadFrom with src itself, not src's WriteTo (which
// io.Copy prefers, and which hides a socket behind a wrapper of net's).
func copyConn(dst io.Writer, src io.Reader) (int64, error) {
	var n int64
	var err error
	if s, ok := dst.(*streamConn); ok {
		n, err = s.ReadFrom(src)
	} else {
		n, err = io.Copy(dst, src)
	}
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// streamConn is a link stream with its header reader, which may hold the
// first bytes of data, and per-peer byte accounting.
type streamConn struct {
	*mux.Stream
	peer     string // the neighbour site it came from or goes to
	node     string // the neighbour node (netview.NodeID)
	br       *bufio.Reader
	rx, sent prometheus.Counter
}

func newStreamConn(st *mux.Stream, br *bufio.Reader, l *link) *streamConn {
	return &streamConn{Stream: st, br: br, peer: l.peer, rx: l.peerCounts.received, sent: l.peerCounts.sent}
}

func (s *streamConn) Read(p []byte) (int, error) {
	n, err := s.br.Read(p)
	s.rx.Add(float64(n))
	return n, err
}

// TryRead reads what the header reader holds, else what the stream holds,
// without waiting (mux.Stream.TryRead).
func (s *streamConn) TryRead(p []byte) (int, error) {
	var n int
	var err error
	if s.br.Buffered() > 0 {
		n, err = s.br.Read(p)
	} else {
		n, err = s.Stream.TryRead(p)
	}
	s.rx.Add(float64(n))
	return n, err
}

// Notify is the stream's (mux.Stream.Notify); bytes the header reader
// holds are there to read at once.
func (s *streamConn) Notify(fn func(later func(func()))) bool {
	return s.br.Buffered() > 0 || s.Stream.Notify(fn)
}

// WriteTo drains buffered bytes, then hands the stream's buffers to w.
func (s *streamConn) WriteTo(w io.Writer) (int64, error) {
	total, err := s.drainTo(w)
	if err == nil {
		var n int64
		n, err = s.Stream.WriteTo(w)
		total += n
	}
	s.rx.Add(float64(total))
	return total, err
}

// drainTo writes to w the bytes the header reader holds (what came with
// the stream's header); the stream's data is read from the stream after.
func (s *streamConn) drainTo(w io.Writer) (int64, error) {
	k := s.br.Buffered()
	if k == 0 {
		return 0, nil
	}
	b, _ := s.br.Peek(k)
	n, err := w.Write(b)
	s.br.Discard(n)
	return int64(n), err
}

func (s *streamConn) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	s.sent.Add(float64(n))
	return n, err
}

// WriteUnflushed is the stream's (mux.Stream.WriteUnflushed), counted.
func (s *streamConn) WriteUnflushed(p []byte) (interface{ Flush() }, int, error) {
	f, n, err := s.Stream.WriteUnflushed(p)
	s.sent.Add(float64(n))
	return f, n, err
}

// ReadFrom copies from src into the stream with a pooled buffer. From a
// TCP socket it holds the buffer only from a read that found bytes until
// they are written (copyReady): an idle connection holds none.
func (s *streamConn) ReadFrom(src io.Reader) (int64, error) {
	var n int64
	var err error
	if rc := rawTCP(src); rc != nil {
		n, err = copyReady(s.Stream, rc, getCopyBuf, putCopyBuf)
	} else {
		bp := getCopyBuf()
		n, err = io.CopyBuffer(struct{ io.Writer }{s.Stream}, struct{ io.Reader }{src}, *bp)
		putCopyBuf(bp)
	}
	s.sent.Add(float64(n))
	return n, err
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func getCopyBuf() *[]byte  { return copyBufs.Get().(*[]byte) }
func putCopyBuf(b *[]byte) { copyBufs.Put(b) }

// rawTCP is src's socket when src is a TCP connection (nothing buffered
// above the socket), or nil.
func rawTCP(src io.Reader) syscall.RawConn {
	c, ok := src.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// copyReady copies from the socket rc to dst until EOF (nil error) or a
// failure. It takes a buffer (get) for each read and gives it back (put)
// as soon as the read found nothing or its bytes are written, so a
// connection that waits for its client holds no buffer: with io.Copy,
// each of 1,000 idle connections held 32 KiB. A read that finds nothing
// costs the same as in net's Read (which also tries, then waits for the
// poller); the reads and writes are the same, made with rawio (without
// the scheduler's system call bracket, which wakes the runtime's monitor).
func copyReady(dst io.Writer, rc syscall.RawConn, get func() *[]byte, put func(*[]byte)) (int64, error) {
	var (
		total int64
		bp    *[]byte
		n     int
		rerr  syscall.Errno
	)
	attempt := func(fd uintptr) bool { // one closure per connection, not per read
		bp = get()
		n, rerr = rawio.Read(fd, *bp)
		if rerr == syscall.EAGAIN {
			put(bp)
			bp = nil
			return false // wait for the poller without a buffer
		}
		return true
	}
	for {
		err := rc.Read(attempt)
		if err == nil && rerr != 0 {
			err = os.NewSyscallError("read", rerr)
		}
		if err != nil || n <= 0 { // n == 0: the peer's EOF
			if bp != nil {
				put(bp)
				bp = nil
			}
			return total, err
		}
		w, werr := dst.Write((*bp)[:n])
		put(bp)
		bp = nil
		total += int64(w)
		if werr != nil {
			return total, werr
		}
	}
}
