package app

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/skiff-io/skiff/cli/render"
	"github.com/skiff-io/skiff/sidecar/shared/counters"
	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// maxWarnings is how many recent warnings status shows.
const maxWarnings = 10

// siteReport is what status shows: this site's components, links,
// services and recent warnings, and on Kubernetes what its controller
// says of its xDS clients.
type siteReport struct {
	Site       string                `json:"site"`
	Namespace  string                `json:"namespace"`
	Components []componentState      `json:"components"`
	Links      []peerLink            `json:"links"`
	Services   []model.StatusService `json:"services"`
	// TruncatedServices is how many services the status left out.
	TruncatedServices int     `json:"truncatedServices,omitempty"`
	Warnings          []event `json:"warnings"`
	// XDS is nil where the controller's admin endpoint is not known (a
	// Linux site).
	XDS *xdsReport `json:"xds,omitempty"`
}

// componentState is a workload of the chart: how many of its pods are
// ready of how many wanted ("missing" when it is not there).
type componentState struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Ready   int    `json:"ready"`
	Desired int    `json:"desired"`
	Missing bool   `json:"missing,omitempty"`
}

// peerLink is a link of this site: up in the network's view, or one of
// its link Secrets that is not (yet).
type peerLink struct {
	Peer      string `json:"peer"`
	Cost      int    `json:"cost"`
	State     string `json:"state"`
	DialledBy string `json:"dialledBy"` // this site's name, or the peer's
	Secret    string `json:"secret,omitempty"`
	// Bytes are the stream bytes the site's gateways sent to the peer
	// and received from it since they started (their
	// skiff_peer_bytes_total); nil when they could not be read.
	Bytes *linkBytes `json:"bytes,omitempty"`
	// UpSince is when the newest of the gateways' links to the peer that
	// are up came up (skiff_link_up_timestamp_seconds); nil when none is
	// or the gateways could not be read.
	UpSince *time.Time `json:"upSince,omitempty"`
}

// linkBytes are the bytes carried over a link each way.
type linkBytes struct {
	Sent     float64 `json:"sent"`
	Received float64 `json:"received"`
}

// addBytes puts the gateways' byte counts on the links (all of them:
// links without traffic carried 0 bytes), and when those up came up.
func addBytes(links []peerLink, sample counters.Sample) {
	for i := range links {
		if links[i].Peer == "" {
			continue // an invalid link: no peer to count
		}
		c := sample.Peers[links[i].Peer]
		links[i].Bytes = &linkBytes{Sent: c.BytesSent, Received: c.BytesReceived}
		if c.UpSince > 0 && links[i].State == "up" {
			t := time.UnixMilli(int64(c.UpSince * 1000)).UTC()
			links[i].UpSince = &t
		}
	}
}

