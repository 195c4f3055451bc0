package router

import (
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	tu "github.com/skiff-io/skiff/test/testutil"
)

func TestWorkersReuseAndBound(t *testing.T) {
	w := newWorkers(4, 200*time.Millisecond, func(f func()) { go f() })
	base := runtime.NumGoroutine()

	// One at a time: the first worker runs every function.
	var mu sync.Mutex
	seen := map[uint64]bool{}
	for range 50 {
		done := make(chan struct{})
		w.Go(func() {
			mu.Lock()
			seen[goid()] = true
			mu.Unlock()
			close(done)
		})
		<-done
		waitIdle(t, w, 1)
	}
	if len(seen) != 1 {
		t.Errorf("50 sequential functions ran on %d goroutines, want 1", len(seen))
	}

	// A burst of 20 at once: 20 workers, of which at most 4 stay idle.
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(20)
	for range 20 {
		w.Go(func() { defer wg.Done(); <-release })
	}
	close(release)
	wg.Wait()
	// The four, and the reaper that sends them away once idle too long.
	tu.Until(t, 5*time.Second, "idle workers bounded", func() bool { return w.idleCount() == 4 && runtime.NumGoroutine() <= base+4+1 })

	// Idle workers leave after the timeout, and the reaper with the last.
	tu.Until(t, 5*time.Second, "idle workers gone", func() bool { return w.idleCount() == 0 && runtime.NumGoroutine() <= base })
}

// TestWorkersStop: stop sends the idle workers and their reaper away at
// once (their timeout is an hour), and a function Go runs after it runs
// on a goroutine that leaves after it.
func TestWorkersStop(t *testing.T) {
	var wg sync.WaitGroup
	w := newWorkers(4, time.Hour, wg.Go)
	release := make(chan struct{})
	ran := make(chan struct{}, 3)
	for range 3 {
		w.Go(func() { <-release; ran <- struct{}{} })
	}
	close(release)
	for range 3 {
		<-ran
	}
	waitIdle(t, w, 3)
	w.stop()
	w.Go(func() { ran <- struct{}{} })
	<-ran
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("workers still running 5 s after stop")
	}
	if n := w.idleCount(); n != 0 {
		t.Errorf("%d workers idle after stop, want 0", n)
	}
}

func waitIdle(t *testing.T, w *workers, n int) {
	t.Helper()
	tu.Until(t, 5*time.Second, "worker idle", func() bool { return w.idleCount() == n })
}

// goid returns the current goroutine's ID, from its stack trace header.
func goid() uint64 {
	var buf [32]byte
	b := buf[:runtime.Stack(buf[:], false)]
	var id uint64
	for _, c := range b[len("goroutine "):] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

// TestWorkersReapInTurn: the reaper sends each worker away when its own
// idle time is up; a worker parked later stays until its own.
func TestWorkersReapInTurn(t *testing.T) {
	const timeout, stagger = time.Second, 500 * time.Millisecond
	w := newWorkers(4, timeout, func(f func()) { go f() })
	first, second := make(chan struct{}), make(chan struct{})
	w.Go(func() { <-first })
	w.Go(func() { <-second })
	close(first)
	waitIdle(t, w, 1)
	time.Sleep(stagger) // the first has been idle a while when the second parks
	close(second)
	waitIdle(t, w, 2)
	w.mu.Lock()
	later := w.idle[1]
	w.mu.Unlock()
	waitIdle(t, w, 1)
	w.mu.Lock()
	idle := slices.Clone(w.idle)
	w.mu.Unlock()
	if len(idle) != 1 {
		t.Fatalf("%d workers idle, want 1 (the later one's time is not up for %s)", len(idle), stagger)
	}
	if idle[0] != later {
		t.Error("the reaper sent away the worker parked last and kept the one idle longer")
	}
	waitIdle(t, w, 0)
}
