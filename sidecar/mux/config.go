package mux

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes a Session. The zero value gives the defaults: a zero field
// takes its default, and any other value must pass Validate.
type Config struct {
	// StreamWindow is the initial per-stream receive window in bytes:
	// how much a peer may send on one stream before this end's consumer
	// reads it. Default 512 KiB; otherwise within [64 KiB, 1 GiB].
	StreamWindow uint32
	// MaxFrameSize is the largest DATA payload per frame, in both
	// directions. Default 32 KiB; otherwise within [16 KiB, 16 MiB].
	MaxFrameSize int
	// KeepAliveInterval is how often a PING goes out. Default 1s, or half
	// of KeepAliveTimeout if that is shorter.
	KeepAliveInterval time.Duration
	// KeepAliveTimeout closes the session when nothing at all was received
	// for this long. Default 4s, so a dead peer is detected within 5s. It
	// must be at least twice KeepAliveInterval.
	KeepAliveTimeout time.Duration
	// AcceptBacklog is how many streams opened by the peer may wait for
	// Accept; beyond it new peer streams are refused. Default 1024.
	AcceptBacklog int
	// MaxIncomingStreams caps the streams the peer may have open on this
	// session at once: those it opened that wait for Accept or were
	// accepted and are not done with on this end (see NumStreams). An
	// OPEN beyond it is refused with RST REFUSED, which the peer sees as
	// ErrStreamReset on that stream alone; the session carries on.
	// Default 1024 (h2 servers allow 100 to 250 per connection, but one
	// link connection carries the streams of a whole site). What the
	// peer can make this end buffer is bounded by MaxIncomingStreams ×
	// StreamWindow.
	MaxIncomingStreams int
	// OnRefuse, if not nil, is called each time this end refuses a stream
	// the peer opened, with the reason (for a metric). It runs on the
	// session's reader goroutine and must not block.
	OnRefuse func(RefuseReason)
}

// RefuseReason says why a stream the peer opened was refused.
type RefuseReason uint8

// Reasons for refusing a peer's stream. Every one of them reaches the
// peer as RST REFUSED or GOING_AWAY: its application never saw the stream,
// so the opener may retry elsewhere.
const (
	// RefusedStreamLimit: the peer already had MaxIncomingStreams open.
	RefusedStreamLimit RefuseReason = iota
	// RefusedBacklog: AcceptBacklog streams were waiting for Accept.
	RefusedBacklog
	// RefusedGoingAway: this end had sent GOAWAY.
	RefusedGoingAway
)

func (r RefuseReason) String() string {
	switch r {
	case RefusedStreamLimit:
		return "stream limit"
	case RefusedBacklog:
		return "accept backlog"
	case RefusedGoingAway:
		return "going away"
	}
	return fmt.Sprintf("reason %d", uint8(r))
}

// Defaults and limits.
const (
	DefaultStreamWindow       = 512 << 10
	DefaultMaxFrameSize       = 32 << 10
	DefaultKeepAliveInterval  = time.Second
	DefaultKeepAliveTimeout   = 4 * time.Second
	DefaultAcceptBacklog      = 1024
	DefaultMaxIncomingStreams = 1024

	minStreamWindow = initialWindow
	maxStreamWindow = 1 << 30
	minFrameSize    = initialFrameSize
	maxFrameSize    = 16 << 20
)

// Validate reports the fields that cannot work, all of them. Zero fields
// are fine: they take their defaults.
func (c Config) Validate() error {
	var errs []error
	if c.StreamWindow != 0 && (c.StreamWindow < minStreamWindow || c.StreamWindow > maxStreamWindow) {
		errs = append(errs, fmt.Errorf("stream window %d outside [%d, %d]", c.StreamWindow, minStreamWindow, maxStreamWindow))
	}
	if c.MaxFrameSize != 0 && (c.MaxFrameSize < minFrameSize || c.MaxFrameSize > maxFrameSize) {
		errs = append(errs, fmt.Errorf("max frame size %d outside [%d, %d]", c.MaxFrameSize, minFrameSize, maxFrameSize))
	}
	if c.KeepAliveInterval < 0 {
		errs = append(errs, fmt.Errorf("keepalive interval %v is negative", c.KeepAliveInterval))
	}
	if c.KeepAliveTimeout < 0 {
		errs = append(errs, fmt.Errorf("keepalive timeout %v is negative", c.KeepAliveTimeout))
	}
	if c.KeepAliveInterval > 0 && c.KeepAliveTimeout >= 0 {
		if d := c.withDefaults(); d.KeepAliveTimeout < 2*d.KeepAliveInterval {
			errs = append(errs, fmt.Errorf("keepalive timeout %v is less than twice the interval %v", d.KeepAliveTimeout, d.KeepAliveInterval))
		}
	}
	if c.AcceptBacklog < 0 {
		errs = append(errs, fmt.Errorf("accept backlog %d is negative", c.AcceptBacklog))
	}
	if c.MaxIncomingStreams < 0 {
		errs = append(errs, fmt.Errorf("max incoming streams %d is negative", c.MaxIncomingStreams))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mux config: %w", err)
	}
	return nil
}

// withDefaults returns c with zero fields replaced by their defaults. It
// expects a c that passed Validate.
func (c Config) withDefaults() Config {
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	if c.KeepAliveTimeout == 0 {
		c.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = min(DefaultKeepAliveInterval, c.KeepAliveTimeout/2)
	}
	if c.AcceptBacklog == 0 {
		c.AcceptBacklog = DefaultAcceptBacklog
	}
	if c.MaxIncomingStreams == 0 {
		c.MaxIncomingStreams = DefaultMaxIncomingStreams
	}
	return c
}
