package server

import (
	"context"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// run pushes the latest table after each burst of updates, until ctx
// ends. A burst ends after Debounce without an Update, or MaxDelay after
// its first Update, whichever comes first.
func (s *Server) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var first time.Time // first update of the pending burst; zero when none
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.updated:
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			wait := min(s.opts.Debounce, first.Add(s.opts.MaxDelay).Sub(now))
			timer.Reset(max(wait, 0))
		case <-timer.C:
			first = time.Time{}
			s.push(ctx)
		}
	}
}

// push translates the latest table and serves it to every node, unless
// its content equals what is served already.
func (s *Server) push(ctx context.Context) {
	s.mu.Lock()
	t, pushed := s.latest, s.pushed
	s.mu.Unlock()
	if t == nil {
		return
	}
	start := time.Now()
	snap, err := s.translator.Translate(t)
	if err != nil {
		s.metrics.translateErrors.Inc()
		s.log.Error(err, "cannot translate the service table, keeping the served version", "served", pushed)
		return
	}
	version := snap.GetVersion(resource.ListenerType)
	if version == pushed {
		s.log.V(1).Info("table unchanged, not pushing", "version", version)
		return
	}
	translated := time.Since(start)
	if err := s.engine.setSnapshot(ctx, snap); err != nil {
		s.log.Error(err, "cannot serve snapshot", "version", version)
		return
	}
	s.mu.Lock()
	s.pushed, s.site = version, t.Site
	s.mu.Unlock()
	s.metrics.pushes.Inc()
	s.metrics.services.Set(float64(len(t.Services)))
	took := time.Since(start)
	s.metrics.pushDuration.Observe(took.Seconds())
	s.log.Info("pushed service table", "version", version, "previous", pushed, "services", len(t.Services),
		"nodes", s.engine.nodeCount(), "translate", translated, "took", took)
}
