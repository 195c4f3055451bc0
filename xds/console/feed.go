package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/shared/counters"
)

// PollEvery is how often the feed reads the controller's state. A link
// that goes down is on every open page within it and a network round
// trip, well inside the 5 s the console promises.
const PollEvery = 500 * time.Millisecond

// keepAlive is how often an idle event stream gets a comment line, so
// that proxies (kubectl port-forward among them) keep it open.
const keepAlive = 15 * time.Second

// Feed makes snapshots of the controller's state and hands the latest to
// every open page. Run owns its polling goroutine; Handler serves pages.
type Feed struct {
	get     func() Input
	traffic func(context.Context) (Reading, error)
	log     logr.Logger

	mu      sync.Mutex
	latest  []byte        // the latest snapshot, JSON
	rates   []byte        // the latest Traffic, JSON
	changed chan struct{} // closed and replaced when either changes
}

// NewFeed returns a feed of the state get returns, and of the traffic
// that traffic reads (the gateways' counters and the traffic reports they
// hold, GatewayTraffic; nil: none).
func NewFeed(get func() Input, traffic func(context.Context) (Reading, error), log logr.Logger) *Feed {
	return &Feed{get: get, traffic: traffic, log: log, changed: make(chan struct{})}
}

// Run polls the state every PollEvery, and the traffic every
// TrafficEvery, until ctx ends.
func (f *Feed) Run(ctx context.Context) error {
	t := newTracker()
	var last string
	tick := time.NewTicker(PollEvery)
	defer tick.Stop()
	traffic := time.NewTicker(TrafficEvery)
	defer traffic.Stop()
	var sample *counters.Sample
	var sampled time.Time
	for {
		s := t.snapshot(f.get(), time.Now())
		if s.Version != last {
			last = s.Version
			b, err := json.Marshal(s)
			if err != nil {
				return fmt.Errorf("console snapshot: %w", err)
			}
			f.publish(&f.latest, b)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case now := <-traffic.C:
			sample, sampled = f.readTraffic(ctx, s.Site, sample, sampled, now)
		}
	}
}

// readTraffic takes a sample of the counters and publishes the rates
// since prev (taken at then); it returns the sample, or prev when the
// counters could not be read.
func (f *Feed) readTraffic(ctx context.Context, site string, prev *counters.Sample, then, now time.Time) (*counters.Sample, time.Time) {
	if f.traffic == nil {
		return nil, now
	}
	ctx, cancel := context.WithTimeout(ctx, TrafficEvery)
	defer cancel()
	cur, err := f.traffic(ctx)
	if err != nil {
		f.log.V(1).Info("gateway traffic counters unavailable", "error", err.Error())
		return prev, then
	}
	if prev != nil {
		t := rates(site, *prev, cur.Own, now.Sub(then), now)
		t.Remote = remoteRates(site, cur.Remote)
		if b, err := json.Marshal(t); err == nil {
			f.publish(&f.rates, b)
		}
	}
	return &cur.Own, now
}

// publish replaces *slot with b and wakes every open page.
func (f *Feed) publish(slot *[]byte, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*slot = b
	close(f.changed)
	f.changed = make(chan struct{})
}

// current returns the latest snapshot and traffic, and a channel closed
// when either is replaced.
func (f *Feed) current() (snapshot, traffic []byte, changed <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest, f.rates, f.changed
}

// Handler serves the console under prefix (such as /console/): the page's
// files, snapshot (the latest, JSON) and events (Server-Sent Events: a
// "snapshot" event with the latest at once and after every change, and a
// "traffic" event with the rates on this site's links every TrafficEvery
// while they change).
func (f *Feed) Handler(prefix string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(prefix, http.StripPrefix(prefix, http.FileServerFS(Assets())))
	mux.HandleFunc(prefix+"snapshot", func(w http.ResponseWriter, r *http.Request) {
		b, _, _ := f.current()
		if b == nil {
			http.Error(w, "no snapshot yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(b)
	})
	mux.HandleFunc(prefix+"events", f.serveEvents)
	return securityHeaders(mux)
}

// serveEvents streams snapshots to one page until it goes away.
func (f *Feed) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	var sent, sentTraffic []byte
	for {
		b, tr, changed := f.current()
		for _, ev := range []struct {
			name      string
			cur, last *[]byte
		}{{"snapshot", &b, &sent}, {"traffic", &tr, &sentTraffic}} {
			if *ev.cur == nil || string(*ev.cur) == string(*ev.last) {
				continue
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.name, *ev.cur); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			*ev.last = *ev.cur
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

// securityHeaders: the page loads nothing from elsewhere, runs only its
// own script and may not be framed.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}
