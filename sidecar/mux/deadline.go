package mux

import (
	"sync"
	"time"
)

// deadline is a settable timer whose channel closes when it expires, after
// net.Pipe's. The channel is made only once a deadline is set, so a stream
// that never sets one pays for no timer and no channel.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	c     chan struct{} // nil: no deadline yet; closed: expired
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.c // the timer fired: wait for it to close c
	}
	d.timer = nil
	expired := d.c != nil && isClosed(d.c)
	if t.IsZero() {
		if expired {
			d.c = nil
		}
		return
	}
	if d.c == nil || expired {
		d.c = make(chan struct{})
	}
	if dur := time.Until(t); dur > 0 {
		c := d.c
		d.timer = time.AfterFunc(dur, func() { close(c) })
		return
	}
	close(d.c)
}

// wait returns a channel that closes when the deadline passes; nil (never
// ready) when none is set. Whoever changes the deadline must wake waiters so
// that they call wait again.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}

func (d *deadline) expired() bool {
	c := d.wait()
	return c != nil && isClosed(c)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// poke wakes whoever waits on c without blocking.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
