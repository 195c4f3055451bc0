package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/test/testutil"
)

// fakeReplica serves a gateway replica's GET /view, long-polling as the
// gateway does: with ?since=V it answers when the version is not V, or
// after ?wait.
type fakeReplica struct {
	srv      *httptest.Server
	mu       sync.Mutex
	doc      netview.Document
	changed  chan struct{} // closed on the next set
	inflight atomic.Int32
	down     chan struct{} // closed by stop
	stopOnce sync.Once
}

func newFakeReplica(t *testing.T, doc netview.Document) *fakeReplica {
	f := &fakeReplica{doc: doc, changed: make(chan struct{}), down: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.stop)
	return f
}

func (f *fakeReplica) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/view" {
		http.NotFound(w, r)
		return
	}
	f.inflight.Add(1)
	defer f.inflight.Add(-1)
	wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	doc, changed := f.doc, f.changed
	f.mu.Unlock()
	if since := r.URL.Query().Get("since"); since != "" && since == doc.Version {
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-f.down:
			return
		case <-time.After(wait):
		}
		f.mu.Lock()
		doc = f.doc
		f.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc)
}

func (f *fakeReplica) set(doc netview.Document) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.doc = doc
	close(f.changed)
	f.changed = make(chan struct{})
}

// stop makes the replica unreachable: new polls are refused, open ones
// cut. The listener closes first: the client's transport retries a GET
// whose connection was closed, and that retry must not reach a handler.
func (f *fakeReplica) stop() {
	f.stopOnce.Do(func() {
		f.srv.Listener.Close()
		close(f.down)
		f.srv.CloseClientConnections()
		f.srv.Close()
	})
}

func (f *fakeReplica) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// recorder keeps what a watcher reported: merged documents and events.
type recorder struct {
	mu     sync.Mutex
	docs   []netview.Document
	events []string // "event addr"
}

func (r *recorder) onChange(d netview.Document) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.docs = append(r.docs, d)
}

func (r *recorder) observe(event, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event+" "+addr)
}

func (r *recorder) last() (netview.Document, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.docs) == 0 {
		return netview.Document{}, 0
	}
	return r.docs[len(r.docs)-1], len(r.docs)
}

func (r *recorder) seen(event, addr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.events, event+" "+addr)
}

// waitMerged waits until the last merge reported is the merge of docs.
func (r *recorder) waitMerged(t *testing.T, what string, docs ...netview.Document) {
	t.Helper()
	want := Merge(docs)
	testutil.Eventually(t, 10*time.Second, what, func() error {
		got, _ := r.last()
		if got.Version != want.Version {
			return fmt.Errorf("last merge (-got +want):\n%s", cmp.Diff(got, want))
		}
		return nil
	})
}

func (r *recorder) waitEvent(t *testing.T, event, addr string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "event "+event+" "+addr, func() error {
		if !r.seen(event, addr) {
			return errors.New("not yet")
		}
		return nil
	})
}

// addrList is what the test's Addrs returns; tests change it.
type addrList struct {
	mu    sync.Mutex
	addrs []string
	err   error
}

func (a *addrList) set(err error, addrs ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.addrs, a.err = addrs, err
}

func (a *addrList) get() ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.addrs), a.err
}

// startWatcher runs a watcher of addrs until the returned stop is called
// (or the test ends); stop returns once Run has.
func startWatcher(t *testing.T, addrs *addrList, grace time.Duration) (*recorder, func()) {
	t.Helper()
	return startWatcherResolving(t, addrs, grace, 20*time.Millisecond)
}

func startWatcherResolving(t *testing.T, addrs *addrList, grace, resolve time.Duration) (*recorder, func()) {
	t.Helper()
	rec := &recorder{}
	w := &ViewWatcher{Addrs: addrs.get, OnChange: rec.onChange, Log: testr.New(t),
		Wait: time.Minute, Resolve: resolve, Grace: grace, observe: rec.observe}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return rec, stop
}

