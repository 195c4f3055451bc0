package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	"github.com/go-logr/logr"

	"github.com/skiff-io/skiff/sidecar/netview"
)

// ViewWatcher follows a gateway's view by long-polling GET /view on the
// gateway's admin address. It reports every new version; when the gateway
// cannot be reached it keeps the last view (the controller keeps serving
// the table it has) and retries with jittered backoff.
type ViewWatcher struct {
	// Addr returns the gateway's admin address (host:port); it is asked
	// again before every attempt, so a Kubernetes controller can follow
	// the gateway pod as it moves.
	Addr func() (string, error)
	// OnChange receives every new document.
	OnChange func(netview.Document)
	Log      logr.Logger
	// Wait is how long one poll waits for a change; default 20s.
	Wait   time.Duration
	Client *http.Client
}

// Run follows the view until ctx ends.
func (w *ViewWatcher) Run(ctx context.Context) {
	wait := w.Wait
	if wait <= 0 {
		wait = 20 * time.Second
	}
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: wait + 10*time.Second}
	}
	var version string
	backoff := 100 * time.Millisecond
	failing := false
	for ctx.Err() == nil {
		doc, err := w.poll(ctx, client, version, wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				w.Log.Info("gateway view unavailable; keeping the last one", "error", err.Error())
				failing = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff/2 + rand.N(backoff/2+1)):
			}
			backoff = min(2*backoff, 5*time.Second)
			version = "" // ask for the current view at once when it returns
			continue
		}
		if failing {
			w.Log.Info("gateway view available again")
			failing = false
		}
		backoff = 100 * time.Millisecond
		if doc.Version != version {
			version = doc.Version
			w.OnChange(doc)
		}
	}
}

func (w *ViewWatcher) poll(ctx context.Context, client *http.Client, since string, wait time.Duration) (netview.Document, error) {
	var doc netview.Document
	addr, err := w.Addr()
	if err != nil {
		return doc, fmt.Errorf("find gateway: %w", err)
	}
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
		return doc, fmt.Errorf("gateway view without version or site")
	}
	return doc, nil
}
