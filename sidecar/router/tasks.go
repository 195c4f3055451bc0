package router

import (
	"sync"
	"sync/atomic"
)

// tasks owns every goroutine a Router starts: Run returns only once all
// of them have returned (wait). Run and the router's own goroutines start
// theirs with Go; they hold the count above zero while they do, so a
// goroutine may start another while Run waits. What starts one from
// outside (SetLinks, SetServices, SetCA, a timer) uses tryGo or run, which
// refuse once Run waits: the router is stopping, and nothing new is
// wanted.
type tasks struct {
	wg      sync.WaitGroup
	running atomic.Int64 // for the log of a slow stop

	mu      sync.Mutex
	stopped bool
}

// Go runs f on a new goroutine of the router. Only Run and the router's
// own goroutines call it.
func (t *tasks) Go(f func()) {
	t.add()
	go func() {
		defer t.done()
		f()
	}()
}

// tryGo runs f on a new goroutine of the router, unless Run waits for
// them already; it reports whether f runs.
func (t *tasks) tryGo(f func()) bool {
	if !t.enter() {
		return false
	}
	go func() {
		defer t.done()
		f()
	}()
	return true
}

// run runs f on the calling goroutine (a timer's) as a task of the
// router, unless Run waits for them already.
func (t *tasks) run(f func()) {
	if !t.enter() {
		return
	}
	defer t.done()
	f()
}

func (t *tasks) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.add()
	return true
}

func (t *tasks) add() {
	t.wg.Add(1)
	t.running.Add(1)
}

func (t *tasks) done() {
	t.running.Add(-1)
	t.wg.Done()
}

// wait refuses new tasks from outside and waits for every task.
func (t *tasks) wait() {
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
	t.wg.Wait()
}
