package router

import (
	"sync/atomic"
	"time"
)

// workers runs the per-connection functions of the data path (a client
// connection's routing and splice, a link stream's delivery, a splice's
// second direction) on goroutines that outlive them.
//
// A new goroutine starts with a small stack, and a connection's handler
// goes deep (splice → io.Copy → the mux → crypto/tls → AES-GCM), so each
// new goroutine copied its stack two or three times as it grew: 9 % of a
// gateway's CPU at 5k new connections per second. A worker keeps the stack
// it grew for the next function. Idle workers are bounded in number
// (maxIdle) and in time (idleTimeout), so a burst of connections leaves no
// goroutines behind; the garbage collector shrinks the stacks of those that
// stay.
// maxIdleWorkers and workerIdleTimeout bound the idle workers of a router:
// a few hundred stacks of some tens of KiB for half a minute.
const (
	maxIdleWorkers    = 256
	workerIdleTimeout = 30 * time.Second
)

type workers struct {
	work        chan func()
	idle        atomic.Int32
	maxIdle     int32
	idleTimeout time.Duration
}

func newWorkers(maxIdle int, idleTimeout time.Duration) *workers {
	return &workers{work: make(chan func()), maxIdle: int32(maxIdle), idleTimeout: idleTimeout}
}

// Go runs f on an idle worker, or on a new one if none is idle.
func (w *workers) Go(f func()) {
	select {
	case w.work <- f:
	default:
		go w.run(f)
	}
}

func (w *workers) run(f func()) {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		f()
		f = nil
		if w.idle.Add(1) > w.maxIdle {
			w.idle.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(w.idleTimeout)
		} else {
			t.Reset(w.idleTimeout)
		}
		select {
		case f = <-w.work:
			w.idle.Add(-1)
		case <-t.C:
			w.idle.Add(-1)
			return
		}
	}
}
