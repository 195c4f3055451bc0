package federation

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// ViewWatcher follows the views of every replica of a site's gateway, by
// long-polling GET /view on each replica's admin address, and reports
// their merge ([Merge]) whenever it changes.
//
// A replica that cannot be reached, or whose address is no longer listed,
// keeps its last document in the merge for Grace (a restarting replica
// does not make every remote service flap), then drops out. When no
// replica's document is left, the last merge is kept: the controller
// keeps serving the table it has.
type ViewWatcher struct {
	// Addrs returns the admin addresses (host:port) of the gateway's
	// replicas. It is asked every Resolve and again after every failed
	// poll, so that replicas that come and go are followed; a Linux site
	// returns its one address. When it fails, the replicas followed are
	// kept.
	Addrs func() ([]string, error)
	// OnChange receives every new merged document, from Run's goroutine.
	OnChange func(netview.Document)
	Log      logr.Logger
	// Wait is how long one poll waits for a change; default 20 s.
	Wait time.Duration
	// Resolve is how often Addrs is asked; default 2 s.
	Resolve time.Duration
	// Grace is how long the document of a replica that cannot be reached
	// stays in the merge; default 10 s.
	Grace time.Duration
	// Client makes the polls; default a client of its own whose
	// connections are closed when Run returns.
	Client *http.Client

	// observe, when set (tests), is told of every event Run handled, on
	// Run's goroutine after the merge it led to was reported, and of
	// every poll loop that stopped ("stopped"), on the loop's goroutine.
	observe func(event, addr string)
}

// replica is what the watcher knows of one replica.
type replica struct {
	loop *replicaLoop // nil once the address is no longer listed
	doc  *netview.Document
	lost time.Time // when its document stopped being current; zero while it is
}

// markLost starts the grace of r's document, unless r has none or its
// grace runs already.
func (r *replica) markLost() {
	if r.doc != nil && r.lost.IsZero() {
		r.lost = time.Now()
	}
}

// Run follows the replicas until ctx ends, and returns once every poll
// loop it started has stopped.
func (w *ViewWatcher) Run(ctx context.Context) {
	wait := orDefault(w.Wait, 20*time.Second)
	client, closeIdle := w.pollClient(wait)
	defer closeIdle()
	ctx, cancel := context.WithCancel(ctx)
	wa := newWatch(w, client, wait)
	defer wa.wg.Wait()
	defer cancel()
	defer wa.expire.Stop()

	tick := time.NewTicker(orDefault(w.Resolve, 2*time.Second))
	defer tick.Stop()
	wa.resolve(ctx)
	wa.report()
	for {
		var event, addr string
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			wa.resolve(ctx)
		case <-wa.expire.C:
			event = "expired"
		case ev := <-wa.events:
			var ok bool
			if event, ok = wa.handle(ctx, ev); !ok {
				continue // from a loop that was stopped
			}
			addr = ev.loop.addr
		}
		wa.report()
		if event != "" {
			w.notify(event, addr)
		}
	}
}