// size formats a byte count: 512 B, 1.5 kB, 2.0 MB, 3.1 GB.
func size(b float64) string {
	switch {
	case b >= 1e9:
		return fmt.Sprintf("%.1f GB", b/1e9)
	case b >= 1e6:
		return fmt.Sprintf("%.1f MB", b/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.1f kB", b/1e3)
	}
	return fmt.Sprintf("%.0f B", b)
}

// workloads are the chart's, by kind and name; the node agent's
// DaemonSet is optional (redirect mode iptables, or turned off).
var workloads = []struct{ kind, name string }{
	{"Deployment", "skiff-controller"}, {"Deployment", "skiff-gateway"}, {"Deployment", "skiff-injector"}, {"DaemonSet", "skiff-node-agent"},
}

func siteStatus(ctx context.Context, e *env, _ []string) error {
	if err := render.CheckFormat(e.opts.output); err != nil {
		return usageError{err.Error()}
	}
	if e.opts.siteFile != "" {
		r, _, err := linuxReport(ctx, e)
		if err != nil {
			return err
		}
		return e.show(r, func() []render.Table { return siteTables(r, time.Now()) })
	}
	s, st, err := e.kubeStatus(ctx)
	if err != nil {
		return err
	}
	r := siteReport{Site: st.Site, Namespace: s.ns, Services: st.Services, TruncatedServices: st.Truncated}
	for _, w := range workloads {
		c, err := s.component(ctx, w.kind, w.name)
		if err != nil {
			return err
		}
		if c.Missing && w.kind == "DaemonSet" {
			continue
		}
		r.Components = append(r.Components, c)
	}
	secrets, err := s.links(ctx, st)
	if err != nil {
		return err
	}
	r.Links = peerLinks(st, secrets)
	if sample, err := s.gatewayCounters(ctx); err == nil {
		addBytes(r.Links, sample)
	}
	if r.Warnings, err = s.warnings(ctx, "", "", maxWarnings); err != nil {
		return err
	}
	r.XDS = s.xdsClients(ctx)
	return e.show(r, func() []render.Table { return siteTables(r, time.Now()) })
}

// show writes v in the output format: tables() as tables, else v.
func (e *env) show(v any, tables func() []render.Table) error {
	if e.opts.output != "table" {
		return render.Data(e.out, e.opts.output, v)
	}
	return render.Tables(e.out, tables()...)
}

// siteStatus reads the status of the site: the controller's status
// ConfigMap, or a Linux site's gateway view.
func (e *env) siteStatus(ctx context.Context) (*model.SiteStatus, error) {
	if e.opts.siteFile != "" {
		l, err := e.linux()
		if err != nil {
			return nil, err
		}
		doc, err := l.view(ctx)
		if err != nil {
			return nil, err
		}
		return l.status(doc), nil
	}
	_, st, err := e.kubeStatus(ctx)
	return st, err
}

// component reads a workload's readiness.
func (s *site) component(ctx context.Context, kind, name string) (componentState, error) {
	c := componentState{Name: strings.TrimPrefix(name, "skiff-"), Kind: kind}
	key := client.ObjectKey{Namespace: s.ns, Name: name}
	var err error
	if kind == "DaemonSet" {
		var ds appsv1.DaemonSet
		if err = s.c.Get(ctx, key, &ds); err == nil {
			c.Ready, c.Desired = int(ds.Status.NumberReady), int(ds.Status.DesiredNumberScheduled)
		}
	} else {
		var d appsv1.Deployment
		if err = s.c.Get(ctx, key, &d); err == nil {
			c.Ready, c.Desired = int(d.Status.ReadyReplicas), 1
			if d.Spec.Replicas != nil {
				c.Desired = int(*d.Spec.Replicas)
			}
		}
	}
	switch {
	case apierrors.IsNotFound(err):
		c.Missing = true
	case err != nil:
		return c, fmt.Errorf("reading the %s %s/%s: %w", kind, s.ns, name, err)
	}
	return c, nil
}

// peerLinks merges the links of this site in the view (up, whichever
// side dialled) with its link Secrets (which this site dials).
func peerLinks(st *model.SiteStatus, secrets []linkRow) []peerLink {
	var out []peerLink
	byPeer := map[string]int{}
	for _, site := range st.Sites {
		if site.Name != st.Site {
			continue
		}
		for _, l := range site.Links {
			byPeer[l.Peer] = len(out)
			out = append(out, peerLink{Peer: l.Peer, Cost: l.Cost, State: "up", DialledBy: l.Peer})
		}
	}
	for _, sec := range secrets {
		if i, ok := byPeer[sec.Peer]; ok && sec.Peer != "" {
			out[i].DialledBy, out[i].Secret = st.Site, sec.Name
			continue
		}
		out = append(out, peerLink{Peer: sec.Peer, Cost: sec.Cost, State: sec.State, DialledBy: st.Site, Secret: sec.Name})
	}
	slices.SortFunc(out, func(a, b peerLink) int { return strings.Compare(a.Peer+"\x00"+a.Secret, b.Peer+"\x00"+b.Secret) })
	return out
}

func siteTables(r siteReport, now time.Time) []render.Table {
	where := "namespace " + r.Namespace
	if r.Namespace == "" {
		where = "a Linux site"
	}
	title := fmt.Sprintf("Site %s (%s)", r.Site, where)
	if r.XDS != nil && r.XDS.Error == "" {
		title += fmt.Sprintf(": %d xDS clients connected", r.XDS.Connected)
	}
	comps := render.Table{Title: title, Headers: []string{"component", "kind", "ready"}}
	for _, c := range r.Components {
		ready := fmt.Sprintf("%d/%d", c.Ready, c.Desired)
		if c.Missing {
			ready = "missing"
		}
		comps.Rows = append(comps.Rows, []string{c.Name, c.Kind, ready})
	}
	links := render.Table{Title: "Links:", Headers: []string{"peer", "cost", "state", "up for", "dialled by", "secret", "sent", "received"},
		Empty: "No links: `skiff token create FILE` here and `skiff link create FILE` on another site, or the other way round."}
	for _, l := range r.Links {
		sent, received := "-", "-"
		if l.Bytes != nil {
			sent, received = size(l.Bytes.Sent), size(l.Bytes.Received)
		}
		upFor := "-"
		if l.UpSince != nil {
			upFor = age(now, *l.UpSince)
		}
		links.Rows = append(links.Rows, []string{dash(l.Peer), strconv.Itoa(l.Cost), l.State, upFor, l.DialledBy, dash(l.Secret), sent, received})
	}
	tables := []render.Table{comps, links, servicesTable(r.Services, r.TruncatedServices), warningsTable(r.Warnings, now)}
	if r.XDS != nil {
		tables = append(tables, xdsTable(r.XDS))
	}
	return tables
}

func servicesTable(services []model.StatusService, truncated int) render.Table {
	t := render.Table{Title: "Services:", Headers: []string{"address", "protocol", "routing", "ready here", "other sites"},
		Empty: "No services: expose one with `skiff expose service NAME`."}
	for _, sv := range services {
		t.Rows = append(t.Rows, []string{sv.Name, dash(sv.Protocol), sv.Routing, strconv.Itoa(sv.Ready), remoteSites(sv.Remote)})
	}
	if truncated > 0 {
		t.Rows = append(t.Rows, []string{fmt.Sprintf("(%d more)", truncated)})
	}
	return t
}

// remoteSites lists the other sites serving a service: site (ready
// endpoints, path cost).
func remoteSites(rs []model.RemoteSite) string {
	if len(rs) == 0 {
		return "-"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%s (%d, cost %d)", r.Site, r.Endpoints, r.Cost)
	}
	return strings.Join(parts, ", ")
}

func warningsTable(ws []event, now time.Time) render.Table {
	t := render.Table{Title: "Recent warnings:", Headers: []string{"age", "object", "reason", "message"}, Empty: "None."}
	for _, w := range ws {
		t.Rows = append(t.Rows, []string{age(now, w.Time), w.Object, w.Reason, oneLine(w.Message)})
	}
	return t
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// networkReport is what network status shows: every site the view knows
// and every address with the sites that serve it.
type networkReport struct {
	Site      string        `json:"site"`
	Sites     []model.Site  `json:"sites"`
	Addresses []addressSite `json:"addresses"`
}

// addressSite is an address and where it is served.
type addressSite struct {
	Name     string             `json:"name"`
	Protocol string             `json:"protocol"`
	Routing  string             `json:"routing"`
	Sites    []model.RemoteSite `json:"sites"` // this site first when it serves it, with cost 0
}

func networkStatus(ctx context.Context, e *env, _ []string) error {
	if err := render.CheckFormat(e.opts.output, "dot"); err != nil {
		return usageError{err.Error()}
	}
	st, err := e.siteStatus(ctx)
	if err != nil {
		return err
	}
	r := network(st)
	switch e.opts.output {
	case "table":
		return render.Tables(e.out, networkTables(r)...)
	case "dot":
		return render.Dot(e.out, r.Site, r.Sites)
	}
	return render.Data(e.out, e.opts.output, r)
}

func network(st *model.SiteStatus) networkReport {
	r := networkReport{Site: st.Site, Sites: st.Sites}
	for _, sv := range st.Services {
		a := addressSite{Name: sv.Name, Protocol: sv.Protocol, Routing: sv.Routing}
		if sv.Ready > 0 {
			a.Sites = append(a.Sites, model.RemoteSite{Site: st.Site, Endpoints: sv.Ready})
		}
		a.Sites = append(a.Sites, sv.Remote...)
		r.Addresses = append(r.Addresses, a)
	}
	return r
}

func networkTables(r networkReport) []render.Table {
	sites := render.Table{Title: fmt.Sprintf("Sites (as seen from %s):", r.Site), Headers: []string{"site", "cost", "links"}}
	for _, s := range r.Sites {
		links := make([]string, len(s.Links))
		for i, l := range s.Links {
			links[i] = fmt.Sprintf("%s (cost %d)", l.Peer, l.Cost)
		}
		name := s.Name
		if name == r.Site {
			name += " (this site)"
		}
		sites.Rows = append(sites.Rows, []string{name, strconv.Itoa(s.Cost), dash(strings.Join(links, ", "))})
	}
	addrs := render.Table{Title: "Addresses:", Headers: []string{"address", "protocol", "routing", "served by (ready endpoints)"}, Empty: "No addresses."}
	for _, a := range r.Addresses {
		by := make([]string, len(a.Sites))
		for i, s := range a.Sites {
			by[i] = fmt.Sprintf("%s (%d)", s.Site, s.Endpoints)
		}
		addrs.Rows = append(addrs.Rows, []string{a.Name, dash(a.Protocol), a.Routing, dash(strings.Join(by, ", "))})
	}
	return []render.Table{sites, addrs}
}
