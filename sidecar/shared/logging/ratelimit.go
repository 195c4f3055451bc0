package logging

import (
	"fmt"
	"sync"
	"time"
)

// Limiter bounds the log lines a flood can cause. Each key (a reason such
// as "link connection refused", from a small fixed set: never a peer's
// address or name) may log burst lines per interval; the lines after them
// are suppressed and counted until the interval ends. The next line
// allowed for that key carries the count, and Flush reports the counts of
// keys that went quiet:
//
//	if ok, suppressed := limit.Allow("link connection refused"); ok {
//		log.Info("link connection refused", "remote", addr, "reason", why, "suppressed", suppressed)
//	}
//
// A Limiter is safe for concurrent use. A nil *Limiter allows every line.
type Limiter struct {
	burst int
	every time.Duration
	now   func() time.Time // time.Now; tests set it

	mu   sync.Mutex
	keys map[string]*window
}

// window is one key's current interval.
type window struct {
	start      time.Time
	allowed    int
	suppressed int
}

// NewLimiter returns a Limiter that allows burst lines per key in every
// interval. It panics if burst < 1 or every <= 0.
func NewLimiter(burst int, every time.Duration) *Limiter {
	if burst < 1 || every <= 0 {
		panic(fmt.Sprintf("logging.NewLimiter(%d, %v): want burst >= 1 and a positive interval", burst, every))
	}
	return &Limiter{burst: burst, every: every, now: time.Now, keys: map[string]*window{}}
}

// Allow reports whether a line for key may be logged now and, when it
// may, how many lines for key were suppressed since the last one allowed
// (or the last Flush): log that number with the line. When it may not,
// the line is counted as suppressed.
func (l *Limiter) Allow(key string) (ok bool, suppressed int) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.keys[key]
	if w == nil || now.Sub(w.start) >= l.every {
		if w == nil {
			w = &window{}
			l.keys[key] = w
		}
		suppressed = w.suppressed
		*w = window{start: now, allowed: 1}
		return true, suppressed
	}
	if w.allowed < l.burst {
		w.allowed++ // nothing was suppressed yet in this interval
		return true, 0
	}
	w.suppressed++
	return false, 0
}

// Flush calls report for every key whose interval has ended with lines
// suppressed, so that a flood that stops still gets its summary line
// ("suppressed K similar messages"), and forgets keys that have gone
// quiet. Call it now and then (every interval, say) from a goroutine that
// can log.
func (l *Limiter) Flush(report func(key string, suppressed int)) {
	if l == nil {
		return
	}
	now := l.now()
	type quiet struct {
		key string
		n   int
	}
	var due []quiet
	l.mu.Lock()
	for key, w := range l.keys {
		if now.Sub(w.start) < l.every {
			continue
		}
		if w.suppressed > 0 {
			due = append(due, quiet{key, w.suppressed})
		}
		delete(l.keys, key)
	}
	l.mu.Unlock()
	for _, q := range due {
		report(q.key, q.n)
	}
}
