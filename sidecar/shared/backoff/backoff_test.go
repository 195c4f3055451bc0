package backoff

import (
	"context"
	"testing"
	"time"
)

// Waits double from min to max, each drawn from [w/2, w]; Reset starts
// over.
func TestNext(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	nominal := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for round := range 2 {
		for i, n := range nominal {
			w := n * time.Millisecond
			for range 50 {
				// Each draw advances the nominal wait, so test one draw
				// per step and others on fresh copies.
				c := *b
				if got := c.Next(); got < w/2 || got > w {
					t.Fatalf("round %d, attempt %d: wait %v outside [%v, %v]", round, i, got, w/2, w)
				}
			}
			b.Next()
		}
		b.Reset()
	}
}

func TestMaxBelowMin(t *testing.T) {
	b := New(time.Second, time.Millisecond)
	for range 5 {
		if got := b.Next(); got < 500*time.Millisecond || got > time.Second {
			t.Fatalf("wait %v, want within [0.5s, 1s]", got)
		}
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep with a live context did not wait it out")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep with an ended context reported a full wait")
	}
}
