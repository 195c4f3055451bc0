package mux

import "time"

// Config tunes a Session. The zero value gives the defaults.
type Config struct {
	// StreamWindow is the initial per-stream receive window in bytes:
	// how much a peer may send on one stream before this end's consumer
	// reads it. Default 512 KiB; clamped to [64 KiB, 1 GiB].
	StreamWindow uint32
	// MaxFrameSize is the largest DATA payload per frame, in both
	// directions. Default 32 KiB; clamped to [16 KiB, 16 MiB].
	MaxFrameSize int
	// KeepAliveInterval is how often a PING goes out. Default 1s.
	KeepAliveInterval time.Duration
	// KeepAliveTimeout closes the session when nothing at all was received
	// for this long. Default 4s, so a dead peer is detected within 5s.
	// When it is below twice KeepAliveInterval, the interval is lowered to
	// half of it.
	KeepAliveTimeout time.Duration
	// AcceptBacklog is how many streams opened by the peer may wait for
	// Accept; beyond it new peer streams are refused. Default 1024.
	AcceptBacklog int
}

// Defaults and limits.
const (
	DefaultStreamWindow      = 512 << 10
	DefaultMaxFrameSize      = 32 << 10
	DefaultKeepAliveInterval = time.Second
	DefaultKeepAliveTimeout  = 4 * time.Second
	DefaultAcceptBacklog     = 1024

	minStreamWindow = initialWindow
	maxStreamWindow = 1 << 30
	minFrameSize    = initialFrameSize
	maxFrameSize    = 16 << 20
)

// withDefaults returns c with zero or out-of-range fields replaced.
func (c Config) withDefaults() Config {
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	c.StreamWindow = min(max(c.StreamWindow, minStreamWindow), maxStreamWindow)
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = DefaultMaxFrameSize
	}
	c.MaxFrameSize = min(max(c.MaxFrameSize, minFrameSize), maxFrameSize)
	if c.KeepAliveInterval <= 0 {
		c.KeepAliveInterval = DefaultKeepAliveInterval
	}
	if c.KeepAliveTimeout <= 0 {
		c.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if c.KeepAliveTimeout < 2*c.KeepAliveInterval {
		c.KeepAliveInterval = c.KeepAliveTimeout / 2
	}
	if c.AcceptBacklog <= 0 {
		c.AcceptBacklog = DefaultAcceptBacklog
	}
	return c
}
