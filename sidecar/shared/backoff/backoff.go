// Package backoff is the jittered exponential backoff of every retry loop
// in skiff: link dials, the xDS client's streams, the controller's polls of
// its gateways' views.
//
// The first wait is about Min, each next one twice the one before, up to
// Max. Each is drawn uniformly from [w/2, w] ("equal jitter"): at least
// half the nominal wait, so a retry never comes at once, and spread enough
// that many clients that failed together do not retry together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the state of one retry loop; the zero value is not usable,
// make one with New. It is not safe for concurrent use.
type Backoff struct {
	min, max, cur time.Duration
}

// New returns a backoff from min up to max (max below min is taken as
// min). min must be positive.
func New(min, max time.Duration) *Backoff {
	return &Backoff{min: min, max: max}
}

// Next returns the wait before the next attempt and doubles the nominal
// wait for the one after.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, max(b.max, b.min))
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

// Reset starts over from min, after an attempt that succeeded.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d, or less if ctx ends first; it reports whether it waited
// the whole of d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
