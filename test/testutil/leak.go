package testutil

import (
	"context"
	"fmt"
	"regexp"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Goroutine ownership checks, for tests that start a component, stop it
// and require that it left nothing running: every goroutine the component
// starts inherits a pprof label, so its goroutines are told from the
// test's and the process's others' (an apiserver, a shared injector).

// RunOwned runs f in the background until the returned stop, which ends
// f's context, waits for f to return and fails the test with the
// goroutines f had started still running at that moment (RunLabelled):
// f did not wait for them. goleak, or a later Owned, finds what is left
// for good; this finds what was only not waited for.
func RunOwned(t *testing.T, name string, f func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		running []string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		running, err := RunLabelled(ctx, name, f)
		done <- result{running, err}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case r := <-done:
				if r.err != nil {
					t.Errorf("%s: %v", name, r.err)
				}
				for _, g := range r.running {
					t.Errorf("%s returned with a goroutine it started still running:\n%s", name, g)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("%s still running 30 s after its context ended", name)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// RunLabelled runs f with the pprof label owner=name, which every
// goroutine f starts inherits, and every one those start. It returns the
// goroutines of the label still running when f returned (but those
// NotStopped excuses), and f's error.
func RunLabelled(ctx context.Context, name string, f func(context.Context) error) (running []string, err error) {
	pprof.Do(ctx, pprof.Labels("owner", name), func(ctx context.Context) {
		err = f(ctx)
		running = Owned(name, NotStopped)
	})
	return running, err
}

// Owned returns the goroutines labelled owner=name, as pprof prints them
// (identical ones once, with their number), but its caller and those
// excused (given their functions, innermost first, package runtime left
// out).
func Owned(name string, excused func(funcs []string) bool) []string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	var out []string
	for _, g := range strings.Split(b.String(), "\n\n") {
		if !strings.Contains(g, fmt.Sprintf("# labels: {%q:%q}", "owner", name)) || strings.Contains(g, "testutil.Owned+") {
			continue
		}
		var funcs []string
		for _, l := range strings.Split(g, "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == "#" && strings.HasPrefix(f[1], "0x") && !strings.HasPrefix(f[2], "runtime.") {
				fn, _, _ := strings.Cut(f[2], "+")
				funcs = append(funcs, fn)
			}
		}
		if len(funcs) > 0 && !excused(funcs) { // none: exiting
			out = append(out, g)
		}
	}
	return out
}

// NoneLeft fails the test with the goroutines labelled owner=name (but
// those excused) still there after up to bound: the second look, for
// what a component's Run left running for good.
func NoneLeft(t *testing.T, name string, bound time.Duration, excused func(funcs []string) bool) {
	t.Helper()
	left := Owned(name, excused)
	for deadline := time.Now().Add(bound); len(left) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		left = Owned(name, excused)
	}
	for _, g := range left {
		t.Errorf("a goroutine %s started is left %s after it returned:\n%s", name, bound, g)
	}
}

// NotStopped excuses goroutines that may be seen running when a
// component's Run returns, by their functions (innermost first):
//   - one that is exiting: only a function literal's frame is left, as
//     in the closure of a Go method (an errgroup's, a WaitGroup's, the
//     router's tasks') once its function has returned and the Done that
//     Wait returned on is done, or a goroutine that has signalled that it
//     is done (closed or sent on a channel) and is returning;
//   - a library's, none of whose functions is skiff's: grpc's,
//     controller-runtime's and client-go's shutdown, the process's signal
//     loop. Their libraries do not join them all;
//   - an HTTP server's connection: Shutdown returns once every connection
//     is closed, which its goroutine may not have finished doing.
//
// A second look (goleak, or Owned a few seconds later) finds any of these
// that does not end.
func NotStopped(funcs []string) bool {
	skiff := func(f string) bool { return strings.HasPrefix(f, "github.com/skiff-io/skiff/") }
	return (len(funcs) == 1 && closure.MatchString(funcs[0])) ||
		!slices.ContainsFunc(funcs, skiff) ||
		slices.Contains(funcs, "net/http.(*conn).serve")
}

// closure matches the name of a function literal's frame.
var closure = regexp.MustCompile(`\.func\d+(\.\d+)*$`)