// noLeak fails unless the goroutines go back to at most base.
func noLeak(t *testing.T, base int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "goroutines back to where they were", func() error {
		if n := runtime.NumGoroutine(); n > base {
			buf := make([]byte, 1<<16)
			return fmt.Errorf("%d goroutines, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}

// Two replicas with different partial views: the merge of both; a
// replica's change reaches the merge; a replica that stops serving drops
// out after the grace while the other's view stays.
func TestWatcherFollowsEveryReplica(t *testing.T) {
	base := runtime.NumGoroutine()
	a, b := newFakeReplica(t, r1), newFakeReplica(t, r2)
	addrs := &addrList{}
	addrs.set(nil, a.addr(), b.addr())
	rec, stop := startWatcher(t, addrs, 200*time.Millisecond)

	rec.waitMerged(t, "merge of both replicas", r1, r2)

	r2b := r2
	r2b.Version = "r2b"
	r2b.Addresses = map[string][]netview.Target{"db:5432": {{Site: "south", Endpoints: 5, Cost: 9}}}
	b.set(r2b)
	rec.waitMerged(t, "merge with replica b's change", r1, r2b)

	b.stop()
	rec.waitEvent(t, "dropped", b.addr())
	rec.waitMerged(t, "replica a's view alone", r1)

	stop()
	a.stop()
	noLeak(t, base)
}

// A replica that cannot be reached keeps its view in the merge during the
// grace; when no replica is left the last merge is kept, never an empty
// one.
func TestWatcherGrace(t *testing.T) {
	t.Run("kept during the grace", func(t *testing.T) {
		a, b := newFakeReplica(t, r1), newFakeReplica(t, r2)
		addrs := &addrList{}
		addrs.set(nil, a.addr(), b.addr())
		rec, _ := startWatcher(t, addrs, time.Hour)
		rec.waitMerged(t, "merge of both replicas", r1, r2)
		_, n := rec.last()

		b.stop()
		rec.waitEvent(t, "failed", b.addr())
		a.stop()
		rec.waitEvent(t, "failed", a.addr())
		// and gone from the list: still kept for the grace
		addrs.set(nil)
		rec.waitEvent(t, "removed", a.addr())
		rec.waitEvent(t, "removed", b.addr())
		if got, m := rec.last(); m != n || got.Version != Merge([]netview.Document{r1, r2}).Version {
			t.Errorf("the merge changed during the grace: %d reports, was %d; last %+v", m, n, got)
		}
	})
	t.Run("none left: the last merge is kept", func(t *testing.T) {
		a := newFakeReplica(t, r1)
		addrs := &addrList{}
		addrs.set(nil, a.addr())
		rec, _ := startWatcher(t, addrs, 50*time.Millisecond)
		rec.waitMerged(t, "replica a's view", r1)

		a.stop()
		rec.waitEvent(t, "dropped", a.addr())
		got, n := rec.last()
		if n != 1 || got.Version != Merge([]netview.Document{r1}).Version {
			t.Errorf("after the only replica dropped out: %d reports, last %+v; want the one merge of r1", n, got)
		}
	})
}

// The replicas listed change between polls: a new one joins the merge, a
// removed one's loop stops and its view leaves after the grace; while
// Addrs fails, the replicas followed are kept.
func TestWatcherAddressesChange(t *testing.T) {
	base := runtime.NumGoroutine()
	a, b := newFakeReplica(t, r1), newFakeReplica(t, r2)
	addrs := &addrList{}
	addrs.set(nil, a.addr())
	rec, stop := startWatcher(t, addrs, 100*time.Millisecond)
	rec.waitMerged(t, "replica a's view", r1)

	addrs.set(nil, a.addr(), b.addr())
	rec.waitEvent(t, "added", b.addr())
	rec.waitMerged(t, "merge of both replicas", r1, r2)

	addrs.set(nil, b.addr())
	rec.waitEvent(t, "removed", a.addr())
	rec.waitEvent(t, "dropped", a.addr())
	rec.waitMerged(t, "replica b's view alone", r2)
	rec.waitEvent(t, "stopped", a.addr())
	testutil.Eventually(t, 10*time.Second, "replica a's poll cancelled", func() error {
		if n := a.inflight.Load(); n != 0 {
			return fmt.Errorf("%d polls of a in flight", n)
		}
		return nil
	})

	// Addrs fails: b is still followed, and its changes still arrive.
	addrs.set(errors.New("apiserver away"))
	rec.waitEvent(t, "addrsFailed", "")
	r2b := r2
	r2b.Version = "r2b"
	r2b.Routing = map[string]string{"echo:9000": "balanced"}
	b.set(r2b)
	rec.waitMerged(t, "replica b's change while Addrs fails", r2b)
	if rec.seen("removed", b.addr()) {
		t.Error("replica b was dropped while Addrs failed")
	}

	// a comes back.
	addrs.set(nil, a.addr(), b.addr())
	rec.waitMerged(t, "merge of both replicas again", r1, r2b)

	stop()
	a.stop()
	b.stop()
	noLeak(t, base)
}

// A failed poll asks Addrs again at once: the replica that went away is
// replaced without waiting for the next periodic resolve (here an hour
// away).
func TestWatcherResolvesAfterFailure(t *testing.T) {
	a, b := newFakeReplica(t, r1), newFakeReplica(t, r2)
	addrs := &addrList{}
	addrs.set(nil, a.addr())
	rec, _ := startWatcherResolving(t, addrs, 50*time.Millisecond, time.Hour)
	rec.waitMerged(t, "replica a's view", r1)

	addrs.set(nil, b.addr())
	a.stop()
	rec.waitEvent(t, "added", b.addr())
	rec.waitMerged(t, "replica b's view, a's gone", r2)
}
