package router

import (
	"bytes"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	tu "github.com/skiff-io/skiff/test/testutil"
)

// TestRoutersLeaveNoGoroutine: east and west, two gateways linked over
// mutual TLS (west dials east with a token), and a sidecar of east carry
// streams from the sidecar's outbound port through east to west's
// backend. One is still open when they stop: east by a drain with no
// timeout, west and the sidecar by the end of their Run's context. Once
// every Run has returned, no goroutine that started during the test is
// left: Run returns only after everything it started has stopped.
func TestRoutersLeaveNoGoroutine(t *testing.T) {
	checkNoGoroutineLeft(t) // first, so that its cleanup runs after the routers' ends

	eastDir := t.TempDir()
	east := startDrainNode(t, drainSiteConfig{site: "east", router: "east-gw-0", dir: eastDir, linkAccess: true})
	west := startDrainNode(t, drainSiteConfig{site: "west", router: "west-gw-0",
		links: []LinkSpec{linkSpecTo(t, east, eastDir, east.r.LinkAddr().String())},
		svc:   Services{Connectors: []Connector{echoService(t, "west")}}})
	sidecar := startSiblingSidecar(t, east, eastDir)
	tu.Eventually(t, 15*time.Second, "the sidecar reaches west's backend through east", reachEcho(sidecar, "west"))

	e, name, err := dialEcho(sidecar)
	if err != nil || name != "west" {
		t.Fatalf("open a stream: %q, %v", name, err)
	}
	defer e.c.Close()
	if err := e.roundTrip("before the stop"); err != nil {
		t.Fatal(err)
	}
	east.r.Drain()
	if st := east.waitStopped(t); st.reset != 1 {
		t.Errorf("east's drain: %+v, want the open stream reset", st)
	}
	if !west.running() {
		t.Error("west stopped with east")
	}
	// West and the sidecar stop in the cleanups, which end their Run's
	// context and wait for Run to return.
}

// checkNoGoroutineLeft makes t fail if a goroutine that started after
// this call is still there once the test and its cleanups are over: this
// one, registered before the others, runs last. A goroutine whose owner
// has returned may take a moment to go; the check waits up to 5 s.
func checkNoGoroutineLeft(t *testing.T) {
	t.Helper()
	before := goroutineStacks()
	t.Cleanup(func() {
		var left []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			left = left[:0]
			for id, stack := range goroutineStacks() {
				if _, ok := before[id]; !ok && !harnessGoroutine(stack) {
					left = append(left, stack)
				}
			}
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(left) > 0 {
			slices.Sort(left)
			t.Errorf("%d goroutines left 5 s after the routers stopped:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
	})
}

// goroutineStacks returns the stack of every goroutine but the caller's,
// by goroutine ID (IDs are not reused).
func goroutineStacks() map[uint64]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[uint64]string{}
	for i, g := range bytes.Split(buf, []byte("\n\n")) {
		var id uint64
		if _, err := fmt.Sscanf(string(g), "goroutine %d ", &id); err != nil || i == 0 {
			continue // the first is the caller's
		}
		out[id] = string(g)
	}
	return out
}

// harnessGoroutine reports whether a goroutine is the test harness's or
// the runtime's, not the code under test's.
func harnessGoroutine(stack string) bool {
	for _, s := range []string{"testing.(*M).", "testing.tRunner", "testing.runTests", "os/signal.", "runtime.ensureSigM"} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}
