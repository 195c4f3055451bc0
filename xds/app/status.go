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

// StatusHandler serves the controller's Status as JSON; with the query
// only=nodes, its site, version and xDS clients only (what `skiff status`
// reads, which a large table would dwarf).
func StatusHandler(c *Controller, srv *server.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := Status{Site: c.site, Version: srv.Version(), Nodes: srv.Status()}
		if r.URL.Query().Get("only") != "nodes" {
			st.Table, st.View = c.Table(), c.View()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
}
