package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skiff-io/skiff/cli/render"
	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// xdsReport is what the site's controller says of its xDS clients (its
// /status, read through the API server's pod proxy): how many are
// connected, those refusing their table (NACK), and the sidecars whose
// redirection is lost. Error says why it, or part of it, could not be
// read; the rest is what could.
type xdsReport struct {
	Connected    int            `json:"connected"`
	Rejections   []xdsRejection `json:"rejections,omitempty"`
	RedirectLost []xdsClient    `json:"redirectLost,omitempty"`
	Error        string         `json:"error,omitempty"`
}

// xdsClient names an xDS client: its kind (sidecar, gateway, node,
// client) and name (a sidecar's namespace/pod).
type xdsClient struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// xdsRejection is a client's rejection of a resource type, as its NACK
// says: the version it refused ("" when the controller no longer knew
// which) and why.
type xdsRejection struct {
	xdsClient
	Type    string `json:"type"`
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

// xdsStatusMax bounds the read of a controller's /status?only=nodes
// (some thousands of clients).
const xdsStatusMax = 8 << 20

// redirectLostAdvice is what status says of a sidecar whose redirection
// is lost.
const redirectLostAdvice = "its connections bypass the sidecar; is the node agent running?"

// xdsClients reads what the site's running controller pods say of their
// xDS clients. It does not fail: what it could not read is its Error.
func (s *site) xdsClients(ctx context.Context) *xdsReport {
	nodes, err := s.controllerNodes(ctx)
	r := xdsOf(nodes)
	if err != nil {
		r.Error = err.Error()
	}
	return &r
}

// controllerNodes reads the xDS clients of every running controller pod
// (/status?only=nodes, at most xdsStatusMax bytes each): those it could
// read, and an error for each it could not, or when none is running.
func (s *site) controllerNodes(ctx context.Context) ([]model.NodeStatus, error) {
	var pods corev1.PodList
	if err := s.c.List(ctx, &pods, client.InNamespace(s.ns), client.MatchingLabels{partOfLabel: "skiff", "app.kubernetes.io/component": "controller"}); err != nil {
		return nil, fmt.Errorf("listing the controller pods: %w", err)
	}
	var nodes []model.NodeStatus
	var errs []error
	running := 0
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		running++
		b, more, err := s.adminQuery(ctx, p.Name, "/status", map[string]string{"only": "nodes"}, xdsStatusMax)
		if err == nil && more {
			err = fmt.Errorf("over %d bytes", xdsStatusMax)
		}
		var ns []model.NodeStatus
		if err == nil {
			ns, err = decodeNodes(b)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("controller %s's /status: %w", p.Name, err))
			continue
		}
		nodes = append(nodes, ns...)
	}
	if running == 0 {
		errs = append(errs, fmt.Errorf("no running controller pod in namespace %s", s.ns))
	}
	return nodes, errors.Join(errs...)
}

// decodeNodes reads the xDS clients out of a controller's /status.
func decodeNodes(b []byte) ([]model.NodeStatus, error) {
	var doc struct {
		Nodes []model.NodeStatus `json:"nodes"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not a status document: %w", err)
	}
	return doc.Nodes, nil
}

// xdsOf summarises the controllers' clients: the rejections by client
// and type, the lost redirections by client.
func xdsOf(nodes []model.NodeStatus) xdsReport {
	r := xdsReport{Connected: len(nodes)}
	for _, n := range nodes {
		c := xdsClient{Kind: string(n.Kind), Name: n.Name}
		for typ, rej := range n.Rejected {
			r.Rejections = append(r.Rejections, xdsRejection{xdsClient: c, Type: typ, Version: rej.Version, Reason: rej.Reason})
		}
		if n.Redirect == model.RedirectLost {
			r.RedirectLost = append(r.RedirectLost, c)
		}
	}
	slices.SortFunc(r.Rejections, func(a, b xdsRejection) int {
		return cmp.Or(compareClients(a.xdsClient, b.xdsClient), strings.Compare(a.Type, b.Type))
	})
	slices.SortFunc(r.RedirectLost, compareClients)
	return r
}

func compareClients(a, b xdsClient) int {
	return cmp.Or(strings.Compare(a.Kind, b.Kind), strings.Compare(a.Name, b.Name))
}

// xdsTable lists the clients refusing their table and the sidecars whose
// redirection is lost, and says when the controller could not be read.
func xdsTable(r *xdsReport) render.Table {
	t := render.Table{Title: "xDS warnings:", Headers: []string{"client", "warning", "detail"}, Empty: "None."}
	for _, rej := range r.Rejections {
		t.Rows = append(t.Rows, []string{rej.Kind + " " + rej.Name, fmt.Sprintf("refuses %s version %s", rej.Type, dash(rej.Version)), oneLine(rej.Reason)})
	}
	for _, c := range r.RedirectLost {
		t.Rows = append(t.Rows, []string{c.Kind + " " + c.Name, "redirection lost", redirectLostAdvice})
	}
	if r.Error != "" {
		t.Rows = append(t.Rows, []string{"-", "clients not known", oneLine("the controller's /status could not be read: " + r.Error)})
	}
	return t
}
