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
// goroutine). The others time out, the longest idle first: one reaper
// goroutine, running while any worker is idle, sends away those idle for
// idleTimeout. A parked worker waits on its channel alone; with a timer
// of its own, every function it ran cost a timer reset and a two-way
// select, a few percent of a gateway's CPU under HTTP/2 load.
//
// The goroutines are the router's (start is its tasks.Go): Run waits for
// them. stop sends the idle ones and the reaper away when the router
// stops; a worker that finishes its function after that leaves too.
type workers struct {
	maxIdle     int
	idleTimeout time.Duration
	start       func(func()) // starts a goroutine

	mu      sync.Mutex
	idle    []*worker // parked workers, the most recent last
	reaping bool      // a reaper runs
	stopped bool
	quit    chan struct{} // closed by stop: the reaper leaves
}

// worker is a parked goroutine's hand-off. Its channel has room for one
// function, and only the caller that took the worker off the idle list
// sends on it, so a send never blocks. A nil function sends it away.
type worker struct {
	work  chan func()
	since time.Time // parked since
}

// maxIdleWorkers and workerIdleTimeout bound the idle workers of a router:
// a few hundred stacks of some tens of KiB for half a minute.
const (
	maxIdleWorkers    = 256
	workerIdleTimeout = 30 * time.Second
)

func newWorkers(maxIdle int, idleTimeout time.Duration, start func(func())) *workers {
	return &workers{maxIdle: maxIdle, idleTimeout: idleTimeout, start: start, quit: make(chan struct{})}
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

// run runs f, then the functions handed to it while it is parked, until
// it finds maxIdle workers idle already, or is sent away (a nil function:
// idle for idleTimeout, or the workers are stopped).
func (w *workers) run(f func()) {
	wk := &worker{work: make(chan func(), 1)}
	for f != nil {
		f()
		if !w.park(wk) {
			return
		}
		f = <-wk.work
	}
}

// park puts wk on the idle list, unless maxIdle workers are there or the
// workers are stopped, and starts the reaper if none runs.
func (w *workers) park(wk *worker) bool {
	w.mu.Lock()
	if w.stopped || len(w.idle) >= w.maxIdle {
		w.mu.Unlock()
		return false
	}
	wk.since = time.Now()
	w.idle = append(w.idle, wk)
	reap := !w.reaping
	w.reaping = true
	w.mu.Unlock()
	if reap {
		w.start(w.reap)
	}
	return true
}

// reap sends away the workers idle for idleTimeout, the longest idle
// (first on the list) first, waking when the next one is due, until none
// is idle or the workers are stopped.
func (w *workers) reap() {
	t := time.NewTimer(w.idleTimeout)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-w.quit:
			return
		}
		w.mu.Lock()
		now := time.Now()
		n := 0
		for n < len(w.idle) && now.Sub(w.idle[n].since) >= w.idleTimeout {
			w.idle[n].work <- nil
			n++
		}
		w.idle = slices.Delete(w.idle, 0, n)
		if len(w.idle) == 0 {
			w.reaping = false
			w.mu.Unlock()
			return
		}
		next := w.idle[0].since.Add(w.idleTimeout).Sub(now)
		w.mu.Unlock()
		t.Reset(next)
	}
}

// stop sends the idle workers away and parks none from now on. Go still
// runs functions, each on a goroutine that leaves after it.
func (w *workers) stop() {
	w.mu.Lock()
	if !w.stopped {
		close(w.quit)
	}
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