// pollClient returns the client the polls are made with, and a function
// to call when Run returns: w.Client, or a client of its own whose idle
// connections that function closes.
func (w *ViewWatcher) pollClient(wait time.Duration) (client *http.Client, closeIdle func()) {
	if w.Client != nil {
		return w.Client, func() {}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &http.Client{Timeout: wait + 10*time.Second, Transport: tr}, tr.CloseIdleConnections
}

// notify tells observe, when set, of an event.
func (w *ViewWatcher) notify(event, addr string) {
	if w.observe != nil {
		w.observe(event, addr)
	}
}

// watch is the state of one Run, used from Run's goroutine. The poll
// loops it starts only read client, wait and events, which never change,
// and are counted in wg: Run waits for them before it returns.
type watch struct {
	w           *ViewWatcher
	client      *http.Client
	wait, grace time.Duration
	wg          sync.WaitGroup
	events      chan replicaEvent
	replicas    map[string]*replica
	// expire fires when the grace of a lost replica's document runs out.
	expire       *time.Timer
	addrsFailing bool   // whether Addrs failed last time
	version      string // of the last merge reported
	keeping      bool   // whether the last merge is kept for want of documents
}

// newWatch returns the state of a Run of w that polls with client, each
// poll waiting up to wait, with its expiry timer stopped.
func newWatch(w *ViewWatcher, client *http.Client, wait time.Duration) *watch {
	expire := time.NewTimer(time.Hour)
	expire.Stop()
	return &watch{
		w:        w,
		client:   client,
		wait:     wait,
		grace:    orDefault(w.Grace, 10*time.Second),
		events:   make(chan replicaEvent),
		replicas: map[string]*replica{},
		expire:   expire,
	}
}

// resolve asks Addrs for the replicas, follows the new ones and stops
// following those no longer listed. When Addrs fails, the replicas
// followed are kept.
func (wa *watch) resolve(ctx context.Context) {
	addrs, err := wa.w.Addrs()
	if err != nil {
		if !wa.addrsFailing {
			wa.w.Log.Info("gateway replicas unknown; following the known ones", "error", err.Error())
			wa.addrsFailing = true
		}
		wa.w.notify("addrsFailed", "")
		return
	}
	if wa.addrsFailing {
		wa.w.Log.Info("gateway replicas known again", "replicas", len(addrs))
		wa.addrsFailing = false
	}
	listed := map[string]bool{}
	for _, addr := range addrs {
		listed[addr] = true
		wa.add(ctx, addr)
	}
	wa.removeUnlisted(listed)
}

// add follows the replica at addr: it starts a poll loop for it, unless
// one runs already. The loop is counted in wg and stops when ctx ends or
// the replica is removed.
func (wa *watch) add(ctx context.Context, addr string) {
	r := wa.replicas[addr]
	if r == nil {
		r = &replica{}
		wa.replicas[addr] = r
	}
	if r.loop != nil {
		return
	}
	loopCtx, loopCancel := context.WithCancel(ctx)
	r.loop = &replicaLoop{addr: addr, cancel: loopCancel}
	l := r.loop
	wa.wg.Go(func() {
		defer wa.w.notify("stopped", addr)
		defer loopCancel()
		wa.w.follow(loopCtx, l, wa.client, wa.wait, wa.events)
	})
	wa.w.Log.Info("following gateway replica", "replica", addr)
	wa.w.notify("added", addr)
}

// removeUnlisted stops following the replicas not listed: it stops their
// poll loops, and their documents stay in the merge for Grace.
func (wa *watch) removeUnlisted(listed map[string]bool) {
	for addr, r := range wa.replicas {
		if listed[addr] || r.loop == nil {
			continue
		}
		r.loop.cancel()
		r.loop = nil
		r.markLost()
		wa.w.Log.Info("no longer following gateway replica", "replica", addr)
		wa.w.notify("removed", addr)
	}
}

// handle records what a poll loop reported: a new document of its
// replica, or a failed poll, after which the replicas are resolved again.
// It returns the event to observe, and false for an event from a loop
// that was stopped.
func (wa *watch) handle(ctx context.Context, ev replicaEvent) (event string, ok bool) {
	r := wa.replicas[ev.loop.addr]
	if r == nil || r.loop != ev.loop {
		return "", false
	}
	if ev.err != nil {
		r.markLost()
		wa.resolve(ctx) // the replica may have gone
		return "failed", true
	}
	doc := ev.doc
	r.doc, r.lost = &doc, time.Time{}
	return "doc", true
}

// report merges the replicas' current documents and hands the merge to
// OnChange when its version changed. When no document is left, the last
// merge is kept.
func (wa *watch) report() {
	docs, next := wa.current(time.Now())
	if !next.IsZero() {
		wa.expire.Reset(time.Until(next))
	}
	if len(docs) == 0 {
		if wa.version != "" && !wa.keeping {
			wa.w.Log.Info("no gateway replica's view; keeping the last one")
			wa.keeping = true
		}
		return
	}
	wa.keeping = false
	if m := Merge(docs); m.Version != wa.version {
		wa.version = m.Version
		wa.w.OnChange(m)
	}
}

// current returns the replicas' documents to merge at now, by replica
// address, and when the next lost one's grace runs out (zero if none).
// It drops the documents whose grace ran out, and forgets the replicas
// that are neither followed nor hold a document.
func (wa *watch) current(now time.Time) (docs []netview.Document, next time.Time) {
	for _, addr := range slices.Sorted(maps.Keys(wa.replicas)) {
		r := wa.replicas[addr]
		if r.doc != nil && !r.lost.IsZero() {
			until := r.lost.Add(wa.grace)
			if !now.Before(until) {
				r.doc = nil
				wa.w.Log.Info("gateway replica's view left out", "replica", addr, "unreachableFor", now.Sub(r.lost).Round(time.Millisecond).String())
				wa.w.notify("dropped", addr)
			} else if next.IsZero() || until.Before(next) {
				next = until
			}
		}
		if r.doc == nil {
			if r.loop == nil {
				delete(wa.replicas, addr)
			}
			continue
		}
		docs = append(docs, *r.doc)
	}
	return docs, next
}

// orDefault returns d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
