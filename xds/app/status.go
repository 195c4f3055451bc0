package app

import (
	"encoding/json"
	"net/http"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/xds/server"
)

// Status is what `skiff-controller status` prints: the table served, the
// gateway's view it came from, and the xDS clients following it.
type Status struct {
	Site    string              `json:"site"`
	Version string              `json:"version"`
	Table   *model.Table        `json:"table,omitempty"`
	View    *netview.Document   `json:"view,omitempty"`
	Nodes   []server.NodeStatus `json:"nodes,omitempty"`
}

// StatusHandler serves the controller's Status as JSON.
func StatusHandler(c *Controller, srv *server.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := Status{Site: c.site, Version: srv.Version(), Table: c.Table(), View: c.View(), Nodes: srv.Status()}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
}
