package router

import (
	"runtime"
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
	tu.Until(t, 5*time.Second, "idle workers bounded", func() bool { return w.idleCount() == 4 && runtime.NumGoroutine() <= base+4 })

	// Idle workers leave after the timeout.
	tu.Until(t, 5*time.Second, "idle workers gone", func() bool { return w.idleCount() == 0 && runtime.NumGoroutine() <= base })
}

// TestWorkersStop: stop sends the idle workers away at once (their
// timeout is an hour), and a function Go runs after it runs on a
// goroutine that leaves after it.
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
