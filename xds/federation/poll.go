package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/backoff"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// replicaLoop is the long-poll loop that follows one replica's view; its
// context is cancelled when the replica's address goes away or the
// watcher stops.
type replicaLoop struct {
	addr   string
	cancel context.CancelFunc
}

// replicaEvent is what a loop tells the watcher: a new document of its
// replica, or a failed poll (err set).
type replicaEvent struct {
	loop *replicaLoop
	doc  netview.Document
	err  error
}

// follow long-polls the replica at l.addr until ctx ends, sending every
// new version and every failure to events. After a failure it retries
// with jittered backoff (100 ms doubling to 5 s) and asks for the current
// view at once when the replica answers again.
func (w *ViewWatcher) follow(ctx context.Context, l *replicaLoop, client *http.Client, wait time.Duration, events chan<- replicaEvent) {
	send := func(ev replicaEvent) bool {
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var version string
	b := backoff.New(100*time.Millisecond, 5*time.Second)
	failing := false
	for ctx.Err() == nil {
		doc, err := poll(ctx, client, l.addr, version, wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				w.Log.Info("gateway replica's view unavailable", "replica", l.addr, "error", err.Error())
				failing = true
			}
			if !send(replicaEvent{loop: l, err: err}) {
				return
			}
			if !backoff.Sleep(ctx, b.Next()) {
				return
			}
			version = ""
			continue
		}
		if failing {
			w.Log.Info("gateway replica's view available again", "replica", l.addr)
			failing = false
		}
		b.Reset()
		if doc.Version != version {
			version = doc.Version
			if !send(replicaEvent{loop: l, doc: doc}) {
				return
			}
		}
	}
}

// poll asks the replica at addr for its view, waiting up to wait for a
// version other than since.
func poll(ctx context.Context, client *http.Client, addr, since string, wait time.Duration) (netview.Document, error) {
	var doc netview.Document
	q := url.Values{"wait": {wait.String()}}
	if since != "" {
		q.Set("since", since)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/view?"+q.Encode(), nil)
	if err != nil {
		return doc, fmt.Errorf("gateway view request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return doc, fmt.Errorf("gateway view: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return doc, fmt.Errorf("gateway view: %s: %s", resp.Status, b)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&doc); err != nil {
		return doc, fmt.Errorf("decode gateway view: %w", err)
	}
	if doc.Version == "" || doc.Self == "" {
		return doc, errors.New("gateway view without version or site")
	}
	return doc, nil
}
