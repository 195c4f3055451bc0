package router

import (
	"io"
	"net"
	"sync"
	"time"
)

// flowSet holds the flows a router carries: each client connection a
// gateway listener or the sidecar's outbound port accepted, and each data
// stream a peer opened on a link, from the moment it is accepted until its
// handler returns. A drain waits for them to end; when it is over, those
// left are reset, and Run waits until their handlers have returned.
type flowSet struct {
	mu   sync.Mutex
	open map[*flow]struct{}
	// stopped: the router is stopping; new flows are refused and the open
	// ones have been reset.
	stopped bool
	// draining: a drain is under way; finished and reset count the flows
	// that ended since it began, by themselves or reset at its end.
	draining        bool
	finished, reset int
	zeroSince       time.Time     // when the count last fell to zero (or the drain began)
	changed         chan struct{} // signalled (capacity 1) when a flow ends
	// empty is closed once the router is stopping and no flow is left.
	empty       chan struct{}
	emptyClosed bool
}

// flow is one connection or stream with the sockets to reset if it is
// still open when the router stops.
type flow struct {
	set   *flowSet
	conns []io.Closer // guarded by set.mu
	reset bool        // guarded by set.mu
}

func newFlowSet() *flowSet {
	return &flowSet{open: map[*flow]struct{}{}, changed: make(chan struct{}, 1), empty: make(chan struct{})}
}

// begin records a new flow on c. Once the router is stopping it refuses:
// c is reset and ok is false.
func (s *flowSet) begin(c io.Closer) (f *flow, ok bool) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		resetConn(c)
		return nil, false
	}
	f = &flow{set: s, conns: []io.Closer{c}}
	s.open[f] = struct{}{}
	s.mu.Unlock()
	return f, true
}

// attach adds the flow's other side (an endpoint connection, a stream
// toward the next hop); if the flow was reset meanwhile, c is reset too.
func (f *flow) attach(c io.Closer) {
	if f == nil {
		return
	}
	s := f.set
	s.mu.Lock()
	if f.reset {
		s.mu.Unlock()
		resetConn(c)
		return
	}
	f.conns = append(f.conns, c)
	s.mu.Unlock()
}

// end records that the flow's handler has returned.
func (f *flow) end() { f.done(true) }

// drop forgets a flow that turned out not to be one (a link's control
// stream): it counts neither as finished nor as reset.
func (f *flow) drop() { f.done(false) }

func (f *flow) done(count bool) {
	if f == nil {
		return
	}
	s := f.set
	s.mu.Lock()
	if _, ok := s.open[f]; !ok {
		s.mu.Unlock()
		return
	}
	delete(s.open, f)
	if s.draining && count && !f.reset {
		s.finished++
	}
	if len(s.open) == 0 {
		s.zeroSince = time.Now()
		if s.stopped && !s.emptyClosed {
			s.emptyClosed = true
			close(s.empty)
		}
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// startDrain marks the beginning of a drain and returns the flows open.
func (s *flowSet) startDrain() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.draining = true
	s.finished, s.reset = 0, 0
	s.zeroSince = time.Now()
	return len(s.open)
}

// idle returns the flows open and, when there are none, since when.
func (s *flowSet) idle() (open int, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open), s.zeroSince
}

// stop refuses new flows and resets the open ones; it returns how many
// flows finished by themselves during the drain and how many it reset.
// Call wait for their handlers.
func (s *flowSet) stop() (finished, reset int) {
	s.mu.Lock()
	if s.stopped {
		f, r := s.finished, s.reset
		s.mu.Unlock()
		return f, r
	}
	s.stopped = true
	var conns []io.Closer
	for f := range s.open {
		f.reset = true
		s.reset++
		conns = append(conns, f.conns...)
	}
	if len(s.open) == 0 {
		s.emptyClosed = true
		close(s.empty)
	}
	finished, reset = s.finished, s.reset
	s.mu.Unlock()
	for _, c := range conns {
		resetConn(c)
	}
	return finished, reset
}

// wait returns once every flow open at stop has ended.
func (s *flowSet) wait() { <-s.empty }

// resetConn aborts a connection rather than closing it cleanly, so the
// far end sees an error, not an end of data it could take for a complete
// answer: a TCP connection is closed with an RST (SO_LINGER 0), a link
// stream with an RST frame.
func resetConn(c io.Closer) {
	switch c := c.(type) {
	case interface{ Reset() error }:
		_ = c.Reset()
	case *net.TCPConn:
		_ = c.SetLinger(0)
		_ = c.Close()
	default:
		_ = c.Close()
	}
}
