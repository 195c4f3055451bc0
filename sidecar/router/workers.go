package router

import (
	"slices"
	"sync"
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
//
// An idle worker is parked on a list with its own hand-off channel: Go
// takes the one parked last off the list and hands it the function, so a
// worker counts as idle exactly while Go can give it work (with one
// channel shared by every worker, a worker counted itself idle before it
// waited on the channel, and Go, finding no receiver yet, started another
// goroutine). The others time out, the longest idle first.
//
// The goroutines are the router's (start is its tasks.Go): Run waits for
// them. stop sends the idle ones away when the router stops; a worker
// that finishes its function after that leaves too.
type workers struct {
	maxIdle     int
	idleTimeout time.Duration
	start       func(func()) // starts a goroutine

	mu      sync.Mutex
	idle    []*worker // parked workers, the most recent last
	stopped bool
}

// worker is a parked goroutine's hand-off. Its channel has room for one
// function, and only the caller that took the worker off the idle list
// sends on it, so a send never blocks.
type worker struct{ work chan func() }

// maxIdleWorkers and workerIdleTimeout bound the idle workers of a router:
// a few hundred stacks of some tens of KiB for half a minute.
const (
	maxIdleWorkers    = 256
	workerIdleTimeout = 30 * time.Second
)

func newWorkers(maxIdle int, idleTimeout time.Duration, start func(func())) *workers {
	return &workers{maxIdle: maxIdle, idleTimeout: idleTimeout, start: start}
}

// Go runs f on an idle worker, or on a new one if none is idle.
func (w *workers) Go(f func()) {
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		wk := w.idle[n-1]
		w.idle[n-1] = nil
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		wk.work <- f
		return
	}
	w.mu.Unlock()
	w.start(func() { w.run(f) })
}

// run runs f, then the functions handed to it while it is parked, until it
// has been idle for idleTimeout, finds maxIdle workers idle already, or
// the workers are stopped (a nil function).
func (w *workers) run(f func()) {
	wk := &worker{work: make(chan func(), 1)}
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for f != nil {
		f()
		f = nil
		if !w.park(wk) {
			return
		}
		if t == nil {
			t = time.NewTimer(w.idleTimeout)
		} else {
			t.Reset(w.idleTimeout)
		}
		select {
		case f = <-wk.work:
		case <-t.C:
			if w.unpark(wk) {
				return
			}
			// Go took this worker off the list as the timer fired: its
			// function is on the way.
			f = <-wk.work
		}
	}
}

// park puts wk on the idle list, unless maxIdle workers are there or the
// workers are stopped.
func (w *workers) park(wk *worker) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || len(w.idle) >= w.maxIdle {
		return false
	}
	w.idle = append(w.idle, wk)
	return true
}

// unpark takes wk off the idle list; false if Go took it first.
func (w *workers) unpark(wk *worker) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := slices.Index(w.idle, wk)
	if i < 0 {
		return false
	}
	w.idle = slices.Delete(w.idle, i, i+1)
	return true
}

// stop sends the idle workers away and parks none from now on. Go still
// runs functions, each on a goroutine that leaves after it.
func (w *workers) stop() {
	w.mu.Lock()
	w.stopped = true
	idle := w.idle
	w.idle = nil
	w.mu.Unlock()
	for _, wk := range idle {
		wk.work <- nil
	}
}

// idleCount returns the number of parked workers.
func (w *workers) idleCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.idle)
}
