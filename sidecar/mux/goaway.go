package mux

// PeerGoingAway reports whether the peer has sent GOAWAY: Open fails with
// ErrGoAway from now on, while the streams already open carry on. A
// caller with other sessions to the same peer (a pool, or a new
// connection it dials) opens its next streams there.
func (s *Session) PeerGoingAway() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.goAwayRecv
}
