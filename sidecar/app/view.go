package app

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/netview"
)

// MaxViewWait bounds how long GET /view?since=V waits for a change.
const MaxViewWait = 30 * time.Second

// ViewHandler serves a gateway's network view as JSON (netview.Document)
// to its controller. With ?since=VERSION it long-polls: it answers as soon
// as the view's version differs from VERSION, or with the unchanged view
// after ?wait (default 20s, at most MaxViewWait), so a controller learns
// of a change within milliseconds without polling.
func ViewHandler(doc func() (netview.Document, <-chan struct{})) http.Handler {
	return viewHandler(nil, doc)
}

// viewHandler is ViewHandler whose long polls answer at once, with the
// view unchanged, when stop is closed: a gateway that stops holds no
// request open.
func viewHandler(stop <-chan struct{}, doc func() (netview.Document, <-chan struct{})) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		wait := 20 * time.Second
		if s := req.URL.Query().Get("wait"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				http.Error(w, "wait: want a duration such as 20s", http.StatusBadRequest)
				return
			}
			wait = min(d, MaxViewWait)
		}
		since := req.URL.Query().Get("since")
		d, changed := doc()
		if since != "" && d.Version == since {
			timer := time.NewTimer(wait)
			defer timer.Stop()
		loop:
			for d.Version == since {
				select {
				case <-changed:
					d, changed = doc()
				case <-timer.C:
					break loop
				case <-stop:
					break loop
				case <-req.Context().Done():
					return
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(d)
	})
}

// trafficHandler serves a gateway's latest traffic reports of the other
// nodes of the network as JSON (netview.TrafficDocument), for its
// controller's console.
func trafficHandler(reports func() netview.TrafficDocument) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(reports())
	})
}
