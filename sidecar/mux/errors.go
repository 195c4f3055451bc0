package mux

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them; test
// with errors.Is.
var (
	// ErrSessionClosed: the session has ended. Errors wrapping it also wrap
	// the cause (Session.Err), such as ErrKeepAliveTimeout or ErrProtocol.
	ErrSessionClosed = errors.New("mux session closed")
	// ErrStreamReset: the stream was aborted by either end.
	ErrStreamReset = errors.New("stream reset")
	// ErrGoAway: the peer has sent GOAWAY, so it takes no new streams from
	// this end. A stream it refused for that reason fails with an error
	// wrapping both ErrGoAway and ErrStreamReset; it is safe to retry
	// elsewhere because the peer's application never saw it.
	ErrGoAway = errors.New("peer is going away")
	// ErrProtocol: the peer broke the wire protocol.
	ErrProtocol = errors.New("mux protocol error")
	// ErrKeepAliveTimeout: nothing arrived from the peer for
	// Config.KeepAliveTimeout.
	ErrKeepAliveTimeout = errors.New("keepalive timeout")
)

// errPeerClosed is the cause when the peer closes the connection.
var errPeerClosed = errors.New("peer closed the connection")
