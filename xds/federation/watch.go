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

// Run follows the replicas until ctx ends, and returns once every poll
// loop it started has stopped.
func (w *ViewWatcher) Run(ctx context.Context) {
	wait := orDefault(w.Wait, 20*time.Second)
	resolveEvery := orDefault(w.Resolve, 2*time.Second)
	grace := orDefault(w.Grace, 10*time.Second)
	client := w.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		defer tr.CloseIdleConnections()
		client = &http.Client{Timeout: wait + 10*time.Second, Transport: tr}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	events := make(chan replicaEvent)
	replicas := map[string]*replica{}
	observe := func(event, addr string) {
		if w.observe != nil {
			w.observe(event, addr)
		}
	}
	addrsFailing := false
	resolve := func() {
		addrs, err := w.Addrs()
		if err != nil {
			if !addrsFailing {
				w.Log.Info("gateway replicas unknown; following the known ones", "error", err.Error())
				addrsFailing = true
			}
			observe("addrsFailed", "")
			return
		}
		if addrsFailing {
			w.Log.Info("gateway replicas known again", "replicas", len(addrs))
			addrsFailing = false
		}
		listed := map[string]bool{}
		for _, addr := range addrs {
			listed[addr] = true
			r := replicas[addr]
			if r == nil {
				r = &replica{}
				replicas[addr] = r
			}
			if r.loop != nil {
				continue
			}
			loopCtx, loopCancel := context.WithCancel(ctx)
			r.loop = &replicaLoop{addr: addr, cancel: loopCancel}
			l := r.loop
			wg.Go(func() {
				defer observe("stopped", addr)
				defer loopCancel()
				w.follow(loopCtx, l, client, wait, events)
			})
			w.Log.Info("following gateway replica", "replica", addr)
			observe("added", addr)
		}
		for addr, r := range replicas {
			if listed[addr] || r.loop == nil {
				continue
			}
			r.loop.cancel()
			r.loop = nil
			if r.doc != nil && r.lost.IsZero() {
				r.lost = time.Now()
			}
			w.Log.Info("no longer following gateway replica", "replica", addr)
			observe("removed", addr)
		}
	}

	expire := time.NewTimer(time.Hour)
	expire.Stop()
	defer expire.Stop()
	var version string // of the last merge reported
	keeping := false
	report := func() {
		now := time.Now()
		var next time.Time
		var docs []netview.Document
		for _, addr := range slices.Sorted(maps.Keys(replicas)) {
			r := replicas[addr]
			if r.doc != nil && !r.lost.IsZero() {
				until := r.lost.Add(grace)
				if !now.Before(until) {
					r.doc = nil
					w.Log.Info("gateway replica's view left out", "replica", addr, "unreachableFor", now.Sub(r.lost).Round(time.Millisecond).String())
					observe("dropped", addr)
				} else if next.IsZero() || until.Before(next) {
					next = until
				}
			}
			if r.doc == nil {
				if r.loop == nil {
					delete(replicas, addr)
				}
				continue
			}
			docs = append(docs, *r.doc)
		}
		if !next.IsZero() {
			expire.Reset(time.Until(next))
		}
		if len(docs) == 0 {
			if version != "" && !keeping {
				w.Log.Info("no gateway replica's view; keeping the last one")
				keeping = true
			}
			return
		}
		keeping = false
		if m := Merge(docs); m.Version != version {
			version = m.Version
			w.OnChange(m)
		}
	}

	tick := time.NewTicker(resolveEvery)
	defer tick.Stop()
	resolve()
	report()
	for {
		var event, addr string
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			resolve()
		case <-expire.C:
			event = "expired"
		case ev := <-events:
			r := replicas[ev.loop.addr]
			if r == nil || r.loop != ev.loop {
				continue // from a loop that was stopped
			}
			addr = ev.loop.addr
			if ev.err != nil {
				if r.doc != nil && r.lost.IsZero() {
					r.lost = time.Now()
				}
				event = "failed"
				resolve() // the replica may have gone
				break
			}
			doc := ev.doc
			r.doc, r.lost = &doc, time.Time{}
			event = "doc"
		}
		report()
		if event != "" {
			observe(event, addr)
		}
	}
}

// orDefault returns d, or def when d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
