package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/skiff-io/skiff/sidecar/shared/counters"
	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/netview"
	"github.com/skiff-io/skiff/sidecar/shared/sitefile"
)

// maxView bounds the gateway's view document the CLI reads.
const maxView = 64 << 20

// linuxSite is a Linux site as the CLI reaches it: its site file, and its
// gateway's admin address, which serves the gateway's view of the network
// (/view).
type linuxSite struct {
	file  *sitefile.Site
	admin string
}

// linux loads the site file of --site-file.
func (e *env) linux() (*linuxSite, error) {
	f, err := sitefile.Load(e.opts.siteFile)
	if err != nil {
		return nil, err
	}
	return &linuxSite{file: f, admin: e.opts.admin}, nil
}

// get reads path from the gateway's admin address, at most max bytes.
func (l *linuxSite) get(ctx context.Context, path string, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.admin+path, nil)
	if err != nil {
		return nil, fmt.Errorf("--admin %q: %w", l.admin, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot read site %s's gateway %s at %s (is its gateway running with --metrics-bind-address %s? --admin names another): %w", l.file.Name, path, l.admin, l.admin, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading the gateway's %s at %s: %w", path, l.admin, err)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("the gateway's %s at %s: %s: %s", path, l.admin, resp.Status, strings.TrimSpace(string(b)))
	case int64(len(b)) > max:
		return nil, fmt.Errorf("the gateway's %s at %s is over %d bytes", path, l.admin, max)
	}
	return b, nil
}

// view reads the gateway's view, and checks that it is this site's.
func (l *linuxSite) view(ctx context.Context) (*netview.Document, error) {
	b, err := l.get(ctx, "/view", maxView)
	if err != nil {
		return nil, err
	}
	var doc netview.Document
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("the gateway view at %s: %w", l.admin, err)
	}
	if doc.Self != l.file.Name {
		return nil, fmt.Errorf("the gateway at %s is site %q's, not %q's (the site file's): --admin names another site's gateway", l.admin, doc.Self, l.file.Name)
	}
	return &doc, nil
}

// status is the status document of a Linux site: its gateway's view,
// with each address's sites, and its pattern and protocol as the gateway
// uses them (the site file's own, else those the serving sites declare).
func (l *linuxSite) status(doc *netview.Document) *model.SiteStatus {
	st := statusOfView(doc)
	for i := range st.Services {
		sv := &st.Services[i]
		if p, ok := l.file.Routing[sv.Name]; ok {
			sv.Routing = p
		}
		if p, ok := l.file.Protocols[sv.Name]; ok {
			sv.Protocol = string(p)
		}
	}
	return st
}

// counters reads the gateway's traffic counters (its /metrics).
func (l *linuxSite) counters(ctx context.Context) (counters.Sample, error) {
	b, err := l.get(ctx, "/metrics", counters.MaxPage)
	if err != nil {
		return counters.Sample{}, err
	}
	return counters.Parse(bytes.NewReader(b))
}

// statusOfView is the status document of a gateway's view, with each
// address's sites, declared protocol and pattern.
func statusOfView(doc *netview.Document) *model.SiteStatus {
	st := &model.SiteStatus{Site: doc.Self, Version: doc.Version}
	for _, s := range doc.Sites {
		ms := model.Site{Name: s.Name, Cost: s.Cost}
		for peer, cost := range s.Links {
			ms.Links = append(ms.Links, model.Link{Peer: peer, Cost: cost})
		}
		slices.SortFunc(ms.Links, func(a, b model.Link) int { return strings.Compare(a.Peer, b.Peer) })
		st.Sites = append(st.Sites, ms)
	}
	names := make([]string, 0, len(doc.Addresses))
	for name := range doc.Addresses {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		sv := model.StatusService{Name: name, Protocol: cmpOr(doc.Protocols[name], string(model.TCP)), Routing: cmpOr(doc.Routing[name], string(model.Balanced))}
		for _, t := range doc.Addresses[name] {
			if t.Site == doc.Self {
				sv.Ready = t.Endpoints
				continue
			}
			sv.Remote = append(sv.Remote, model.RemoteSite{Site: t.Site, Cost: t.Cost, Endpoints: t.Endpoints})
		}
		st.Services = append(st.Services, sv)
	}
	st.Counts.Sites, st.Counts.Services = len(st.Sites), len(st.Services)
	return st
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// links are the site file's links, with their peer (from the token) and
// state in st.
func (l *linuxSite) links(st *model.SiteStatus) []linkRow {
	rows := make([]linkRow, 0, len(l.file.Links))
	for _, ln := range l.file.Links {
		r := linkRow{Name: ln.Token, Cost: ln.Cost}
		if fi, err := os.Stat(ln.Token); err == nil {
			r.Since = fi.ModTime()
		}
		data, err := readLimited(ln.Token, maxTokenFile)
		r.Peer, r.State = linkState(st, data, err)
		rows = append(rows, r)
	}
	return rows
}

// linuxReport is the site report of a Linux site: links and services of
// its gateway's view; the components and events are Kubernetes'.
func linuxReport(ctx context.Context, e *env) (siteReport, *model.SiteStatus, error) {
	l, err := e.linux()
	if err != nil {
		return siteReport{}, nil, err
	}
	doc, err := l.view(ctx)
	if err != nil {
		return siteReport{}, nil, err
	}
	st := l.status(doc)
	r := siteReport{Site: st.Site, Services: st.Services,
		Components: []componentState{{Name: "gateway", Kind: "process at " + l.admin, Ready: 1, Desired: 1}}}
	r.Links = peerLinks(st, l.links(st))
	if sample, err := l.counters(ctx); err == nil {
		addBytes(r.Links, sample)
	}
	return r, st, nil
}

// kubernetesOnly is the error of a command a Linux site does otherwise.
func kubernetesOnly(what, instead string) error {
	return fmt.Errorf("%s is for Kubernetes sites; on a Linux site (--site-file) %s", what, instead)
}
