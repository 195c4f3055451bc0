package logging

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock is the Limiter's clock in tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter(burst int, every time.Duration) (*Limiter, *fakeClock) {
	c := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := NewLimiter(burst, every)
	l.now = c.now
	return l, c
}

// result is one Allow's answer.
type result struct {
	OK         bool
	Suppressed int
}

func TestLimiterAllow(t *testing.T) {
	type step struct {
		advance time.Duration
		key     string
		want    result
	}
	allowed := func(suppressed int) result { return result{true, suppressed} }
	dropped := result{}
	for _, tc := range []struct {
		name  string
		burst int
		steps []step
	}{
		{"burst then suppressed, counted on the next interval's first line", 2, []step{
			{0, "a", allowed(0)},
			{time.Millisecond, "a", allowed(0)},
			{time.Millisecond, "a", dropped},
			{time.Millisecond, "a", dropped},
			{time.Millisecond, "a", dropped},
			{time.Second, "a", allowed(3)},
			{0, "a", allowed(0)},
			{0, "a", dropped},
		}},
		{"keys are counted apart", 1, []step{
			{0, "a", allowed(0)},
			{0, "b", allowed(0)},
			{0, "a", dropped},
			{0, "a", dropped},
			{0, "b", dropped},
			{time.Second, "b", allowed(1)},
			{0, "a", allowed(2)},
		}},
		{"the interval starts at the first line, not on a grid", 1, []step{
			{0, "a", allowed(0)},
			{999 * time.Millisecond, "a", dropped},
			{time.Millisecond, "a", allowed(1)},
			{999 * time.Millisecond, "a", dropped},
			{2 * time.Millisecond, "a", allowed(1)},
		}},
		{"a quiet key starts afresh", 3, []step{
			{0, "a", allowed(0)},
			{time.Hour, "a", allowed(0)},
			{0, "a", allowed(0)},
			{0, "a", allowed(0)},
			{0, "a", dropped},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, clock := newTestLimiter(tc.burst, time.Second)
			var got, want []result
			for _, s := range tc.steps {
				clock.advance(s.advance)
				ok, n := l.Allow(s.key)
				got = append(got, result{ok, n})
				want = append(want, s.want)
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("Allow results (-got +want):\n%s", diff)
			}
		})
	}
}

// TestLimiterFlood: a flood of a million lines in ten seconds logs burst
// lines per interval and the count of the rest, nothing lost.
func TestLimiterFlood(t *testing.T) {
	l, clock := newTestLimiter(5, time.Second)
	logged, suppressed := 0, 0
	for range 1_000_000 {
		clock.advance(10 * time.Microsecond)
		if ok, n := l.Allow("link connection refused"); ok {
			logged++
			suppressed += n
		}
	}
	clock.advance(time.Second)
	l.Flush(func(_ string, n int) { suppressed += n })
	if logged > 5*10 {
		t.Errorf("%d lines logged in 10 s, want at most 50", logged)
	}
	if logged+suppressed != 1_000_000 {
		t.Errorf("logged %d + suppressed %d, want 1000000 in all", logged, suppressed)
	}
}

func TestLimiterFlush(t *testing.T) {
	l, clock := newTestLimiter(1, time.Second)
	l.Allow("a")
	l.Allow("a")
	l.Allow("a")
	l.Allow("b")
	l.Allow("c")
	l.Allow("c")
	flushed := func() map[string]int {
		m := map[string]int{}
		l.Flush(func(key string, n int) { m[key] = n })
		return m
	}
	if got := flushed(); len(got) != 0 {
		t.Errorf("Flush inside the interval reported %v, want nothing", got)
	}
	clock.advance(time.Second)
	if diff := cmp.Diff(flushed(), map[string]int{"a": 2, "c": 1}); diff != "" {
		t.Errorf("Flush after the interval (-got +want):\n%s", diff)
	}
	// Reported once: neither a second Flush nor the next line repeats it.
	if got := flushed(); len(got) != 0 {
		t.Errorf("second Flush reported %v, want nothing", got)
	}
	if ok, n := l.Allow("a"); !ok || n != 0 {
		t.Errorf("Allow after Flush = %v, %d; want true, 0", ok, n)
	}
	if len(l.keys) != 1 {
		t.Errorf("%d keys kept after Flush and one line, want 1", len(l.keys))
	}
}

func TestLimiterNil(t *testing.T) {
	var l *Limiter
	for range 3 {
		if ok, n := l.Allow("a"); !ok || n != 0 {
			t.Fatalf("nil Limiter: Allow = %v, %d; want true, 0", ok, n)
		}
	}
	l.Flush(func(string, int) { t.Error("nil Limiter flushed something") })
}

func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter(10, time.Hour)
	var mu sync.Mutex
	logged := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if ok, _ := l.Allow("a"); ok {
					mu.Lock()
					logged++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if logged != 10 {
		t.Errorf("%d lines allowed by 8 goroutines, want the burst of 10", logged)
	}
}

func TestNewLimiterPanics(t *testing.T) {
	for _, tc := range []struct {
		burst int
		every time.Duration
	}{{0, time.Second}, {1, 0}, {-1, -time.Second}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewLimiter(%d, %v) did not panic", tc.burst, tc.every)
				}
			}()
			NewLimiter(tc.burst, tc.every)
		}()
	}
}
